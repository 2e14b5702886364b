"""The local interpreter is bounded as Step Functions is: endless loops, huge ranges, huge retry
figures, out-of-range numbers, deep data, JSONPath extensions Step Functions lacks and
wrong-typed fields all end in a clear domain error, never a hang or a Python traceback.

Tests that would hang before their fix carry a pytest-timeout far above what they need, so a
regression fails instead of blocking the suite."""

import json

import pytest
from test_asl import failure, machine, task

from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.interpreter import HISTORY_LIMIT, LOCAL_RETRIES, Interpreter
from quetzal_deploy.pipeline.definition import DefinitionError, load_definition

pytestmark = pytest.mark.timeout(120)


def refusal(definition) -> str:
    with pytest.raises(DefinitionError) as caught:
        Interpreter(definition)
    return str(caught.value)


def deep(depth: int, leaf=0):
    """A list nested ``depth`` times, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_a_pass_choice_loop_ends_at_the_history_limit():
    definition = machine(
        Count={"Type": "Pass", "Next": "Again"},
        Again={"Type": "Choice", "Choices": [{"Variable": "$.stop", "BooleanEquals": True, "Next": "Done"}],
               "Default": "Count"},
        Done={"Type": "Succeed"})
    error = failure(definition, {"stop": False})
    assert error.error == "States.Runtime"
    assert f"{HISTORY_LIMIT:,} events" in error.cause and "was entered 6,250 times" in error.cause
    assert "Choice rules" in error.cause


def test_a_map_too_large_for_the_history_fails_before_any_item_runs():
    calls = []
    definition = machine(M={"Type": "Map", "End": True, "ItemProcessor": machine(T=task())})
    error = failure(definition, list(range(HISTORY_LIMIT // 2)), invoke=calls.append)
    assert error.error == "States.Runtime" and "events" in error.cause and calls == []


def test_a_huge_array_range_is_refused_before_it_is_built():
    definition = machine(P={"Type": "Pass", "End": True,
                            "Parameters": {"r.$": "States.ArrayRange(1, 100000000000000, 1)"}})
    error = failure(definition)
    assert error.error == "States.IntrinsicFailure"
    assert "100000000000000 items; at most 1000" in error.cause


@pytest.mark.parametrize("rule", [
    {"MaxAttempts": 99999999},
    {"MaxAttempts": 99999999, "BackoffRate": 1e300, "IntervalSeconds": 99999999},
    {"MaxAttempts": 99999999, "BackoffRate": 2, "MaxDelaySeconds": 31622401},
])
def test_huge_retry_figures_retry_a_bounded_number_of_times(rule):
    attempts, lines = [], []

    def always_fails(call):
        attempts.append(call)
        raise StatesError("NotebookError", "boom")

    definition = machine(T=task(Retry=[{"ErrorEquals": ["States.ALL"], **rule}],
                                Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]),
                         Caught={"Type": "Pass", "End": True})
    out = Interpreter(definition, always_fails, out=lines.append).execute({})
    assert out == {"Error": "NotebookError", "Cause": "boom"}
    assert len(attempts) == LOCAL_RETRIES + 1
    text = "\n".join(lines)
    assert f"retry {LOCAL_RETRIES} of {LOCAL_RETRIES}" in text
    assert f"allows 99,999,999 attempts; a local run stops after {LOCAL_RETRIES}" in text


@pytest.mark.parametrize("fields, expected", [
    ({"IntervalSeconds": 0}, "IntervalSeconds must be a whole number from 1 to 99999999, not 0"),
    ({"MaxAttempts": 100000000}, "MaxAttempts must be a whole number from 0 to 99999999"),
    ({"MaxDelaySeconds": 31622402}, "MaxDelaySeconds must be a whole number from 1 to 31622401"),
    ({"BackoffRate": 0.5}, "BackoffRate must be a finite number of at least 1.0, not 0.5"),
    ({"BackoffRate": float("inf")}, "BackoffRate must be a finite number of at least 1.0, not inf"),
    ({"MaxAttempts": 2.5}, "MaxAttempts must be a whole number"),
])
def test_retry_figures_outside_step_functions_ranges_are_refused(fields, expected):
    definition = machine(T=task(Retry=[{"ErrorEquals": ["States.ALL"], **fields}]))
    assert expected in refusal(definition)


def test_an_out_of_range_number_in_the_data_is_a_runtime_error():
    data = json.loads('{"big": 1e999}')  # Python reads it as inf; JSON cannot carry it
    error = failure(machine(P={"Type": "Pass", "End": True}), data)
    assert error.error == "States.Runtime" and "1e999" in error.cause


def test_out_of_range_numbers_in_intrinsics_are_clear_errors():
    assert "the number 1e999 is out of range" in refusal(machine(P={
        "Type": "Pass", "End": True, "Parameters": {"r.$": "States.ArrayRange(1, 1e999, 1)"}}))
    error = failure(machine(P={"Type": "Pass", "End": True, "Parameters": {"s.$": "States.MathAdd($.x, 1)"}}),
                    {"x": float("inf")})
    assert error.error == "States.IntrinsicFailure" and "finite" in error.cause


@pytest.mark.parametrize("function", ["States.Base64Encode", "States.Base64Decode", "States.StringToJson"])
def test_string_functions_given_a_number_are_intrinsic_failures(function):
    """Found by the intrinsics property test: ``States.Base64Decode(1)`` raised AttributeError."""
    error = failure(machine(P={"Type": "Pass", "End": True, "Parameters": {"v.$": f"{function}($.n)"}}),
                    {"n": 1})
    assert error.error == "States.IntrinsicFailure" and "expected a string, got 1" in error.cause


def test_deeply_nested_data_is_a_runtime_error():
    error = failure(machine(P={"Type": "Pass", "ResultPath": "$.copy", "End": True}), {"deep": deep(100_000)})
    assert error.error == "States.Runtime" and "nested too deeply" in error.cause and error.state == "P"


def test_a_deeply_nested_definition_is_a_definition_error(tmp_path):
    path = tmp_path / "step-functions.json"
    path.write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})[:-1]
                    + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DefinitionError, match="nested too deeply"):
        load_definition(path)
    path.write_text('{"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1e999, "End": true}}}')
    with pytest.raises(DefinitionError, match="1e999 is out of range"):
        load_definition(path)


def test_intrinsic_functions_nest_at_most_ten_deep():
    nested = "States.ArrayLength(" * 11 + "$.a" + ")" * 11
    assert "nest at most 10 deep" in refusal(machine(P={"Type": "Pass", "End": True,
                                                         "Parameters": {"n.$": nested}}))


@pytest.mark.parametrize("path, expected", [
    ("$.a.`sub(/(a+)+$/, x)`", "'sub', a jsonpath-ng extension"),
    ("$.a + $.b", "arithmetic, a jsonpath-ng extension"),
    ("$.a.`len`", "'len', a jsonpath-ng extension"),
    ('$.items[?(@.name =~ "(a+)+$")]', "the filter operator '=~'"),
    ("$.a | $.b", "'|' unions"),
    ("$.a[/x]", "sorting"),
])
def test_jsonpath_extensions_step_functions_lacks_are_refused_up_front(path, expected):
    message = refusal(machine(P={"Type": "Pass", "End": True, "Parameters": {"v.$": path}}))
    assert "Parameters.v.$" in message and expected in message, message


def test_reference_paths_name_one_node():
    definition = machine(
        P={"Type": "Pass", "ResultPath": "$.items[*]", "Next": "C"},
        C={"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEqualsPath": "$.b[0:2]", "Next": "F"}],
           "Default": "F"},
        F={"Type": "Fail", "CausePath": "$..cause"})
    message = refusal(definition)
    for place in ("state 'P': ResultPath: '$.items[*]' must be a reference path",
                  "state 'C': Choices[0].NumericEqualsPath must be a reference path",
                  "state 'F': CausePath: '$..cause' must be a reference path"):
        assert place in message, message


def test_filters_with_comparisons_still_run():
    definition = machine(P={"Type": "Pass", "End": True, "Parameters": {"heavy.$": "$.items[?(@.w > 5)].id"}})
    items = [{"id": 1, "w": 2}, {"id": 2, "w": 9}]
    assert Interpreter(definition).execute({"items": items}) == {"heavy": [2]}


def test_filters_combine_comparisons_with_jayway_and_but_not_or():
    definition = machine(P={"Type": "Pass", "End": True, "Parameters": {
        "middle.$": "$.items[?(@.w > 1 && @.w < 9)].id", "quoted.$": "$.items[?(@.tag == 'a&&b')].id"}})
    items = [{"id": 1, "w": 0, "tag": "a&&b"}, {"id": 2, "w": 5, "tag": "x"}, {"id": 3, "w": 12, "tag": "x"}]
    assert Interpreter(definition).execute({"items": items}) == {"middle": [2], "quoted": [1]}
    message = refusal(machine(P={"Type": "Pass", "End": True,
                                 "Parameters": {"v.$": "$.items[?(@.w > 1 || @.w < 9)]"}}))
    assert "uses '||' in a filter" in message


def test_string_matches_does_not_backtrack():
    pattern = "*a" * 30 + "*b"
    definition = machine(C={"Type": "Choice", "Default": "No", "Choices": [
        {"Variable": "$.s", "StringMatches": pattern, "Next": "Yes"}]},
        Yes={"Type": "Pass", "Result": "yes", "End": True}, No={"Type": "Pass", "Result": "no", "End": True})
    run = Interpreter(definition).execute
    assert run({"s": "a" * 20_000}) == "no"  # a backtracking regular expression never finishes this
    assert run({"s": "a" * 20_000 + "b"}) == "yes"


def test_wrong_typed_fields_are_listed_before_anything_runs():
    definition = {"StartAt": "T", "States": {
        "T": task(Retry={"ErrorEquals": ["States.ALL"]}, Catch="Caught", InputPath=5, ResultPath=["$.x"],
                  Next="P", End=None),
        "P": {"Type": "Parallel", "Branches": {"StartAt": "X"}, "Next": "M"},
        "M": {"Type": "Map", "Iterator": ["x"], "Next": "C"},
        "C": {"Type": "Choice", "Choices": {"Variable": "$.x"}, "Default": ["F"]},
        "F": {"Type": "Fail", "Cause": {"why": "x"}, "Error": 3},
        "W": {"Type": {"Wait": 1}},
        "S": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": "1", "Next": ["F"]}]},
    }}
    del definition["States"]["T"]["End"]
    message = refusal(definition)
    for expected in ("state 'T': Retry must be an array, not {'ErrorEquals'",
                     "state 'T': Catch must be an array, not 'Caught'",
                     "state 'T': InputPath must be a string (a JSONPath) or null, not 5",
                     "state 'T': ResultPath must be a string (a JSONPath) or null, not ['$.x']",
                     "state 'P': Branches must be an array",
                     "state 'M': Iterator must be an object",
                     "state 'C': Choices must be an array", "state 'C': Default must be a string",
                     "state 'F': Cause must be a string, not {'why': 'x'}",
                     "state 'F': Error must be a string, not 3",
                     "state 'W': Type {'Wait': 1} is not supported",
                     "state 'S': Choices[0].NumericEquals must be a finite number, not '1'",
                     "state 'S': Choices[0].Next ['F'] is not a state"):
        assert expected in message, message


def test_fail_paths_may_be_intrinsics_and_must_give_strings():
    definition = machine(F={"Type": "Fail", "ErrorPath": "$.code",
                            "CausePath": "States.Format('{} failed', $.step)"})
    error = failure(definition, {"code": "Model.Broken", "step": "prep"})
    assert (error.error, error.cause) == ("Model.Broken", "prep failed")
    error = failure(definition, {"code": {"not": "text"}, "step": "prep"})
    assert error.error == "States.Runtime" and "ErrorPath '$.code'" in error.cause


def test_state_names_must_be_unique_across_branches_and_iterators():
    definition = machine(
        Work={"Type": "Parallel", "Next": "Fan", "Branches": [machine(Work={"Type": "Succeed"})]},
        Fan={"Type": "Map", "End": True, "Iterator": machine(Fan={"Type": "Succeed"})})
    message = refusal(definition)
    assert "state name 'Work' is used 2 times (States, States.Work.Branches[0].States)" in message
    assert "state name 'Fan' is used 2 times (States, States.Fan.Iterator.States)" in message
