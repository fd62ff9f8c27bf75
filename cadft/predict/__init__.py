"""Applying a trained run to new people: the run folder checked and loaded (trained_run)."""
