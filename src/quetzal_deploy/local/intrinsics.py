"""Intrinsic functions (``States.Format('{} km', $.length)``...): a small parser and the
functions Step Functions documents, with its error name ``States.IntrinsicFailure``.

Step Functions' own bounds hold: calls nest at most 10 deep, an array built by a function has at
most 1,000 items (checked before it is built), numbers must be finite."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.jsonpaths import check_path, select

NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
NAME = re.compile(r"States\.[A-Za-z0-9]+")
LITERALS = {"true": True, "false": False, "null": None}
MAX_NESTING = 10  # Step Functions: "up to 10 intrinsic functions within a field"
MAX_ITEMS = 1000
HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple


@dataclass(frozen=True)
class Path:
    path: str


@dataclass(frozen=True)
class Literal:
    """A quoted string; ``pieces`` is it split at its unescaped ``{}`` (for States.Format)."""

    text: str
    pieces: tuple


class Parser:
    """Recursive descent over one intrinsic expression."""

    def __init__(self, text: str):
        self.text, self.pos, self.depth = text, 0, 0

    def fail(self, message: str):
        raise ValueError(f"{message} at character {self.pos} of {self.text!r}")

    def skip_spaces(self):
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def call(self) -> Call:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.fail(f"intrinsic functions nest at most {MAX_NESTING} deep")
        match = NAME.match(self.text, self.pos)
        if not match:
            self.fail("expected an intrinsic function (States.Name(...))")
        name = match.group()
        if name not in FUNCTIONS:
            self.fail(f"{name} is not an intrinsic function this runner supports "
                      f"({', '.join(sorted(FUNCTIONS))})")
        self.pos = match.end()
        self.skip_spaces()
        if self.text[self.pos:self.pos + 1] != "(":
            self.fail("expected '('")
        self.pos += 1
        args = []
        self.skip_spaces()
        if self.text[self.pos:self.pos + 1] == ")":
            self.pos += 1
        else:
            while True:
                args.append(self.argument())
                self.skip_spaces()
                symbol = self.text[self.pos:self.pos + 1]
                self.pos += 1
                if symbol == ")":
                    break
                if symbol != ",":
                    self.fail("expected ',' or ')'")
        low, high = FUNCTIONS[name][1]
        if not low <= len(args) <= high:
            expected = low if low == high else f"{low} to {high}"
            self.fail(f"{name} takes {expected} argument(s), got {len(args)}")
        self.depth -= 1
        return Call(name, tuple(args))

    def argument(self):
        self.skip_spaces()
        char = self.text[self.pos:self.pos + 1]
        if char == "'":
            return self.string()
        if char == "$":
            return self.path()
        if self.text.startswith("States.", self.pos):
            return self.call()
        for word, value in LITERALS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return value
        match = NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return self.number(match.group())
        self.fail("expected a string, number, path or function")

    def number(self, text: str) -> int | float:
        try:
            value = json.loads(text)
        except ValueError:  # an integer of more than 4300 digits
            value = math.inf
        if not math.isfinite(value):
            self.fail(f"the number {text[:30]} is out of range")
        return value

    def string(self) -> Literal:
        """A quoted string; backslash escapes ' { } and backslash itself."""
        pieces, out, self.pos = [], [], self.pos + 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif char == "'":
                self.pos += 1
                pieces.append("".join(out))
                return Literal("".join(pieces[:1] + ["{}" + piece for piece in pieces[1:]]), tuple(pieces))
            elif self.text.startswith("{}", self.pos):
                pieces.append("".join(out))
                out = []
                self.pos += 2
            else:
                out.append(char)
                self.pos += 1
        self.fail("unterminated string")

    def path(self) -> Path:
        start, depth, quote = self.pos, 0, None
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in "[(":
                depth += 1
            elif char in "])":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                break
            self.pos += 1
        path = self.text[start:self.pos].strip()
        check_path(path)
        return Path(path)


def parse_call(text: str) -> Call:
    """The parsed call; ValueError naming what is wrong."""
    parser = Parser(text.strip())
    call = parser.call()
    parser.skip_spaces()
    if parser.pos != len(parser.text):
        parser.fail("unexpected text after the call")
    return call


def evaluate(text: str, data: Any, context: dict | None = None) -> Any:
    """The value of the intrinsic call ``text`` against the state's input and context."""
    try:
        call = parse_call(text)
    except ValueError as ex:
        raise StatesError("States.IntrinsicFailure", str(ex)) from ex
    return run(call, data, context)


