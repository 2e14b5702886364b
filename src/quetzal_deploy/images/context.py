"""The image's build context: the model repo's files (filtered by its ``.dockerignore``) plus the
runtime of the installed quetzal-deploy and the run contract it reads, so a model repo carries no
copy of the handler."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import quetzal_deploy

PACKAGE = Path(quetzal_deploy.__file__).resolve().parent
SHIPPED = ("contract", "runtime")  # the two bottom layers: the runtime imports only the contract
# Files the plugins add (quetzal_image_files): the Dockerfile copies this folder, always in the
# context (empty without plugins), into LAMBDA_TASK_ROOT.
PLUGIN_FILES = "plugin-files"


def runtime_files() -> Iterator[tuple[str, Path]]:
    """``(name in the context, file)`` for the package marker and every runtime and contract module."""
    yield "quetzal_deploy/__init__.py", PACKAGE / "__init__.py"
    for concern in SHIPPED:
        for path in sorted((PACKAGE / concern).rglob("*.py")):
            yield f"quetzal_deploy/{path.relative_to(PACKAGE).as_posix()}", path


def ignore_patterns(root: Path) -> list[str]:
    """The lines of ``.dockerignore`` that are patterns (as ``docker build`` reads them)."""
    ignore = root / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Same header for the same file on every machine, so Docker's layer cache holds."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def build_context(root: Path, extra: dict[str, Path] | None = None) -> IO[bytes]:
    """An uncompressed tar of the context, rewound: the repo's files, the runtime, the folder
    ``plugin-files/`` then ``extra`` (name in the context -> file or folder on disk; a name the
    repo also has is replaced)."""
    from docker.utils.build import create_archive, exclude_paths

    added = dict(runtime_files()) | dict(extra or {})
    replaced = [*added, PLUGIN_FILES]
    kept = sorted(name for name in exclude_paths(str(root), ignore_patterns(root), dockerfile="Dockerfile")
                  if not any(name == n or name.startswith(n.rstrip("/") + "/") for n in replaced))
    archive = create_archive(root=str(root), files=kept)
    with tarfile.open(fileobj=archive, mode="a") as tar:
        folder = tarfile.TarInfo(PLUGIN_FILES)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(normalised(folder))
        for name, path in added.items():
            tar.add(str(path), arcname=name, filter=normalised)
    archive.seek(0)
    return archive
