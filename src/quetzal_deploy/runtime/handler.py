"""The Lambda entry point: run one notebook of the pipeline on one scenario.

``handler(event, context)`` is the image's ``CMD``. It builds an ``S3Storage`` on
``BUCKET_NAME`` (or, when ``QUETZAL_BUCKET_FOLDER`` is set, a ``FolderStorage`` on that folder:
``invoke run --local --docker`` mounts one), works in ``QUETZAL_WORKDIR`` (unset or empty: ``/tmp``),
finds the code in ``LAMBDA_TASK_ROOT`` (or the current folder), takes the
deadline from the context and the image tag from ``IMAGE_TAG``, and calls ``run_step``.

``run_step(event, *, storage, workdir, task_root, time_left_s, image_tag, out=print,
extra_env=None, platform="Lambda", watch=None)`` is the reusable core (the local runner calls it
with a ``FolderStorage``, ``AWS_EXECUTION_ENV`` in ``extra_env``, which the notebook's process gets,
and a ``watch`` that stops a step crossing its memory or storage limit, see ``notebook``;
``runtime.cli`` calls it on Fargate, where ``platform`` names the limit in a timeout's message):

1. validate the event (``InvalidEvent``) and the working folder (``UnsafeWorkdir``);
2. clean: empty the working folder; download: the model-wide ``inputs/`` of the task root (when
   there is one) into ``inputs/``, then the scenario ``S/`` over it (scenario files win);
3. run: the notebook's script as a child process (see ``notebook``), stopped a safety margin
   before the deadline; its log goes to ``S/logs/<path under notebooks/>.txt`` in every case
   (``log_keys``: a log is never replaced, so a notebook run several times in one execution, as
   Map iterations, keeps one log per run), then ``NotebookTimeout`` / ``NotebookError`` (unless it
   printed ``end_of_notebook``);
4. merge its ``RETURN: {...}`` lines into the returned event (``StateTooLarge`` past the Step
   Functions limit), set ``model_tag`` and the change stamp in ``info.json``, and upload what the
   step created or changed (not ``inputs/`` nor ``logs/``), with the event's ``metadata`` as
   object metadata, each file only over the version it downloaded (``WriteConflict`` when a
   parallel step changed it meanwhile; see ``storage``).

It prints one timing line per phase and returns a ``StepResult``: the event for the next state
and the step's statistics (phase durations, the notebook's peak memory, the folder's size).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from quetzal_deploy.contract.limits import STATE_LIMIT_BYTES, state_bytes
from quetzal_deploy.contract.params import deep_merge
from quetzal_deploy.runtime import warm
from quetzal_deploy.runtime.errors import (
    InvalidEvent,
    LimitExceeded,
    NotebookError,
    NotebookTimeout,
    StateTooLarge,
    StorageError,
)
from quetzal_deploy.runtime.event import StepEvent, parse_event
from quetzal_deploy.runtime.info import info_bytes, parse_info, stamped
from quetzal_deploy.runtime.notebook import (
    Outcome,
    child_environment,
    log_name,
    parse_returns,
    run_script,
    script_for,
)
from quetzal_deploy.runtime.storage import EXCLUDED, FolderStorage, S3Storage, Snapshot, Storage, create_text
from quetzal_deploy.runtime.strays import resident_mb
from quetzal_deploy.runtime.workdir import PRIVATE, check_workdir, empty_folder, size_mb

# The lambda:invoke result wraps the returned event (status, headers, request id: about 1 KiB)
# and the whole result counts against the state limit: keep 4 KiB for it.
INVOKE_WRAPPER_BYTES = 4 * 1024
MAX_STATE_BYTES = STATE_LIMIT_BYTES - INVOKE_WRAPPER_BYTES
LAMBDA, FARGATE = "Lambda", "Fargate"
TIMEOUT_ADVICE = {
    LAMBDA: "raise LAMBDA_TIME_LIMIT (at most 900 s); past 15 minutes, run the step on Fargate "
            '("Resource": "arn:aws:states:::ecs:runTask.waitForTaskToken" in step-functions.json, '
            "see the README's Fargate steps)",
    FARGATE: "raise the step's TimeoutSeconds in step-functions.json",
}
FIGURES_LINE = "[quetzal] figures: "  # + JSON, logged by a handler run by `invoke run --local --docker`


@dataclass
class StepResult:
    """The event for the next state, and what the step cost."""

    event: dict
    durations: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    workdir_mb: float = 0.0
    downloaded: int = 0
    uploaded: int = 0
    log_key: str = ""


class Figures:
    """What a step used, as a local run counts it: its processes' peak resident memory (sampled
    while it runs, and the notebook's own peak) and its working folder's size."""

    def __init__(self, workdir: Path):
        self.workdir, self.peak_mb = workdir, 0.0

    def watch(self, pids: list[int]) -> None:
        """``run_step``'s watch: sample the step's processes."""
        self.peak_mb = max(self.peak_mb, resident_mb(pids))

    def read(self, notebook_peak_mb: float | None = None) -> dict:
        peak = max(self.peak_mb, notebook_peak_mb or 0.0)
        return {"peak_memory_mb": peak or None, "tmp_mb": size_mb(self.workdir)}


def safety_margin(time_left_s: float) -> float:
    """Seconds kept after the notebook is stopped: to upload its log and fail cleanly."""
    return min(10.0, max(1.0, time_left_s / 20))


@contextmanager
def phase(name: str, durations: dict, out, detail=lambda: ""):
    """Time one phase and print its line, whether it succeeds or fails."""
    started = time.monotonic()
    try:
        yield
    finally:
        durations[name] = time.monotonic() - started
        out(f"[quetzal] {name}: {durations[name]:.2f} s{detail()}")


INFO = "info.json"  # stamped by every step: written whatever a parallel step wrote
MAX_LOGS = 100_000  # logs of one notebook in one scenario (a Map runs at most 10,000 items at once)


def log_keys(first: str):
    """``S/logs/x.txt``, then ``S/logs/x-2.txt``, ``-3``... (the front end lists every ``.txt``)."""
    yield first
    stem = first.removesuffix(".txt")
    for number in range(2, MAX_LOGS):
        yield f"{stem}-{number}.txt"


def write_log(storage: Storage, first: str, text: str, metadata: dict) -> str:
    """Write the log to the first of ``log_keys(first)`` that no step wrote; its key."""
    folder = first.rsplit("/", 1)[0] + "/"
    taken = set(storage.list_keys(folder))
    for key in log_keys(first):
        if key not in taken and create_text(storage, key, text, metadata):
            return key
    raise StorageError(f"{first}: {MAX_LOGS} logs of this notebook already exist; empty logs/.")


def run_logged(step: StepEvent, storage: Storage, workdir: Path, task_root: Path,
               stop_at: float, result: StepResult, out, extra_env: dict | None = None,
               platform: str = LAMBDA, watch=None) -> Outcome:
    """Run the notebook until ``stop_at`` (``time.monotonic``); upload its log whatever happens
    (its key in ``result.log_key``)."""
    private = workdir / PRIVATE
    log_path = private / f"{step.step_name}.log"
    log_path.touch()
    try:
        script = script_for(step.notebook, private)
        zygote = warm.prepare(task_root, out)
        for warning in zygote.warnings() if zygote else ():
            out(warning)
        outcome = run_script(
            script,
            json.dumps(dict(step.launcher_arg, training_folder=str(workdir))),
            cwd=step.notebook.parent,
            env=child_environment(task_root, step.notebook, private, extra_env),
            log_path=log_path,
            budget_s=stop_at - time.monotonic(),  # conversion may have taken some
            out=out,
            warm=zygote,
            watch=watch,
        )
        if not log_path.is_file():
            tail = "\n".join(outcome.tail)
            raise NotebookError(
                f"{step.notebook_path} deleted {private}, the handler's own folder (the step's log, "
                "caches and temporary files): leave .quetzal/ of the training folder alone. Its output "
                f"until then:\n{tail}")
        if outcome.timed_out:
            append_log(log_path, f"\n[quetzal] stopped after {outcome.seconds:.1f} s: the {platform} "
                                 "time limit was near.\n")
        return outcome
    except NotebookError as ex:
        append_log(log_path, f"{ex}\n", replace=True)
        raise
    except LimitExceeded as ex:
        append_log(log_path, f"\n[quetzal] stopped: {ex}\n")
        raise
    finally:
        result.log_key = write_log(storage, result.log_key,
                                   log_path.read_text(encoding="utf-8", errors="replace"), step.metadata)


def append_log(log_path: Path, text: str, replace: bool = False) -> None:
    """Add ``text`` to the step's log (or replace it), even where the notebook deleted its folder."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w" if replace else "a", encoding="utf-8") as log:
        log.write(text)


