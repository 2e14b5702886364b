"""The rules a model's answers follow, written once.

The pre-generation hook checks the cookiecutter answers with them, ``settings`` checks ``.env``
with them, and tests/test_rules.py checks that the Terraform module's variable validations (which
cannot import Python) accept and refuse the same values. Standard library only: the hook imports
this module inside cookiecutter, which may run where the package is not installed.
"""

from __future__ import annotations

import re

REGIONS = frozenset({
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
    "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-central-1",
    "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
    "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1",
    "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
})
PYTHON_VERSIONS = ("3.12", "3.13")
ARCHITECTURES = ("x86_64", "arm64")
CI_PROVIDERS = ("github", "gitlab")
# S3 allows 63, but the stack's IAM roles are named "<model>-lambda" / "<model>-states" (64 max).
MODEL_NAME_LONGEST = 57
# Whole numbers (lowest, highest), by answer name; a .env key is the same name in capitals.
RANGES = {
    "lambda_memory_size": (128, 10240),  # MB
    "lambda_time_limit": (1, 900),  # seconds
    "lambda_storage_size": (512, 10240),  # MB
    "fargate_memory": (512, 122880),  # MB
    "fargate_storage": (21, 200),  # GiB
}
LOCAL_STATE = "local"
BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
SHARED_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # an existing bucket may hold dots
DIGITS = re.compile(r"[0-9]{1,6}")  # int() would also take " 300\n", "3_00" and other scripts' digits
STEP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RESERVED_FILE_NAMES = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
FUNCTION = re.compile(r"[A-Za-z0-9_-]{1,64}")
IDENTITY_POOL = re.compile(
    r"[a-z]{2}(-[a-z]+)+-[0-9]:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ORIGIN = re.compile(r"\*|https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?")
BOOLEANS = {"true", "yes", "y", "1", "false", "no", "n", "0"}


def whole_number(value) -> int | None:
    """``value`` as an int when it is written with 1 to 6 ASCII digits and nothing else, else None."""
    return int(value) if DIGITS.fullmatch(str(value)) else None


def bucket_name_error(name, longest=63, pattern=BUCKET):
    """Why ``name`` is not a valid S3 bucket name of at most ``longest`` characters, or None."""
    if not isinstance(name, str) or not 3 <= len(name) <= longest:
        return f"must be 3 to {longest} characters long"
    if not pattern.fullmatch(name):
        return ("may only contain lowercase letters, digits and hyphens, "
                "and must start and end with a letter or digit")
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        return "must not start with 'xn--', 'sthree-' or 'amzn-s3-demo-' (reserved by S3)"
    if name.endswith(("-s3alias", "--ol-s3", "--x-s3", "--table-s3")):
        return "must not end with '-s3alias', '--ol-s3', '--x-s3' or '--table-s3' (reserved by S3)"
    return None


def model_name_error(name):
    """Why ``name`` cannot name the model's bucket, repository, function and roles, or None."""
    return bucket_name_error(name, longest=MODEL_NAME_LONGEST)


def shared_bucket_error(name):
    """Why ``name`` is not the name of an existing shared bucket (dots allowed), or None."""
    problem = bucket_name_error(name, pattern=SHARED_BUCKET)
    return problem and problem.replace("digits and hyphens", "digits, dots and hyphens")


def range_error(key, value):
    """Why ``value`` is not a whole number in ``RANGES[key]``, or None."""
    low, high = RANGES[key]
    number = whole_number(value)
    if number is None:
        return f"must be a whole number from {low} to {high}"
    if not low <= number <= high:
        return f"must be from {low} to {high}"
    return None


def steps_errors(steps):
    """The problems of the comma-separated step list."""
    names = [s.strip() for s in str(steps).split(",")]
    if names == [""]:
        return ["steps: give at least one step name, e.g. 'preparation,assignment'"]
    errors = []
    seen = set()
    for name in names:
        if not STEP.fullmatch(name) or name.lower() in RESERVED_FILE_NAMES:
            errors.append(
                f"steps: {name!r} is not a safe notebook name: use 1-64 letters, digits, "
                "'_' or '-', starting with a letter or digit"
            )
        elif name.lower() in seen:
            errors.append(f"steps: {name!r} is listed twice: each step needs its own notebook")
        seen.add(name.lower())
    return errors


def boolean_error(value):
    """Why ``value`` is not a yes/no answer, or None."""
    if isinstance(value, bool) or str(value).strip().lower() in BOOLEANS:
        return None
    return "must be yes or no"


def choice_error(value, allowed):
    """Why ``value`` is not one of ``allowed``, or None."""
    return None if value in allowed else f"is not supported; use one of {', '.join(allowed)}"


def function_error(name):
    """Why ``name`` is not a Lambda function name (empty: none), or None."""
    if not name or FUNCTION.fullmatch(name):
        return None
    return "is not a Lambda function name (1-64 letters, digits, '-' or '_'), or leave it empty"


def identity_pool_error(pool):
    """Why ``pool`` is not a Cognito identity pool id (empty: none), or None."""
    if not pool or IDENTITY_POOL.fullmatch(pool):
        return None
    return "is not an identity pool id like 'ca-central-1:0a1b2c3d-...', or leave it empty"


def origin_error(origin):
    """Why ``origin`` cannot be a CORS allowed origin, or None."""
    return None if ORIGIN.fullmatch(origin) else "is not an origin like 'https://app.example.com' or '*'"


def state_bucket_errors(answers):
    """The Terraform state bucket: 'local', or a bucket of its own (front-end users read the config one)."""
    bucket = answers["terraform_state_bucket"]
    if bucket == LOCAL_STATE:
        return []
    problem = bucket_name_error(bucket)
    if problem:
        return [f"terraform_state_bucket: {bucket!r} {problem}, or 'local' for state on this machine"]
    if bucket in (answers["config_bucket_name"], answers["model_name"]):
        return [f"terraform_state_bucket: {bucket!r} is already the config or the model's bucket: "
                "the state needs a bucket of its own"]
    return []


def answer_errors(answers):
    """One message per invalid cookiecutter answer."""
    checks = [("model_name", model_name_error), ("config_bucket_name", shared_bucket_error),
              ("python_version", lambda v: choice_error(v, PYTHON_VERSIONS)),
              ("lambda_architecture", lambda v: choice_error(v, ARCHITECTURES)),
              ("ci_provider", lambda v: choice_error(v, CI_PROVIDERS)),
              ("auth_function_name", function_error), ("cognito_identity_pool_id", identity_pool_error)]
    checks += [(key, lambda v, key=key: range_error(key, v))
               for key in ("lambda_memory_size", "lambda_time_limit", "lambda_storage_size")]
    checks += [(key, boolean_error) for key in ("has_pt_network", "has_road_network", "has_od")]
    errors = [f"{key}: {answers[key]!r} {problem}" for key, check in checks
              if (problem := check(answers[key]))]
    errors += [f"{key}: {answers[key]!r} is not an AWS region; use one of {', '.join(sorted(REGIONS))}"
               for key in ("aws_region", "front_end_region") if answers[key] not in REGIONS]
    errors += steps_errors(answers["steps"])
    errors += [f"cors_allowed_origins: {origin!r} {problem}"
               for origin in (o.strip() for o in str(answers["cors_allowed_origins"]).split(","))
               if (problem := origin_error(origin))]
    return errors + state_bucket_errors(answers)
