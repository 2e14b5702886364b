"""Step Functions errors, named as Step Functions names them (``States.Runtime``...)."""

from __future__ import annotations


class StatesError(Exception):
    """An error raised while a state runs: Retry and Catch match on ``error``."""

    def __init__(self, error: str, cause: str = ""):
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause
        self.state: str | None = None  # the state it was raised in, set by the interpreter


def runtime_error(cause: str) -> StatesError:
    """A States.Runtime error: a bad path or value; no Retry or Catch can handle it."""
    return StatesError("States.Runtime", cause)


UNCATCHABLE = {"States.Runtime", "States.DataLimitExceeded"}
