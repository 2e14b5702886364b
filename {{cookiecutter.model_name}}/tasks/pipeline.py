"""State machine flows: update-steps, executions."""
