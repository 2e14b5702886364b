"""The model's settings: ``.env`` (committed, not secret) overlaid by ``.env.local``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from quetzal_deploy.errors import ConfigError
from quetzal_deploy.rules import (
    ARCHITECTURES,
    BOOLEANS,
    PYTHON_VERSIONS,
    RANGES,
    REGIONS,
    function_error,
    identity_pool_error,
    model_name_error,
    shared_bucket_error,
    whole_number,
)
from quetzal_deploy.sizing import FARGATE_SIZES

ENV_FILE = ".env"
LOCAL_ENV_FILE = ".env.local"
REQUIRED = (
    "MODEL_NAME",
    "AWS_REGION",
    "LAMBDA_MEMORY_SIZE",
    "LAMBDA_TIME_LIMIT",
    "LAMBDA_STORAGE_SIZE",
)
# Every resource is named after MODEL_NAME (Terraform names them so): no second copy to drift.
DERIVED_NAMES = ("AWS_BUCKET_NAME", "AWS_ECR_REPO_NAME", "AWS_LAMBDA_FUNCTION_NAME",
                 "AWS_STATE_MACHINE_NAME")
FRONT_END_REGION = "ca-central-1"  # the reference deployment of the front end
UNSET_REFERENCE = re.compile(r"\$\{(\w+)\}")  # ${NAME} without a :-default
FARGATE_DEFAULTS = {"FARGATE_MEMORY": "16384", "FARGATE_STORAGE": "21"}


@dataclass(frozen=True)
class Settings:
    """Everything the tasks need to know about the model and where it is deployed.

    ``bucket``, ``ecr_repo``, ``function_name`` and ``state_machine`` are the model name.
    """

    root: Path
    model_name: str
    region: str
    bucket: str
    ecr_repo: str
    function_name: str
    state_machine: str
    memory_mb: int
    timeout_s: int
    storage_mb: int
    python_version: str = "3.12"
    architecture: str = "x86_64"
    auth_function: str = ""
    identity_pool_id: str = ""
    config_bucket: str = ""
    existing_bucket: str = ""  # EXISTING_BUCKET_NAME: a bucket the model uses instead of its own
    profile: str | None = None
    user_pool_id: str = ""
    fargate_cluster: str = ""
    fargate_subnets: tuple[str, ...] = ()
    fargate_security_groups: tuple[str, ...] = ()
    fargate_assign_public_ip: bool = False
    fargate_memory_mb: int = 16384
    fargate_storage_gb: int = 21
    fargate_cpu: int = 2048
    front_end_region: str = FRONT_END_REGION
    warm_steps: bool = True
    warm_preload: tuple[str, ...] | None = None
    local_runs_kept: int = 20  # LOCAL_RUNS_KEPT: run folders kept in .quetzal/runs/
    report_tile_url: str = ""  # REPORT_TILE_URL: raster tiles under the report's map (none: offline)

    @property
    def scenarios_dir(self) -> Path:
        return self.root / "scenarios"

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def definition_path(self) -> Path:
        return self.root / "step-functions.json"

    @property
    def execution_env(self) -> str:
        """``AWS_EXECUTION_ENV`` as Lambda sets it for the image's Python: local runs set it too,
        so notebooks take their Lambda branch (``on_lambda``)."""
        return f"AWS_Lambda_python{self.python_version}"


def find_root(start: Path | None = None) -> Path:
    """The model repo containing ``start`` (default: the current folder)."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / ENV_FILE).is_file():
            return folder
    raise ConfigError(
        f"No {ENV_FILE} found in {start} or its parents: run this from the model repo, "
        "or restore .env (it is committed; `git checkout -- .env`)."
    )


def _integer(values: dict[str, str], key: str) -> int:
    low, high = RANGES[key.lower()]
    number = whole_number(values[key])
    if number is None:
        raise ConfigError(f"{key}={values[key]!r} in .env is not a whole number")
    if not low <= number <= high:
        raise ConfigError(f"{key}={number} in .env must be from {low} to {high}")
    return number


def _names(values: dict[str, str], key: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in values.get(key, "").split(",") if name.strip())


def fargate_settings(values: dict[str, str]) -> dict:
    """Where Fargate steps run (an existing cluster or the module's, subnets, security groups) and
    their size (memory MB, ephemeral storage GiB), as the module's fargate_* variables set them."""
    values = {**FARGATE_DEFAULTS, **{k: v for k, v in values.items() if v.strip()}}
    public = values.get("FARGATE_ASSIGN_PUBLIC_IP", "no").strip().lower()
    if public not in {"yes", "no"}:
        raise ConfigError(f"FARGATE_ASSIGN_PUBLIC_IP={public!r} in .env must be yes or no")
    memory = _integer(values, "FARGATE_MEMORY")
    return {
        "fargate_cpu": _fargate_cpu(values.get("FARGATE_CPU", "").strip(), memory),
        "fargate_cluster": values.get("FARGATE_CLUSTER", "").strip(),
        "fargate_subnets": _names(values, "FARGATE_SUBNETS"),
        "fargate_security_groups": _names(values, "FARGATE_SECURITY_GROUPS"),
        "fargate_assign_public_ip": public == "yes",
        "fargate_memory_mb": memory,
        "fargate_storage_gb": _integer(values, "FARGATE_STORAGE"),
    }


