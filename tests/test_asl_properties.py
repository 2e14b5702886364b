"""Property-based tests of the local interpreter's parsers and rules (hypothesis): for any input,
the intrinsic-function parser, the JSONPath checks and the Choice rules give a result or a clear
domain error (ValueError up front, StatesError at run time), each example within a deadline far
above its normal cost, so exponential blow-ups fail. Example counts are fixed below and bounded so
the suite stays fast (run with --hypothesis-show-statistics to see the figures)."""

import json
import re
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quetzal_deploy.local.choice import ALL_TESTS, matches, rule_problems, wildcard_matches
from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.interpreter import Interpreter
from quetzal_deploy.local.intrinsics import FUNCTIONS, array_range, evaluate, parse_call
from quetzal_deploy.local.jsonpaths import assign, check_path, check_reference_path, select
from quetzal_deploy.pipeline.definition import DefinitionError

BOUNDED = settings(max_examples=300, deadline=timedelta(seconds=5), database=None,
                   suppress_health_check=[HealthCheck.too_slow])
PARSED = settings(BOUNDED, max_examples=150)  # each new JSONPath costs jsonpath-ng ~20 ms to parse
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from("abcxy"), children,
                                                                       max_size=4),
    max_leaves=15,
)
DATA = st.dictionaries(st.sampled_from("abcxy"), JSON, max_size=5)
PATH_TEXT = st.text(alphabet="$.[]*?@()'\"=<>!~+-/|&,:`0123 abxy\\", max_size=40).map(lambda t: "$" + t)
PATH_PARTS = st.lists(st.sampled_from([".a", ".b", "[0]", "[1]", "[*]", "..x", ".*", "[-1:]", "[0:2]",
                                       "[?(@.a > 1)]", "[?(@.x == 'y')]", "['a']", "[0,1]"]), max_size=6)
PATHS = PATH_TEXT | PATH_PARTS.map(lambda parts: "$" + "".join(parts))


def is_json(value) -> bool:
    json.dumps(value, allow_nan=False)
    return True


@st.composite
def intrinsic_text(draw, depth=0):
    """A call that is often valid and often subtly not (names, counts, quotes, numbers)."""
    name = draw(st.sampled_from(sorted(FUNCTIONS)) | st.sampled_from(["States.Nope", "States.", "Format"]))
    arguments = draw(st.lists(st.one_of(
        st.text(alphabet="ab{}\\' ,()", max_size=6).map(lambda t: f"'{t}'"),
        st.sampled_from(["1", "-2", "0.5", "1e999", "9" * 40, "true", "null", "$.a", "$.b[0]", "$$.x",
                         "$.a[?(@.x > 1)]", "'{}'", "$.a.`len`"]),
        st.deferred(lambda: intrinsic_text(depth + 1)) if depth < 12 else st.just("1"),
    ), max_size=4))
    separator = draw(st.sampled_from([", ", ",", " , "]))
    return f"{name}({separator.join(arguments)})" + draw(st.sampled_from(["", "", ")", " x"]))


@BOUNDED
@given(text=intrinsic_text() | st.text(max_size=60), data=DATA)
def test_intrinsics_give_a_value_or_a_domain_error(text, data):
    try:
        parse_call(text)
    except ValueError as ex:
        assert str(ex)
        return
    try:
        value = evaluate(text, data, {"x": 1})
    except StatesError as ex:
        assert ex.error in {"States.IntrinsicFailure", "States.Runtime"} and ex.cause
        return
    assert is_json(value)


@PARSED
@given(path=PATHS, data=DATA)
def test_jsonpaths_are_checked_or_refused_and_selection_never_crashes(path, data):
    try:
        check_path(path)
    except ValueError as ex:
        assert path[:20] in str(ex) or "JSONPath" in str(ex)
        return
    try:
        found = select(data, path)
    except StatesError as ex:
        assert ex.error == "States.Runtime" and ex.cause
        return
    assert is_json(found)


@PARSED
@given(path=PATHS, data=DATA)
def test_a_reference_path_result_can_be_read_back(path, data):
    """ResultPath: a reference path places the result where the same path reads it."""
    try:
        check_reference_path(path, context=False)
    except ValueError:
        return
    try:
        combined = assign(data, path, "result")
    except StatesError as ex:
        assert ex.error == "States.Runtime" and ex.cause
        return
    assert select(combined, path) == "result"


