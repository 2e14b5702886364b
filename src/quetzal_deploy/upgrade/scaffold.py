"""``invoke upgrade``: the template's changes between the version a repo was baked from and the
installed one, merged into the repo by git.

The ``quetzal-template`` branch holds the pristine scaffolding: the bake's first commit, then one
commit per upgrade with the installed template rendered on the repo's recorded answers. Merging
that branch is git's three-way merge: the model's own edits stay, the template's changes come
in, and lines both changed become conflicts for the user to resolve.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import quetzal_deploy
from quetzal_deploy.git import git
from quetzal_deploy.output import Out
from quetzal_deploy.upgrade.template import (
    UpgradeError,
    installed_version,
    read_record,
    render,
)

BRANCH = "quetzal-template"


def repo_root(start: Path) -> Path:
    """The git repository around ``start``, which must hold the template record at its top."""
    found = git(start, "rev-parse", "--show-toplevel", check=False)
    if found.returncode != 0:
        raise UpgradeError(f"{start} is not in a git repository: `invoke upgrade` merges the template's "
                           "changes with git (run it in the model repo).")
    return Path(found.stdout.strip())


def template_tip(root: Path) -> str:
    """The commit of the ``quetzal-template`` branch; a clear fix when the clone lacks it."""
    found = git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}^{{commit}}", check=False)
    if found.returncode != 0:
        raise UpgradeError(
            f"This clone has no '{BRANCH}' branch (the pristine scaffolding upgrades build on). Fetch it: "
            f"`git fetch origin {BRANCH}:{BRANCH}`, and push it with the repo (`git push origin {BRANCH}`).")
    return found.stdout.strip()


RENDERED = ", rendered by invoke upgrade"  # the subject's end of every commit upgrade adds to BRANCH


def foreign_commit(root: Path, tip: str) -> str | None:
    """The first commit in ``tip``'s history that the template did not make (``sha subject``), or
    None when it is pristine: the bake (a root commit), then single-parent upgrade renders."""
    for line in git(root, "log", "--format=%H %P%x00%s", tip).stdout.splitlines():
        ids, subject = line.split("\0", 1)
        sha, *parents = ids.split()
        if parents and (len(parents) > 1 or not subject.endswith(RENDERED)):
            return f"{sha[:12]} {subject}"
    return None


def require_pristine(root: Path, tip: str) -> None:
    """Refuse a moved or rewritten ``quetzal-template`` branch (it would delete the model's files
    the render lacks) or one unrelated to HEAD's history; the fix names a pristine position."""
    foreign = foreign_commit(root, tip)
    bakes = git(root, "rev-list", "--max-parents=0", tip).stdout.split()
    unrelated = not any(merged(root, bake) for bake in bakes)
    if not (foreign or unrelated):
        return
    why = (f"holds a commit that is not the template's ({foreign})" if foreign
           else "does not start at this repo's bake (HEAD's history)")
    earlier = git(root, "rev-list", "--walk-reflogs", BRANCH, check=False).stdout.split()
    good = next((sha for sha in earlier if not foreign_commit(root, sha) and merged(root, sha)), None)
    fix = (f"`git branch -f {BRANCH} {good[:12]}` (its last pristine position, from `git reflog {BRANCH}`)"
           if good else f"`git branch -f {BRANCH} <the bake commit, 'Create ... from quetzal-template'>`")
    raise UpgradeError(f"The '{BRANCH}' branch {why}: it was moved or rewritten (e.g. `git branch -f`), and "
                       "merging a render over it would delete the model's own files. Nothing changed. "
                       f"Restore it with {fix}, then run `invoke upgrade` again.")


def require_branch(root: Path) -> None:
    if git(root, "symbolic-ref", "-q", "HEAD", check=False).returncode != 0:
        raise UpgradeError("HEAD is detached: an upgrade merges into a branch. `git switch main` (or your "
                           "branch) first. Nothing changed.")


def require_clean(root: Path) -> None:
    if git(root, "rev-parse", "--quiet", "--verify", "MERGE_HEAD", check=False).returncode == 0:
        raise UpgradeError("A merge is in progress: finish it (`git commit`) or `git merge --abort` first.")
    changed = git(root, "status", "--porcelain", "--untracked-files=no").stdout
    if changed.strip():
        raise UpgradeError("Commit or stash your changes first: an upgrade merges into a clean tree, so "
                           f"nothing of yours is mixed with the template's changes.\n{changed.rstrip()}")


