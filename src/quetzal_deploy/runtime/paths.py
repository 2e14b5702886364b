"""Which keys and files may move between a folder and a bucket prefix: one rule for the Lambda
handler, the local runner and ``invoke upload-scenarios`` / ``download-scenario`` / ``publish-config``.

- ``safe_relative(key, prefix)``: the key's path under ``prefix``, or ``UnsafeKey`` when it could
  land outside a folder or name no file (empty, ``.`` or ``..`` parts, a leading ``/``, a
  backslash, a drive, control characters, a part longer than a file name may be).
- ``target_in(folder, relative)``: ``folder/relative``, refused when symbolic links lead outside.
- ``tree_files(src, skip)``: the files under ``src`` and their keys. A symbolic link, to a file
  or a folder, is followed only when it resolves inside ``src``; one leading outside (it could
  publish ``/etc/passwd`` or a credentials file), a folder link that loops, and anything but a
  regular file are refused, naming the path, before anything is sent.
- ``shown(text)``: ``text`` safe to print, its control characters escaped.

Standard library only: the Lambda image imports this module.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from quetzal_deploy.runtime.errors import StorageError, UnsafeKey

NAME_BYTES = 255  # the longest file name Linux, macOS and Windows accept
REFUSED_CATEGORIES = {"Cc", "Cs"}  # control characters; undecodable bytes of a local file name


def real_path(path: Path) -> Path:
    """``path`` with every symbolic link resolved; a looping link stays as it is (no error)."""
    return Path(os.path.realpath(path))


def refused_char(char: str) -> bool:
    return unicodedata.category(char) in REFUSED_CATEGORIES


def shown(text: str) -> str:
    """``text`` with every character a terminal could act on written as an escape (``\\x1b``)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode()
                   for c in text)


def unsafe_reason(relative: str) -> str | None:
    """Why ``relative`` (a key under its prefix) cannot name a file inside a folder, or None."""
    parts = relative.split("/")
    if not relative or relative.startswith("/") or any(part in {"", ".", ".."} for part in parts):
        return "it has an empty, '.' or '..' part or a leading '/'"
    if "\\" in relative or ":" in parts[0]:
        return "it has a backslash or a drive (':') that Windows would follow"
    if any(refused_char(char) for char in relative):
        return "it has control characters"
    if any(len(part.encode("utf-8", "surrogatepass")) > NAME_BYTES for part in parts):
        return f"a part is longer than a file name may be ({NAME_BYTES} bytes)"
    return None


def safe_relative(key: str, prefix: str = "") -> PurePosixPath:
    """The part of ``key`` after ``prefix``, refused when it could escape a folder."""
    if not key.startswith(prefix):
        raise UnsafeKey(f"Key {key!r:.200} is outside the scenario prefix {prefix!r}.")
    reason = unsafe_reason(key[len(prefix):])
    if reason:
        raise UnsafeKey(f"Refusing key {key!r:.200}: {reason}, so it could be written outside its "
                        "folder. Rename or delete that object.")
    return PurePosixPath(key[len(prefix):])


def target_in(folder: Path, relative: PurePosixPath) -> Path:
    """``folder/relative``, checked to stay inside ``folder`` once symbolic links are resolved."""
    target = folder / relative
    if not real_path(target).is_relative_to(real_path(folder)):
        raise UnsafeKey(f"Refusing {shown(str(relative))}: it resolves outside {folder} "
                        "(a symbolic link leads elsewhere).")
    return target


def tree_files(src: Path, skip: Callable[[str], bool] = lambda rel: False) -> list[tuple[Path, str]]:
    """(file, key under ``src``) of every file under ``src``, sorted; see the module docstring.

    ``skip(rel)`` leaves out a file (``rel`` = ``a/b.csv``) or a whole folder (``rel`` = ``a/``).
    A followed link yields its target's real path under the link's own key.
    """
    root = real_path(src)
    files: list[tuple[Path, str]] = []

    def visit(folder: Path, prefix: str, chain: tuple[Path, ...]) -> None:
        """``folder`` is a real path (no link in it): only its entries that are links need resolving."""
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            rel = prefix + entry.name
            safe_relative(rel)
            if entry.is_symlink():
                path = folder / entry.name
                real = inside(root, path, real_path(path), chain)
                is_dir = real.is_dir()
            else:
                real, is_dir = folder / entry.name, entry.is_dir(follow_symlinks=False)
                if not (is_dir or entry.is_file(follow_symlinks=False)):
                    raise not_a_file(real)
            if is_dir:
                if not skip(rel + "/"):
                    visit(real, rel + "/", chain + (real,))
            elif not skip(rel):
                files.append((real, rel))

    visit(root, "", (root,))
    return files


def not_a_file(path: Path) -> StorageError:
    return StorageError(f"{shown(str(path))} is not a regular file (a broken or looping link, a "
                        "pipe or a device): replace it with a file or remove it; nothing was uploaded.")


def inside(root: Path, path: Path, real: Path, chain: tuple[Path, ...]) -> Path:
    """``real`` (what the link ``path`` resolves to), checked: inside ``root``, no loop, a file or
    folder."""
    if not real.is_relative_to(root):
        raise UnsafeKey(f"Refusing {shown(str(path))}: it is a symbolic link to {shown(str(real))}, "
                        f"outside {root}. Copy what it points to into the folder, or remove the "
                        "link; nothing was uploaded.")
    if real in chain:
        raise UnsafeKey(f"Refusing {shown(str(path))}: it is a symbolic link to {shown(str(real))}, "
                        "a folder that contains it (a loop). Remove the link; nothing was uploaded.")
    if not (real.is_dir() or real.is_file()):
        raise not_a_file(path)
    return real
