"""The step's event, sent by a Step Functions Task state, and its strict validation.

``{"notebook_path": "notebooks/<step>.ipynb", "scenario_path_S3": "S/", "launcher_arg": {...},
"metadata": {"user_email": "..."}}``: every value is checked before anything is read, cleaned,
run or written, and no value ever reaches a shell. Lambda hands the event over as it is; a
Fargate step (``runtime.cli``, or the local runner's Fargate steps, as the container would) reads
it from its container's environment with ``read_event``, and its limit with ``time_limit``
(``contract.fargate`` names the variables the state machine sets).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from quetzal_deploy.contract.fargate import EVENT_VARIABLE, FIELD_PREFIX, FIELD_SEPARATOR, LIMIT_VARIABLE
from quetzal_deploy.runtime.errors import InvalidEvent
from quetzal_deploy.runtime.names import InvalidScenarioName, scenario_of_prefix

NOTEBOOK_SUFFIXES = (".ipynb", ".py")
METADATA_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# S3 limits user-defined metadata to 2 KB (keys + values, UTF-8); the checksum takes ~80 bytes.
MAX_METADATA_BYTES = 1900
# Linux refuses a single argv string over 128 KiB (MAX_ARG_STRLEN).
MAX_LAUNCHER_ARG_BYTES = 128 * 1024 - 1
MAX_TEXT = 1024


@dataclass(frozen=True)
class StepEvent:
    """A validated event: ``notebook`` is the resolved file inside the task root."""

    notebook_path: str
    notebook: Path
    scenario: str
    launcher_arg: dict
    metadata: dict[str, str]

    @property
    def step_name(self) -> str:
        return self.notebook.stem


def parse_event(event, task_root: Path) -> StepEvent:
    """Validate ``event`` against the task root; raise ``InvalidEvent`` saying what is wrong."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"The event must be a JSON object, not {type(event).__name__}.")
    notebook_path = required(event, "notebook_path", str)
    scenario = required(event, "scenario_path_S3", str)
    launcher_arg = required(event, "launcher_arg", dict)
    metadata = event.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidEvent(f"metadata must be a JSON object, not {type(metadata).__name__}.")
    return StepEvent(
        notebook_path=notebook_path,
        notebook=notebook_file(notebook_path, task_root),
        scenario=scenario_prefix(scenario),
        launcher_arg=checked_launcher_arg(launcher_arg),
        metadata=s3_metadata(metadata),
    )


def required(event: dict, name: str, kind: type):
    if name not in event:
        raise InvalidEvent(f"The event has no {name}: the state machine's Task must pass it.")
    value = event[name]
    if not isinstance(value, kind):
        expected = "a JSON object" if kind is dict else "a string"
        raise InvalidEvent(f"{name} must be {expected}, not {type(value).__name__}: {value!r:.80}")
    return value