def render_tree(root: Path, project: Path) -> str:
    """The rendered ``project`` as a tree in ``root``'s objects (temporary index, work tree untouched)."""
    git_dir = git(root, "rev-parse", "--absolute-git-dir").stdout.strip()
    with tempfile.TemporaryDirectory() as scratch:
        index = str(Path(scratch, "index"))
        env = {"GIT_DIR": git_dir, "GIT_WORK_TREE": str(project), "GIT_INDEX_FILE": index}
        git(project, "add", "--all", env=env)
        return git(project, "write-tree", env=env).stdout.strip()


def commit_render(root: Path, project: Path, parent: str, message: str) -> str:
    """A commit of the rendered ``project`` on ``parent``; ``parent`` itself when the template
    renders the same files."""
    tree = render_tree(root, project)
    if tree == git(root, "rev-parse", f"{parent}^{{tree}}").stdout.strip():
        return parent
    return git(root, "commit-tree", tree, "-p", parent, "-m", message).stdout.strip()


def merged(root: Path, commit: str) -> bool:
    return git(root, "merge-base", "--is-ancestor", commit, "HEAD", check=False).returncode == 0


def check(root: Path, out: Out = print) -> bool:
    """True when the repo's scaffolding is at the installed version (or newer); says which."""
    recorded, installed = read_record(root).version, installed_version()
    if recorded < installed:
        out(f"BEHIND: scaffolding from quetzal-template {recorded}, installed quetzal-deploy {installed}: "
             "run `invoke upgrade`.")
        return False
    note = f" (newer than the installed {installed}: `pip install -r requirements-dev.txt`)" \
        if recorded > installed else ""
    out(f"OK: scaffolding at quetzal-template {recorded}{note}.")
    return True


def upgrade(root: Path, confirm: Callable[[str], bool], out: Out = print) -> bool:
    """Render, show the template's diff, merge on ``confirm``; False when the user declined.

    Conflicts leave the merge in progress for the user and raise UpgradeError listing the files.
    """
    require_branch(root)
    require_clean(root)
    record, tip = read_record(root), template_tip(root)
    require_pristine(root, tip)
    version = quetzal_deploy.__version__
    with tempfile.TemporaryDirectory() as scratch:
        project = render(record.answers, Path(scratch))
        new_tip = commit_render(root, project, tip, f"quetzal-template {version}{RENDERED}")
    if merged(root, new_tip):
        out(f"Up to date: the template {version} renders the scaffolding this repo already has.")
        return True
    base = git(root, "merge-base", "HEAD", new_tip).stdout.strip()
    out(f"Template changes from {record.version} to {version}:")
    out(git(root, "diff", "--stat", base, new_tip).stdout.rstrip())
    out(git(root, "diff", base, new_tip).stdout.rstrip())
    if not confirm(f"Merge these template changes ({BRANCH} -> {current_branch(root)})?"):
        out("Nothing changed.")
        return False
    if new_tip != tip:
        git(root, "update-ref", f"refs/heads/{BRANCH}", new_tip, tip)
    merge(root, version)
    out(f"Upgraded to quetzal-template {version}: review with `git show --stat HEAD`.")
    return True


def current_branch(root: Path) -> str:
    return git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()


def merge(root: Path, version: str) -> None:
    message = f"Upgrade the scaffolding to quetzal-template {version}"
    done = git(root, "merge", "--no-ff", "--no-edit", "-m", message, BRANCH, check=False)
    if done.returncode == 0:
        return
    conflicted = git(root, "diff", "--name-only", "--diff-filter=U").stdout.split()
    if not conflicted:
        raise UpgradeError(f"git merge {BRANCH} failed: {(done.stderr or done.stdout).strip()}")
    listing = "\n".join(f"  {name}" for name in conflicted)
    raise UpgradeError(
        f"The template and this repo changed the same lines in:\n{listing}\nNothing was overwritten: "
        "the merge is left in progress. Resolve the <<<<<<< markers, `git add` the files and "
        f"`git commit`; or `git merge --abort` to go back (the {BRANCH} branch keeps the new template).")