def _fargate_cpu(cpu: str, memory_mb: int) -> int:
    """FARGATE_CPU, or (empty) the fewest CPU units Fargate pairs with FARGATE_MEMORY."""
    allowed = sorted(c for c, m in FARGATE_SIZES if m == memory_mb)
    if not allowed:
        raise ConfigError(f"FARGATE_MEMORY={memory_mb} in .env is not a size Fargate offers: use a "
                          "multiple of 1024 MB (512, 1024 or 2048 for the smallest tasks)")
    if not cpu:
        return allowed[0]
    if whole_number(cpu) not in allowed:
        raise ConfigError(f"FARGATE_CPU={cpu!r} in .env does not go with FARGATE_MEMORY={memory_mb}: "
                          f"Fargate allows {', '.join(map(str, allowed))} CPU units with it "
                          "(or leave it empty)")
    return int(cpu)


def warm_settings(values: dict[str, str]) -> dict:
    """WARM_STEPS (yes/no, default yes): steps forked from a warm process; WARM_PRELOAD: the
    modules it imports (comma-separated; absent: the notebooks' top-level imports)."""
    warm = values.get("WARM_STEPS", "").strip().lower() or "yes"
    if warm not in BOOLEANS:
        raise ConfigError(f"WARM_STEPS={warm!r} in .env must be yes or no")
    preload = _names(values, "WARM_PRELOAD") if "WARM_PRELOAD" in values else None
    return {"warm_steps": warm in {"true", "yes", "y", "1"}, "warm_preload": preload}


def local_runs_kept(values: dict[str, str]) -> int:
    """LOCAL_RUNS_KEPT (default 20): how many local runs ``.quetzal/runs/`` keeps, at least 1."""
    text = values.get("LOCAL_RUNS_KEPT", "").strip() or "20"
    number = whole_number(text)
    if number is None or number < 1:
        raise ConfigError(f"LOCAL_RUNS_KEPT={text!r} in .env must be a whole number, 1 or more")
    return number


TILE_URL = re.compile(r"https?://[^/{}\s]+/\S*")


def tile_url(value: str, where: str) -> str:
    """An XYZ raster tile template (http(s), with {z}, {x} and {y}) or "" (no tiles: offline)."""
    value = value.strip()
    if value and (not TILE_URL.fullmatch(value) or not all(p in value for p in ("{z}", "{x}", "{y}"))):
        raise ConfigError(f"{where}={value!r} is not a tile URL: give an http(s) XYZ template such as "
                          "https://tile.example.org/{z}/{x}/{y}.png, or leave it empty (no tiles, offline)")
    return value


def with_tiles(settings: Settings, tiles: str | None) -> Settings:
    """``settings`` with ``--tiles`` (checked) over REPORT_TILE_URL; unchanged when it is None."""
    return settings if tiles is None else replace(settings, report_tile_url=tile_url(tiles, "--tiles"))


def _model_name(values: dict[str, str]) -> str:
    """MODEL_NAME; an old .env's own resource name must be that same name."""
    model = values["MODEL_NAME"]
    problem = model_name_error(model)
    if problem:
        raise ConfigError(f"MODEL_NAME={model!r} in .env {problem}: it names the model's bucket, "
                          "ECR repository, Lambda function, state machine and roles")
    differing = [f"{key}={values[key]}" for key in DERIVED_NAMES if values.get(key, model) not in ("", model)]
    if differing:
        raise ConfigError(f"{', '.join(differing)} in .env or .env.local: every AWS resource is named "
                          f"after MODEL_NAME={model} (Terraform names them so); remove "
                          + ("that line" if len(differing) == 1 else "those lines"))
    return model


def _choice(values: dict[str, str], key: str, allowed: tuple[str, ...]) -> str:
    """``key``'s value, one of ``allowed`` (empty or absent: the first)."""
    value = values.get(key) or allowed[0]
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} in .env must be one of {', '.join(allowed)}")
    return value


# Optional names .env passes to Terraform, with the rule each follows (empty: none).
NAMED = {"AUTH_FUNCTION_NAME": function_error, "COGNITO_IDENTITY_POOL_ID": identity_pool_error,
         "CONFIG_BUCKET_NAME": lambda name: name and shared_bucket_error(name),
         "EXISTING_BUCKET_NAME": lambda name: name and shared_bucket_error(name)}


