"""Benchmark: steps forked from a warm process vs a fresh process per step, side by side.

A task root with a 6-notebook pipeline and one Map notebook run 8 times. Every notebook starts
with the model's imports (``--imports``; default: quetzal-transport's ``from quetzal.model import
stepmodel`` and ``import geopandas`` when this Python has them, else numpy, scipy and pandas),
then does a fixed piece of work it times itself. Each step runs through the handler's core
(``run_step`` on a ``FolderStorage``); the Map's iterations run as ``invoke run --local`` runs
them (as many at once as there are cores).

- overhead of a step: its ``run`` phase minus the notebook's own work (process start, imports or
  fork, output streaming, reaping);
- init: starting the warm process (its preload), paid once per container (Lambda's init phase);
- memory: each child's peak RSS (``ru_maxrss``: what the handler reports and the local runner
  checks against the Lambda's memory), its PSS and USS (private pages) at its end
  (``/proc/self/smaps_rollup``), and the warm process's RSS and PSS once it has preloaded.

Run it with the Python that has the model's packages (a venv, or inside the model's image):

    python benchmarks/bench_warm.py [--imports "import numpy; import pandas"] [--map 8] [--steps 6]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quetzal_deploy.runtime import warm  # noqa: E402
from quetzal_deploy.runtime.handler import run_step  # noqa: E402
from quetzal_deploy.runtime.storage import FolderStorage  # noqa: E402

QUETZAL = "from quetzal.model import stepmodel\nimport geopandas"
LIGHTER = "import numpy\nimport scipy.sparse\nimport pandas"
NOTEBOOK = """import json, os, sys, time
{imports}
started = time.perf_counter()
total = sum(index * index for index in range(300_000))
work_s = time.perf_counter() - started
memory = {{}}
for line in open("/proc/self/smaps_rollup"):
    parts = line.split()
    if len(parts) == 3 and parts[1].isdigit():
        memory[parts[0].rstrip(":")] = int(parts[1])
print("RETURN:", json.dumps({{"work_s": work_s, "pss_kb": memory["Pss"],
                              "uss_kb": memory["Private_Clean"] + memory["Private_Dirty"]}}))
"""


def default_imports() -> str:
    found = importlib.util.find_spec("quetzal") and importlib.util.find_spec("geopandas")
    return QUETZAL if found else LIGHTER


def notebook_json(source: str) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "source": source, "metadata": {},
                                  "outputs": [], "execution_count": None}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def make_task_root(folder: Path, imports: str, steps: int) -> list[str]:
    notebooks = folder / "task" / "notebooks"
    notebooks.mkdir(parents=True)
    names = [f"step{index}" for index in range(1, steps + 1)] + ["iteration"]
    for name in names:
        (notebooks / f"{name}.ipynb").write_text(notebook_json(NOTEBOOK.format(imports=imports)))
    (folder / "bucket" / "bench").mkdir(parents=True)
    (folder / "bucket" / "bench" / "info.json").write_text("{}")  # a scenario holds at least one file
    (folder / "work").mkdir()
    return names


def one_step(folder: Path, name: str, index: int) -> dict:
    event = {"notebook_path": f"notebooks/{name}.ipynb", "scenario_path_S3": "bench/",
             "launcher_arg": {"index": index}, "metadata": {}}
    work = Path(tempfile.mkdtemp(dir=folder / "work"))
    result = run_step(event, storage=FolderStorage(folder / "bucket"), workdir=work,
                      task_root=folder / "task", time_left_s=600, image_tag="bench", out=lambda line: None)
    returned = result.event
    return {"overhead_s": result.durations["run"] - returned["work_s"],
            "rss_mb": result.peak_memory_mb, "pss_mb": returned["pss_kb"] / 1024,
            "uss_mb": returned["uss_kb"] / 1024}


def memory_of(pid: int) -> dict:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            values[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return {"rss_mb": values["Rss"], "pss_mb": values["Pss"]}


def run_mode(folder: Path, names: list[str], iterations: int, mode: str) -> dict:
    os.environ[warm.SWITCH] = "1" if mode == "warm" else "0"
    warm.shutdown()
    started = time.perf_counter()
    zygote = warm.prepare(folder / "task", out=lambda line: None)
    init_s = time.perf_counter() - started
    if mode == "warm" and zygote is None:
        raise SystemExit("ERROR: the warm process did not start on this platform.")
    pipeline = [one_step(folder, name, index) for index, name in enumerate(names[:-1])]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        fanned = list(pool.map(lambda index: one_step(folder, names[-1], index), range(iterations)))
    map_s = time.perf_counter() - started
    zygote_memory = memory_of(zygote.process.pid) if zygote else None
    warm.shutdown()
    return {"init_s": init_s if zygote else 0.0, "pipeline": pipeline, "map": fanned, "map_s": map_s,
            "zygote": zygote_memory, "preloaded": len(zygote.preloaded) if zygote else 0}


def mean(rows: list[dict], key: str) -> float:
    return statistics.mean(row[key] for row in rows)


def report(results: dict, imports: str, steps: int, iterations: int) -> None:
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; each notebook imports: "
          + "; ".join(imports.splitlines()))
    print(f"| mode | init (once) | step overhead, pipeline of {steps} (mean / max) | "
          f"pipeline overhead total | iteration overhead, Map of {iterations} (mean) | Map wall time | "
          "child peak RSS (mean) | child PSS at end | child USS at end | warm process RSS / PSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode, result in results.items():
        pipeline, fanned = result["pipeline"], result["map"]
        zygote = result["zygote"]
        print(f"| {mode} | {result['init_s']:.2f} s | {mean(pipeline, 'overhead_s'):.2f} / "
              f"{max(row['overhead_s'] for row in pipeline):.2f} s | "
              f"{sum(row['overhead_s'] for row in pipeline):.1f} s | {mean(fanned, 'overhead_s'):.2f} s | "
              f"{result['map_s']:.1f} s | {mean(pipeline + fanned, 'rss_mb'):.0f} MB | "
              f"{mean(pipeline + fanned, 'pss_mb'):.0f} MB | {mean(pipeline + fanned, 'uss_mb'):.0f} MB | "
              + (f"{zygote['rss_mb']:.0f} / {zygote['pss_mb']:.0f} MB |" if zygote else "- |"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imports", default=None, help="the notebooks' imports, ';'-separated")
    parser.add_argument("--steps", type=int, default=6, help="notebooks in the pipeline")
    parser.add_argument("--map", type=int, default=8, help="iterations of the Map step")
    args = parser.parse_args()
    imports = default_imports()
    if args.imports:
        imports = "\n".join(part.strip() for part in args.imports.split(";"))
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        folder = Path(tmp)
        names = make_task_root(folder, imports, args.steps)
        os.environ[warm.SWITCH] = "0"
        one_step(folder, names[0], 0)  # a first import of everything: .pyc and page cache warm for both
        results = {mode: run_mode(folder, names, args.map, mode) for mode in ("fresh", "warm")}
    report(results, imports, args.steps, args.map)


if __name__ == "__main__":
    main()
