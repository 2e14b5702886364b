"""The step's working folder (``/tmp`` on Lambda): checked, emptied, measured.

Warm Lambda containers keep ``/tmp`` between invocations, so each step empties it first. Only
the folder's contents are removed (never the folder or a parent), and a folder whose emptying
would destroy something else (``/``, the home folder or a parent of it, the code) is refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from quetzal_deploy.runtime.errors import UnsafeWorkdir

PRIVATE = ".quetzal"  # the handler's own files inside the working folder: never uploaded


def check_workdir(workdir: Path, task_root: Path) -> Path:
    """The resolved working folder, or ``UnsafeWorkdir`` when emptying it would do harm."""
    folder = workdir.expanduser().resolve()
    home = home_folder()
    root = task_root.resolve()
    if folder == Path(folder.anchor):
        reason = "it is the file system root"
    elif home and home.is_relative_to(folder):
        reason = f"it holds the home folder {home}"
    elif root.is_relative_to(folder) or folder.is_relative_to(root):
        reason = f"it overlaps the model's code in {root}"
    else:
        return folder
    raise UnsafeWorkdir(f"Refusing to use {folder} as the working folder: {reason}, and the "
                        "step empties its working folder. Set QUETZAL_WORKDIR to a dedicated "
                        "folder (on Lambda: /tmp).")


def home_folder() -> Path | None:
    """The user's home folder; None where it cannot be known (Lambda sets no HOME)."""
    try:
        return Path.home().resolve()
    except (RuntimeError, KeyError):
        return None


def empty_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (symbolic links themselves, never their targets)."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def size_mb(folder: Path) -> float:
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total / 2**20