def check_outcome(outcome: Outcome, step: StepEvent, log_key: str, margin_s: float,
                  platform: str = LAMBDA) -> None:
    if outcome.timed_out:
        raise NotebookTimeout(
            f"{step.notebook_path} was stopped after {outcome.seconds:.1f} s, {margin_s:.0f} s "
            f"before the {platform} time limit; its log so far is in {log_key}. Make the step "
            f"faster, split it in two, or {TIMEOUT_ADVICE[platform]}."
        )
    if outcome.failed:
        raise NotebookError(
            f"{step.notebook_path} {outcome.exit_description()} after {outcome.seconds:.1f} s "
            f"(full log: {log_key}):\n{outcome.failure_text()}"
        )


def returned_event(event: dict, outcome: Outcome, step: StepEvent) -> dict:
    """The event merged with the notebook's RETURN: values, within the state size limit."""
    merged = deep_merge(event, parse_returns(outcome.returns, step.notebook_path))
    try:
        size = state_bytes(merged)
    except ValueError as ex:
        raise NotebookError(f"{step.notebook_path} returned a value JSON cannot carry ({ex}): return "
                            "null or a string instead of NaN or Infinity.") from ex
    if size > MAX_STATE_BYTES:
        raise StateTooLarge(
            f"{step.notebook_path} returned an event of {size} bytes; Step Functions passes at most "
            f"{STATE_LIMIT_BYTES} between states, {INVOKE_WRAPPER_BYTES} of them for the Lambda invoke "
            "result around it. Print smaller RETURN: values and write large results to files in outputs/."
        )
    return merged


