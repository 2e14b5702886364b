"""Domain errors: each message says what went wrong and how to fix it."""


class QuetzalError(Exception):
    """A user-facing error; tasks print its message and exit non-zero."""


class ConfigError(QuetzalError):
    """The repo's settings (.env) are missing or invalid."""


class AwsError(QuetzalError):
    """AWS refused or could not be reached (credentials, permissions, missing resources)."""


class RunError(QuetzalError):
    """A run cannot start: missing scenario, a definition it would fail on, bad parameters."""


class Cancelled(QuetzalError):
    """The user said no: nothing more was changed (the message says what was kept)."""