def run(node, data, context):
    if isinstance(node, Path):
        return select(data, node.path, context)
    if isinstance(node, Literal):
        return node.text
    if not isinstance(node, Call):
        return node
    args = [run(arg, data, context) for arg in node.args]
    if node.name == "States.Format" and isinstance(node.args[0], Literal):
        args[0] = node.args[0].pieces
    try:
        return FUNCTIONS[node.name][0](*args)
    except RecursionError as ex:
        raise StatesError("States.IntrinsicFailure", f"{node.name}: the value is nested too deeply") from ex
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as ex:
        raise StatesError("States.IntrinsicFailure", f"{node.name}: {ex}") from ex


def as_text(value: Any) -> str:
    """A value inside States.Format: strings as is, others as Step Functions prints them."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(as_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={as_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_(template: str | tuple, *values) -> str:
    """``template`` is a string, or a literal's pieces around its unescaped ``{}``."""
    pieces = template.split("{}") if isinstance(template, str) else template
    if len(pieces) - 1 != len(values):
        raise ValueError(f"the template has {len(pieces) - 1} placeholder(s) but {len(values)} value(s)")
    out = [pieces[0]]
    for value, piece in zip(values, pieces[1:], strict=True):
        out += [as_text(value), piece]
    return "".join(out)


def integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return int(value) if isinstance(value, int) else int(round(value))


def array(value: Any) -> list:
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {value!r}")
    return value


def array_range(start, end, step) -> list:
    start, end, step = integer(start), integer(end), integer(step)
    if step == 0:
        raise ValueError("the step must not be 0")
    values = range(start, end + (1 if step > 0 else -1), step)
    size = (values.stop - values.start + values.step - (1 if step > 0 else -1)) // values.step
    if size > MAX_ITEMS:  # known before any item is made
        raise ValueError(f"the range has {size} items; at most {MAX_ITEMS} are allowed")
    return list(values)


def partition(values, size) -> list:
    values, size = array(values), integer(size)
    if size <= 0:
        raise ValueError("the chunk size must be positive")
    return [values[i:i + size] for i in range(0, len(values), size)]


def unique(values) -> list:
    """Distinct values in order, compared as JSON (so 1 and true differ), in linear time."""
    seen, out = set(), []
    for value in array(values):
        key = json.dumps(value, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def split(text: str, delimiters: str) -> list:
    if not isinstance(text, str) or not isinstance(delimiters, str) or not delimiters:
        raise TypeError("States.StringSplit takes a string and non-empty delimiter characters")
    return [part for part in re.split("|".join(map(re.escape, delimiters)), text) if part]


def merge(first, second, deep) -> dict:
    if not isinstance(first, dict) or not isinstance(second, dict):
        raise TypeError("States.JsonMerge merges two objects")
    if deep is not False:
        raise ValueError("only shallow merging is supported by Step Functions: pass false")
    return {**first, **second}


def hash_(value, algorithm) -> str:
    if algorithm not in HASHES:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {', '.join(HASHES)}")
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return hashlib.new(HASHES[algorithm], text.encode()).hexdigest()


def get_item(values, index):
    return array(values)[integer(index)]


def string(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r:.80}")
    return value


def string_to_json(text):
    return json.loads(string(text))


FUNCTIONS = {
    "States.Format": (format_, (1, 1000)),
    "States.StringToJson": (string_to_json, (1, 1)),
    "States.JsonToString": (lambda value: json.dumps(value, separators=(",", ":")), (1, 1)),
    "States.Array": (lambda *values: list(values), (0, 1000)),
    "States.ArrayPartition": (partition, (2, 2)),
    "States.ArrayContains": (lambda values, value: value in array(values), (2, 2)),
    "States.ArrayRange": (array_range, (3, 3)),
    "States.ArrayGetItem": (get_item, (2, 2)),
    "States.ArrayLength": (lambda values: len(array(values)), (1, 1)),
    "States.ArrayUnique": (unique, (1, 1)),
    "States.MathAdd": (lambda a, b: integer(a) + integer(b), (2, 2)),
    "States.StringSplit": (split, (2, 2)),
    "States.UUID": (lambda: str(uuid.uuid4()), (0, 0)),
    "States.JsonMerge": (merge, (3, 3)),
    "States.Base64Encode": (lambda text: base64.b64encode(string(text).encode()).decode(), (1, 1)),
    "States.Base64Decode": (lambda text: base64.b64decode(string(text).encode(), validate=True).decode(),
                            (1, 1)),
    "States.Hash": (hash_, (2, 2)),
}
