"""The template's Dockerfile fits the geospatial stack quetzal-transport pulls in (fiona, pyogrio).

The AWS Lambda Python 3.12/3.13 base images (Amazon Linux 2023, minimal) do not ship
``libexpat.so.1``, which fiona >= 1.10's wheels link. No AWS image can be pulled here: the
stand-in base (Debian) is derived into one without libexpat, the closest this machine can show.
Debian's own Python links libexpat, so on that base even pip stops working until the Dockerfile
has installed it (on AWS's base only the import of fiona fails): a stricter check of the same step.
"""

import io
import uuid

import pytest

from fixtures.tasks import run_task

NO_EXPAT = "quetzal-test/lambda-python-noexpat:3.13"
PURGE = """FROM {base}
RUN dpkg --force-depends --purge libexpat1 && ! /sbin/ldconfig -p | grep -q 'libexpat\\.so\\.1 '
"""
PROBE = ("import fiona, pyogrio; from pyogrio import list_drivers; "
         "print('fiona', fiona.__version__, 'gdal', pyogrio.__gdal_version_string__, "
         "'GeoJSON' in list_drivers())")


@pytest.fixture(scope="module")
def base_without_expat(docker_engine, lambda_base_image) -> str:
    """The stand-in base with libexpat removed, as the AWS base lacks it."""
    dockerfile = io.BytesIO(PURGE.format(base=lambda_base_image).encode())
    docker_engine.images.build(fileobj=dockerfile, tag=NO_EXPAT, rm=True)
    return NO_EXPAT


@pytest.mark.docker
def test_an_image_on_a_base_without_libexpat_imports_fiona_and_pyogrio(baked_repo, docker_engine,
                                                                       base_without_expat):
    with (baked_repo / "requirements.txt").open("a") as requirements:
        requirements.write("fiona\npyogrio\n")
    tag = f"geo-{uuid.uuid4().hex[:12]}"  # unique: other suites build on the same engine
    done = run_task(baked_repo, "build", "--tag", tag, env={"QUETZAL_BASE_IMAGE": base_without_expat},
                    timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    image = f"quetzal-test:{tag}"
    try:
        printed = docker_engine.containers.run(
            image, command=["-c", PROBE], entrypoint=["python"], remove=True, read_only=True,
            tmpfs={"/tmp": ""}, working_dir="/var/task").decode()
    finally:
        docker_engine.images.remove(image, force=True)
    assert printed.startswith("fiona ") and printed.strip().endswith("True"), printed

