"""cadft."""
