"""Image flows: build, push, update, rollback, test-lambda, shell, requirements."""

import json
import subprocess
from pathlib import Path

from invoke import Exit

from quetzal_deploy.tasks.common import ask, quetzal_task

TAG_HELP = "image tag (default: the git commit, plus -dirty-<time> with uncommitted image changes)"
BASE_HELP = "base image (default: QUETZAL_BASE_IMAGE, else the AWS Lambda Python image)"
LOCAL_TAG_HELP = "image tag (default: local)"


def build_for(settings, tag, base_image, client=None) -> str:
    """Build with the task's options; returns the image's local name."""
    from quetzal_deploy.images.build import build_image, check_tag, docker_client, resolve_base_image

    check_tag(tag)
    return build_image(client or docker_client(), settings, tag, resolve_base_image(base_image))


@quetzal_task(help={"tag": TAG_HELP, "base_image": BASE_HELP})
def build(settings, tag=None, base_image=None):
    """Build the model's Lambda image (requirements, handler, notebooks as scripts)."""
    from quetzal_deploy.images.build import default_tag

    build_for(settings, tag or default_tag(settings.root), base_image)


@quetzal_task(aws=True, help={
    "tag": TAG_HELP,
    "initial": "first deployment: the Lambda may not exist yet (then push only)",
    "base_image": BASE_HELP,
})
def push(settings, aws, tag=None, initial=False, base_image=None):
    """Build the image, push it to ECR and point the Lambda at it (QUETZAL_REGISTRY: another registry)."""
    from quetzal_deploy.images import registry

    registry.push(settings, aws, tag=tag, initial=initial, base=base_image)


@quetzal_task(aws=True, help={
    "tag": "the new tag (default: asked, proposing the git commit)",
    "yes": "do not ask: use --tag or the proposed tag",
    "base_image": BASE_HELP,
})
def update(settings, aws, tag=None, yes=False, base_image=None):
    """Show the deployed tag and the last ones in ECR, then build and push a new tag."""
    from quetzal_deploy.images import registry
    from quetzal_deploy.images.build import check_tag, default_tag

    deployed = registry.tag_of(registry.lambda_for(settings, aws).image_uri())
    print(f"Deployed: {deployed or '(no Lambda function yet)'}")
    recent = registry.ecr_for(settings, aws).recent()
    print("Last tags in ECR:" if recent else "No image in ECR yet.")
    for image in recent:
        when = f"{image.pushed_at:%Y-%m-%d %H:%M}" if image.pushed_at else ""
        print(f"  {image.tag:40} {when}{'  <- deployed' if image.tag == deployed else ''}")
    if tag is None:
        proposed = default_tag(settings.root)
        if not yes:
            tag = ask(f"New tag [{proposed}]: ", "pass --tag T, or --yes for the proposed one.")
        tag = tag or proposed
    registry.push(settings, aws, tag=check_tag(tag), initial=deployed is None, base=base_image)


@quetzal_task(aws=True, help={"to": "tag to run (default: the tag pushed before the deployed one)"})
def rollback(settings, aws, to=None):
    """Point the Lambda at an earlier tag already in ECR, without rebuilding."""
    from quetzal_deploy.images import registry

    registry.rollback(settings, aws, to=to)


@quetzal_task(aws=True, help={
    "event": "JSON file with the event (default: the base scenario, first step)",
    "keep": "leave the container running after the invocation",
    "host_network": "run on the host network (automatic when AWS_ENDPOINT_URL is on this machine)",
    "port": "local port for the emulator (default: a free one; 8080 on the host network)",
    "tag": LOCAL_TAG_HELP,
    "base_image": BASE_HELP,
})
def test_lambda(settings, aws, event=None, keep=False, host_network=False, port=0, tag="local",
                base_image=None):
    """Build the image and run one event through it locally, behind the Lambda emulator."""
    from quetzal_deploy.images.build import docker_client
    from quetzal_deploy.local.lambda_emulator import (
        LocalLambda,
        default_event,
        lambda_environment,
        needs_host_network,
    )

    payload = read_event(Path(event)) if event else default_event(settings)
    env = lambda_environment(settings, aws)
    if needs_host_network(env) and not host_network:
        print("AWS_ENDPOINT_URL is on this machine: running on the host network to reach it.")
        host_network = True
    client = docker_client()
    image = build_for(settings, tag, base_image, client)
    function = LocalLambda(client, image, env, host_network=host_network, port=int(port)).start()
    try:
        print(f"Invoking {image} with:\n{json.dumps(payload, indent=2)}")
        answer = function.invoke(payload, timeout_s=settings.timeout_s + 60)
        print(f"--- container log ---\n{function.logs().rstrip()}")
        print(f"--- response ---\n{json.dumps(answer.payload, indent=2)}")
    finally:
        if keep:
            print(f"Container {function.name} keeps running on {function.url}; "
                  f"stop it with `docker rm -f {function.name}`.")
        else:
            function.stop()
    if answer.failed:
        raise Exit(f"ERROR: the function failed ({answer.error}): see the response above.", code=1)


def read_event(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Exit(f"ERROR: event file {path} not found.", code=1) from None
    except json.JSONDecodeError as ex:
        raise Exit(f"ERROR: {path} is not valid JSON (line {ex.lineno}: {ex.msg}).", code=1) from ex


@quetzal_task(help={"tag": LOCAL_TAG_HELP, "base_image": BASE_HELP})
def shell(settings, tag="local", base_image=None):
    """Open an interactive shell in the freshly built image."""
    image = build_for(settings, tag, base_image)
    subprocess.run(["docker", "run", "--rm", "-it", "--entrypoint", "/bin/sh", image], check=False)


@quetzal_task
def requirements(settings):
    """Regenerate requirements.txt from this environment with pip-chill (tooling left out)."""
    from quetzal_deploy.images.requirements import regenerate

    added, removed = regenerate(settings.root)
    print(f"Wrote {settings.root / 'requirements.txt'}: "
          f"added {', '.join(added) or 'nothing'}, removed {', '.join(removed) or 'nothing'}.")
