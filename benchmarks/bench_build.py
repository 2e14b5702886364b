"""Benchmark: image build times, size and import time at start.

Default: the layered Dockerfile vs the old one-COPY Dockerfile, on a default bake. A default
bake is built on the stand-in Lambda base image (tests/support/lambda_base) with the legacy
builder, the way ``invoke build`` does (docker SDK, same build arguments):

- new: the generated Dockerfile and .dockerignore: requirements installed in a layer below the
  handler and the notebooks, notebooks converted at build time;
- old: everything in one ``COPY . ${LAMBDA_TASK_ROOT}`` before ``pip install``, no .dockerignore
  (the previous template's approach).

``--real-model``: a real quetzal model's requirements (``quetzal-transport`` and its geospatial
stack, as pip resolves them today) and a notebook importing ``quetzal.model.stepmodel`` and
geopandas, built three ways from the same bake:

- before: the install step and requirements as they were (nbconvert listed, every installed
  file kept);
- after: the template's Dockerfile (installed packages' tests and type stubs deleted in the
  install layer, nbconvert not listed);
- after, no .pyc: the same with ``pip install --no-compile`` (smaller; measured to show what
  the compiled bytecode buys at start).

Both modes put ``--outputs-mb`` of local run results in ``scenarios/base/outputs/`` (git-ignored,
but in the build context). For each image: a cold build (``nocache``: pip downloads and installs
the requirements), rebuilds after a one-line notebook change (median of ``--repeats``), the size
above the base. With ``--real-model`` also the import time at start, a proxy for a Lambda cold
start, median of ``--samples`` fresh containers on a read-only root file system as on Lambda
(no .pyc can be written): the handler module (``handler ready``) and a step's own imports (each
step runs its notebook in a new Python process); and the bench notebook run through the
handler's ``run_step`` in the image (``python -m quetzal_deploy.runtime.cli``, a folder as the
bucket) must succeed. Target: notebook-only rebuild at most 5% of a cold build.
pip reaches PyPI from inside the build, so cold builds depend on the network of the moment.

    python benchmarks/bench_build.py [--repeats 3] [--outputs-mb 50] [--extra-requirements pandas ...]
    python benchmarks/bench_build.py --real-model [--samples 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker
import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from support.lambda_base.build import ensure_lambda_base  # noqa: E402

from fixtures.bake import bake  # noqa: E402
from quetzal_deploy.images.context import build_context  # noqa: E402

OLD_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY . ${LAMBDA_TASK_ROOT}
RUN pip install -r ${LAMBDA_TASK_ROOT}/requirements.txt
CMD ["quetzal_deploy.runtime.handler.handler"]
"""
# The install step and the handler's requirement before the image was trimmed.
BEFORE_INSTALL = 'RUN python -m pip install --no-cache-dir -r "${LAMBDA_TASK_ROOT}/requirements.txt"\n'
BEFORE_REQUIREMENTS = ["nbconvert>=7.16"]
RUN_STEP = re.compile(r"^RUN (?:.*\\\n)*.*\n", re.M)  # one RUN instruction, continued lines too
REAL_REQUIREMENTS = ["quetzal-transport"]
STEP_IMPORTS = "from quetzal.model import stepmodel; import geopandas"
BENCH_NOTEBOOK = """\
import json, sys
from pathlib import Path
import geopandas
from quetzal.model import stepmodel

outputs = Path(json.loads(sys.argv[1])["training_folder"]) / "outputs"
outputs.mkdir(parents=True, exist_ok=True)
model = stepmodel.StepModel()
zones = geopandas.GeoDataFrame({"zone": ["centre"]}, geometry=geopandas.points_from_xy([2.35], [48.85]),
                               crs="EPSG:4326")
zones.to_file(outputs / "zones.geojson", driver="GeoJSON")
print("read back", len(geopandas.read_file(outputs / "zones.geojson")), "zone(s) with", type(model).__name__)
"""
IMPORT_PROBE = """\
import json, time
started = time.perf_counter()
import quetzal_deploy.runtime.handler
ready = time.perf_counter()
{step_imports}
print(json.dumps({{"handler": ready - started, "step": time.perf_counter() - ready}}))
"""


