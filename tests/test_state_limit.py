"""One state size limit, one way to count it: Step Functions' 262,144 bytes of the state's JSON in
UTF-8, applied by the local interpreter as is and by the handler with room for the Lambda invoke
result that wraps the returned event."""

from pathlib import Path

import pytest
from test_asl import failure, machine

from quetzal_deploy.contract.limits import STATE_LIMIT_BYTES, state_bytes
from quetzal_deploy.local.interpreter import Interpreter
from quetzal_deploy.local.report import StepRecord, summary
from quetzal_deploy.runtime.errors import NotebookError, StateTooLarge
from quetzal_deploy.runtime.event import StepEvent
from quetzal_deploy.runtime.handler import MAX_STATE_BYTES, returned_event
from quetzal_deploy.runtime.notebook import Outcome

QUOTES = 2  # a Pass state's string result is the JSON "..."


def test_the_limit_is_256_kib_of_utf8_compact_json():
    assert STATE_LIMIT_BYTES == 256 * 1024 == 262_144
    assert state_bytes({"a": [1, 2]}) == len(b'{"a":[1,2]}')
    assert state_bytes({"name": "Montréal €"}) == len('{"name":"Montréal €"}'.encode())  # not \u escapes
    with pytest.raises(ValueError):
        state_bytes({"x": float("nan")})


def passes(result: str) -> str:
    return Interpreter(machine(P={"Type": "Pass", "Result": result, "End": True})).execute({})


def test_the_local_interpreter_passes_exactly_the_limit_and_stops_one_byte_over():
    at_limit = "x" * (STATE_LIMIT_BYTES - QUOTES)
    assert passes(at_limit) == at_limit
    over = failure(machine(P={"Type": "Pass", "Result": at_limit + "x", "End": True}))
    assert over.error == "States.DataLimitExceeded" and f"({STATE_LIMIT_BYTES})" in over.cause


def test_the_local_interpreter_counts_accented_text_in_utf8_bytes():
    """200,002 bytes in UTF-8; counted as ASCII-escaped JSON (\\u00e9, 6 bytes each) it was refused."""
    accented = "é" * 100_000
    assert passes(accented) == accented


def step() -> StepEvent:
    return StepEvent(notebook_path="notebooks/prep.ipynb", notebook=Path("notebooks/prep.ipynb"),
                     scenario="base", launcher_arg={}, metadata={})


def returning(value: str) -> Outcome:
    return Outcome(returncode=0, returns=[value])


def test_the_handler_keeps_room_for_the_invoke_result_around_the_event():
    event = {"scenario_path_S3": "base/"}
    room = MAX_STATE_BYTES - state_bytes({**event, "r": ""})
    fits = returned_event(event, returning('{"r": "%s"}' % ("x" * room)), step())
    assert state_bytes(fits) == MAX_STATE_BYTES < STATE_LIMIT_BYTES
    with pytest.raises(StateTooLarge, match=f"at most {STATE_LIMIT_BYTES} between states"):
        returned_event(event, returning('{"r": "%s"}' % ("x" * (room + 1))), step())


def test_the_handler_refuses_a_return_json_cannot_carry():
    with pytest.raises(NotebookError, match="notebooks/prep.ipynb returned a value JSON cannot carry"):
        returned_event({}, returning('{"ratio": NaN}'), step())


def test_the_run_report_shows_the_same_limit():
    lines = summary([StepRecord("prep", status="ok", seconds=1.0, state_kb=250.0)], 128, 512, 60)
    assert "of 256 KB" in lines[1]
    assert lines[-1].startswith("WARNING: prep passes on 250 KB; Step Functions stops at 256 KB.")
