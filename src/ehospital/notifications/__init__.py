"""Notifications: an outbox written with the event that caused it, and the adapters that deliver it."""