def quiet_bake(output_dir: Path) -> Path:
    """A default bake, without the post-generation hook's next steps on this benchmark's output."""
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            return bake(output_dir)
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def build(client, context: Path, tag: str, base: str, nocache: bool = False) -> float:
    """Seconds to build ``context`` as ``tag``; a build error stops the benchmark."""
    started = time.perf_counter()
    log = collections.deque(maxlen=15)  # the end of the build's output, shown if it fails
    with build_context(context) as archive:  # the repo plus the installed runtime, as `invoke build`
        for chunk in client.api.build(fileobj=archive, custom_context=True, tag=tag, nocache=nocache,
                                      buildargs={"BASE_IMAGE": base, "IMAGE_TAG": "bench"}, rm=True,
                                      decode=True):
            log.append(chunk.get("stream", ""))
            if "error" in chunk:
                raise SystemExit(f"build of {tag} failed: {chunk['error']}\n{''.join(log)}")
    return time.perf_counter() - started


def change_one_line(repo: Path, run: int) -> None:
    path = repo / "notebooks" / "preparation.ipynb"
    notebook = json.loads(path.read_text())
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    code["source"] = [*code["source"], f"\n# benchmark change {time.time_ns()} {run}\n"]
    path.write_text(json.dumps(notebook, indent=1))


def measure(client, context: Path, tag: str, base: str, repeats: int) -> dict:
    cold = build(client, context, tag, base, nocache=True)
    rebuilds = []
    for run in range(repeats):
        change_one_line(context, run)
        rebuilds.append(build(client, context, tag, base))
    size = client.images.get(tag).attrs["Size"]
    return {"cold": cold, "rebuild": statistics.median(rebuilds), "size": size}


def add_requirements(repo: Path, packages: list[str]) -> None:
    with (repo / "requirements.txt").open("a") as requirements:
        requirements.writelines(f"{package}\n" for package in packages)


def add_local_outputs(repo: Path, megabytes: int) -> None:
    outputs = repo / "scenarios" / "base" / "outputs"
    outputs.mkdir(parents=True)
    (outputs / "local_run.bin").write_bytes(os.urandom(megabytes * 2**20))


def run_in_image(client, tag: str, command: list[str], **options) -> str:
    """The command's output in a fresh container with Lambda's read-only root and /tmp."""
    return client.containers.run(tag, entrypoint=["python"], command=command, remove=True,
                                 read_only=True, tmpfs={"/tmp": ""}, working_dir="/var/task",
                                 stderr=False, **options).decode()


def import_times(client, tags: list[str], samples: int) -> dict[str, dict]:
    """Per image, median seconds to import the handler, then a step's imports, in fresh containers.

    Images take turns (after one unmeasured run each, which reads the image from disk), so a
    change in the machine's load falls on all of them alike.
    """
    probe = ["-c", IMPORT_PROBE.format(step_imports=STEP_IMPORTS)]
    for tag in tags:
        run_in_image(client, tag, probe)
    runs = {tag: [] for tag in tags}
    for _ in range(samples):
        for tag in tags:
            runs[tag].append(json.loads(run_in_image(client, tag, probe).splitlines()[-1]))
    return {tag: {key: statistics.median(run[key] for run in runs[tag]) for key in ("handler", "step")}
            for tag in tags}