OPERANDS = JSON | PATHS | st.sampled_from(["2024-01-31T12:00:00Z", "a*b", "*"])


@st.composite
def rules(draw, depth=0):
    kind = draw(st.sampled_from(["test", "test", "And", "Or", "Not"]) if depth < 4 else st.just("test"))
    if kind == "Not":
        return {"Not": draw(rules(depth + 1))}
    if kind in ("And", "Or"):
        return {kind: draw(st.lists(rules(depth + 1), max_size=3))}
    test = draw(st.sampled_from(sorted(ALL_TESTS)))
    return {"Variable": draw(st.sampled_from(["$.a", "$.b", "$.x[0]", "$$.State.Name", "$.missing"]) | PATHS),
            test: draw(OPERANDS)}


@BOUNDED
@given(rule=rules(), data=DATA)
def test_choice_rules_are_refused_up_front_or_evaluate_to_a_boolean(rule, data):
    rule = {**rule, "Next": "N"}
    problems = list(rule_problems(rule, "Choices[0]"))
    if problems:
        assert all(problem.startswith("Choices[0]") for problem in problems)
        return
    try:
        assert matches(rule, data, {"State": {"Name": "C"}}) in (True, False)
    except StatesError as ex:
        assert ex.error == "States.Runtime" and ex.cause


def reference_match(pattern: str, text: str) -> bool:
    """The obvious (backtracking) translation, fine on short inputs."""
    out, index = [], 0
    while index < len(pattern):
        if pattern[index] == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        out.append(".*" if pattern[index] == "*" else re.escape(pattern[index]))
        index += 1
    return re.fullmatch("".join(out), text, re.DOTALL) is not None


@settings(BOUNDED, max_examples=1000)
@given(pattern=st.text(alphabet="ab*\\", max_size=10), text=st.text(alphabet="ab*\\", max_size=12))
def test_string_matches_agrees_with_the_regular_expression(pattern, text):
    assert wildcard_matches(pattern, text) == reference_match(pattern, text)


@settings(BOUNDED, max_examples=500)
@given(start=st.integers(-3000, 3000), end=st.integers(-3000, 3000),
       step=st.integers(-50, 50).filter(bool))
def test_array_range_has_the_items_of_the_range_or_refuses_more_than_1000(start, end, step):
    expected = list(range(start, end + (1 if step > 0 else -1), step))
    try:
        assert array_range(start, end, step) == expected
    except ValueError as ex:
        assert len(expected) > 1000 and f"{len(expected)} items" in str(ex)


BASE = {"StartAt": "P", "States": {
    "P": {"Type": "Pass", "Parameters": {"v.$": "$.a", "n.$": "States.ArrayLength($.b)"},
          "ResultPath": "$.p", "InputPath": "$", "Next": "C"},
    "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericGreaterThan": 1, "Next": "M"}],
          "Default": "W"},
    "W": {"Type": "Wait", "Seconds": 1, "Next": "M"},
    "M": {"Type": "Map", "ItemsPath": "$.b", "MaxConcurrency": 2, "Next": "Par",
          "Iterator": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}},
          "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}]},
    "Par": {"Type": "Parallel", "Next": "F", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}],
            "Branches": [{"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}]},
    "F": {"Type": "Fail", "Error": "E", "Cause": "c"},
}}
STATE_FIELDS = sorted({key for state in BASE["States"].values() for key in state} | {"OutputPath"})


@settings(BOUNDED, max_examples=200)
@given(changes=st.lists(st.tuples(st.sampled_from(sorted(BASE["States"])), st.sampled_from(STATE_FIELDS),
                                  JSON | PATHS), min_size=1, max_size=3),
       data=st.fixed_dictionaries({"a": JSON, "b": st.lists(JSON, max_size=3), "x": JSON}))
def test_any_definition_is_refused_up_front_or_runs_to_a_states_outcome(changes, data):
    """Fields replaced by any JSON value: a DefinitionError listing them, or a run that ends
    with an output or a StatesError, never a Python exception."""
    definition = json.loads(json.dumps(BASE))
    for state, field, value in changes:
        definition["States"][state][field] = value
    try:
        interpreter = Interpreter(definition)
    except DefinitionError as ex:
        assert "cannot run locally" in str(ex)
        return
    try:
        assert is_json(interpreter.execute(data))
    except StatesError as ex:
        assert ex.error and isinstance(ex.cause, str)
