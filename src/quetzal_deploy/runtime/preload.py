"""What the warm process (``runtime/warm.py``'s zygote) imports before it forks, and how.

The import lines run one by one under a ``Watcher``: a package that starts a thread when imported
(``THREADED``, or found as it comes) is refused, since a process with threads cannot fork safely.
An import that fails on a refused package (``from quetzal.model import stepmodel`` needs polars)
leaves most of what it needs unloaded; the module-level imports of the modules that failed (read
from their source, relative ones made absolute) are preloaded in their place, recursively, so a
step imports only the refused package and the modules that use it at import time. Their compiled
code is read once here (``CodeCache``): a step runs it without reading and unmarshalling the
``.pyc`` files again.
"""

from __future__ import annotations

import ast
import gc
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

# Packages known to start a thread when imported (polars' spill cleaner): refused from the start,
# others are found as they come (one more preload each).
THREADED = ("polars",)


class Ended(BaseException):
    """SIGTERM or SIGHUP reached the zygote (never taken for a failed import)."""


def import_lines(source: str, local: set[str], package: str | None = None, each: bool = False) -> list[str]:
    """The module-level imports of ``source`` (no ``as``), except of the names in ``local``;
    relative ones made absolute when ``package`` (the module's) is given, else left out; with
    ``each``, one line per name imported (one that fails leaves the others to run)."""
    try:
        body = ast.parse(source).body
    except (SyntaxError, ValueError):
        return []
    lines = []
    for node in body:
        if isinstance(node, ast.Import):
            lines += [f"import {alias.name}" for alias in node.names
                      if alias.name.split(".")[0] not in local]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            module = node.module
            if node.level:
                try:
                    module = package and importlib.util.resolve_name("." * node.level + (module or ""),
                                                                     package)
                except (ImportError, ValueError):
                    module = None
            if module and module.split(".")[0] not in local:
                names = [[alias.name] for alias in node.names] if each else [[a.name for a in node.names]]
                lines += [f"from {module} import {', '.join(group)}" for group in names]
    return lines


def source_imports(name: str, origin: str) -> list[str]:
    """The import lines of module ``name``, read from its source file ``origin``."""
    try:
        source = importlib.util.decode_source(Path(origin).read_bytes())
    except (OSError, UnicodeDecodeError, SyntaxError):
        return []
    package = name if Path(origin).stem == "__init__" else name.rpartition(".")[0]
    return import_lines(source, set(), package, each=True)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def settled_thread_count() -> int:
    """The threads that stay: Python threads that are ending are waited for (matplotlib's font
    cache starts a ``threading.Timer`` and cancels it), and then the system's."""
    if thread_count() == 1:
        return 1
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(timeout=1.0)
    deadline = time.monotonic() + 1.0
    while (count := thread_count()) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # a thread whose Python side has ended leaves the system's list just after
    return count


def others_spec(finder, name, path, target):
    """The spec the finders on ``sys.meta_path`` but ``finder`` give."""
    for other in sys.meta_path:
        find = getattr(other, "find_spec", None)
        if other is not finder and find is not None:
            spec = find(name, path, target)
            if spec is not None:
                return spec
    return None


class Watched(importlib.abc.Loader):
    """A module's loader that notes the first module after which the zygote has threads, and
    the modules whose import failed (with their source)."""

    def __init__(self, loader, watcher: Watcher):
        self.loader = loader
        self.watcher = watcher

    def __getattr__(self, name):  # resources, source, is_package...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        module = self.loader.create_module(spec)  # an extension module's init runs here
        self.watcher.check(spec.name)
        return module

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        except BaseException:
            origin = getattr(module.__spec__, "origin", None) or ""
            if origin.endswith(".py"):
                self.watcher.failed.setdefault(module.__name__, origin)
            raise
        finally:
            self.watcher.check(module.__name__)


