"""Make an existing repo one of ours, in place, as one commit.

The installed template is rendered on the derived answers (the ``invoke upgrade`` renderer) and
committed as the ``quetzal-template`` branch. The adoption commit merges that branch into the
repo's own history: its tree is the repo's files plus the scaffolding it lacks, so the next
``invoke upgrade`` finds its merge base there. The model's own files stay; a scaffolding file
that would replace one of them is reported and left alone unless ``force``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import quetzal_deploy
from quetzal_deploy.adopt.answers import Found
from quetzal_deploy.adopt.production import adopted_tfvars
from quetzal_deploy.git import git
from quetzal_deploy.output import Out
from quetzal_deploy.upgrade.scaffold import BRANCH, render_tree, repo_root, require_clean
from quetzal_deploy.upgrade.template import RECORD, UpgradeError, render

# The model's own content: kept whenever the repo has it (the template's samples are not added).
MODEL_TOP = {"notebooks", "scenarios", "_common", "step-functions.json", "requirements.txt"}
OLD_HANDLER = "main.handler"  # the seed README's Dockerfile runs the backend's main.py


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # old scaffolding (or --force)
    merged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # model files the scaffolding would replace

    def describe(self) -> str:
        parts = [("added (scaffolding)", self.added), ("merged (their values kept)", self.merged),
                 ("replaced (the old file stays in git history)", self.replaced),
                 ("KEPT, the template's version not taken (--force takes it)", self.kept)]
        return "\n".join(f"{title}:\n" + "\n".join(f"  {path}" for path in paths)
                         for title, paths in parts if paths)


def merged_env(ours: str, theirs: str) -> str:
    """Our .env with every value the old one gave a key we also have."""
    old = dict(line.split("=", 1) for line in theirs.splitlines() if "=" in line and not line.startswith("#"))
    lines = []
    for line in ours.splitlines():
        key = line.split("=", 1)[0]
        if "=" in line and not line.startswith("#") and old.get(key, "").strip():
            line = f"{key}={old[key].strip()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def merged_lines(ours: str, theirs: str) -> str:
    """Their lines, then ours they lack (a .gitignore)."""
    have = set(theirs.splitlines())
    extra = [line for line in ours.splitlines() if line not in have]
    return theirs.rstrip("\n") + "\n" + "\n".join(extra) + "\n"


class Adoption:
    """Plans the adoption tree in a temporary index; ``commit`` makes it the branch's new tip."""

    def __init__(self, root: Path, found: Found, force: bool):
        self.root, self.found, self.force = root, found, force
        self.changes = Changes()
        self.scratch = tempfile.TemporaryDirectory()
        self.env = {"GIT_INDEX_FILE": str(Path(self.scratch.name, "index"))}

    def head_text(self, path: str) -> str:
        return git(self.root, "show", f"HEAD:{path}").stdout

    def head_blob(self, path: str) -> str | None:
        listed = git(self.root, "ls-tree", "HEAD", "--", path).stdout.split()
        return listed[2] if len(listed) >= 3 and listed[1] == "blob" else None

    def has_top(self, top: str) -> bool:
        return bool(git(self.root, "ls-tree", "HEAD", "--", top).stdout.strip())

    def store(self, path: str, text: str | None = None, source: Path | None = None) -> str:
        """The blob of ``text`` (or of the file ``source``), written to the repo's objects."""
        if text is not None:
            source = Path(self.scratch.name, "blob")
            source.write_bytes(text.encode("utf-8"))
        return git(self.root, "hash-object", "-w", "--", str(source)).stdout.strip()

    def stage(self, path: str, blob: str, executable: bool = False) -> None:
        mode = "100755" if executable else "100644"
        git(self.root, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=self.env)

    def content(self, project: Path, path: str) -> str | None:
        """Ours, adjusted: a production stack's tfvars get its names."""
        if self.found.legacy and path == f"infra/{self.found.answers['model_name']}.tfvars":
            rendered = (project / path).read_text(encoding="utf-8")
            return adopted_tfvars(rendered, self.found.answers["model_name"])
        return None

    def place(self, project: Path, path: str) -> None:
        source = project / path
        text = self.content(project, path)
        ours = self.store(path, text, source)
        theirs = self.head_blob(path)
        executable = os.access(source, os.X_OK)
        if theirs == ours:
            return
        if path.split("/")[0] in MODEL_TOP and self.has_top(path.split("/")[0]):
            return  # the model's own notebooks, scenarios, pipeline, requirements
        if theirs is None:
            if (self.root / path).exists() and not self.force:
                self.changes.kept.append(f"{path} (untracked here)")
                return
            self.changes.added.append(path)
        elif path in (".env", ".gitignore"):
            mine = source.read_text(encoding="utf-8")
            mix = merged_env if path == ".env" else merged_lines
            ours = self.store(path, mix(mine, self.head_text(path)))
            self.changes.merged.append(path)
        elif self.force or (path == "Dockerfile" and OLD_HANDLER in self.head_text(path)):
            self.changes.replaced.append(path)
        else:
            self.changes.kept.append(path)
            return
        self.stage(path, ours, executable)

    def tree(self, project: Path) -> str:
        git(self.root, "read-tree", "HEAD", env=self.env)
        for source in sorted(project.rglob("*")):
            if source.is_file() and ".git" not in source.relative_to(project).parts:
                self.place(project, source.relative_to(project).as_posix())
        return git(self.root, "write-tree", env=self.env).stdout.strip()


