"""Baselines on the language model's terms (baselines group): classical models, clinical scores, zero-shot, the
oracle."""