class Watcher(importlib.abc.MetaPathFinder):
    """Refuses the ``blocked`` packages (they start threads when imported) and finds which one
    does: the first module after whose loading the process has a thread Python did not start."""

    def __init__(self, blocked: set[str]):
        self.blocked = blocked
        self.culprit: str | None = None
        self.failed: dict[str, str] = {}  # module -> its source, for the modules whose import raised

    def check(self, name: str) -> None:
        python_threads = len(threading.enumerate())  # a Timer started and cancelled within an import is fine
        if self.culprit is None and thread_count() - python_threads > 0:
            self.culprit = name.split(".")[0]

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"{name} is not preloaded: it starts threads when imported",
                                      name=name)
        spec = others_spec(self, name, path, target)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = Watched(spec.loader, self)
        return spec

    def remove(self) -> None:
        """Off ``sys.meta_path``, and the modules given their own loaders back."""
        sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]
        for module in list(sys.modules.values()):
            spec = getattr(module, "__spec__", None)
            if spec is not None and isinstance(spec.loader, Watched):
                spec.loader = spec.loader.loader
                if isinstance(getattr(module, "__loader__", None), Watched):
                    module.__loader__ = spec.loader


class CodeCache(importlib.abc.MetaPathFinder):
    """The compiled code of given source files, read once: a module found at one of them (by
    the other finders) is executed from it, unless its file changed since."""

    def __init__(self):
        self.codes: dict[str, tuple[tuple[int, int], object]] = {}
        self.packages: set[str] = set()
        self.modules: set[str] = set()

    def add(self, path: str) -> None:
        try:
            stat = os.stat(path)
            code = importlib.machinery.SourceFileLoader("cached", path).get_code("cached")
        except (OSError, ImportError, SyntaxError, ValueError):
            return
        self.codes[path] = ((stat.st_mtime_ns, stat.st_size), code)

    def add_package(self, package: str) -> None:
        """Every source file of ``package`` (found, not imported), or the module's."""
        spec = importlib.machinery.PathFinder.find_spec(package)
        if spec is None:
            return
        paths = {spec.origin} if spec.origin and spec.origin.endswith(".py") else set()
        for root in spec.submodule_search_locations or ():
            paths.update(str(path) for path in Path(root).rglob("*.py"))
        for path in sorted(paths):
            self.add(path)
        self.packages.add(package)

    @staticmethod
    def unchanged(path: str, key: tuple[int, int]) -> bool:
        try:
            stat = os.stat(path)
        except OSError:
            return False
        return (stat.st_mtime_ns, stat.st_size) == key

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in self.packages and name not in self.modules:
            return None
        spec = others_spec(self, name, path, target)
        cached = spec and self.codes.get(spec.origin)
        if cached and isinstance(spec.loader, importlib.machinery.SourceFileLoader) \
                and self.unchanged(spec.origin, cached[0]):
            spec.loader.get_code = lambda fullname, code=cached[1]: code
        return spec


def run_line(line: str) -> str | None:
    """Run one import line: ``None``, or why it failed."""
    try:
        exec(compile(line, "<preload>", "exec"), {})  # noqa: S102 - import lines only
    except Ended:
        raise
    except BaseException as ex:  # noqa: BLE001 - a failed import is skipped, whatever it raised
        return f"{type(ex).__name__}: {ex}"
    return None


def preload(lines: list[str], blocked: set[str], avoided: set[str] = frozenset()) -> dict:
    """Run each import (but the ``avoided`` ones), and in place of one that failed the imports of
    the modules that failed; stop at one that starts a thread (it cannot be undone), naming the
    package that did (the next zygote refuses it, so the rest of that import is preloaded)."""
    done, skipped, around = [], [], []
    started = time.monotonic()
    watcher = Watcher(blocked)
    sys.meta_path.insert(0, watcher)
    queue = [(line, True) for line in lines if line not in avoided]
    tried, read = set(avoided), set()
    cache = CodeCache()
    while queue:
        line, asked = queue.pop(0)
        if not asked and line in tried:
            continue
        tried.add(line)
        watcher.failed.clear()  # optional imports that failed within an import that worked: not read
        error = run_line(line)
        if settled_thread_count() > 1:
            return {"threads": line, "culprit": watcher.culprit}
        if error is None:
            (done if asked else around).append(line)
            continue
        if asked:
            skipped.append([line, error])
        failed = [(name, origin) for name, origin in watcher.failed.items() if name not in read]
        read.update(name for name, _ in failed)
        queue[:0] = [(found, False) for name, origin in failed for found in source_imports(name, origin)]
        for name, origin in failed:
            cache.add(origin)
            cache.modules.add(name)
    watcher.remove()
    for package in blocked:
        cache.add_package(package)
    sys.meta_path.insert(0, cache)  # for the steps
    gc.collect()
    gc.freeze()  # the children's collections leave the zygote's objects (and their pages) alone
    return {"preloaded": done, "skipped": skipped, "around": around, "seconds": time.monotonic() - started}
