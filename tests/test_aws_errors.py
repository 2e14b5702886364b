"""One translator from botocore errors to AwsError: its table, the caller's own wording for the codes
it knows, the default for what is absent, and no module writing its own translation."""

import ast

import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
    ReadTimeoutError,
    TokenRetrievalError,
)

from fixtures.aws import free_port
from fixtures.bake import SRC
from quetzal_deploy.aws import explain, s3_object, translated, unless_absent
from quetzal_deploy.errors import AwsError


def answer(code: str, message: str = "the service's words", operation: str = "GetThing") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


# (error, what the message must say: the cause and the fix)
TABLE = {
    "expired token": (answer("ExpiredToken"), ["rejected your credentials (ExpiredToken)",
                                               "aws sso login --profile team"]),
    "unknown key id": (answer("InvalidAccessKeyId"), ["rejected your credentials", "AWS_PROFILE"]),
    "access denied": (answer("AccessDenied", "not allowed"), ["denied access: not allowed",
                                                              "profile allowed to manage"]),
    "access denied exception": (answer("AccessDeniedException"), ["denied access"]),
    "throttling": (answer("ThrottlingException", "Rate exceeded"), ["throttling", "Rate exceeded",
                                                                     "wait a minute"]),
    "s3 slow down": (answer("SlowDown"), ["throttling", "run fewer at once"]),
    "no such bucket": (answer("NoSuchBucket", "The specified bucket does not exist"),
                       ["no such resource (NoSuchBucket", "run `invoke infra`"]),
    "resource not found": (answer("ResourceNotFoundException"), ["no such resource", "MODEL_NAME"]),
    "other code": (answer("ValidationException", "bad value"), ["AWS error ValidationException: bad value"]),
    "no credentials": (NoCredentialsError(), ["No AWS credentials found", "aws configure"]),
    "profile not found": (ProfileNotFound(profile="ghost"), ["AWS profile not found", "ghost"]),
    "sso expired": (TokenRetrievalError(provider="sso", error_msg="expired"), ["SSO session has expired"]),
    "no region": (NoRegionError(), ["set AWS_REGION in .env"]),
    "endpoint unreachable": (EndpointConnectionError(endpoint_url="https://s3.example"),
                             ["could not be reached", "https://s3.example", "AWS_ENDPOINT_URL"]),
    "connect timeout": (ConnectTimeoutError(endpoint_url="https://s3.example"), ["could not be reached",
                                                                                 "Check the network"]),
    "read timeout": (ReadTimeoutError(endpoint_url="https://s3.example"), ["could not be reached"]),
}


@pytest.mark.parametrize(("error", "expected"), TABLE.values(), ids=TABLE.keys())
def test_each_error_says_its_cause_and_fix(error, expected):
    message = str(explain(error, profile="team"))
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(("error", "expected"), TABLE.values(), ids=TABLE.keys())
def test_translated_raises_the_domain_error_from_the_original(error, expected):
    with pytest.raises(AwsError) as raised, translated("team"):
        raise error
    assert raised.value.__cause__ is error
    assert expected[0] in str(raised.value)


def test_a_code_the_caller_knows_keeps_the_callers_wording():
    with pytest.raises(AwsError, match=r"^Bucket b does not exist: run `invoke infra` first\.$"):
        with translated(known={"NoSuchBucket": "Bucket b does not exist: run `invoke infra` first."}):
            raise answer("NoSuchBucket")
    with pytest.raises(AwsError, match="denied access"):  # other codes: the table
        with translated(known={"NoSuchBucket": "unused"}):
            raise answer("AccessDenied")


def test_other_exceptions_pass_through_untouched():
    with pytest.raises(KeyError), translated():
        raise KeyError("not AWS")


def test_unless_absent_gives_the_default_only_for_the_absent_codes():
    def missing():
        raise answer("NoSuchKey")

    def denied():
        raise answer("AccessDenied")

    assert unless_absent(missing, {"NoSuchKey", "404"}, "default") == "default"
    assert unless_absent(lambda: "found", {"NoSuchKey"}, "default") == "found"
    with pytest.raises(AwsError, match="denied access"):
        unless_absent(denied, {"NoSuchKey"}, "default")


def test_against_s3_a_missing_object_is_none_and_a_missing_bucket_the_callers_message(boto):
    s3 = boto.client("s3")
    s3.create_bucket(Bucket="present", CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
    s3.put_object(Bucket="present", Key="a.json", Body=b"{}")

    body, etag = s3_object(s3, "present", "a.json")
    assert body == b"{}" and etag.strip('"')
    assert s3_object(s3, "present", "absent.json") is None
    with pytest.raises(AwsError, match="^bucket gone: deploy first$") as raised:
        s3_object(s3, "gone", "a.json", known={"NoSuchBucket": "bucket gone: deploy first"})
    assert isinstance(raised.value.__cause__, ClientError)


def test_an_endpoint_nobody_listens_on_says_aws_could_not_be_reached(boto):
    closed = f"http://127.0.0.1:{free_port()}"  # bound then released: nothing listens there
    sts = boto.client("sts", endpoint_url=closed, config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(AwsError, match=f"could not be reached.*{closed}.*AWS_ENDPOINT_URL") as raised:
        with translated():
            sts.get_caller_identity()
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


def botocore_handlers(path) -> list[int]:
    """Lines of ``except`` clauses that name a botocore error (a hand-written translation)."""
    names = {"ClientError", "BotoCoreError"}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            caught = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
            if caught & names:
                found.append(node.lineno)
    return found


# The runtime is shipped alone in the image (it keeps its own StorageError); the transfer stack
# reports per-file failures of its own.
OWN_HANDLING = {"aws.py", "sync/s3sync.py"}


def test_no_module_translates_aws_errors_by_hand():
    package = SRC / "quetzal_deploy"
    hand_written = {
        path.relative_to(package).as_posix(): botocore_handlers(path)
        for path in package.rglob("*.py")
        if path.relative_to(package).as_posix() not in OWN_HANDLING and "runtime" not in path.parts
    }
    assert not {module: lines for module, lines in hand_written.items() if lines}
