"""``invoke test-lambda`` and ``LocalLambda``: the real image behind the stand-in Lambda emulator.

The container reaches moto on 127.0.0.1, so it runs on the host network (test-lambda switches
to it by itself when AWS_ENDPOINT_URL is on this machine); S3 state is read back with boto3.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.aws import free_port
from fixtures.parts import require_executable
from fixtures.tasks import run_task

pytestmark = pytest.mark.xdist_group("docker")
BUCKET = "quetzal-test"  # the default bake's bucket


def upload_scenario(s3, repo, name="base"):
    """The baked scenario in moto S3, as `invoke upload-scenarios` would leave it."""
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    folder = repo / "scenarios" / name
    for path in folder.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"{name}/{path.relative_to(folder).as_posix()}")


def keys(s3, prefix):
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {item["Key"][len(prefix):] for item in listed}


@pytest.mark.docker
def test_test_lambda_runs_first_notebook_against_s3(baked_repo, boto, docker_engine, lambda_base_image):
    s3 = boto.client("s3")
    upload_scenario(s3, baked_repo)
    done = run_task(baked_repo, "test-lambda", env={"QUETZAL_BASE_IMAGE": lambda_base_image})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running on the host network" in done.stdout
    log, response = done.stdout.split("--- container log ---", 1)[1].split("--- response ---")
    assert "START RequestId" in log and "preparation: wrote 3 layer(s)" in log
    assert json.loads(response)["scenario_path_S3"] == "base/"

    outputs = keys(s3, "base/outputs/")
    assert {"preparation_summary.csv", "report.md"} <= outputs
    assert "assignment_summary.csv" not in outputs  # only the first step ran
    notebook_log = s3.get_object(Bucket=BUCKET, Key="base/logs/preparation.txt")["Body"].read().decode()
    assert "preparation: wrote 3 layer(s) to /tmp/outputs" in notebook_log
    info = json.loads(s3.get_object(Bucket=BUCKET, Key="base/info.json")["Body"].read())
    assert info["model_tag"] == "local"
    assert not docker_engine.containers.list(filters={"ancestor": "quetzal-test:local"})


@pytest.mark.docker
def test_notebook_crash_in_the_container(baked_repo, boto, docker_engine, lambda_base_image):
    """The handler's error reaches the caller as Lambda reports it; the log still lands in S3."""
    s3 = boto.client("s3")
    upload_scenario(s3, baked_repo)
    notebook_path = baked_repo / "notebooks" / "preparation.ipynb"
    notebook = json.loads(notebook_path.read_text())
    notebook["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                              "source": ["raise ValueError('negative speed on link 7')\n"]})
    notebook_path.write_text(json.dumps(notebook))
    done = run_task(baked_repo, "test-lambda", env={"QUETZAL_BASE_IMAGE": lambda_base_image})
    assert done.returncode == 1
    assert "the function failed (Unhandled)" in done.stderr
    response = json.loads(done.stdout.split("--- response ---", 1)[1])
    assert response["errorType"] and "negative speed on link 7" in response["errorMessage"]
    notebook_log = s3.get_object(Bucket=BUCKET, Key="base/logs/preparation.txt")["Body"].read().decode()
    assert "ValueError: negative speed on link 7" in notebook_log


@pytest.mark.docker
def test_event_file_and_keep(baked_repo, boto, docker_engine, lambda_base_image, tmp_path):
    """--event picks the step; --keep leaves the container serving for more invocations."""
    s3 = boto.client("s3")
    upload_scenario(s3, baked_repo)
    event = {"notebook_path": "notebooks/assignment.ipynb", "scenario_path_S3": "base/",
             "launcher_arg": {"training_folder": "/tmp", "params": {}}, "metadata": {"user_email": "a@b.c"}}
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    done = run_task(baked_repo, "test-lambda", "--event", str(event_file), "--keep",
                    env={"QUETZAL_BASE_IMAGE": lambda_base_image})
    running = docker_engine.containers.list(filters={"ancestor": "quetzal-test:local"})
    for container in running:
        container.remove(force=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(running) == 1 and "keeps running" in done.stdout
    assert {"assignment_summary.csv"} <= keys(s3, "base/outputs/")
    assert "preparation_summary.csv" not in keys(s3, "base/outputs/")


def test_missing_event_file(baked_repo):
    done = run_task(baked_repo, "test-lambda", "--event", "nope.json")
    assert done.returncode == 1 and "event file nope.json not found" in done.stderr


TOY_HANDLER = '''
import os
import time


def handler(event, context):
    if "exit" in event:
        os._exit(event["exit"])
    if "fail" in event:
        raise KeyError(event["fail"])
    time.sleep(event.get("sleep", 0))
    return {"echo": event, "remaining_ms": context.get_remaining_time_in_millis()}
'''


@pytest.fixture(scope="module")
def toy_image(docker_engine, lambda_base_image, tmp_path_factory):
    """A one-file handler on the stand-in base: checks the emulator behaves as Lambda does."""
    context = tmp_path_factory.mktemp("toy")
    (context / "toy.py").write_text(TOY_HANDLER)
    (context / "Dockerfile").write_text(f'FROM {lambda_base_image}\nCOPY toy.py ${{LAMBDA_TASK_ROOT}}/\n'
                                        'CMD ["toy.handler"]\n')
    image, _ = docker_engine.images.build(path=str(context), tag="quetzal-test/toy-handler:latest", rm=True)
    return image.tags[0]


@pytest.mark.docker
def test_local_lambda_reports_like_lambda(docker_engine, toy_image):
    """Port mapping (bridge), Lambda's error shape, timeout and deadline."""
    from quetzal_deploy.local.lambda_emulator import LocalLambda

    # The timeout counts each cold start (a runtime process per timeout or exit): 10 s holds on a
    # loaded 2-core machine, where 3 s did not.
    env = {"AWS_LAMBDA_FUNCTION_TIMEOUT": "10", "AWS_REGION": "ca-central-1"}
    with LocalLambda(docker_engine, toy_image, env) as function:
        ok = function.invoke({"x": 1})
        assert not ok.failed and ok.payload["echo"] == {"x": 1}
        assert 0 < ok.payload["remaining_ms"] <= 10_000

        failed = function.invoke({"fail": "missing-column"})
        assert failed.error == "Unhandled"
        assert failed.payload["errorType"] == "KeyError"
        assert "missing-column" in failed.payload["errorMessage"]
        assert any("toy.py" in frame for frame in failed.payload["stackTrace"])

        late = function.invoke({"sleep": 60})
        assert late.error == "Unhandled"
        assert "Task timed out after 10.00 seconds" in late.payload["errorMessage"]

        again = function.invoke({"y": 2})  # a fresh runtime after the timeout
        assert again.payload["echo"] == {"y": 2}

        died = function.invoke({"exit": 3})
        assert died.error == "Unhandled" and died.payload["errorType"] == "Runtime.ExitError"
        assert "exit status 3" in died.payload["errorMessage"]
        assert function.invoke({"z": 3}).payload["echo"] == {"z": 3}
        assert "START RequestId" in function.logs() and "KeyError" in function.logs()
    assert not docker_engine.containers.list(filters={"ancestor": toy_image})


@pytest.mark.docker
def test_two_local_lambdas_at_once_get_their_own_ports(docker_engine, toy_image):
    """With no port given, Docker picks a free one: a kept container never blocks the next."""
    from quetzal_deploy.local.lambda_emulator import LocalLambda

    with (LocalLambda(docker_engine, toy_image, {}) as first,
          LocalLambda(docker_engine, toy_image, {}) as second):
        assert first.port != second.port and 0 not in (first.port, second.port)
        assert first.invoke({"n": 1}).payload["echo"] == {"n": 1}
        assert second.invoke({"n": 2}).payload["echo"] == {"n": 2}


@pytest.mark.docker
def test_local_lambda_container_that_never_serves(docker_engine, lambda_base_image):
    """An image whose CMD is not a handler module: the emulator exits, the error shows its log."""
    from quetzal_deploy.images.build import DockerError
    from quetzal_deploy.local.lambda_emulator import LocalLambda

    function = LocalLambda(docker_engine, lambda_base_image, {}, port=free_port())  # a chosen port
    with pytest.raises(DockerError, match="did not start serving") as raised:
        function.start(ready_within_s=20)
    function.stop()
    assert "usage: emulator.py" in str(raised.value)


def test_needs_host_network_for_a_loopback_endpoint():
    from quetzal_deploy.local.lambda_emulator import needs_host_network

    assert needs_host_network({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert needs_host_network({"AWS_ENDPOINT_URL_S3": "http://localhost:4566"})
    assert not needs_host_network({"AWS_ENDPOINT_URL": "https://s3.example.com"})
    assert not needs_host_network({"BUCKET_NAME": "x"})


def test_default_event_is_the_first_step_on_base(baked_repo):
    from quetzal_deploy.local.lambda_emulator import default_event
    from quetzal_deploy.settings import load_settings

    event = default_event(load_settings(Path(baked_repo)))
    assert event["notebook_path"] == "notebooks/preparation.ipynb"
    assert event["scenario_path_S3"] == "base/"
    assert event["launcher_arg"]["params"]["general"]["pt_speed_kmh"] == 20


@pytest.mark.docker
def test_host_network_refuses_a_busy_port(docker_engine, toy_image):
    """On the host network the emulator needs port 8080: a busy port is a clear error, no container."""
    import socket

    from quetzal_deploy.images.build import DockerError
    from quetzal_deploy.local.lambda_emulator import EMULATOR_PORT, LocalLambda

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past earlier TIME_WAITs
        try:
            listener.bind(("127.0.0.1", EMULATOR_PORT))
            listener.listen()
        except OSError:
            pass  # already taken by something else: the check must see it all the same
        function = LocalLambda(docker_engine, toy_image, {}, host_network=True)
        try:
            with pytest.raises(DockerError, match=f"Port {EMULATOR_PORT} is in use"):
                function.start()
            assert not docker_engine.containers.list(all=True, filters={"name": function.name})
        finally:
            function.stop()  # has work only when the check let a container start


@pytest.mark.docker
def test_shell_opens_in_the_image(baked_repo, docker_engine, lambda_base_image):
    """`invoke shell` needs a terminal: util-linux `script` gives it one, as a user's terminal would."""
    script = require_executable("script")
    commands = "echo shell-$((6*7)) tag-$IMAGE_TAG; ls /var/task/notebooks; exit\n"
    done = subprocess.run([script, "-qec", f"{sys.executable} -m invoke shell", "/dev/null"],
                          cwd=baked_repo, input=commands, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "QUETZAL_BASE_IMAGE": lambda_base_image})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shell-42 tag-local" in done.stdout and "preparation.py" in done.stdout
