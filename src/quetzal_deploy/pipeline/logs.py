"""The model Lambda's CloudWatch logs: read a time window, or follow them as they come."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from quetzal_deploy.aws import Aws, translated
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.output import Out
from quetzal_deploy.settings import Settings

DURATION = re.compile(r"\s*(\d+)\s*([smhd])\s*")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
FOLLOW_POLL_S = 2.0


def parse_since(text: str) -> timedelta:
    """``30s``, ``10m``, ``2h`` or ``1d`` as a duration."""
    match = DURATION.fullmatch(text or "")
    if not match:
        raise QuetzalError(f"--since {text!r} is not a duration: use a number and a unit, "
                           "like 30s, 10m, 2h or 1d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def format_event(event: dict[str, Any]) -> str:
    moment = datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} {event['message'].rstrip()}"


class LambdaLogs:
    """The log group ``/aws/lambda/<function>``, behind an injected CloudWatch Logs client."""

    def __init__(self, client, function_name: str, profile: str | None = None):
        self.client, self.function_name, self.profile = client, function_name, profile

    @property
    def group(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def events(self, start_ms: int) -> Iterator[dict[str, Any]]:
        """Every event from ``start_ms`` on, every page, oldest first."""
        missing = (f"No log group {self.group} yet: the function has not run (run the pipeline "
                   "first), or MODEL_NAME / AWS_REGION in .env are wrong.")
        with translated(self.profile, {"ResourceNotFoundException": missing}):
            pages = self.client.get_paginator("filter_log_events").paginate(
                logGroupName=self.group, startTime=start_ms, interleaved=True
            )
            for page in pages:
                yield from page["events"]

    def follow(self, start_ms: int, out: Out, polls: int | None = None,
               interval: float = FOLLOW_POLL_S, sleep: Callable[[float], None] = time.sleep) -> int:
        """Print events as they arrive, ``polls`` times (None: until Ctrl-C); returns how many."""
        printed: set[str] = set()
        done = 0
        while polls is None or done < polls:
            for event in self.events(start_ms):
                if event["eventId"] not in printed:
                    printed.add(event["eventId"])
                    out(format_event(event))
                    # Events of the same millisecond may still come: read from it again.
                    start_ms = max(start_ms, event["timestamp"])
            done += 1
            if polls is None or done < polls:
                sleep(interval)
        return len(printed)


def lambda_logs(settings: Settings, aws: Aws) -> LambdaLogs:
    return LambdaLogs(aws.client("logs"), settings.function_name, settings.profile)


def show_logs(settings: Settings, aws: Aws, since: str = "10m", follow: bool = False,
              out: Out = print) -> int:
    """Print the Lambda's logs of the last ``since``; ``follow`` keeps polling. Returns the count."""
    start_ms = milliseconds(datetime.now(UTC) - parse_since(since))
    logs = lambda_logs(settings, aws)
    if follow:
        return logs.follow(start_ms, out)
    count = 0
    for event in logs.events(start_ms):
        out(format_event(event))
        count += 1
    if not count:
        out(f"No log events in {logs.group} over the last {since}.")
    return count
