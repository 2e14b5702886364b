"""A small Lambda emulator: the stand-in for aws-lambda-rie in the test base image.

``python emulator.py <module.function>`` serves ``POST /2015-03-31/functions/function/invocations``
on port 8080 and runs the handler with ``awslambdaric`` behind a Runtime API on 127.0.0.1,
as the AWS base image does. Like Lambda: one invocation at a time; a handler error comes back
as ``{"errorType", "errorMessage", "stackTrace"}`` with the ``X-Amz-Function-Error`` header;
``AWS_LAMBDA_FUNCTION_TIMEOUT`` (seconds) is enforced by killing the runtime, which starts
again on the next invocation; the deadline reaches the handler's context, so
``context.get_remaining_time_in_millis()`` works. Standard library only.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
RUNTIME_PATH = "/2018-06-01/runtime"
INVOKE_PORT = 8080
ACCOUNT = "012345678912"


def lambda_environment() -> dict:
    """The variables Lambda sets for a function, where the container does not set them."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    region = os.environ.get("AWS_REGION", "us-east-1")
    defaults = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    return {**defaults, **os.environ}


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message, "stackTrace": []}).encode()


class Invocation:
    """One event on its way to the handler, and the handler's answer."""

    def __init__(self, event: bytes, timeout_s: float):
        self.request_id = str(uuid.uuid4())
        self.event = event
        self.deadline_ms = int((time.time() + timeout_s) * 1000)
        self.delivered = False
        self.answered = threading.Event()
        self.body = b""
        self.failed = False

    def answer(self, body: bytes, failed: bool) -> None:
        if not self.answered.is_set():
            self.body, self.failed = body, failed
            self.answered.set()


class Runtime:
    """The handler's process (awslambdaric) and the one invocation it may be working on."""

    def __init__(self, handler: str, environment: dict):
        self.handler = handler
        self.environment = environment
        self.timeout_s = float(environment.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "300"))
        self.function_arn = (
            f"arn:aws:lambda:{environment['AWS_REGION']}:{ACCOUNT}:function:"
            f"{environment['AWS_LAMBDA_FUNCTION_NAME']}"
        )
        self.api_address = ""
        self.process = None
        self.generation = 0
        self.current = None
        self.init_error = None
        self.changed = threading.Condition()
        self.one_at_a_time = threading.Lock()

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        with self.changed:
            self.generation += 1
            self.init_error = None
        env = dict(self.environment, AWS_LAMBDA_RUNTIME_API=self.api_address)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", self.handler],
            cwd=env.get("LAMBDA_TASK_ROOT", "/var/task"),
            env=env,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def invoke(self, event: bytes) -> Invocation:
        """Hand ``event`` to the handler and wait for its answer, the timeout or its death."""
        with self.one_at_a_time:
            self.start()
            invocation = Invocation(event, self.timeout_s)
            log(f"START RequestId: {invocation.request_id} Version: $LATEST")
            started = time.monotonic()
            with self.changed:
                self.current = invocation
                self.changed.notify_all()
            while not invocation.answered.wait(0.05):
                status = self.process.poll()
                if status is not None:
                    invocation.answer(self.init_error or error_body(
                        "Runtime.ExitError",
                        f"RequestId: {invocation.request_id} Error: Runtime exited with error: "
                        f"exit status {status}",
                    ), failed=True)
                elif time.monotonic() - started > self.timeout_s:
                    self.kill()
                    invocation.answer(error_body(
                        "Sandbox.Timedout",
                        f"RequestId: {invocation.request_id} Error: Task timed out after "
                        f"{self.timeout_s:.2f} seconds",
                    ), failed=True)
            with self.changed:
                self.current = None
            elapsed_ms = (time.monotonic() - started) * 1000
            log(f"END RequestId: {invocation.request_id}")
            log(f"REPORT RequestId: {invocation.request_id}\tDuration: {elapsed_ms:.2f} ms")
            return invocation

    def next_invocation(self):
        """Block until there is an event for the runtime that asks; None if that runtime died."""
        with self.changed:
            generation = self.generation
            while True:
                if generation != self.generation:
                    return None
                if self.current is not None and not self.current.delivered:
                    self.current.delivered = True
                    return self.current
                self.changed.wait(1)


def log(line: str) -> None:
    print(line, flush=True)


def read_body(request: BaseHTTPRequestHandler) -> bytes:
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(request.rfile.readline().split(b";")[0], 16)
            chunk = request.rfile.read(size)
            request.rfile.readline()
            if size == 0:
                return b"".join(chunks)
            chunks.append(chunk)
    return request.rfile.read(int(request.headers.get("Content-Length") or 0))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    runtime: Runtime

    def reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - keep the handler's log readable
        pass


class InvokeHandler(Handler):
    """The public side: what ``curl localhost:9000/2015-03-31/...`` talks to."""

    def do_POST(self):
        if self.path.split("?")[0] != INVOKE_PATH:
            self.reply(404, error_body("ResourceNotFound", f"no route {self.path}"))
            return
        invocation = self.runtime.invoke(read_body(self) or b"{}")
        headers = {"X-Amz-Function-Error": "Unhandled"} if invocation.failed else {}
        self.reply(200, invocation.body, headers)


class RuntimeApiHandler(Handler):
    """The private side: the Runtime API that awslambdaric polls."""

    def do_GET(self):
        if self.path != f"{RUNTIME_PATH}/invocation/next":
            self.reply(404)
            return
        invocation = self.runtime.next_invocation()
        if invocation is None:
            self.close_connection = True
            return
        self.reply(200, invocation.event, {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.runtime.function_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{invocation.request_id[:8]}",
        })

    def do_POST(self):
        body = read_body(self)
        parts = self.path[len(RUNTIME_PATH):].strip("/").split("/")
        current = self.runtime.current
        if parts == ["init", "error"]:
            self.runtime.init_error = body
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in {"response", "error"}:
            if current is not None and current.request_id == parts[1]:
                current.answer(body, failed=parts[2] == "error")
        else:
            self.reply(404)
            return
        self.reply(202, b'{"status":"OK"}')


def server(handler_class, address, runtime: Runtime) -> ThreadingHTTPServer:
    bound = type(handler_class.__name__, (handler_class,), {"runtime": runtime})
    http = ThreadingHTTPServer(address, bound)
    http.daemon_threads = True
    return http


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: emulator.py <module.function> (the image's CMD names the handler)")
    runtime = Runtime(argv[1], lambda_environment())
    api = server(RuntimeApiHandler, ("127.0.0.1", 0), runtime)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    runtime.api_address = f"127.0.0.1:{api.server_address[1]}"

    def stop(signum, frame):
        runtime.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    invoke = server(InvokeHandler, ("0.0.0.0", INVOKE_PORT), runtime)
    log(f"emulator: handler {argv[1]}, invocations on port {INVOKE_PORT}, timeout {runtime.timeout_s:g} s")
    invoke.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
