"""E-prescriptions: formulary, writing, e-signature, regulatory checks."""
