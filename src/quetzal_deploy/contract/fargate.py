"""A Fargate step's container, as the state machine starts it and the step reads it.

The state machine (``pipeline.definition.fargate_state``) passes the step's event as environment
variables: one ``QUETZAL_EVENT__<field>`` per field holding that field's JSON value, ``__``
joining nested names (Step Functions can turn a path into JSON text but cannot build an object
from several paths), with the task token and the time limit. The step (``runtime.event
.read_event``, in ``runtime.cli`` or the local runner) reads them back, and reports its outcome
shaped as the Lambda invoke integration's result, so ``"OutputPath": "$.Payload"`` fits both.
"""

from __future__ import annotations

EVENT_VARIABLE = "QUETZAL_EVENT"  # the whole event as one JSON object (docker run, by hand)
FIELD_PREFIX = "QUETZAL_EVENT__"  # one variable per event field
FIELD_SEPARATOR = "__"  # QUETZAL_EVENT__launcher_arg__demand: field demand of launcher_arg
TOKEN_VARIABLE = "QUETZAL_TASK_TOKEN"  # the state's $$.Task.Token (.waitForTaskToken)
LIMIT_VARIABLE = "QUETZAL_TIME_LIMIT_S"  # the step's TimeoutSeconds


def task_output(event: dict) -> dict:
    """A Fargate step's result, shaped as the Lambda invoke integration's."""
    return {"Payload": event}
