"""Scenario flows: upload, download, lock, publish model-wide config."""
