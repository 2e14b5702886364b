"""The template's answers for an existing repo, read from what it holds: ``.env`` (old or ours),
a production ``.tfvars``, the old Dockerfile, ``step-functions.json``, ``scenarios/base``, and
the live function and bucket when credentials are given."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from quetzal_deploy.errors import ConfigError
from quetzal_deploy.pipeline.definition import load_definition, machine_states, notebook_paths, state_objects
from quetzal_deploy.rules import answer_errors
from quetzal_deploy.settings import read_hcl_strings
from quetzal_deploy.upgrade.template import template_dir

# The seed README's .env: one name per resource (all equal in practice).
OLD_NAMES = ("AWS_LAMBDA_FUNCTION_NAME", "AWS_BUCKET_NAME", "AWS_ECR_REPO_NAME")
# Our .env keys -> answers (repos baked before the template recorded its version).
ENV_ANSWERS = {"MODEL_NAME": "model_name", "AWS_REGION": "aws_region",
               "LAMBDA_MEMORY_SIZE": "lambda_memory_size", "LAMBDA_TIME_LIMIT": "lambda_time_limit",
               "LAMBDA_STORAGE_SIZE": "lambda_storage_size", "LAMBDA_ARCHITECTURE": "lambda_architecture",
               "PYTHON_VERSION": "python_version", "AUTH_FUNCTION_NAME": "auth_function_name",
               "COGNITO_IDENTITY_POOL_ID": "cognito_identity_pool_id",
               "CONFIG_BUCKET_NAME": "config_bucket_name", "FRONT_END_REGION": "front_end_region"}
# The backend's tfvars (infra/models/environments/<m>.tfvars) -> answers.
TFVARS_ANSWERS = {"quetzal_model_name": "model_name", "aws_region": "aws_region",
                  "lambda_memory_size": "lambda_memory_size", "lambda_time_limit": "lambda_time_limit",
                  "lambda_storage_size": "lambda_storage_size",
                  "cognito_identity_pool_id": "cognito_identity_pool_id"}
# The origins the backend's storage module gives every production bucket.
PRODUCTION_ORIGINS = "http://localhost:8081,https://localhost:8081,https://systragroup.github.io"
PYTHON_FROM = re.compile(r"lambda/python:(3\.\d+)")


@dataclass
class Found:
    """Answers and where each came from; ``legacy``: a stack of the backend's Terraform."""

    answers: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    legacy: bool = False
    ecs_mode: bool = False

    def put(self, values: dict[str, str], source: str) -> None:
        for key, value in values.items():
            if value not in (None, ""):
                self.answers[key], self.sources[key] = str(value), source

    def table(self) -> str:
        width = max(map(len, self.answers))
        return "\n".join(f"  {key:<{width}}  {value!r:<40} ({self.sources.get(key, 'template default')})"
                         for key, value in self.answers.items())


def template_defaults() -> dict[str, str]:
    """cookiecutter.json's defaults (a choice's first option)."""
    data = json.loads((template_dir() / "cookiecutter.json").read_text(encoding="utf-8"))
    return {key: str(value[0] if isinstance(value, list) else value)
            for key, value in data.items() if not key.startswith("_")}


def model_name(env: dict) -> tuple[str, str]:
    """The one name of the old .env's names, or our MODEL_NAME; refuses names that differ."""
    if env.get("MODEL_NAME"):
        return env["MODEL_NAME"], ".env MODEL_NAME"
    names = {key: env[key] for key in OLD_NAMES if env.get(key)}
    if len(set(names.values())) > 1:
        listing = ", ".join(f"{key}={value}" for key, value in names.items())
        raise ConfigError(f".env names different resources ({listing}); the production Terraform and ours "
                          "name the bucket, repository, function and state machine alike: make them equal.")
    if not names:
        raise ConfigError(".env names no model (MODEL_NAME, or the old AWS_LAMBDA_FUNCTION_NAME / "
                          "AWS_BUCKET_NAME / AWS_ECR_REPO_NAME): add the model's name there.")
    key, value = next(iter(names.items()))
    return value, f".env {key}"


def pipeline_answers(root: Path, model: str) -> dict[str, str]:
    """Steps (the notebooks' order) and the auth function, from step-functions.json."""
    path = root / "step-functions.json"
    if not path.is_file():
        return {}
    definition = load_definition(path)
    states = machine_states(definition)
    steps = [re.sub(r"[^A-Za-z0-9_-]", "_", Path(p).stem) for p in notebook_paths(states)]
    found = {"steps": ",".join(dict.fromkeys(steps))} if steps else {}
    for _, state in state_objects(states):
        target = str((state.get("Parameters") or {}).get("FunctionName", "")) \
            if isinstance(state.get("Parameters"), dict) else ""
        name = target.split(":function:")[-1].split(":")[0] if target else ""
        if name and name != model and not name.startswith("${"):
            found["auth_function_name"] = name
    return found


