"""Large scenario files through the Lambda handler keep its memory bounded (moto server over HTTP).

The step runs in a process of its own (tests/support/big_step.py) so that its peak resident memory
is its own: a 300 MB input downloaded and a 300 MB output uploaded, both multipart, must raise it
by far less than the file's size. Nothing here is timed.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import quetzal_deploy
from fixtures.aws import REGION
from quetzal_deploy.runtime import transfer

STEP = Path(__file__).parent / "support" / "big_step.py"
BUCKET = "quetzal-big-files"
SIZE_MB = 300
# What the transfers may add, whatever the file size: the parts in flight, which vary with the
# machine's load (+55 to +156 MB measured with 200 MB to 2,000 MB files): well under the file.
GROWTH_MB = 200


def zeros_checksum(size: int) -> str:
    digest, block = hashlib.sha256(), bytes(1 << 20)
    for _ in range(size >> 20):
        digest.update(block)
    return digest.hexdigest()


@pytest.mark.slow
def test_a_large_file_through_the_handler_keeps_memory_bounded(boto, tmp_path):
    s3 = boto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(quetzal_deploy.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(STEP), BUCKET, str(SIZE_MB), str(tmp_path)], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    memory = json.loads(done.stdout.splitlines()[-1])

    assert memory["peak_mb"] - memory["baseline_mb"] < GROWTH_MB, memory
    size = SIZE_MB << 20
    head = s3.head_object(Bucket=BUCKET, Key="big/outputs/od.bin")
    assert head["ContentLength"] == size
    assert head["Metadata"]["checksum"] == zeros_checksum(size)
    assert head["ETag"].count("-") == 1, "sent in parts"
    assert size > transfer.MULTIPART_BYTES
    assert (tmp_path / "large" / "work" / "inputs" / "od.bin").stat().st_size == size