def has_control_chars(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def notebook_file(notebook_path: str, task_root: Path) -> Path:
    """The notebook as a file inside the task root; relative, no ``..``, existing, .ipynb or .py."""
    shown = repr(notebook_path)[:120]
    if not notebook_path or len(notebook_path) > MAX_TEXT or has_control_chars(notebook_path):
        raise InvalidEvent(f"notebook_path {shown} must be a short relative path like "
                           "notebooks/<step>.ipynb, without control characters.")
    pure = PurePosixPath(notebook_path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in notebook_path:
        raise InvalidEvent(f"notebook_path {shown} must be relative to the image's task root "
                           "(like notebooks/<step>.ipynb), without '..' or '\\'.")
    if pure.suffix not in NOTEBOOK_SUFFIXES:
        raise InvalidEvent(f"notebook_path {shown} must name a .ipynb notebook or a .py script.")
    root = task_root.resolve()
    resolved = (root / pure).resolve()
    if not resolved.is_relative_to(root):
        raise InvalidEvent(f"notebook_path {shown} resolves outside the task root {root}.")
    try:
        exists = resolved.is_file()
    except OSError:  # a part longer than a file name may be
        exists = False
    if not exists:
        raise InvalidEvent(f"notebook_path {shown} does not exist in the image ({root}): check "
                           "the step's name in step-functions.json and rebuild the image.")
    return resolved


def scenario_prefix(scenario: str) -> str:
    """One scenario folder ``<name>/`` as the front end names it (see ``names``). A bare name
    without the ``/`` (the call id a microservice screen sends, a UUID) is that folder too."""
    if "/" not in scenario:
        scenario += "/"
    try:
        scenario_of_prefix(scenario)
    except InvalidScenarioName as ex:
        raise InvalidEvent(
            f"scenario_path_S3 {repr(scenario)[:120]} must be a scenario folder like 'base/' (or a bare "
            f"name like a call id): one name, ending with '/' when it has one, no leading '/', no '..', "
            f"no nested folder ({ex})"
        ) from ex
    return scenario


def checked_launcher_arg(launcher_arg: dict) -> dict:
    try:
        size = len(json.dumps(launcher_arg).encode())
    except RecursionError:
        raise InvalidEvent("launcher_arg nests objects or arrays too deeply to be passed to a notebook: "
                           "keep it a few levels deep (params: {category: {name: value}}).") from None
    if size > MAX_LAUNCHER_ARG_BYTES:
        raise InvalidEvent(f"launcher_arg is {size} bytes once encoded; a notebook argument is "
                           f"limited to {MAX_LAUNCHER_ARG_BYTES}: pass large data as scenario files.")
    return launcher_arg


def s3_metadata(metadata: dict) -> dict[str, str]:
    """Metadata as S3 stores it: ASCII header-safe keys; non-ASCII values RFC 2047-encoded.

    S3 sends metadata as HTTP headers (ASCII); it decodes ``=?UTF-8?B?...?=`` values and returns
    them encoded the same way, so an accented user name survives the round trip.
    """
    encoded = {}
    for key, value in metadata.items():
        if not METADATA_KEY.fullmatch(key):
            raise InvalidEvent(f"metadata key {key!r:.80} must be letters, digits, '_' and '-'.")
        if not isinstance(value, str):
            raise InvalidEvent(f"metadata value of {key!r} must be a string, not "
                               f"{type(value).__name__}.")
        if has_control_chars(value):
            raise InvalidEvent(f"metadata value of {key!r} must not contain control characters.")
        if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
            raise InvalidEvent(f"metadata value of {key!r} holds a lone surrogate ({value!r:.80}), "
                               "which is not text UTF-8 can carry: send valid Unicode.")
        encoded[key.lower()] = value if value.isascii() else rfc2047(value)
    size = sum(len(key) + len(value) for key, value in encoded.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidEvent(f"metadata is {size} bytes; S3 allows 2 KB per object: keep it short.")
    return encoded


def rfc2047(value: str) -> str:
    return "=?UTF-8?B?" + base64.b64encode(value.encode()).decode() + "?="


def parse_event_json(text: str, source: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as ex:
        raise InvalidEvent(f"{source} is not valid JSON ({ex.msg} at character {ex.pos}).") from ex


def read_event(argument: str | None, environ) -> dict:
    """The step's event from the argument, ``QUETZAL_EVENT`` or the ``QUETZAL_EVENT__*`` fields."""
    if argument:
        return parse_event_json(argument, "The event argument")
    if environ.get(EVENT_VARIABLE):
        return parse_event_json(environ[EVENT_VARIABLE], EVENT_VARIABLE)
    fields: dict = {}
    for name in sorted(name for name in environ if name.startswith(FIELD_PREFIX)):
        *parents, last = name[len(FIELD_PREFIX):].split(FIELD_SEPARATOR)
        target = fields
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise InvalidEvent(f"{name} sets a field inside {parent}, which is not an object.")
        target[last] = parse_event_json(environ[name], name)
    if not fields:
        raise InvalidEvent(f"No event given: pass it as the argument, in {EVENT_VARIABLE}, or as "
                           f"{FIELD_PREFIX}<field> variables (update-steps renders those).")
    return fields


def time_limit(value: str | float | None) -> float:
    """The step's time limit in seconds: a positive number."""
    if value in (None, ""):
        raise InvalidEvent(f"No time limit: pass --time-limit-s or set {LIMIT_VARIABLE} "
                           "(update-steps sets it from the step's TimeoutSeconds).")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise InvalidEvent(f"The time limit must be a positive number of seconds, not {value!r}.")
    return seconds
