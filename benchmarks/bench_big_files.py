"""Benchmark: the Lambda handler's peak memory with one large scenario file, 200 MB vs 2 GB.

Each size runs ``tests/support/big_step.py`` in a process of its own against moto server (a
process of its own, no added latency): the input is uploaded with the handler's storage, the
step downloads it, the notebook writes an output of the same size (sparse files: made instantly)
and the handler uploads it; all three go through the shared transfer stack in parts. The table
shows the step process's resident memory before and at its peak: it should not grow with the
file size.

    python benchmarks/bench_big_files.py [--sizes-mb 200 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
from emulated_aws import moto_server, use

ROOT = Path(__file__).resolve().parents[1]
STEP = ROOT / "tests" / "support" / "big_step.py"
SOURCE = ROOT / "src"
BUCKET = "bench-big-files"
REGION = "us-east-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[200, 2048])
    args = parser.parse_args()
    with moto_server(REGION) as direct:
        use(direct)
        env = {**os.environ, "PYTHONPATH": str(SOURCE)}
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        print(f"{'file size':>10} {'before MB':>10} {'peak MB':>10} {'growth MB':>10} {'seconds':>8}")
        for size_mb in args.sizes_mb:
            with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
                done = subprocess.run([sys.executable, str(STEP), BUCKET, str(size_mb), tmp],
                                      env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"the {size_mb} MB step failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.splitlines()[-1])
            growth = result["peak_mb"] - result["baseline_mb"]
            print(f"{size_mb:>7} MB {result['baseline_mb']:10.0f} {result['peak_mb']:10.0f} "
                  f"{growth:10.0f} {result['seconds']:8.1f}")
    print("one step: upload the input, download it, the notebook writes the output, upload it")


if __name__ == "__main__":
    main()
