"""Warm steps: the model's imports paid once per container, each step still a fresh process.

A *zygote* (``python -m quetzal_deploy.runtime.warm``, a small process of its own, so it holds no
boto3 client, thread or socket of the handler) runs the top-level imports of the model's notebooks
once, then forks one child per step. The child becomes what a fresh ``python script.py`` would be:
its own session (``setsid``), stdin ``/dev/null``, stdout and stderr on the handler's pipe, the
step's cwd, environment, ``sys.argv`` and ``sys.path``; the zygote reports its exit status and
peak memory (``wait4``) back, and nothing a step does reaches the zygote or the next step.

What to preload: ``QUETZAL_PRELOAD`` (module names, comma-separated), else ``quetzal-warm.json``
in the task root (written at image build time from ``.env``: ``WARM_STEPS``, ``WARM_PRELOAD``),
else the top-level ``import`` lines of the notebooks under ``notebooks/`` (the model's own modules
left out). An import that fails is skipped with a warning. ``QUETZAL_WARM=0`` (or
``WARM_STEPS=false`` in ``.env``) runs every step in a fresh process, as does any platform without
``fork`` and ``pidfd_open`` (Linux only).

Fork safety: the zygote has one thread when it forks. BLAS/OpenMP/numexpr pools are kept from
starting at import (``OPENBLAS_NUM_THREADS=1`` and friends in the zygote) and given back their size
in each child; jemalloc's background threads (pyarrow, polars) are turned off. A package that
starts a thread when imported anyway (polars) is found and refused by the next zygote, and what
the imports that need it need besides is preloaded (``runtime/preload.py``): each step imports
only that package and the modules using it at import time; a warning names it.
numba starts no thread at import (its pool starts at a step's first parallel call) and reads its
settings again from each step's environment. ``numpy.random``'s global state is reseeded in each
child.

Its folder (caches, ``HOME``, ``TMPDIR`` of the preload) is removed by the zygote itself when it
ends, whatever ends it: the handler's ``stop``, the handler gone (its control socket closed: a
process killed, or one that exits without ``shutdown``), SIGTERM or SIGHUP.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.abc
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from quetzal_deploy.runtime.convert import script_source
from quetzal_deploy.runtime.errors import NotebookError
from quetzal_deploy.runtime.preload import THREADED, Ended, import_lines, preload, thread_count
from quetzal_deploy.runtime.strays import resident_mb

SWITCH = "QUETZAL_WARM"
PRELOAD_VARIABLE = "QUETZAL_PRELOAD"
CONFIG_FILE = "quetzal-warm.json"
OFF = {"0", "false", "no", "off"}
# Thread pools libraries size at load time: one thread in the zygote, the real size in each step.
POOL_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                  "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
# (part of a loaded library's file name, variables giving the size, setters to try) for the pools
# that can grow again after load.
# (OpenBLAS, as when it loads, starts no more threads than there are cores.)
POOL_SETTERS = (
    ("openblas", ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"),
     ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
      "scipy_openblas_set_num_threads64_")),
    ("libgomp", ("OMP_NUM_THREADS",), ("omp_set_num_threads",)),
    ("libiomp", ("OMP_NUM_THREADS",), ("omp_set_num_threads",)),
    ("mkl_rt", ("MKL_NUM_THREADS", "OMP_NUM_THREADS"), ("MKL_Set_Num_Threads",)),
)
# Allocators that start a background thread when they start: told not to in the zygote.
ALLOCATOR_VARIABLES = {"JE_ARROW_MALLOC_CONF": "background_thread:false",  # pyarrow's jemalloc
                       "_RJEM_MALLOC_CONF": "background_thread:false"}  # polars' jemalloc
HEADER = struct.Struct("!I")
# Signals that end the zygote (its folder removed first); each step gets the dispositions back.
ENDING = (signal.SIGTERM, signal.SIGHUP)
INHERITED: dict[int, object] = {}


def enabled_here() -> bool:
    """Fork servers need ``fork`` and ``pidfd_open``: Linux."""
    return sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(os, "fork")


# --- what to preload -----------------------------------------------------------------------------

def local_names(folders: set[Path]) -> set[str]:
    """The modules and packages the model itself has (importable from its folders)."""
    names = set()
    for folder in folders:
        for path in folder.iterdir():
            if path.suffix == ".py" or (path.is_dir() and not path.name.startswith(".")):
                names.add(path.stem if path.suffix == ".py" else path.name)
    return names


def discover(task_root: Path) -> list[str]:
    """The top-level imports of the notebooks (and scripts) under ``notebooks/``, in first-seen order."""
    notebooks = Path(task_root) / "notebooks"
    if not notebooks.is_dir():
        return []
    files = sorted(path for path in notebooks.rglob("*") if path.suffix in (".ipynb", ".py")
                   and ".ipynb_checkpoints" not in path.parts and path.is_file())
    local = local_names({Path(task_root), notebooks} | {path.parent for path in files})
    found: dict[str, None] = {}
    for path in files:
        if path.suffix == ".py" and path.with_suffix(".ipynb").is_file():
            continue  # the notebook's converted script: read from the notebook
        try:
            source = script_source(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
        except (NotebookError, OSError, UnicodeDecodeError):
            continue
        found.update(dict.fromkeys(import_lines(source, local)))
    return list(found)


@dataclass(frozen=True)
class Config:
    enabled: bool
    preload: tuple[str, ...]


def as_imports(modules) -> tuple[str, ...]:
    return tuple(f"import {name.strip()}" for name in modules if name.strip())


def saved_config(task_root: Path) -> dict:
    """``quetzal-warm.json`` of the task root (an image's), or nothing."""
    try:
        saved = json.loads((Path(task_root) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def settings_config(enabled: bool, modules: tuple[str, ...] | None) -> dict:
    """``.env``'s ``WARM_STEPS`` and ``WARM_PRELOAD``, shaped as ``quetzal-warm.json``."""
    return {"enabled": enabled, "preload": None if modules is None else list(as_imports(modules))}


def config(task_root: Path, environ=os.environ, saved: dict | None = None) -> Config:
    """Whether steps start warm and what they preload (see the module docstring for the order)."""
    saved = saved_config(task_root) if saved is None else saved
    enabled = environ.get(SWITCH, "").strip().lower() not in OFF and saved.get("enabled", True) is not False
    if environ.get(PRELOAD_VARIABLE) is not None:
        preload = as_imports(environ[PRELOAD_VARIABLE].split(","))
    elif isinstance(saved.get("preload"), list):
        preload = tuple(str(line) for line in saved["preload"])
    else:
        preload = tuple(discover(task_root))
    return Config(enabled and enabled_here(), preload)


def config_file(enabled: bool, modules: tuple[str, ...] | None, task_root: Path) -> str:
    """``quetzal-warm.json`` for an image: ``.env``'s choice, the imports found at build time."""
    saved = settings_config(enabled, modules)
    if saved["preload"] is None:
        saved["preload"] = discover(task_root)
    return json.dumps(saved, indent=1) + "\n"


# --- the zygote (this module run as a program) ---------------------------------------------------

def send_message(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    body = json.dumps(message).encode()
    socket.send_fds(sock, [HEADER.pack(len(body))], list(fds))
    sock.sendall(body)


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict, list[int]]:
    """One message and the descriptors sent with it; ``EOFError`` at the end."""
    head, fds, _, _ = socket.recv_fds(sock, HEADER.size, max_fds)
    if not head:
        raise EOFError
    head += receive_exactly(sock, HEADER.size - len(head))
    return json.loads(receive_exactly(sock, HEADER.unpack(head)[0])), fds


def pool_size(variables: tuple[str, ...], capped: bool, default_max: int | None = None) -> int:
    """The size the step's environment asks for, else the cores (at most ``default_max``)."""
    cores = min(len(os.sched_getaffinity(0)), default_max or os.cpu_count() or 1)
    for name in variables:
        try:
            wanted = max(1, int(os.environ[name]))
        except (KeyError, ValueError):
            continue
        return min(wanted, cores) if capped else wanted
    return cores


def loaded_libraries() -> list[str]:
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        paths = {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}
    return sorted(path for path in paths if ".so" in path)


def pool_setters() -> list[tuple]:
    """The setters of the thread pools loaded in the zygote, found once (not in every step):
    ``(function, variables giving the size, capped at the cores)``."""
    found = []
    for library in loaded_libraries():
        name = os.path.basename(library)
        for part, variables, setters in POOL_SETTERS:
            if part not in name:
                continue
            try:
                handle = ctypes.CDLL(library)
            except OSError:
                continue
            function = next((getattr(handle, setter) for setter in setters if hasattr(handle, setter)), None)
            if function is not None:
                found.append((function, variables, part == "openblas"))
    return found


def restore_pools(setters: list[tuple]) -> None:
    """Give the thread pools loaded in the zygote their normal size (the step's environment's)."""
    for function, variables, capped in setters:
        function(ctypes.c_int(pool_size(variables, capped)))


def renew_numba() -> None:
    """numba read its settings (``NUMBA_NUM_THREADS``, ``NUMBA_CACHE_DIR``...) when the zygote
    imported it: read again from the step's environment, as a fresh process would. Its thread
    pool starts at a step's first parallel call, never in the zygote, so its size can change."""
    config = sys.modules.get("numba.core.config")
    if config is None:
        return
    try:
        config.reload_config()
        parallel = sys.modules.get("numba.np.ufunc.parallel")
        if parallel is not None and not parallel._is_initialized:
            parallel.NUM_THREADS = parallel.get_thread_count()
    except Exception as ex:  # noqa: BLE001 - as importing numba would in a fresh process, but later
        print(f"[quetzal] WARNING: numba's settings: {type(ex).__name__}: {ex}", file=sys.stderr)


def step_path(script: str, environ: dict, base: list[str]) -> list[str]:
    """``sys.path`` of ``python script``: its folder, ``PYTHONPATH``, then the site's folders."""
    extra = [os.path.abspath(p) for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [os.path.dirname(os.path.abspath(script)), *extra, *base]


def exit_code(ex: SystemExit) -> int:
    if ex.code is None:
        return 0
    if isinstance(ex.code, int):
        return ex.code & 0xFF
    print(ex.code, file=sys.stderr)
    return 1


def print_error(ex: BaseException, script: str) -> None:
    """The traceback ``python script`` prints: from the script's first frame, not this module's."""
    tb = ex.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    traceback.print_exception(type(ex), ex, tb or ex.__traceback__)


def run_child(request: dict, output: int, reply: socket.socket, base_path: list[str], pools: list) -> None:
    """In the forked child: become ``python script argument`` and exit with its status."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for number, disposition in INHERITED.items():
            signal.signal(number, disposition)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        reply.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        reply.detach()
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)
        sys.stdout.reconfigure(line_buffering=True, write_through=True)
        sys.stderr.reconfigure(line_buffering=True, write_through=True)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        restore_pools(pools)
        if "numexpr" in sys.modules and hasattr(sys.modules["numexpr"], "set_num_threads"):
            sys.modules["numexpr"].set_num_threads(
                pool_size(("NUMEXPR_NUM_THREADS", "OMP_NUM_THREADS"), capped=False, default_max=16))
        renew_numba()
        if "numpy.random" in sys.modules:
            sys.modules["numpy.random"].seed()  # else every step draws the zygote's numbers
        tempfile.tempdir = None
        script = request["script"]
        sys.argv = [script, request["argument"]]
        sys.path[:] = step_path(script, request["env"], base_path)
        import runpy
        importlib.invalidate_caches()
        gc.enable()
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as ex:
            code = exit_code(ex)
        except BaseException as ex:  # noqa: BLE001 - what python prints for an uncaught exception
            print_error(ex, script)
        threading._shutdown()  # wait for the script's non-daemon threads, as python does at exit
        import atexit
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - never return into the zygote's loop
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001, S110 - the pipe may be gone; exiting anyway
                pass
        os._exit(code)


def serve(control: socket.socket, base_path: list[str], pools: list) -> None:
    """Fork one child per request; report each one's ``wait4`` status on its reply socket."""
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is control:
                try:
                    request, fds = receive_message(control, max_fds=2)
                except EOFError:
                    return
                output, reply_fd = fds
                reply = socket.socket(fileno=reply_fd)
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    run_child(request, output, reply, base_path, pools)
                os.close(output)
                selector.register(os.pidfd_open(pid), selectors.EVENT_READ, (pid, reply))
            else:
                pid, reply = key.data
                selector.unregister(key.fileobj)
                os.close(key.fd)
                _, status, usage = os.wait4(pid, 0)
                try:
                    reply.sendall(json.dumps({"status": status, "maxrss": usage.ru_maxrss}).encode() + b"\n")
                except OSError:
                    pass  # the handler stopped waiting
                reply.close()


def end(signum, frame):
    raise Ended(signum)


def preload_and_serve(control: socket.socket) -> None:
    added = {os.path.abspath(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry}
    base_path = [entry for entry in sys.path[1:] if entry not in added]
    request, _ = receive_message(control)
    report = preload(request["preload"], set(request["blocked"]), set(request["avoided"]))
    report["threads_now"] = thread_count()
    send_message(control, report)
    if "threads" not in report:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the steps; the handler stops this
        serve(control, base_path, pool_setters())


def zygote_main(fd: int, folder: str) -> int:
    """The zygote's life; ``folder`` removed at its end, whatever ends it."""
    for number in ENDING:
        INHERITED[number] = signal.signal(number, end)
    try:
        preload_and_serve(socket.socket(fileno=fd))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the handler is gone
    except Ended as ex:
        return 128 + ex.args[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


# --- the handler's side --------------------------------------------------------------------------

class WarmChild:
    """A step forked by the zygote: what ``run_script`` uses of a ``Popen``."""

    def __init__(self, pid: int, stdout, reply):
        self.pid = pid
        self.stdout = stdout
        self.reply = reply
        self.returncode: int | None = None

    def wait4(self):
        """``os.wait4(pid, 0)``'s answer, from the zygote; a lost zygote reads as SIGKILL."""
        line = self.reply.readline()
        self.reply.close()
        if not line:
            return self.pid, signal.SIGKILL, types.SimpleNamespace(ru_maxrss=0)
        status = json.loads(line)
        return self.pid, status["status"], types.SimpleNamespace(ru_maxrss=status["maxrss"])


@dataclass
class Zygote:
    """A running fork server and what its preload did."""

    process: subprocess.Popen
    control: socket.socket
    folder: Path
    preloaded: list[str] = field(default_factory=list)
    skipped: list[list[str]] = field(default_factory=list)
    around: list[str] = field(default_factory=list)  # what the skipped ones needed, but a refused package
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    warnings_shown: bool = False

    def spawn(self, command: list[str], **options):
        """``python script argument`` (``command``) forked from the warm process; in a fresh
        process (``Popen``) when the warm process is gone."""
        child = self.fork(command, cwd=options["cwd"], env=options["env"])
        if child is None:
            print("[quetzal] WARNING: the warm process is gone: this step runs in a fresh process.",
                  file=sys.stderr, flush=True)
            return subprocess.Popen(command, start_new_session=True, **options)
        return child

    def fork(self, command: list[str], cwd, env: dict) -> WarmChild | None:
        _, script, argument = command
        read_end, write_end = os.pipe()
        mine, theirs = socket.socketpair()
        try:
            with self.lock:
                send_message(self.control, {"script": os.path.abspath(script), "argument": argument,
                                            "cwd": str(cwd), "env": dict(env)},
                             [write_end, theirs.fileno()])
        except OSError:
            os.close(read_end)
            mine.close()
            return None
        finally:
            os.close(write_end)
            theirs.close()
        reply = mine.makefile("rb")
        mine.close()
        started = reply.readline()
        message = json.loads(started) if started else {}
        if "pid" not in message:  # the zygote died before the child ran anything
            reply.close()
            os.close(read_end)
            return None
        return WarmChild(message["pid"], open(read_end, "rb"), reply)

    def warnings(self) -> list[str]:
        """The preload's warnings, the first time they are asked for."""
        if self.warnings_shown:
            return []
        self.warnings_shown = True
        return [f"[quetzal] WARNING: warm start: `{line}` was not preloaded ({reason}); the step "
                "imports it itself." for line, reason in self.skipped]

    def stop(self, kill: bool = False) -> None:
        """End the zygote (``kill``: at once, even while it preloads) and remove its folder."""
        self.control.close()
        if kill:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def zygote_environment(folder: Path) -> dict[str, str]:
    """The handler's environment with one-thread pools, caches in ``folder`` and this package importable."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    for name in ("HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR", "TMPDIR"):
        (folder / name).mkdir(exist_ok=True)
        env[name] = str(folder / name)
    env.update(dict.fromkeys(POOL_VARIABLES, "1"), PYTHONUNBUFFERED="1", TQDM_DISABLE="1", MPLBACKEND="Agg")
    for name, value in ALLOCATOR_VARIABLES.items():
        env.setdefault(name, value)
    return env


def launch() -> Zygote:
    """A new zygote process in a folder of its own, waiting for what to preload."""
    folder = Path(tempfile.mkdtemp(prefix="quetzal-warm-"))
    mine, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "quetzal_deploy.runtime.warm", str(theirs.fileno()), str(folder)],
            pass_fds=[theirs.fileno()], env=zygote_environment(folder), cwd=folder, stdin=subprocess.DEVNULL)
    except BaseException:
        mine.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        theirs.close()
    return Zygote(process, mine, folder)


def start(lines: tuple[str, ...], out=print) -> Zygote:
    """Start a zygote that preloaded ``lines``. When one starts a thread, the zygote starts again
    refusing the package that did (or, not known, without that line)."""
    blocked, avoided = list(THREADED), []
    while True:
        zygote = launch()
        try:
            send_message(zygote.control, {"preload": list(lines), "blocked": blocked, "avoided": avoided})
            report, _ = receive_message(zygote.control)
        except (OSError, EOFError, ValueError) as ex:
            zygote.stop()
            raise NotebookError(f"The warm process did not start ({type(ex).__name__}).") from ex
        except BaseException:  # Ctrl-C, SIGTERM made an exception: not after the preload
            zygote.stop(kill=True)
            raise
        if "threads" not in report:
            zygote.preloaded, zygote.seconds = report["preloaded"], report["seconds"]
            zygote.skipped, zygote.around = report["skipped"], report["around"]
            return zygote
        zygote.stop()
        culprit = report.get("culprit")
        if culprit and culprit not in blocked:
            blocked.append(culprit)
            out(f"[quetzal] WARNING: warm start: `{culprit}` starts threads when imported (a process "
                "with threads cannot fork safely): it is not preloaded, each step imports it and "
                "what needs it.")
        else:
            avoided.append(report["threads"])
            out(f"[quetzal] WARNING: warm start: `{report['threads']}` starts threads at import; "
                "it is not preloaded (a process with threads cannot fork safely).")


ZYGOTES: dict[Path, Zygote | None] = {}
ZYGOTES_LOCK = threading.Lock()


def prepare(task_root: Path, out=print, saved: dict | None = None) -> Zygote | None:
    """The task root's zygote, started the first time (``None``: steps run in fresh processes);
    ``saved`` stands for ``quetzal-warm.json`` (a local run's ``.env``)."""
    key = Path(task_root).resolve()
    with ZYGOTES_LOCK:
        if key in ZYGOTES:
            if ZYGOTES[key] is None or ZYGOTES[key].process.poll() is None:
                return ZYGOTES[key]
            ZYGOTES.pop(key).stop()  # it died: its folder goes with it
        chosen = config(key, saved=saved)
        zygote = None
        if chosen.enabled:
            try:
                zygote = start(chosen.preload, out)
            except Exception as ex:  # noqa: BLE001 - a warm start saves time, it never fails a step
                out(f"[quetzal] WARNING: {ex} Steps run in fresh processes.")
        ZYGOTES[key] = zygote
        if zygote is not None:
            around = f" (and {len(zygote.around)} the others need)" if zygote.around else ""
            out(f"[quetzal] warm start: {len(zygote.preloaded)} imports preloaded{around} in "
                f"{zygote.seconds:.2f} s, {resident_mb([zygote.process.pid]):.0f} MB")
        return zygote


def shutdown() -> None:
    """Stop every zygote (the end of a local run)."""
    with ZYGOTES_LOCK:
        for zygote in ZYGOTES.values():
            if zygote is not None:
                zygote.stop()
        ZYGOTES.clear()


if __name__ == "__main__":
    sys.exit(zygote_main(int(sys.argv[1]), sys.argv[2]))