def notebook_runs(client, tag: str, scenario: Path, scratch: Path) -> bool:
    """The bench notebook through ``run_step`` in the image, a folder standing in for the bucket."""
    bucket = scratch / "bucket"
    shutil.copytree(scenario, bucket / "base")
    event = {"notebook_path": "notebooks/bench.ipynb", "scenario_path_S3": "base/",
             "launcher_arg": {"training_folder": "/tmp", "params": {}}, "metadata": {}}
    try:
        run_in_image(client, tag, ["-m", "quetzal_deploy.runtime.cli", json.dumps(event),
                                   "--time-limit-s", "900"],
                     environment={"QUETZAL_BUCKET_FOLDER": "/bucket"},
                     volumes={str(bucket): {"bind": "/bucket", "mode": "rw"}})
    except docker.errors.ContainerError as error:
        print(f"{tag}: the bench notebook failed in the image: {error}", file=sys.stderr)
        return False
    log = (bucket / "base" / "logs" / "bench.txt").read_text()
    return "read back 1 zone(s) with StepModel" in log


def slug(name: str) -> str:
    return re.sub(r"\W+", "-", name).strip("-")


def real_model_variants(repo: Path, tmp: Path) -> dict[str, Path]:
    """Copies of ``repo``: before the image was trimmed, the template's, and without .pyc."""
    dockerfile = (repo / "Dockerfile").read_text()
    install = next((step for step in RUN_STEP.finditer(dockerfile) if "pip install" in step.group(0)), None)
    if install is None:
        raise SystemExit("no `RUN ... pip install` step found in the template's Dockerfile")
    variants = {}
    for name, step, extra in (
            ("before", BEFORE_INSTALL, BEFORE_REQUIREMENTS),
            ("after", install.group(0), []),
            ("after, no .pyc", install.group(0).replace("pip install ", "pip install --no-compile "), [])):
        copy = Path(shutil.copytree(repo, tmp / slug(name) / repo.name, symlinks=True))
        (copy / "Dockerfile").write_text(dockerfile.replace(install.group(0), step))
        add_requirements(copy, extra)
        variants[name] = copy
    return variants


def add_bench_notebook(repo: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(BENCH_NOTEBOOK)])
    nbformat.write(notebook, repo / "notebooks" / "bench.ipynb")


def remove_images(client, tags) -> None:
    for tag in tags:
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def machine(args) -> str:
    return (f"legacy builder; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
            f"rebuild = median of {args.repeats} after a one-line notebook change; "
            f"{args.outputs_mb} MB of local outputs in the repo")


def compare_dockerfiles(client, base: str, base_size: int, args) -> None:
    """The default mode: layered (new) vs one-COPY (old) Dockerfile."""
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        new_repo = quiet_bake(Path(tmp, "new"))
        add_local_outputs(new_repo, args.outputs_mb)
        add_requirements(new_repo, args.extra_requirements)
        requirements = [line for line in (new_repo / "requirements.txt").read_text().splitlines()
                        if line and not line.startswith("#")]
        old_repo = Path(shutil.copytree(new_repo, Path(tmp, "old", new_repo.name), symlinks=True))
        (old_repo / ".dockerignore").unlink()
        (old_repo / "Dockerfile").write_text(OLD_DOCKERFILE)
        tags = {"new": f"quetzal-bench-{os.getpid()}/new:latest",
                "old": f"quetzal-bench-{os.getpid()}/old:latest"}
        try:
            results = {name: measure(client, repo, tags[name], base, args.repeats)
                       for name, repo in (("new", new_repo), ("old", old_repo))}
        finally:
            remove_images(client, tags.values())
    mb = 1e6
    print(f"Base image {base}: {base_size / mb:.0f} MB; requirements: {', '.join(requirements)}; "
          f"{machine(args)}")
    print(f"{'':5} {'cold build':>11} {'rebuild':>9} {'rebuild/cold':>13} {'image':>9} {'above base':>11}")
    for name, r in results.items():
        print(f"{name:5} {r['cold']:10.1f}s {r['rebuild']:8.2f}s {r['rebuild'] / r['cold']:12.1%} "
              f"{r['size'] / mb:8.0f}M {(r['size'] - base_size) / mb:10.1f}M")
    new, old = results["new"], results["old"]
    print(f"new rebuild vs new cold build: {new['rebuild'] / new['cold']:.1%} (target <= 10%)")
    print(f"new rebuild vs old rebuild: {new['rebuild'] / old['rebuild']:.1%} "
          f"({old['rebuild'] / new['rebuild']:.0f}x faster)")
    print(f"image above the base, new vs old: {(new['size'] - base_size) / (old['size'] - base_size):.1%}")


