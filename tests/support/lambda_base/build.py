"""Build the stand-in Lambda base image once and keep it (tag + content label) across runs.

No image can be pulled on our machines, so: ``mmdebstrap`` a minimal Debian rootfs with
Python, ``docker import`` it, and build ``Dockerfile`` (awslambdaric + ``emulator.py``) on it.
Run it directly to pre-build: ``python3 tests/support/lambda_base/build.py``.
"""

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
from docker.errors import ImageNotFound

HERE = Path(__file__).resolve().parent
SUITE = "trixie"  # Debian trixie ships Python 3.13
PYTHON_VERSION = "3.13"
ROOTFS_IMAGE = f"quetzal-test/debian-python:{SUITE}"
BASE_IMAGE = f"quetzal-test/lambda-python:{PYTHON_VERSION}"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOCK = Path(tempfile.gettempdir(), "quetzal-lambda-base.lock")
LABEL = "quetzal.support-digest"


def support_digest() -> str:
    """Digest of what the image is built from: a changed emulator means a rebuild."""
    digest = hashlib.sha256()
    for name in ("Dockerfile", "emulator.py"):
        digest.update((HERE / name).read_bytes())
    digest.update(SUITE.encode())
    return digest.hexdigest()[:16]


def debian_mirror() -> str:
    """The Debian mirror of this machine's apt sources (deb822 or one-line format)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if path.is_file():
            for line in path.read_text().splitlines():
                fields = line.split()
                if fields[:1] == ["deb"] and "security" not in line:
                    return next(f for f in fields[1:] if f.startswith(("http", "file")))
    return "http://deb.debian.org/debian"


def has_image(client, name: str, digest: str | None = None) -> bool:
    try:
        image = client.images.get(name)
    except ImageNotFound:
        return False
    return digest is None or (image.labels or {}).get(LABEL) == digest


def import_rootfs(client, workdir: Path) -> None:
    rootfs = workdir / "rootfs.tar"
    subprocess.run(
        ["mmdebstrap", "--quiet", "--variant=minbase", "--include=python3,python3-venv",
         "--format=tar", SUITE, str(rootfs), debian_mirror()],
        check=True,
    )
    client.api.import_image_from_file(str(rootfs), repository=ROOTFS_IMAGE.split(":")[0], tag=SUITE)


def build_base(client, workdir: Path, digest: str) -> None:
    for name in ("Dockerfile", "emulator.py"):
        shutil.copy(HERE / name, workdir / name)
    shutil.copy(CA_BUNDLE, workdir / CA_BUNDLE.name)
    for chunk in client.api.build(
        path=str(workdir), tag=BASE_IMAGE, buildargs={"ROOTFS_IMAGE": ROOTFS_IMAGE},
        labels={LABEL: digest}, rm=True, forcerm=True, decode=True,
    ):
        if "error" in chunk:
            raise RuntimeError(f"building {BASE_IMAGE} failed: {chunk['error']}")


def ensure_lambda_base(client) -> str:
    """The stand-in base image's tag; builds it (under a lock, for parallel tests) if missing."""
    digest = support_digest()
    if has_image(client, BASE_IMAGE, digest):
        return BASE_IMAGE
    LOCK.touch(exist_ok=True)
    with LOCK.open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not has_image(client, BASE_IMAGE, digest):
            with tempfile.TemporaryDirectory(prefix="quetzal-lambda-base-") as workdir:
                if not has_image(client, ROOTFS_IMAGE):
                    import_rootfs(client, Path(workdir))
                build_base(client, Path(workdir), digest)
    return BASE_IMAGE


if __name__ == "__main__":
    print(ensure_lambda_base(docker.from_env()), file=sys.stdout)
