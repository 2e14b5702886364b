"""Observe and check: logs, doctor."""