def adopt(path: Path, found: Found, confirm: Callable[[str], bool], force: bool = False,
          out: Out = print) -> bool:
    """Plan, show, and on ``confirm`` commit the adoption; False when the user declined."""
    root = repo_root(path)
    if (root / RECORD).exists():
        raise UpgradeError(f"{root} already has {RECORD}: it is one of ours, `invoke upgrade` updates it.")
    if git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}", check=False).returncode == 0:
        raise UpgradeError(f"{root} already has a '{BRANCH}' branch but no {RECORD}: delete the branch "
                           f"(`git branch -D {BRANCH}`) if it is left from an undone adoption.")
    require_clean(root)
    head = git(root, "rev-parse", "--verify", "HEAD").stdout.strip()
    version, model = quetzal_deploy.__version__, found.answers["model_name"]
    adoption = Adoption(root, found, force)
    with tempfile.TemporaryDirectory() as scratch:
        project = render(found.answers, Path(scratch))
        # A root commit, as a bake's first one: the branch holds only the template's scaffolding.
        template = git(root, "commit-tree", render_tree(root, project), "-m",
                       f"Create {model} from quetzal-template {version} (adopt)").stdout.strip()
        tree = adoption.tree(project)
    out(adoption.changes.describe())
    if not confirm(f"Commit the adoption of {model} (quetzal-template {version}) on "
                   f"{git(root, 'rev-parse', '--abbrev-ref', 'HEAD').stdout.strip()}?"):
        out("Nothing changed.")
        return False
    message = (f"Adopt {model} into quetzal-template {version}\n\nAnswers:\n{found.table()}\n\n"
               f"{adoption.changes.describe()}\n")
    commit = git(root, "commit-tree", tree, "-p", head, "-p", template, "-m", message).stdout.strip()
    git(root, "update-ref", "HEAD", commit, head)
    git(root, "reset", "--hard", "--quiet", commit)
    git(root, "branch", BRANCH, template)
    out(f"Adopted {model}: review with `git show --stat HEAD`; `invoke upgrade` works from here. Next: "
         "`pip install -r requirements-dev.txt`, `invoke --list`, `invoke run --local base`"
         + (", then `invoke infra --adopt` to take over the live stack." if found.legacy else "."))
    if adoption.changes.kept:
        out("NOTE: the files listed as KEPT are yours where the template has its own: compare them "
             f"with `git diff HEAD {BRANCH} -- <file>`.")
    return True
