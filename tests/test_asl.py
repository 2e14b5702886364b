"""The local ASL interpreter where moto's engine cannot be the reference (see
test_asl_differential.py): Step Functions' documented semantics, up-front refusals, and Task
states. Task states get a plain Python function as their Lambda: the interpreter's own injection
point (the real handler behind it is exercised end to end in test_run_local.py)."""

import threading

import pytest

from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.interpreter import Interpreter
from quetzal_deploy.pipeline.definition import DefinitionError

INVOKE = "arn:aws:states:::lambda:invoke"
FUNCTION = "arn:aws:lambda:ca-central-1:000000000000:function:model"


def machine(**states) -> dict:
    return {"StartAt": next(iter(states)), "States": states}


def task(**fields) -> dict:
    return {"Type": "Task", "Resource": INVOKE, "End": True,
            "Parameters": {"FunctionName": FUNCTION, "Payload.$": "$"}, **fields}


def failure(definition, data=None, invoke=None) -> StatesError:
    with pytest.raises(StatesError) as caught:
        Interpreter(definition, invoke).execute(data if data is not None else {})
    return caught.value


def test_no_matching_choice_is_states_no_choice_matched():
    definition = machine(C={"Type": "Choice", "Choices": [
        {"Variable": "$.x", "StringEquals": "a", "Next": "A"}]}, A={"Type": "Succeed"})
    error = failure(definition, {"x": "b"})
    assert (error.error, error.state) == ("States.NoChoiceMatched", "C")


def test_choice_on_a_missing_variable_is_a_runtime_error():
    definition = machine(C={"Type": "Choice", "Default": "A", "Choices": [
        {"Variable": "$.absent", "StringEquals": "a", "Next": "A"}]}, A={"Type": "Succeed"})
    error = failure(definition, {"x": 1})
    assert error.error == "States.Runtime" and "$.absent" in error.cause


@pytest.mark.parametrize("expression, expected", [
    (r"States.Format('brace \{\} {} it\'s', $.n)", "brace {} N it's"),
    ("States.Format($.template, 1, true)", "x1ytrue"),
    ("States.Array(1, null)", [1, None]),
    ("States.ArrayRange(5, 1, -2)", [5, 3, 1]),
    ("States.StringSplit('a,,b', ',')", ["a", "b"]),
])
def test_intrinsics_follow_the_documentation(expression, expected):
    definition = machine(P={"Type": "Pass", "Parameters": {"v.$": expression}, "End": True})
    assert Interpreter(definition).execute({"n": "N", "template": "x{}y{}"}) == {"v": expected}


def test_uuid_is_a_fresh_version_4_uuid():
    definition = machine(P={"Type": "Pass", "Parameters": {"a.$": "States.UUID()", "b.$": "States.UUID()"},
                            "End": True})
    out = Interpreter(definition).execute({})
    assert out["a"] != out["b"] and out["a"][14] == "4" and len(out["a"]) == 36


def test_string_matches_wildcards_and_escapes():
    rules = [{"Variable": "$.s", "StringMatches": r"log-*.txt", "Next": "Star"},
             {"Variable": "$.s", "StringMatches": r"a\*b", "Next": "Literal"}]
    definition = machine(C={"Type": "Choice", "Choices": rules, "Default": "None"},
                         Star={"Type": "Pass", "Result": "star", "End": True},
                         Literal={"Type": "Pass", "Result": "literal", "End": True},
                         **{"None": {"Type": "Pass", "Result": "none", "End": True}})
    run = Interpreter(definition).execute
    assert [run({"s": s}) for s in ("log-2024.txt", "a*b", "axb")] == ["star", "literal", "none"]


def test_state_over_256_kb_fails_and_cannot_be_caught():
    big = {"Type": "Pass", "Result": "x" * (257 * 1024), "End": True}
    definition = machine(Par={"Type": "Parallel", "Branches": [machine(Big=big)], "End": True,
                              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
                         Caught={"Type": "Succeed"})
    assert failure(definition).error == "States.DataLimitExceeded"


def test_missing_path_is_a_runtime_error_that_states_all_does_not_catch():
    definition = machine(P={"Type": "Pass", "InputPath": "$.missing", "End": True})
    error = failure(machine(Par={"Type": "Parallel", "Branches": [definition], "End": True,
                                 "Retry": [{"ErrorEquals": ["States.ALL"]}],
                                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}]},
                            C={"Type": "Succeed"}))
    assert error.error == "States.Runtime" and "$.missing" in error.cause


