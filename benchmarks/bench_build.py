"""Benchmark: image build times and size, the layered Dockerfile vs the old one-COPY Dockerfile.

A default bake is built on the stand-in Lambda base image (tests/support/lambda_base) with the
legacy builder, the way ``invoke build`` does (docker SDK, same build arguments):

- new: the generated Dockerfile and .dockerignore: requirements installed in a layer below the
  handler and the notebooks, notebooks converted at build time;
- old: everything in one ``COPY . ${LAMBDA_TASK_ROOT}`` before ``pip install``, no .dockerignore
  (the previous template's approach).

Both repos hold what a modeller's working copy holds after a local run: ``--outputs-mb`` of
results in ``scenarios/base/outputs/`` (git-ignored, so never committed, but in the build
context). For each: a cold build (``nocache``, so pip downloads and installs the requirements),
then rebuilds after a one-line notebook change (median of ``--repeats``); the image size, total
and above the base. Target: the new notebook-only rebuild at most 10% of the new cold build.
pip reaches PyPI from inside the build, so cold builds depend on the network of the moment.

    python benchmarks/bench_build.py [--repeats 3] [--outputs-mb 50] [--extra-requirements pandas ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from support.lambda_base.build import ensure_lambda_base  # noqa: E402

from fixtures.bake import bake  # noqa: E402

OLD_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY . ${LAMBDA_TASK_ROOT}
RUN pip install -r ${LAMBDA_TASK_ROOT}/requirements.txt
CMD ["quetzal_deploy.runtime.handler.handler"]
"""


def build(client, context: Path, tag: str, base: str, nocache: bool = False) -> float:
    """Seconds to build ``context`` as ``tag``; a build error stops the benchmark."""
    started = time.perf_counter()
    for chunk in client.api.build(path=str(context), tag=tag, buildargs={"BASE_IMAGE": base,
                                  "IMAGE_TAG": "bench"}, nocache=nocache, rm=True, decode=True):
        if "error" in chunk:
            raise SystemExit(f"build of {tag} failed: {chunk['error']}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rebuilds after a notebook change")
    parser.add_argument("--outputs-mb", type=int, default=50, help="local run results in the repo")
    parser.add_argument("--extra-requirements", nargs="*", default=[], metavar="PACKAGE",
                        help="packages added to requirements.txt (a model's own, e.g. pandas)")
    args = parser.parse_args()
    client = docker.from_env()
    base = ensure_lambda_base(client)
    base_size = client.images.get(base).attrs["Size"]
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        new_repo = bake(Path(tmp, "new"))
        outputs = new_repo / "scenarios" / "base" / "outputs"
        outputs.mkdir(parents=True)
        (outputs / "local_run.bin").write_bytes(os.urandom(args.outputs_mb * 2**20))
        with (new_repo / "requirements.txt").open("a") as requirements:
            requirements.writelines(f"{package}\n" for package in args.extra_requirements)
        old_repo = Path(shutil.copytree(new_repo, Path(tmp, "old", new_repo.name), symlinks=True))
        (old_repo / ".dockerignore").unlink()
        (old_repo / "Dockerfile").write_text(OLD_DOCKERFILE)
        tags = {"new": "quetzal-bench/new:latest", "old": "quetzal-bench/old:latest"}
        try:
            results = {name: measure(client, repo, tags[name], base, args.repeats)
                       for name, repo in (("new", new_repo), ("old", old_repo))}
        finally:
            for tag in tags.values():
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.ImageNotFound:
                    pass
    mb = 1e6
    print(f"Base image {base}: {base_size / mb:.0f} MB; rebuild = median of {args.repeats} "
          f"after a one-line notebook change; {args.outputs_mb} MB of local outputs in the repo; "
          f"requirements: boto3, nbconvert{''.join(', ' + p for p in args.extra_requirements)}; "
          f"legacy builder; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'':5} {'cold build':>11} {'rebuild':>9} {'rebuild/cold':>13} {'image':>9} {'above base':>11}")
    for name, r in results.items():
        print(f"{name:5} {r['cold']:10.1f}s {r['rebuild']:8.2f}s {r['rebuild'] / r['cold']:12.1%} "
              f"{r['size'] / mb:8.0f}M {(r['size'] - base_size) / mb:10.1f}M")
    new, old = results["new"], results["old"]
    print(f"new rebuild vs new cold build: {new['rebuild'] / new['cold']:.1%} (target <= 10%)")
    print(f"new rebuild vs old rebuild: {new['rebuild'] / old['rebuild']:.1%} "
          f"({old['rebuild'] / new['rebuild']:.0f}x faster)")
    print(f"image above the base, new vs old: {(new['size'] - base_size) / (old['size'] - base_size):.1%}")


if __name__ == "__main__":
    main()
