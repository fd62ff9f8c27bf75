"""Tracking (MLflow): names, store, run record, the logging session with its offline failover, sync, sweeps, the
leaderboard, learning curves, the logged model and the UI."""