@pytest.mark.parametrize("data", [{"x": "text"}, {"x": [1]}, [1, 2]])
def test_result_path_through_a_non_object_is_a_runtime_error(data):
    definition = machine(P={"Type": "Pass", "Result": 1, "ResultPath": "$.x.y", "End": True})
    error = failure(definition, data)
    assert error.error == "States.Runtime" and "ResultPath '$.x.y'" in error.cause


def test_task_input_and_output_processing():
    calls = []

    def lambda_function(call):
        calls.append(call)
        return {"echo": call.payload, "extra": 1}

    definition = machine(T=task(
        InputPath="$.inner",
        Parameters={"FunctionName": FUNCTION, "Payload": {"v.$": "$.v", "fixed": 2}},
        ResultSelector={"echo.$": "$.Payload.echo", "status.$": "$.StatusCode"},
        ResultPath="$.result", OutputPath="$.result", TimeoutSeconds=42))
    out = Interpreter(definition, lambda_function).execute({"inner": {"v": 1}})
    assert out == {"echo": {"v": 1, "fixed": 2}, "status": 200}
    assert (calls[0].function, calls[0].timeout_s, calls[0].state) == ("model", 42, "T")


def test_task_retries_then_catches_with_error_and_cause():
    attempts = []

    def flaky(call):
        attempts.append(call.payload)
        raise StatesError("NotebookError", '{"errorMessage": "boom"}')

    definition = machine(
        T=task(Retry=[{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 5},
                      {"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2, "IntervalSeconds": 60}],
               Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Handled"}]),
        Handled={"Type": "Pass", "End": True})
    lines = []
    out = Interpreter(definition, flaky, out=lines.append).execute({"keep": True})
    assert len(attempts) == 3
    assert out == {"keep": True, "failure": {"Error": "NotebookError", "Cause": '{"errorMessage": "boom"}'}}
    assert any("retry 2 of 2" in line and "not waited" in line for line in lines)


def test_task_succeeds_after_a_retry():
    answers = iter([StatesError("Lambda.ServiceException"), {"done": True}])

    def lambda_function(call):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    definition = machine(T=task(OutputPath="$.Payload",
                                Retry=[{"ErrorEquals": ["Lambda.ServiceException"], "MaxAttempts": 1}]))
    assert Interpreter(definition, lambda_function).execute({}) == {"done": True}


SIGNAL_IN_A_STEP_THREAD = """
import concurrent.futures, json, signal, sys, threading, time
from quetzal_deploy.local.interpreter import Interpreter

released = threading.Event()

def interrupt(signum, frame):  # as the local runner's: stop the notebooks, then interrupt the run
    released.set()
    raise KeyboardInterrupt

def main_thread_waits_on_the_items():
    frame = sys._current_frames()[threading.main_thread().ident]
    while frame is not None and frame.f_code.co_filename != concurrent.futures._base.__file__:
        frame = frame.f_back
    return frame is not None and frame.f_code.co_name == "wait"

def step(call):
    if call.payload == "signal":  # the kernel may hand a process's signal to any of its threads
        while not main_thread_waits_on_the_items():  # once the Map waits on its items
            time.sleep(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    else:
        released.wait()  # a notebook still running, until the handler stops it
    return call.payload

signal.signal(signal.SIGINT, interrupt)
try:
    Interpreter(json.loads(sys.argv[1]), step, max_workers=2).execute(["hold", "signal"])
except KeyboardInterrupt:
    print("interrupted")
"""


def test_a_signal_received_by_a_map_items_thread_still_interrupts_the_run():
    """Python runs signal handlers in the main thread only, and a signal the kernel hands to a
    worker thread does not end an untimed wait there: a Map waiting on its items must still see
    Ctrl-C/SIGTERM (the hang ``invoke run --local`` showed under load). ``pthread_kill`` picks the
    thread the kernel would otherwise pick at random."""
    import json
    import subprocess
    import sys

    processor = machine(T=task(OutputPath="$.Payload"))
    definition = machine(M={"Type": "Map", "End": True, "ItemProcessor": processor})
    done = subprocess.run([sys.executable, "-c", SIGNAL_IN_A_STEP_THREAD, json.dumps(definition)],
                          capture_output=True, text=True, timeout=120)  # without the fix: it never ends

    assert done.stdout.strip() == "interrupted", done.stdout + done.stderr

def test_map_runs_items_concurrently_up_to_max_concurrency():
    both_running = threading.Barrier(2, timeout=10)
    active, peak, lock = [0], [0], threading.Lock()

    def lambda_function(call):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        if call.payload == "sync":
            both_running.wait()  # fails unless two items run at the same time
        with lock:
            active[0] -= 1
        return call.payload

    def fan_out(items, concurrency):
        definition = machine(M={"Type": "Map", "MaxConcurrency": concurrency, "End": True,
                                "ItemProcessor": machine(T=task(OutputPath="$.Payload"))})
        return Interpreter(definition, lambda_function, max_workers=4).execute(items)

    assert fan_out(["sync", "sync"], 0) == ["sync", "sync"]
    peak[0] = 0
    assert fan_out(list("abcd"), 1) == list("abcd")
    assert peak[0] == 1


def test_wait_is_reported_not_slept():
    lines = []
    definition = machine(W={"Type": "Wait", "Seconds": 86400, "End": True})
    assert Interpreter(definition, out=lines.append).execute({"a": 1}) == {"a": 1}
    assert "W: Wait Seconds=86400 not waited for locally" in "\n".join(lines)


def test_unsupported_definition_lists_every_problem_up_front():
    definition = {"StartAt": "A", "QueryLanguage": "JSONata", "States": {
        "A": {"Type": "Pass", "Next": "Nowhere", "Assign": {"x": 1}},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.x", "StringContains": "a", "Next": "A"}]},
        "C": {"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync", "End": True},
        "D": {"Type": "Pass", "OutputPath": "$.[", "End": True},
        "E": {"Type": "Pass", "Parameters": {"x.$": "States.ArrayLength(1, 2)"}, "End": True},
        "F": {"Type": "Map", "End": True, "MaxConcurrency": "2",
              "Retry": [{"ErrorEquals": ["X"], "MaxAttempts": -1}], "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "G",
            "States": {"G": {"Type": "Succeed"}}}},
    }}
    with pytest.raises(DefinitionError) as caught:
        Interpreter(definition)
    message = str(caught.value)
    for expected in ("QueryLanguage 'JSONata' is not supported",
                     "state 'A': Next 'Nowhere' is not a state",
                     "state 'A': field 'Assign' is not supported",
                     "state 'B': Choices[0]: 'StringContains' is not a comparison",
                     "state 'C': Resource 'arn:aws:states:::ecs:runTask.sync' is not supported locally",
                     "state 'D': OutputPath: '$.[' is not a valid JSONPath",
                     "state 'E': Parameters.x.$: States.ArrayLength takes 1 argument(s), got 2",
                     "ProcessorConfig.Mode 'DISTRIBUTED' is not supported",
                     "state 'F': MaxConcurrency must be a whole number from 0 to 99999999, not '2'",
                     "state 'F': Retry[0]: MaxAttempts must be a whole number from 0 to 99999999, not -1"):
        assert expected in message, message


def test_nested_machines_are_checked_where_they_run():
    """Branches and processors are checked as the interpreter runs them, each problem naming
    its place; a machine under a state that does not run it is only that state's field problem."""
    passing = {"Type": "Pass", "End": True}
    definition = {"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "M", "Branches": [
            "not a machine", {"StartAt": "Nowhere", "States": {"in": passing}},
            {"StartAt": "Q", "States": {"Q": {"Type": "Parallel", "End": True,
                                              "Branches": [{"States": {}}]}}}]},
        "M": {"Type": "Map", "Next": "N", "Iterator": {"StartAt": "x", "States": {"x": {"Type": "Nope"}}}},
        "N": {"Type": "Map", "Next": "O"},
        "O": {"Type": "Pass", "End": True, "Branches": [{"StartAt": "y", "States": {"y": {"Type": "Nope"}}}]},
    }}
    with pytest.raises(DefinitionError) as caught:
        Interpreter(definition)
    problems = str(caught.value).splitlines()[1:-1]
    assert problems == [
        "  - state 'P' Branches[0] must be an object with StartAt and States, not 'not a machine'",
        "  - state 'P' Branches[1]: StartAt 'Nowhere' is not one of its states",
        "  - state 'Q' Branches[0] needs a non-empty 'States' object",
        "  - state 'x': Type 'Nope' is not supported by the local runner",
        "  - state 'N' needs an ItemProcessor (or Iterator)",
        "  - state 'O': field 'Branches' is not supported by the local runner",
    ], problems
