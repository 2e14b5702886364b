"""Benchmark: the Lambda handler's own overhead, new handler vs the old one.

One step on a 200-file scenario (1-10 KB inputs) with a trivial notebook (it writes 50 small
outputs), so nearly all the time is the handler's: clean, download, conversion, starting the
script, upload. Both handlers run in this process against moto server (a process of its own),
each run after deleting the scenario's outputs/ and logs/ (as the front end does).

- old: the previous handler's procedure: sequential ``Bucket.download_file`` (HeadObject +
  GetObject per file), conversion at run time with the ``jupyter nbconvert`` command, the
  script, then sequential ``upload_file`` with the metadata.
- new: ``run_step`` with ``S3Storage``: parallel transfers, no HeadObject, the script converted
  at image build time (as the Dockerfile does). A third row shows the new handler when only the
  ``.ipynb`` exists (converted in-process by ``quetzal_deploy.runtime.convert``).

Moto answers with no network time, so both reach it through ``netdelay.py``, a loopback proxy
adding a round trip (30 ms by default, what a workstation sees from S3); the same runs through a
0 ms proxy show moto's own floor.

    python benchmarks/bench_handler.py [--files 200] [--outputs 50] [--rtt-ms 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import nbformat
from emulated_aws import Requests, network, use

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quetzal_deploy.runtime.convert import convert_folder  # noqa: E402
from quetzal_deploy.runtime.handler import run_step  # noqa: E402
from quetzal_deploy.runtime.storage import S3Storage, default_client  # noqa: E402

BUCKET = "bench-handler"
REGION = "us-east-1"
SCENARIO = "bench/"
METADATA = {"user_email": "bench@example.org"}
TRIVIAL = """import json, sys
from pathlib import Path
argv = json.loads(sys.argv[1])
outputs = Path(argv["training_folder"]) / "outputs"
outputs.mkdir(exist_ok=True)
for index in range(argv["outputs"]):
    (outputs / f"layer{index:03d}.geojson").write_text('{"type": "FeatureCollection", "features": []}')
"""


def upload_scenario(files: int) -> None:
    """The scenario's inputs (seeded: the same files every run) and its info.json."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(7)
    for index in range(files - 1):
        key = f"{SCENARIO}inputs/{['pt', 'road', 'od'][index % 3]}/part{index:03d}.geojson"
        s3.put_object(Bucket=BUCKET, Key=key, Body=rng.randbytes(rng.randint(1024, 10 * 1024)))
    s3.put_object(Bucket=BUCKET, Key=f"{SCENARIO}info.json", Body=b'{"description": "bench"}')


def task_root(folder: Path, build_time_script: bool) -> Path:
    """An image's code folder holding notebooks/trivial.ipynb (and its .py if converted)."""
    notebook = folder / "notebooks" / "trivial.ipynb"
    notebook.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TRIVIAL)]), notebook)
    if build_time_script:
        convert_folder(notebook.parent)  # what the image build runs
    return folder


def new_handler(root: Path, workdir: Path, requests: Requests, outputs: int) -> dict[str, float]:
    # A fresh client with the handler's own settings, on the endpoint of this round trip.
    client = default_client.__wrapped__()
    requests.attach(client.meta.events)
    storage = S3Storage(BUCKET, client)
    event = {"notebook_path": "notebooks/trivial.ipynb", "scenario_path_S3": SCENARIO,
             "launcher_arg": {"outputs": outputs}, "metadata": METADATA}
    started = time.perf_counter()
    result = run_step(event, storage=storage, workdir=workdir, task_root=root, time_left_s=300,
                      image_tag="bench", out=lambda line: None)
    return {**result.durations, "total": time.perf_counter() - started}


