"""Validate the answers before cookiecutter writes anything.

Each rejected answer prints one ``ERROR: ...`` line that says what is allowed, and the
hook exits 1: cookiecutter then removes the half-made project folder.
"""

import json
import re
import sys

# Rendered as a JSON string, so any answer (quotes, newlines, booleans) stays data.
ANSWERS = json.loads({{ {"model_name": cookiecutter.model_name, "aws_region": cookiecutter.aws_region, "lambda_memory_size": cookiecutter.lambda_memory_size, "lambda_time_limit": cookiecutter.lambda_time_limit, "lambda_storage_size": cookiecutter.lambda_storage_size, "python_version": cookiecutter.python_version, "steps": cookiecutter.steps, "has_pt_network": cookiecutter.has_pt_network, "has_road_network": cookiecutter.has_road_network, "has_od": cookiecutter.has_od, "auth_function_name": cookiecutter.auth_function_name, "cognito_identity_pool_id": cookiecutter.cognito_identity_pool_id, "config_bucket_name": cookiecutter.config_bucket_name, "cors_allowed_origins": cookiecutter.cors_allowed_origins} | tojson | tojson }})
ANSWERS.update(json.loads({{ {"terraform_state_bucket": cookiecutter.terraform_state_bucket, "lambda_architecture": cookiecutter.lambda_architecture, "front_end_region": cookiecutter.front_end_region} | tojson | tojson }}))
LOCAL_STATE = "local"

REGIONS = {
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
    "ap-southeast-4", "ap-southeast-5", "ap-southeast-7", "ca-central-1", "ca-west-1",
    "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1",
    "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1", "mx-central-1",
    "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
}
PYTHON_VERSIONS = ("3.12", "3.13")
ARCHITECTURES = ("x86_64", "arm64")
# S3 allows 63, but the stack's IAM roles are named "<model>-lambda" / "<model>-states" (64 max).
MODEL_NAME_LONGEST = 57
BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
DIGITS = re.compile(r"[0-9]{1,6}")  # int() would also take " 300\n", "3_00" and other scripts' digits
STEP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RESERVED_FILE_NAMES = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
FUNCTION = re.compile(r"[A-Za-z0-9_-]{1,64}")
IDENTITY_POOL = re.compile(r"[a-z]{2}(-[a-z]+)+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ORIGIN = re.compile(r"\*|https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?")
BOOLEANS = {"true": True, "yes": True, "y": True, "1": True, "false": False, "no": False, "n": False, "0": False}


def bucket_name_error(name, longest=63):
    """Return why ``name`` is not a valid S3 bucket name of at most ``longest`` characters, or None."""
    if not isinstance(name, str) or not 3 <= len(name) <= longest:
        return f"must be 3 to {longest} characters long"
    if not BUCKET.fullmatch(name):
        return ("may only contain lowercase letters, digits and hyphens, "
                "and must start and end with a letter or digit")
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        return "must not start with 'xn--', 'sthree-' or 'amzn-s3-demo-' (reserved by S3)"
    if name.endswith(("-s3alias", "--ol-s3", "--x-s3", "--table-s3")):
        return "must not end with '-s3alias', '--ol-s3', '--x-s3' or '--table-s3' (reserved by S3)"
    return None


def integer_error(value, low, high):
    """Return why ``value`` is not a whole number in [low, high], or None."""
    if not DIGITS.fullmatch(str(value)):
        return f"must be a whole number from {low} to {high}"
    number = int(value)
    if not low <= number <= high:
        return f"must be from {low} to {high}"
    return None


def steps_errors(steps):
    """Return the problems of the comma-separated step list."""
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
    """Return why ``value`` is not a yes/no answer, or None."""
    if isinstance(value, bool) or str(value).strip().lower() in BOOLEANS:
        return None
    return "must be yes or no"


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


def validate(answers):
    """Return one message per invalid answer."""
    errors = []
    problem = bucket_name_error(answers["model_name"], longest=MODEL_NAME_LONGEST)
    if problem:
        errors.append(f"model_name: {answers['model_name']!r} {problem}")
    for key in ("aws_region", "front_end_region"):
        if answers[key] not in REGIONS:
            errors.append(f"{key}: {answers[key]!r} is not an AWS region; use one of {', '.join(sorted(REGIONS))}")
    for key, low, high in (("lambda_memory_size", 128, 10240), ("lambda_time_limit", 1, 900),
                           ("lambda_storage_size", 512, 10240)):
        problem = integer_error(answers[key], low, high)
        if problem:
            errors.append(f"{key}: {answers[key]!r} {problem}")
    if answers["python_version"] not in PYTHON_VERSIONS:
        errors.append(f"python_version: {answers['python_version']!r} is not supported; "
                      f"use one of {', '.join(PYTHON_VERSIONS)}")
    if answers["lambda_architecture"] not in ARCHITECTURES:
        errors.append(f"lambda_architecture: {answers['lambda_architecture']!r} is not supported; "
                      f"use one of {', '.join(ARCHITECTURES)}")
    errors += steps_errors(answers["steps"])
    for key in ("has_pt_network", "has_road_network", "has_od"):
        problem = boolean_error(answers[key])
        if problem:
            errors.append(f"{key}: {answers[key]!r} {problem}")
    auth = answers["auth_function_name"]
    if auth and not FUNCTION.fullmatch(auth):
        errors.append(f"auth_function_name: {auth!r} is not a Lambda function name "
                      "(1-64 letters, digits, '-' or '_'), or leave it empty")
    pool = answers["cognito_identity_pool_id"]
    if pool and not IDENTITY_POOL.fullmatch(pool):
        errors.append(f"cognito_identity_pool_id: {pool!r} is not an identity pool id "
                      "like 'ca-central-1:0a1b2c3d-...', or leave it empty")
    problem = bucket_name_error(answers["config_bucket_name"])
    if problem:
        errors.append(f"config_bucket_name: {answers['config_bucket_name']!r} {problem}")
    errors += state_bucket_errors(answers)
    origins = [o.strip() for o in str(answers["cors_allowed_origins"]).split(",")]
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            errors.append(f"cors_allowed_origins: {origin!r} is not an origin like "
                          "'https://app.example.com' or '*'")
    return errors


def main():
    errors = validate(ANSWERS)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        print("ERROR: nothing was generated; fix the answers above and run cookiecutter again.",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
