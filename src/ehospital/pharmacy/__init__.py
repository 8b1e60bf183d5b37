"""Pharmacies: stock lots, orders, payment, dispensing and delivery."""
