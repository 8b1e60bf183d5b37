"""Symptom triage: a suggested centre and clinic, with its reasons, before a patient chooses."""
