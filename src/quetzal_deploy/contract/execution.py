"""A run's start and end as Step Functions sees them: the input the front end sends (``invoke run``
and ``invoke run --local`` send the same), the names a run goes by, the cause a failure reports."""

from __future__ import annotations

import json
import re


def execution_input(scenario: str, params: dict, choice: str, variants: list, email: str,
                    authorization: str = "") -> dict:
    """The state machine input in the front end's exact shape (DESIGN.md).

    ``authorization`` is the front end's Cognito token, checked by the optional Authorization
    state; a CLI run is otherwise authorised by IAM and sends none.
    """
    return {
        "authorization": authorization,
        "scenario_path_S3": f"{scenario}/",
        "choice": choice,
        "variants": variants,
        "launcher_arg": {"training_folder": "/tmp", "params": params},
        "metadata": {"user_email": email},
    }


def name_slug(scenario: str) -> str:
    """The scenario name as a plain word for execution names, ARNs and run folders."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", scenario)[:50]


def readable_cause(cause: str) -> str:
    """The cause's message: a Lambda error is JSON whose ``errorMessage`` carries the traceback."""
    try:
        parsed = json.loads(cause)
    except (TypeError, json.JSONDecodeError):
        return cause
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return f"{parsed.get('errorType', 'Error')}: {parsed['errorMessage']}"
    return cause
