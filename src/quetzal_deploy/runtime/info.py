"""A scenario's ``info.json`` as the front end reads it.

``{"description", "model_tag", "last_modified_date", "last_modified_email"}``: the front end
shows the description, the image that produced the outputs, and who changed the scenario last
and when (it parses the date with JavaScript's ``Date``: ISO 8601, as its own ``toISOString``).
Other keys a model keeps there are left alone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

STAMP_KEYS = ("last_modified_date", "last_modified_email")


def now_iso() -> str:
    """The time as the front end writes it: ``2026-11-28T09:45:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_info(raw: bytes | str | None) -> dict:
    """``info.json``'s object; empty when absent, not JSON or not an object."""
    if raw is None:
        return {}
    try:
        info = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def stamped(info: dict, email: str, model_tag: str | None = None) -> dict:
    """``info`` with its description kept, the change stamped, and ``model_tag`` set (runs)."""
    result = {"description": "", **info, "last_modified_date": now_iso(), "last_modified_email": email}
    if model_tag is not None:
        result["model_tag"] = model_tag
    return result


def info_bytes(info: dict) -> bytes:
    return (json.dumps(info, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
