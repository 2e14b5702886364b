"""The package's one way to run ``git``: in a folder, with a fallback identity for commits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from quetzal_deploy.errors import QuetzalError

IDENTITY = ["-c", "user.name=quetzal-template", "-c", "user.email=quetzal-template@localhost"]


class GitError(QuetzalError):
    """git failed or cannot run; the message carries git's own words."""


def git(root: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``git *args`` in ``root``, with a fallback identity when none is configured; ``check``
    turns a failure into a GitError."""
    identity = [] if user_email(root) else IDENTITY
    try:
        done = subprocess.run(["git", *identity, *args], cwd=root, capture_output=True, text=True,
                              env={**os.environ, **(env or {})})
    except OSError as ex:
        raise GitError(f"git cannot run ({ex}): install git.") from ex
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")
    return done


def output(root: Path, *args: str) -> str | None:
    """git's output, stripped; None when git is missing or fails (no repo, no commit)."""
    try:
        done = git(root, *args, check=False)
    except GitError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def user_email(root: Path) -> str:
    """``git config user.email`` seen from ``root`` ('' when unset or git is missing)."""
    try:
        found = subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True, text=True)
    except OSError:
        return ""
    return found.stdout.strip()