def old_handler(root: Path, workdir: Path, requests: Requests, outputs: int) -> dict[str, float]:
    """The previous handler's steps, timed the same way (rewritten here, minus its bugs' waits)."""
    bucket = boto3.resource("s3").Bucket(BUCKET)
    requests.attach(bucket.meta.client.meta.events)
    times, mark = {}, time.perf_counter()
    started = mark

    def lap(name):
        nonlocal mark
        now = time.perf_counter()
        times[name], mark = now - mark, now

    for child in workdir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    lap("clean")
    for item in bucket.objects.filter(Prefix=SCENARIO):
        target = workdir / os.path.relpath(item.key, SCENARIO)
        target.parent.mkdir(parents=True, exist_ok=True)
        bucket.download_file(item.key, str(target))
    lap("download")
    notebook = root / "notebooks" / "trivial.ipynb"
    script = workdir / "trivial.py"
    subprocess.run(["jupyter", "nbconvert", "--to", "python", str(notebook), "--output", str(script)],
                   check=True, capture_output=True)
    lap("convert")
    argument = json.dumps({"outputs": outputs, "training_folder": str(workdir)})
    subprocess.run([sys.executable, str(script), argument], cwd=notebook.parent, check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lap("run")
    script.unlink()
    shutil.rmtree(workdir / "inputs")
    for folder, _, names in os.walk(workdir):
        for name in names:
            path = Path(folder, name)
            key = SCENARIO + path.relative_to(workdir).as_posix()
            bucket.upload_file(str(path), key, ExtraArgs={"Metadata": METADATA})
    lap("upload")
    times["total"] = time.perf_counter() - started
    return times


def delete_results() -> None:
    """What the front end does before a run: delete the scenario's outputs/ and logs/."""
    bucket = boto3.resource("s3").Bucket(BUCKET)
    for folder in ("outputs/", "logs/"):
        bucket.objects.filter(Prefix=SCENARIO + folder).delete()


def measure(run, root: Path, repeats: int, outputs: int) -> tuple[dict, int]:
    """Median phase times over ``repeats`` runs, and the requests of one run."""
    runs = []
    for _ in range(repeats):
        delete_results()
        with tempfile.TemporaryDirectory(prefix="bench-handler-work-") as work:
            requests = Requests()
            runs.append(run(root, Path(work), requests, outputs))
    phases = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    return phases, requests.count


def row(label: str, rtt_ms: int, phases: dict, requests: int) -> str:
    cells = [f"{phases[name]:8.2f}" if name in phases else "       -"
             for name in ("clean", "download", "convert", "run", "upload", "total")]
    return f"{label:<34} {rtt_ms:>5} ms {' '.join(cells)} {requests:>9}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--outputs", type=int, default=50)
    parser.add_argument("--rtt-ms", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with network(REGION, args.rtt_ms, 0) as (direct, proxies):
        use(direct)
        upload_scenario(args.files)
        with tempfile.TemporaryDirectory(prefix="bench-handler-") as tmp:
            built = task_root(Path(tmp, "built"), build_time_script=True)
            plain = task_root(Path(tmp, "plain"), build_time_script=False)
            print(f"Handler overhead: {args.files}-file scenario, trivial notebook writing "
                  f"{args.outputs} outputs; seconds, each column the median of {args.repeats} runs.")
            print(f"{'approach':<34} {'rtt':>8} {'clean':>8} {'download':>8} {'convert':>8} "
                  f"{'run':>8} {'upload':>8} {'total':>8} {'requests':>9}")
            for rtt_ms in (args.rtt_ms, 0):
                use(proxies[rtt_ms])
                old, old_requests = measure(old_handler, built, args.repeats, args.outputs)
                new, new_requests = measure(new_handler, built, args.repeats, args.outputs)
                lazy, lazy_requests = measure(new_handler, plain, args.repeats, args.outputs)
                print(row("old: sequential, jupyter nbconvert", rtt_ms, old, old_requests))
                print(row("new: parallel, build-time script", rtt_ms, new, new_requests))
                print(row("new: .ipynb only (in-process)", rtt_ms, lazy, lazy_requests))
                print(f"{'':<34} {'':>8} new/old total = {new['total'] / old['total']:.2f} "
                      f"(.ipynb only: {lazy['total'] / old['total']:.2f})")
            print("rtt = round trip added by the proxy in front of moto; 0 ms = moto's floor.")


if __name__ == "__main__":
    main()
