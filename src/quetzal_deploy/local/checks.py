"""What a local run checks before its first step, so that it cannot fail late on what the
definition already shows: every Task invokes the model's function (or the auth function, skipped
locally) or its Fargate task, every notebook exists and converts, a ``--choice`` is a variant."""

from __future__ import annotations

from quetzal_deploy.contract.params import DEFAULT_CHOICE
from quetzal_deploy.errors import RunError
from quetzal_deploy.local.interpreter import function_name
from quetzal_deploy.pipeline.definition import (
    ECS_RUN_TASK,
    FARGATE_FAMILY_SUFFIX,
    Walk,
    front_end_warnings,
    notebook_paths,
    state_objects,
)
from quetzal_deploy.pipeline.porting import handler_module_problem
from quetzal_deploy.runtime.convert import script_source
from quetzal_deploy.runtime.errors import NotebookError
from quetzal_deploy.settings import Settings


def check_before_run(walk: Walk, settings: Settings, choice: str) -> list[str]:
    """Refuse (``RunError``) a definition the run would fail on; the front end's warnings about it.
    ``walk`` is the definition's ``machine_states`` (the interpreter's), walked once for all checks."""
    states = list(state_objects(walk))
    check_functions(states, settings)
    check_notebooks(walk, settings)
    check_choice(states, choice)
    return front_end_warnings(walk)


def check_functions(states: list[tuple[str, dict]], settings: Settings) -> None:
    """Every Task must invoke the model's function (or the auth function, skipped locally)."""
    known = {settings.function_name, settings.auth_function} - {""}
    for name, state in states:
        if state.get("Type") != "Task":
            continue
        parameters = state.get("Parameters") if isinstance(state.get("Parameters"), dict) else {}
        if state.get("Resource") == ECS_RUN_TASK:
            if parameters.get("TaskDefinition") != settings.model_name + FARGATE_FAMILY_SUFFIX:
                raise RunError(f"Task '{name}' runs the ECS task definition "
                               f"{parameters.get('TaskDefinition')!r}; locally only the model's Fargate "
                               "steps run: mark a step with the Fargate resource and a Payload.")
            continue
        target = parameters.get("FunctionName", parameters.get("FunctionName.$", state["Resource"]))
        if not isinstance(target, str) or function_name(target) not in known:
            raise RunError(
                f"Task '{name}' invokes {target!r}; locally a Task "
                f"can only invoke the model's function {settings.function_name!r}"
                + (f" or the auth function {settings.auth_function!r}" if settings.auth_function else "")
                + ". Fix FunctionName in step-functions.json (for the shared authorization function, "
                "set AUTH_FUNCTION_NAME in .env to its name)."
            )


def check_notebooks(walk: Walk, settings: Settings) -> None:
    """Every notebook the Tasks name must exist and convert (no shell escape, no magic that
    does something), so a run cannot fail late on a typo or an IPython line."""
    paths = sorted(set(notebook_paths(walk)))
    missing = [path for path in paths if not (settings.root / path).is_file()]
    if missing:
        raise RunError(f"step-functions.json runs {', '.join(missing)}, not found in {settings.root}: "
                       "add the notebook or fix its notebook_path.")
    problems = []
    for path in paths:
        try:
            if path.endswith(".ipynb"):
                script_source(settings.root / path, path)
            else:
                problems.append(handler_module_problem(path, (settings.root / path).read_text(
                    encoding="utf-8", errors="replace")))
        except NotebookError as ex:
            problems.append(str(ex))
    problems = [problem for problem in problems if problem]
    if problems:
        raise RunError("\n\n".join(problems))


def check_choice(states: list[tuple[str, dict]], choice: str) -> None:
    """A --choice must be one of the variants the Choice states on ``$.choice`` test."""
    variants = {
        rule["StringEquals"]
        for _, state in states if state.get("Type") == "Choice"
        for rule in state.get("Choices", []) if rule.get("Variable") == "$.choice" and "StringEquals" in rule
    }
    if variants and choice != DEFAULT_CHOICE and choice not in variants:
        raise RunError(f"--choice {choice!r} is not a pipeline variant; step-functions.json knows "
                       f"{', '.join(sorted(variants))} (or leave --choice out for the default).")
