"""Which quetzal-deploy a baked repo installs: the requirement pinned in its requirements-dev.txt,
chosen from where the template came from, with the reason written next to it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from cookiecutter.config import BUILTIN_ABBREVIATIONS
from cookiecutter.repository import expand_abbreviations, is_repo_url, is_zip_file

import quetzal_deploy
from quetzal_deploy.git import output

PACKAGE = "quetzal-deploy"
REQUIREMENTS = "requirements-dev.txt"
SHARE = ("it installs on this machine only: to share the repo, pin "
         f"`{PACKAGE} @ git+<the template's git URL>@<tag>` or `{PACKAGE}==<version>` from your index")


@dataclass(frozen=True)
class Pin:
    """A requirement line for quetzal-deploy and why it is that one."""

    requirement: str
    reason: str


def git_pin(url: str, commit: str, revision: str | None) -> Pin:
    url = url.removeprefix("git+")
    if url.startswith("file:///"):  # pip before 24 refuses a direct reference with an empty host
        url = "file://localhost/" + url.removeprefix("file:///")
    at = f" ({revision})" if revision and revision != commit else ""
    return Pin(f"{PACKAGE} @ git+{url}@{commit}",
               f"baked from the git repository {url} at commit {commit}{at}")


def installed_pin(root: Path) -> Pin:
    """The pin of the quetzal-deploy installed in ``root`` (a site-packages folder): the git commit
    or the file it came from (pip's direct_url.json), else its version on the package index."""
    version = quetzal_deploy.__version__
    found = [d for d in metadata.distributions(path=[str(root)]) if d.metadata["Name"] == PACKAGE]
    origin = json.loads(found[0].read_text("direct_url.json") or "null") if found else None
    if not origin:
        return Pin(f"{PACKAGE}=={version}", f"baked by quetzal-deploy {version} from the package index")
    vcs = origin.get("vcs_info", {})
    if vcs.get("vcs") == "git":
        return git_pin(origin["url"], vcs["commit_id"], vcs.get("requested_revision"))
    if origin.get("dir_info"):
        return folder_pin(Path(unquote(urlparse(origin["url"]).path)))
    return Pin(f"{PACKAGE} @ {origin['url']}", f"baked by quetzal-deploy {version} installed from "
               f"{origin['url']}: {SHARE}")


def folder_pin(folder: Path) -> Pin:
    return Pin(f"{PACKAGE} @ {folder.resolve().as_uri()}", f"baked from the local folder {folder}: {SHARE}")


def template_pin(template: str, checkout: str | None, repo_dir: Path) -> Pin:
    """Where cookiecutter took the template from (``_template``, ``_checkout``, ``_repo_dir``)."""
    source = expand_abbreviations(template, BUILTIN_ABBREVIATIONS)
    if is_repo_url(source) and not is_zip_file(source) and not source.startswith("hg+"):
        return git_pin(source, output(repo_dir, "rev-parse", "HEAD") or checkout or "HEAD", checkout)
    if (repo_dir / "src" / "quetzal_deploy").is_dir():
        return folder_pin(repo_dir)
    return installed_pin(repo_dir.parents[1])  # the template inside an installed quetzal_deploy


def write_pin(project: Path, pin: Pin) -> None:
    """Put ``pin`` (with its reason) in place of the quetzal-deploy line of requirements-dev.txt."""
    path = project / REQUIREMENTS
    lines = [f"# quetzal-deploy: {pin.reason}.\n{pin.requirement}"
             if line.startswith(PACKAGE) else line for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