def compare_real_model(client, base: str, base_size: int, args) -> None:
    """``--real-model``: the image before and after trimming, with quetzal-transport."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-build-real-") as tmp:
        repo = quiet_bake(Path(tmp, "bake"))
        add_local_outputs(repo, args.outputs_mb)
        add_requirements(repo, REAL_REQUIREMENTS)
        add_bench_notebook(repo)
        variants = real_model_variants(repo, Path(tmp))
        tags = {name: f"quetzal-bench-{os.getpid()}/{slug(name)}:latest" for name in variants}
        try:
            for name, copy in variants.items():
                results[name] = measure(client, copy, tags[name], base, args.repeats)
            times = import_times(client, list(tags.values()), args.samples)
            for name in variants:
                results[name].update(times[tags[name]])
                results[name]["notebook"] = notebook_runs(
                    client, tags[name], repo / "scenarios" / "base", Path(tmp, "run", slug(name)))
        finally:
            remove_images(client, tags.values())
    mb = 1e6
    print(f"Base image {base}: {base_size / mb:.0f} MB; requirements: boto3, "
          f"{', '.join(REAL_REQUIREMENTS)} (+{', '.join(BEFORE_REQUIREMENTS)} before); {machine(args)}; "
          f"import times: median of {args.samples} fresh read-only containers per image, in turns, step = "
          f"`{STEP_IMPORTS}`")
    print(f"{'':15} {'cold build':>11} {'rebuild':>9} {'rebuild/cold':>13} {'above base':>11} "
          f"{'handler ready':>14} {'step imports':>13} {'notebook':>9}")
    for name, r in results.items():
        print(f"{name:15} {r['cold']:10.1f}s {r['rebuild']:8.2f}s {r['rebuild'] / r['cold']:12.1%} "
              f"{(r['size'] - base_size) / mb:10.0f}M {r['handler']:13.2f}s {r['step']:12.2f}s "
              f"{'runs' if r['notebook'] else 'FAILS':>9}")
    before, after, no_pyc = results["before"], results["after"], results["after, no .pyc"]
    print(f"after: rebuild vs cold build {after['rebuild'] / after['cold']:.1%} (target <= 5%)")
    above = {name: r["size"] - base_size for name, r in results.items()}
    print(f"after vs before: image above the base {above['after'] / above['before']:.1%}, "
          f"{(before['size'] - after['size']) / mb:.0f} MB less; step imports "
          f"{after['step'] / before['step']:.2f}x, handler ready {after['handler'] / before['handler']:.2f}x")
    print(f"without .pyc: {(after['size'] - no_pyc['size']) / mb:.0f} MB smaller than after; step imports "
          f"{no_pyc['step'] / after['step']:.1f}x, handler ready {no_pyc['handler'] / after['handler']:.1f}x "
          f"those of after")
    if not all(r["notebook"] for r in results.values()):
        raise SystemExit("the bench notebook failed in an image (see above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rebuilds after a notebook change")
    parser.add_argument("--outputs-mb", type=int, default=50, help="local run results in the repo")
    parser.add_argument("--extra-requirements", nargs="*", default=[], metavar="PACKAGE",
                        help="packages added to requirements.txt (a model's own, e.g. pandas)")
    parser.add_argument("--real-model", action="store_true",
                        help="quetzal-transport's requirements: image before/after trimming")
    parser.add_argument("--samples", type=int, default=5, help="containers timed per image (--real-model)")
    args = parser.parse_args()
    client = docker.from_env(timeout=1800)
    base = ensure_lambda_base(client)
    base_size = client.images.get(base).attrs["Size"]
    if args.real_model:
        compare_real_model(client, base, base_size, args)
    else:
        compare_dockerfiles(client, base, base_size, args)


if __name__ == "__main__":
    main()