def input_answers(root: Path) -> dict[str, str]:
    inputs = root / "scenarios" / "base" / "inputs"
    if not inputs.is_dir():
        return {}
    return {f"has_{kind}": "yes" if (inputs / folder).is_dir() else "no"
            for kind, folder in (("pt_network", "pt"), ("road_network", "road"), ("od", "od"))}


def derive(root: Path, tfvars: Path | None = None, live: Callable[[str, str], dict] | None = None) -> Found:
    """The answers for ``root``: later sources win (.env, tfvars, live stack)."""
    env = {key: value or "" for key, value in dotenv_values(root / ".env").items()} \
        if (root / ".env").is_file() else {}
    found = Found(legacy=not env.get("MODEL_NAME"))
    found.answers.update(template_defaults())
    name, where = model_name(env)
    found.put({"model_name": name}, where)
    found.put({ENV_ANSWERS[key]: value for key, value in env.items() if key in ENV_ANSWERS}, ".env")
    dockerfile = root / "Dockerfile"
    if dockerfile.is_file() and (match := PYTHON_FROM.search(dockerfile.read_text(encoding="utf-8"))):
        found.put({"python_version": match.group(1)}, "Dockerfile FROM")
    found.put(pipeline_answers(root, name), "step-functions.json")
    found.put(input_answers(root), "scenarios/base/inputs")
    if found.legacy:
        found.put({"cors_allowed_origins": PRODUCTION_ORIGINS}, "the backend's storage module")
        found.put({"lambda_architecture": "x86_64"}, "the backend's lambda module")
    if tfvars is not None:
        values = read_hcl_strings(tfvars, "give the model's .tfvars of the old infra/models/environments/.")
        if values.get("quetzal_model_name", name) != name:
            raise ConfigError(f"{tfvars} is for {values['quetzal_model_name']}, this repo is {name}.")
        found.ecs_mode = float(values.get("ecs_memory_size") or 0) > 0 and \
            float(values.get("lambda_memory_size") or 0) == 0
        found.put({TFVARS_ANSWERS[key]: value for key, value in values.items() if key in TFVARS_ANSWERS
                   and value not in ("0", "0.0")}, tfvars.name)
    if live is not None:
        found.put(live(name, found.answers.get("aws_region", "ca-central-1")), "the live stack")
    errors = answer_errors(found.answers)
    if errors:
        raise ConfigError("The answers read from this repo are not valid:\n" + "\n".join(errors)
                          + "\nFix them at their source (shown above) and run adopt again.")
    return found


def live_answers(session_for: Callable[[str], object]) -> Callable[[str, str], dict]:
    """Reads the deployed function's sizes, the bucket's CORS origins and the user role's pool."""
    from quetzal_deploy.aws import unless_absent

    def read(name: str, region: str) -> dict[str, str]:
        session = session_for(region)
        found: dict[str, str] = {}
        functions = session.client("lambda")
        function = unless_absent(lambda: functions.get_function_configuration(FunctionName=name),
                                 {"ResourceNotFoundException"}, None)
        if function:
            found.update(lambda_memory_size=function["MemorySize"], lambda_time_limit=function["Timeout"],
                         lambda_storage_size=function.get("EphemeralStorage", {}).get("Size", 512),
                         lambda_architecture=(function.get("Architectures") or ["x86_64"])[0])
        cors = unless_absent(lambda: session.client("s3").get_bucket_cors(Bucket=name),
                             {"NoSuchCORSConfiguration", "NoSuchBucket"}, None)
        if cors:
            origins = [o for rule in cors["CORSRules"] for o in rule.get("AllowedOrigins", [])]
            found["cors_allowed_origins"] = ",".join(dict.fromkeys(origins))
        role = unless_absent(lambda: session.client("iam").get_role(RoleName=f"Cognito_quetzal_pool_{name}"),
                             {"NoSuchEntity"}, None)
        if role:
            found["cognito_identity_pool_id"] = identity_pool(role["Role"]["AssumeRolePolicyDocument"])
        return {key: str(value) for key, value in found.items() if value}

    return read


def identity_pool(document) -> str:
    """The ``cognito-identity.amazonaws.com:aud`` of a role's trust policy ('' when none)."""
    document = json.loads(document) if isinstance(document, str) else document
    for statement in document.get("Statement", []):
        for condition in statement.get("Condition", {}).values():
            value = condition.get("cognito-identity.amazonaws.com:aud")
            if value:
                return value[0] if isinstance(value, list) else value
    return ""
