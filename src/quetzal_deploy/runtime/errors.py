"""Errors of a pipeline step. Their class names are stable: on Lambda the class name becomes the
Step Functions ``Error`` and the message the ``Cause`` the front end shows, so every message says
what went wrong and how to fix it."""


class StepError(Exception):
    """A step that cannot complete."""


class InvalidEvent(StepError):
    """The invocation event is missing a field, has a wrong type or a hostile value."""


class UnsafeKey(StepError):
    """A storage key that would be read or written outside its scenario or working folder."""


class UnsafeWorkdir(StepError):
    """A working folder that must not be emptied (``/``, the home folder, the code)."""


class StorageError(StepError):
    """The scenario's storage (S3 bucket or local folder) refused or failed a transfer."""


class NotebookError(StepError):
    """The notebook failed; the message carries the tail of its output (the traceback)."""


class NotebookTimeout(StepError):
    """The notebook was stopped before the Lambda time limit; names the notebook and the time spent."""


class StateTooLarge(StepError):
    """The returned event would exceed the Step Functions state size limit."""


class WriteConflict(StorageError):
    """Another step of the execution changed a file this step changed too (parallel steps)."""


class LimitExceeded(StepError):
    """A local step crossed its Lambda or Fargate memory or storage limit and was stopped;
    ``error`` is the error AWS gives (``Runtime.OutOfMemory``, ...)."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error = error
