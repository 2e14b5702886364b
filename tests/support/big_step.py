"""One handler step moving a large file both ways, in a process of its own, measuring its memory.

The scenario's input ``inputs/od.bin`` (``SIZE_MB``, sparse: made instantly) is uploaded with the
handler's storage, then ``run_step`` downloads it, the notebook writes ``outputs/od.bin`` of the
same size, and the handler uploads it. The same step first runs with a 1 MB file, as in a warm
Lambda container (modules imported, client and pools made). Prints one JSON line: this process's
resident memory before the large step (``baseline_mb``) and its peak during it (``peak_mb``, the
kernel's high-water mark, reset first), and its seconds. The notebook runs in a child process:
not counted.

    python tests/support/big_step.py BUCKET SIZE_MB FOLDER

AWS_ENDPOINT_URL and credentials come from the environment; the bucket must exist. Used by
tests/test_big_files.py and benchmarks/bench_big_files.py.
"""

import json
import sys
import time
from pathlib import Path

import nbformat

from quetzal_deploy.runtime.handler import run_step
from quetzal_deploy.runtime.storage import S3Storage

SCENARIO = "big/"
NOTEBOOK = """import json, os, sys
from pathlib import Path
argv = json.loads(sys.argv[1])
folder = Path(argv["training_folder"])
size = os.stat(folder / "inputs" / "od.bin").st_size
(folder / "outputs").mkdir(exist_ok=True)
with open(folder / "outputs" / "od.bin", "wb") as out:
    out.truncate(size)
"""


def resident_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def step(storage: S3Storage, size_mb: int, folder: Path) -> None:
    """Upload a ``size_mb`` input, then the handler's step: download it, write and upload the output."""
    source = folder / "scenario" / "inputs" / "od.bin"
    source.parent.mkdir(parents=True)
    with source.open("wb") as out:
        out.truncate(size_mb << 20)
    storage.upload_tree(folder / "scenario", SCENARIO, exclude=())
    source.unlink()
    event = {"notebook_path": "notebooks/big.ipynb", "scenario_path_S3": SCENARIO,
             "launcher_arg": {}, "metadata": {"user_email": "big@example.org"}}
    run_step(event, storage=storage, workdir=folder / "work", task_root=folder.parent / "task",
             time_left_s=3600, image_tag="big", out=lambda line: None)


def main(bucket: str, size_mb: int, folder: Path) -> None:
    notebook = folder / "task" / "notebooks" / "big.ipynb"
    notebook.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK)]), notebook)
    storage = S3Storage(bucket)
    step(storage, 1, folder / "warm-up")

    baseline = resident_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current size
    started = time.perf_counter()
    step(storage, size_mb, folder / "large")
    print(json.dumps({"baseline_mb": round(baseline, 1), "peak_mb": round(resident_mb("VmHWM"), 1),
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
