"""``invoke run --local`` enforces the limits it claims while a step runs, and prunes its runs
(issue #19, item 7).

A real notebook crosses the model's Lambda memory or ``/tmp`` size and then keeps running: the
step must be stopped when it crosses (the notebook never reaches its last line), with the error
Lambda gives. The run folders beyond ``LOCAL_RUNS_KEPT`` are removed at the next run.
"""

import re
from pathlib import Path

import pytest
from test_run_local import invoke, lambda_task, step_payload, write_definition, write_notebook

STARTED = 'print("started", flush=True)\n'
KEEPS_RUNNING = """deadline = time.monotonic() + 120  # a step that would go on long after crossing the limit
while time.monotonic() < deadline:
    time.sleep(0.1)
print("survived the limit")
"""
STEPS = {
    "memory": STARTED + 'ballast = b"\\1" * (400 * 2**20)  # touched: resident\n' + KEEPS_RUNNING,
    "storage": STARTED + 'with open(outputs / "big.bin", "wb") as big:\n    big.truncate(600 * 2**20)\n'
               + KEEPS_RUNNING,
}


def set_env(repo: Path, **values) -> None:
    env = repo / ".env"
    text = env.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        if not count:
            text += f"\n{key}={value}\n"
    env.write_text(text)


@pytest.mark.parametrize(("step", "error", "message"), [
    ("memory", "Runtime.OutOfMemory", "LAMBDA_MEMORY_SIZE=256 MB"),
    ("storage", "NotebookError", "No space left on device"),
])
def test_a_step_crossing_a_limit_is_stopped_when_it_crosses(baked_repo, tmp_path, step, error, message):
    set_env(baked_repo, LAMBDA_MEMORY_SIZE=256, LAMBDA_STORAGE_SIZE=512)
    write_notebook(baked_repo, step, STEPS[step])
    write_definition(baked_repo, {step: lambda_task(step_payload(step), End=True)}, step)

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Error: {error}" in done.stdout and message in done.stdout, done.stdout
    assert "started" in done.stdout
    assert "survived the limit" not in done.stdout
    log = next((baked_repo / ".quetzal" / "runs").iterdir()) / "bucket" / "base" / "logs" / f"{step}.txt"
    assert "[quetzal] stopped:" in log.read_text()


def test_only_the_last_runs_are_kept(baked_repo, tmp_path):
    set_env(baked_repo, LOCAL_RUNS_KEPT=2)
    write_notebook(baked_repo, "quick", 'print("done")\n')
    write_definition(baked_repo, {"quick": lambda_task(step_payload("quick"), End=True)}, "quick")
    runs = baked_repo / ".quetzal" / "runs"

    outputs = [invoke(baked_repo, tmp_path, "run", "--local", "base") for _ in range(3)]

    assert all(done.returncode == 0 for done in outputs), [done.stdout for done in outputs]
    kept = sorted(path.name for path in runs.iterdir())
    assert len(kept) == 2
    assert "Removed 1 older run(s)" in outputs[2].stdout and "LOCAL_RUNS_KEPT=2" in outputs[2].stdout
    assert all(f"run {name})" in "".join(done.stdout for done in outputs[1:]) for name in kept)


def test_a_wrong_runs_count_is_refused(baked_repo, tmp_path):
    set_env(baked_repo, LOCAL_RUNS_KEPT=0)

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode != 0
    assert "LOCAL_RUNS_KEPT='0' in .env must be a whole number, 1 or more" in done.stdout + done.stderr
