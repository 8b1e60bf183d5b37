"""Domain-free building blocks: base model, errors, time, ids."""
