"""Settings and credentials as a user meets them: each problem is one `ERROR:` line with its fix.

Tasks run in a baked repo as subprocesses; AWS is moto server. `update-steps --dry-run` is the
probe: it needs the settings and the caller's account id, and changes nothing.
"""

import json

import pytest

from fixtures.tasks import run_task

NO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""}


def one_error_line(done, message):
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), done.stderr
    assert message in lines[0], lines[0]
    return lines[0]


def edit_env(repo, key, value=None):
    """Set ``key`` in .env, or drop its line when ``value`` is None."""
    path = repo / ".env"
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key}=")]
    if value is not None:
        lines.append(f"{key}={value}")
    path.write_text("\n".join(lines) + "\n")


def test_missing_env_file(baked_repo, aws):
    (baked_repo / ".env").unlink()
    one_error_line(run_task(baked_repo, "update-steps", "--dry-run"), "No .env found")


@pytest.mark.parametrize("key, value, message", [
    ("MODEL_NAME", None, "is missing MODEL_NAME: add MODEL_NAME=..."),
    ("AWS_REGION", "", "is missing AWS_REGION"),
    ("AWS_BUCKET_NAME", "quetzal-other", "AWS_BUCKET_NAME=quetzal-other in .env or .env.local: every AWS "
                                         "resource is named after MODEL_NAME=quetzal-test"),
    ("LAMBDA_MEMORY_SIZE", "lots", "LAMBDA_MEMORY_SIZE='lots' in .env is not a whole number"),
    ("LAMBDA_TIME_LIMIT", "1200", "LAMBDA_TIME_LIMIT=1200 in .env must be from 1 to 900"),
    ("LAMBDA_TIME_LIMIT", '"300\\n"', "LAMBDA_TIME_LIMIT='300\\n' in .env is not a whole number"),
    ("LAMBDA_STORAGE_SIZE", "4_016", "LAMBDA_STORAGE_SIZE='4_016' in .env is not a whole number"),
    ("FARGATE_CPU", "1024", "FARGATE_CPU='1024' in .env does not go with FARGATE_MEMORY=16384: Fargate "
                            "allows 2048, 4096, 8192 CPU units"),
    ("FARGATE_MEMORY", "5000", "FARGATE_MEMORY=5000 in .env is not a size Fargate offers"),
    ("AWS_REGION", "mars-1", "AWS_REGION='mars-1' in .env is not an AWS region: use one of af-south-1"),
    ("FRONT_END_REGION", "mars-1", "FRONT_END_REGION='mars-1' in .env is not an AWS region"),
    ("AWS_REGION", "${QUETZAL_UNSET_REGION}", "AWS_REGION='${QUETZAL_UNSET_REGION}' in .env uses "
                                              "${QUETZAL_UNSET_REGION}, which is set neither in .env"),
])
def test_bad_env_values(baked_repo, aws, key, value, message):
    edit_env(baked_repo, key, value)
    one_error_line(run_task(baked_repo, "update-steps", "--dry-run"), message)


def test_env_local_and_region_option_override_env(baked_repo, boto):
    (baked_repo / ".env.local").write_text("MODEL_NAME=quetzal-test-dev\n")
    done = run_task(baked_repo, "update-steps", "--dry-run", "--region", "eu-west-3")
    assert done.returncode == 0, done.stderr
    function = json.loads(done.stdout)["States"]["preparation"]["Parameters"]["FunctionName"]
    account = boto.client("sts").get_caller_identity()["Account"]
    assert function == f"arn:aws:lambda:eu-west-3:{account}:function:quetzal-test-dev"


def test_an_old_env_naming_its_resources_after_the_model_still_works(baked_repo, aws):
    for key in ("AWS_BUCKET_NAME", "AWS_LAMBDA_FUNCTION_NAME"):
        edit_env(baked_repo, key, "quetzal-test")
    assert run_task(baked_repo, "update-steps", "--dry-run").returncode == 0


def test_missing_credentials(baked_repo, aws):
    line = one_error_line(run_task(baked_repo, "update-steps", "--dry-run", env=NO_CREDENTIALS),
                          "No AWS credentials found.")
    assert "AWS_PROFILE" in line and "aws sso login" in line


def test_unknown_profile(baked_repo, aws):
    one_error_line(run_task(baked_repo, "update-steps", "--dry-run", "--profile", "nobody"),
                   "AWS profile not found")


def test_expired_sso_session(baked_repo, aws, tmp_path):
    """An SSO profile whose token is not in the (empty) cache: botocore's real SSO code path."""
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile modeller]\nsso_session = corp\nsso_account_id = 123456789012\n"
        "sso_role_name = Modeller\nregion = ca-central-1\n\n"
        "[sso-session corp]\nsso_start_url = https://example.awsapps.com/start\nsso_region = ca-central-1\n"
    )
    env = {**NO_CREDENTIALS, "AWS_CONFIG_FILE": str(config), "HOME": str(tmp_path)}
    line = one_error_line(run_task(baked_repo, "update-steps", "--dry-run", "--profile", "modeller", env=env),
                          "AWS SSO session has expired")
    assert "aws sso login --profile modeller" in line