def _name(values: dict[str, str], key: str) -> str:
    value = values.get(key, "")
    problem = NAMED[key](value)
    if problem:
        raise ConfigError(f"{key}={value!r} in .env {problem}")
    return value


def _region(key: str, value: str, where: str) -> str:
    if value not in REGIONS:
        raise ConfigError(f"{key}={value!r} in {where} is not an AWS region: use one of "
                          f"{', '.join(sorted(REGIONS))}")
    return value


def read_env(path: Path) -> dict[str, str]:
    """``path``'s values, ``${NAME}`` expanded as python-dotenv does; a reference to a name set
    nowhere (neither above in the file nor in the environment) is an error, not an empty value."""
    expanded = {k: v for k, v in dotenv_values(path).items() if v is not None}
    for key, raw in dotenv_values(path, interpolate=False).items():
        for name in UNSET_REFERENCE.findall(raw or ""):
            if name not in os.environ and name not in expanded:
                raise ConfigError(f"{key}={raw!r} in {path.name} uses ${{{name}}}, which is set neither in "
                                  f"{path.name} nor in the environment: write the value itself")
    return expanded


def load_settings(
    root: Path | None = None, *, profile: str | None = None, region: str | None = None
) -> Settings:
    """Read and check ``.env`` then ``.env.local``; ``profile`` and ``region`` override them."""
    root = find_root(root)
    values = read_env(root / ENV_FILE)
    local = root / LOCAL_ENV_FILE
    if local.is_file():
        values.update(read_env(local))
    missing = [key for key in REQUIRED if not values.get(key, "").strip()]
    if missing:
        raise ConfigError(
            f"{root / ENV_FILE} is missing {', '.join(missing)}: add "
            + ", ".join(f"{key}=..." for key in missing)
            + " (see the README)"
        )
    model = _model_name(values)
    for key in ("AWS_REGION", "FRONT_END_REGION"):
        _region(key, values.get(key) or FRONT_END_REGION, ".env")
    if region:
        _region("--region", region, "the command line")
    settings = Settings(
        root=root,
        model_name=model,
        region=values["AWS_REGION"],
        bucket=_name(values, "EXISTING_BUCKET_NAME") or model,
        ecr_repo=model,
        function_name=model,
        state_machine=model,
        memory_mb=_integer(values, "LAMBDA_MEMORY_SIZE"),
        timeout_s=_integer(values, "LAMBDA_TIME_LIMIT"),
        storage_mb=_integer(values, "LAMBDA_STORAGE_SIZE"),
        python_version=_choice(values, "PYTHON_VERSION", PYTHON_VERSIONS),
        architecture=_choice(values, "LAMBDA_ARCHITECTURE", ARCHITECTURES),
        auth_function=_name(values, "AUTH_FUNCTION_NAME"),
        identity_pool_id=_name(values, "COGNITO_IDENTITY_POOL_ID"),
        config_bucket=_name(values, "CONFIG_BUCKET_NAME"),
        existing_bucket=_name(values, "EXISTING_BUCKET_NAME"),
        profile=values.get("AWS_PROFILE") or None,
        user_pool_id=values.get("COGNITO_USER_POOL_ID", ""),
        **fargate_settings(values),
        front_end_region=values.get("FRONT_END_REGION") or FRONT_END_REGION,
        **warm_settings(values),
        local_runs_kept=local_runs_kept(values),
        report_tile_url=tile_url(values.get("REPORT_TILE_URL", ""), "REPORT_TILE_URL in .env"),
    )
    overrides = {k: v for k, v in (("profile", profile), ("region", region)) if v}
    return replace(settings, **overrides) if overrides else settings


def read_hcl(path: Path, fix: str) -> dict[str, Any]:
    """The top-level attributes of an HCL file (a ``.tfvars``, ``backend.hcl``), as python-hcl2
    reads them (strings keep their quotes); a ``ConfigError`` ending with ``fix`` when unreadable."""
    import hcl2  # only the tasks that read infra/ pay for it
    from lark.exceptions import LarkError

    shown = f"infra/{path.name}" if path.parent.name == "infra" else str(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return hcl2.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{shown} is missing: restore it from git (git log shows it).") from None
    except (OSError, LarkError) as ex:
        raise ConfigError(f"{shown} is not valid HCL ({ex}): {fix}") from ex


def read_hcl_strings(path: Path, fix: str) -> dict[str, str]:
    """:func:`read_hcl` with every value as text, without python-hcl2's quotes."""
    return {key: str(value).strip('"') for key, value in read_hcl(path, fix).items()}


def tfvars_path(settings: Settings) -> Path:
    """``infra/<model>.tfvars``: the stack's variables, which Terraform and the tasks read."""
    return settings.root / "infra" / f"{settings.model_name}.tfvars"
