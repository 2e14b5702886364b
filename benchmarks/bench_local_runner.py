"""Benchmark: what ``invoke run --local`` adds per step beyond the notebooks' own run time.

A default bake gets an N-step pipeline (default 10) of notebooks that each sleep a little and
print their own run time (measured inside the script, first line to last). Everything else is
overhead: the scenario copy, the interpreter, and per step the handler's clean / download /
conversion / child Python start / upload, and the run folder bookkeeping.

- local runner, cold: the first ``run_local`` in this process (it pays its imports once, as
  every ``invoke run --local`` does);
- local runner, warm: the same pipeline run again in the same process;
- old approach: what the previous ``.sh`` scripts and handler did for each notebook, run one
  after the other by hand: ``jupyter nbconvert --to python`` (the command) then
  ``python <script> '<launcher_arg>'`` in a copy of the scenario.

Target: under 0.3 s of overhead per step.

    python benchmarks/bench_local_runner.py [--steps 10] [--sleep 0.2]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from fixtures.bake import bake  # noqa: E402
from quetzal_deploy.local.runner import run_local  # noqa: E402
from quetzal_deploy.settings import load_settings  # noqa: E402

NOTEBOOK = """import json, os, sys, time
started = time.perf_counter()
from pathlib import Path
default = {"training_folder": "../scenarios/base", "params": {}}
manual, argv = (True, default) if "ipykernel" in sys.argv[0] else (
    False, dict(default, **json.loads(sys.argv[1])))
outputs = Path(argv["training_folder"]) / "outputs"
outputs.mkdir(parents=True, exist_ok=True)
time.sleep(SLEEP)
(outputs / "STEP.csv").write_text("step,done\\nSTEP,1\\n")
print(f"own_s={time.perf_counter() - started:.4f}")
"""
OWN = re.compile(r"own_s=([0-9.]+)")


def make_pipeline(repo: Path, steps: int, sleep: float) -> list[str]:
    names = [f"step{index:02d}" for index in range(1, steps + 1)]
    states = {}
    for index, name in enumerate(names):
        notebook = nbformat.v4.new_notebook()
        source = NOTEBOOK.replace("SLEEP", repr(sleep)).replace("STEP", name)
        notebook.cells = [nbformat.v4.new_code_cell(source)]
        nbformat.write(notebook, repo / "notebooks" / f"{name}.ipynb")
        states[name] = {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload",
            "Parameters": {"FunctionName": "${function_name}", "Payload": {
                "notebook_path": f"notebooks/{name}.ipynb", "scenario_path_S3.$": "$.scenario_path_S3",
                "launcher_arg.$": "$.launcher_arg", "metadata.$": "$.metadata"}},
            **({"Next": names[index + 1]} if index + 1 < len(names) else {"End": True}),
        }
    definition = {"StartAt": names[0], "States": states}
    (repo / "step-functions.json").write_text(json.dumps(definition, indent=1))
    return names


def measure_local(repo: Path) -> tuple[float, float]:
    """(wall seconds, the notebooks' own seconds) of one run_local."""
    lines: list[str] = []
    started = time.perf_counter()
    code = run_local(load_settings(repo), "base", out=lines.append)
    wall = time.perf_counter() - started
    if code:
        sys.exit("the local run failed:\n" + "\n".join(lines))
    return wall, sum(float(m.group(1)) for line in lines if (m := OWN.search(line)))


def measure_old(repo: Path, names: list[str], scratch: Path) -> tuple[float, float]:
    """The old procedure, notebook by notebook: nbconvert command, then the script."""
    workdir = scratch / "old-tmp"
    shutil.copytree(repo / "scenarios" / "base", workdir)
    argument = json.dumps({"training_folder": str(workdir), "params": {}})
    own = 0.0
    started = time.perf_counter()
    for name in names:
        script = scratch / f"{name}.py"
        subprocess.run(["jupyter", "nbconvert", "--to", "python", str(repo / "notebooks" / f"{name}.ipynb"),
                        "--output", str(script.with_suffix(""))], check=True, capture_output=True)
        done = subprocess.run([sys.executable, str(script), argument], cwd=repo / "notebooks", check=True,
                              capture_output=True, text=True)
        own += float(OWN.search(done.stdout).group(1))
    return time.perf_counter() - started, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds each notebook sleeps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-local-") as scratch:
        scratch = Path(scratch)
        repo = bake(scratch / "bake")
        names = make_pipeline(repo, args.steps, args.sleep)
        rows = [("local runner, cold", *measure_local(repo)),
                ("local runner, warm", *measure_local(repo))]
        if shutil.which("jupyter"):
            rows.append(("old approach (nbconvert command + script)", *measure_old(repo, names, scratch)))
        else:
            print("jupyter command not found: the old approach is not measured")
    print(f"{args.steps} steps, each notebook sleeping {args.sleep} s; overhead = wall - notebooks' own time")
    print(f"{'run':44} {'wall':>8} {'own':>8} {'overhead/step':>14}")
    per_step = {}
    for label, wall, own in rows:
        per_step[label] = (wall - own) / args.steps
        print(f"{label:44} {wall:7.2f}s {own:7.2f}s {per_step[label]:13.3f}s")
    warm = per_step["local runner, warm"]
    print(f"target: < 0.300 s/step -> warm {'met' if warm < 0.3 else 'NOT met'} ({warm:.3f} s), "
          f"cold {per_step['local runner, cold']:.3f} s")
    old = per_step.get("old approach (nbconvert command + script)")
    if old:
        print(f"old approach / local runner (warm): {old / warm:.1f}x the overhead per step")


if __name__ == "__main__":
    main()
