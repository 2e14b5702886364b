"""The size limit of a run's state: Step Functions caps a state's input and output at 256 KiB,
counted in UTF-8 bytes of its JSON. A step's returned event (``runtime.handler``), a local run's
states (``local.interpreter``) and the run reports are held to it."""

from __future__ import annotations

import json

STATE_LIMIT_BYTES = 262_144


def state_bytes(value) -> int:
    """What Step Functions counts of ``value`` against ``STATE_LIMIT_BYTES``: its compact JSON's UTF-8
    bytes. ``ValueError``/``TypeError`` when it is not JSON (NaN, Infinity, a set)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
