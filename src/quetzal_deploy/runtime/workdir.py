"""The step's working folder (``/tmp`` on Lambda): checked, emptied, measured.

Warm Lambda containers keep ``/tmp`` between invocations, so each step empties it first. Only
the folder's contents are removed (never the folder or a parent), and a folder whose emptying
would destroy something else is refused: ``/``, a system folder (``/etc``, ``/usr``, ``/var``,
``/proc``...), the home or current folder or a parent of them, the code.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from quetzal_deploy.runtime.errors import UnsafeWorkdir

PRIVATE = ".quetzal"  # the handler's own files inside the working folder: never uploaded
# Never a working folder, nor anything inside them:
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys",
                "/usr", "/System", "/Library", "/Applications")
# Never a working folder themselves (a dedicated folder inside them is fine: /var/tmp/x, /home/x):
SYSTEM_FOLDERS = ("/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/var", "/private",
                  "/private/var", "/Users", "/Volumes")


def check_workdir(workdir: Path, task_root: Path) -> Path:
    """The resolved working folder, or ``UnsafeWorkdir`` when emptying it would do harm."""
    folder = workdir.expanduser().resolve()
    reason = harm(folder, task_root.resolve())
    if reason:
        raise UnsafeWorkdir(f"Refusing to use {folder} as the working folder: {reason}, and the "
                            "step empties its working folder. Set QUETZAL_WORKDIR to a dedicated "
                            "folder (on Lambda: /tmp).")
    return folder


def harm(folder: Path, root: Path) -> str | None:
    """What emptying ``folder`` would destroy, or None."""
    home, cwd = home_folder(), Path.cwd().resolve()
    system = [Path(name) for name in SYSTEM_TREES + SYSTEM_FOLDERS]
    if folder == Path(folder.anchor) or any(path.is_relative_to(folder) for path in system):
        return "it is the file system root or a system folder"
    if any(folder.is_relative_to(tree) for tree in map(Path, SYSTEM_TREES)):
        return "it is inside a system folder"
    if home and home.is_relative_to(folder):
        return f"it holds the home folder {home}"
    if cwd.is_relative_to(folder):
        return f"it holds the current folder {cwd}"
    if root.is_relative_to(folder) or folder.is_relative_to(root):
        return f"it overlaps the model's code in {root}"
    return None


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
            try:
                info = os.lstat(Path(parent, name))
            except FileNotFoundError:  # removed while the folder was walked (a step still running)
                continue
            if not stat.S_ISLNK(info.st_mode):
                total += info.st_size
    return total / 2**20
