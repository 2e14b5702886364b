"""Differential tests: our ASL interpreter and moto's Step Functions engine (the LocalStack
interpreter, moto in server mode over HTTP) must give the same result for each definition of
``support/asl/`` (Pass, Choice, Map, Parallel, Wait, Succeed and Fail states only).

Left out, because moto's engine departs from Step Functions there (covered in test_asl.py):
no Choice match (moto: States.Runtime; AWS: States.NoChoiceMatched), a Choice Variable that
is missing (moto takes the Default; AWS fails with States.Runtime), ``\\{`` escapes in
States.Format (moto: KeyError), ``null`` as an intrinsic argument (moto: parse error),
``$[0].a`` on an array (moto returns a list), ``$$.State.RetryCount`` (moto lacks it), a
bare string as the execution's output (moto does not JSON-encode it), and Jayway's ``&&`` between
filter comparisons (moto's jsonpath-ng parser refuses it; Step Functions accepts it).
"""

import json
import time
from pathlib import Path

import pytest

from fixtures.aws import moto_api
from quetzal_deploy.local.errors import StatesError
from quetzal_deploy.local.interpreter import Interpreter

CASES = sorted(Path(__file__).parent.joinpath("support", "asl").glob("*.json"))
ROLE = "arn:aws:iam::123456789012:role/quetzal-differential"


@pytest.fixture
def sfn_engine(aws, boto):
    """Step Functions on moto with its execution engine on (switched off again afterwards)."""
    moto_api(aws, "config", json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode())
    yield boto.client("stepfunctions")
    moto_api(aws, "config", json.dumps({"stepfunctions": {"execute_state_machine": False}}).encode())


def moto_outcome(client, name: str, definition: dict, data) -> tuple:
    arn = client.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)
    execution = client.start_execution(stateMachineArn=arn["stateMachineArn"], input=json.dumps(data))
    deadline = time.monotonic() + 60
    while (described := client.describe_execution(executionArn=execution["executionArn"]))["status"] \
            == "RUNNING":
        assert time.monotonic() < deadline, f"moto's execution of {name} did not finish in 60 s"
        time.sleep(0.05)
    if described["status"] == "SUCCEEDED":
        return "SUCCEEDED", json.loads(described["output"])
    return described["status"], described.get("error"), described.get("cause")


def local_outcome(definition: dict, data) -> tuple:
    try:
        return "SUCCEEDED", Interpreter(definition).execute(data)
    except StatesError as ex:
        return "FAILED", ex.error, ex.cause


@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_same_result_as_moto(case, sfn_engine):
    spec = json.loads(case.read_text())
    expected = moto_outcome(sfn_engine, case.stem.replace("_", "-"), spec["definition"], spec["input"])
    assert local_outcome(spec["definition"], spec["input"]) == expected


def test_enough_definitions_cover_the_required_constructs():
    text = "".join(case.read_text() for case in CASES)
    assert len(CASES) >= 12
    for needle in ('"Type": "Map"', '"Type": "Parallel"', '"Type": "Wait"', '"Type": "Fail"',
                   '"Type": "Succeed"', '"Type": "Choice"', "$$.Map.Item.Value", '"Catch"', '"Retry"'):
        assert needle in text, needle
