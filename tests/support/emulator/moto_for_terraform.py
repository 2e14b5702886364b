"""moto server for real Terraform runs, with the three gaps a test harness papers over.

Never part of a baked repo. Run as ``python moto_for_terraform.py PORT``; it serves on
127.0.0.1:PORT until killed.

- ``ValidateStateMachineDefinition`` and ``ListStateMachineVersions`` are not implemented in
  moto: the AWS provider calls them for every state machine and would retry for 10 minutes.
  They answer here as AWS does for a valid definition with no published version.
- moto applies a bucket policy's ``aws:SecureTransport = false`` deny without its condition, so
  every object call over the emulator's plain HTTP is refused. Here such requests count as the
  HTTPS they stand for: statements conditioned on insecure transport never match.
"""

import json
import sys

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

STEP_FUNCTIONS = {
    "AWSStepFunctions.ValidateStateMachineDefinition": {"result": "OK", "diagnostics": [],
                                                        "truncated": False},
    "AWSStepFunctions.ListStateMachineVersions": {"stateMachineVersions": []},
}


def insecure_only(statement: dict) -> bool:
    """A statement that applies only to requests without TLS."""
    condition = statement.get("Condition", {}).get("Bool", {})
    return str(condition.get("aws:SecureTransport", "")).lower() == "false"


def get_permission(bucket, action: str, resource: str):
    if bucket.policy is None:
        return PermissionResult.NEUTRAL
    policy = json.loads(bucket.policy)
    statements = policy.get("Statement", [])
    statements = [s for s in (statements if isinstance(statements, list) else [statements])
                  if not insecure_only(s)]
    if not statements:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**policy, "Statement": statements})).is_action_permitted(action, resource)


def with_gaps_filled(app):
    """WSGI middleware: the two Step Functions calls moto lacks."""

    def middleware(environ, start_response):
        answer = STEP_FUNCTIONS.get(environ.get("HTTP_X_AMZ_TARGET", ""))
        if answer is None:
            return app(environ, start_response)
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return middleware


def main(port: int) -> None:
    FakeBucket.get_permission = get_permission
    app = with_gaps_filled(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True)
    print(f"ready on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