def set_run_info(info_path: Path, image_tag: str, email: str, out) -> None:
    """Record in ``info.json`` the image that produced the outputs, who ran it and when."""
    raw = info_path.read_bytes() if info_path.is_file() else None
    info = parse_info(raw)
    if raw is not None and not info:
        out(f"[quetzal] WARNING: {info_path.name} is not a JSON object; rewriting it.")
    info_path.write_bytes(info_bytes(stamped(info, email, model_tag=image_tag)))


def copy_model_inputs(task_root: Path, workdir: Path) -> int:
    """The model-wide ``inputs/`` (baked in the image) into the step's ``inputs/``; file count."""
    source = task_root / "inputs"
    if not source.is_dir():
        return 0
    shutil.copytree(source, workdir / "inputs", dirs_exist_ok=True)
    return sum(1 for path in (workdir / "inputs").rglob("*") if path.is_file())


def run_step(event, *, storage: Storage, workdir: Path, task_root: Path, time_left_s: float,
             image_tag: str, out=print, extra_env: dict | None = None,
             platform: str = LAMBDA, watch=None) -> StepResult:
    """Run one pipeline step; see the module docstring for the phases."""
    deadline = time.monotonic() + time_left_s
    margin_s = safety_margin(time_left_s)
    step = parse_event(event, task_root)
    workdir = check_workdir(workdir, task_root)
    result = StepResult(event={}, log_key=step.scenario + log_name(step.notebook_path))
    times = result.durations
    out(f"[quetzal] {step.notebook_path} on {step.scenario} (image {image_tag})")

    with phase("clean", times, out):
        empty_folder(workdir)
    snapshot = Snapshot()
    with phase("download", times, out, lambda: f" ({result.downloaded} files)"):
        result.downloaded = copy_model_inputs(task_root, workdir)
        snapshot = storage.download_prefix(step.scenario, workdir)
        result.downloaded += len(snapshot)
    if not snapshot:  # a step writes into an existing scenario; it never creates one
        raise InvalidEvent(f"Scenario {step.scenario} is not in the bucket (no object under it): "
                           "upload it first (invoke upload-scenarios), or fix scenario_path_S3.")
    empty_folder(workdir / PRIVATE)
    with phase("run", times, out):
        outcome = run_logged(step, storage, workdir, task_root, deadline - margin_s,
                             result, out, extra_env, platform, watch)
    result.peak_memory_mb = outcome.peak_memory_mb
    result.workdir_mb = size_mb(workdir)
    check_outcome(outcome, step, result.log_key, margin_s, platform)
    result.event = returned_event(event, outcome, step)

    set_run_info(workdir / INFO, image_tag, event.get("metadata", {}).get("user_email", ""), out)
    with phase("upload", times, out, lambda: f" ({result.uploaded} files)"):
        result.uploaded = storage.upload_changes(workdir, step.scenario, snapshot,
                                                 exclude=EXCLUDED + (f"{PRIVATE}/",),
                                                 metadata=step.metadata, unconditional=(INFO,))
    return result


def default_task_root() -> Path:
    """``LAMBDA_TASK_ROOT`` in the image, else the current folder (a model repo, run locally)."""
    return Path(os.environ.get("LAMBDA_TASK_ROOT") or Path.cwd())


def storage_from_environment() -> Storage:
    """A mounted folder standing in for the bucket (``QUETZAL_BUCKET_FOLDER``), else the bucket."""
    folder = os.environ.get("QUETZAL_BUCKET_FOLDER")
    if folder:
        return FolderStorage(Path(folder))
    bucket = os.environ.get("BUCKET_NAME")
    if not bucket:
        raise StorageError("BUCKET_NAME is not set: the Lambda's environment must name the "
                           "scenario bucket (the Terraform module sets it).")
    return S3Storage(bucket)


def handler(event, context):
    """Lambda entry point: the event of a Step Functions Task; returns the next state's event.
    Behind ``invoke run --local --docker`` (a mounted bucket folder) it also logs the step's
    ``Figures`` on a ``FIGURES_LINE``, which the local runner checks against the Lambda's limits."""
    workdir = Path(os.environ.get("QUETZAL_WORKDIR") or "/tmp")  # empty means unset
    figures = Figures(workdir) if os.environ.get("QUETZAL_BUCKET_FOLDER") else None
    result = run_step(
        event,
        storage=storage_from_environment(),
        workdir=workdir,
        task_root=default_task_root(),
        time_left_s=context.get_remaining_time_in_millis() / 1000,
        image_tag=os.environ.get("IMAGE_TAG") or "unknown",
        out=lambda line: print(line, flush=True),
        watch=figures and figures.watch,
    )
    if figures:
        print(FIGURES_LINE + json.dumps(figures.read(result.peak_memory_mb)), flush=True)
    return result.event


if os.environ.get("AWS_LAMBDA_RUNTIME_API"):  # Lambda's init phase: the model's imports, once
    warm.prepare(default_task_root())
