"""Evaluation: scoring a checkpoint, clinical metrics, plots (cadft-eval)."""
