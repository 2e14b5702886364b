"""Upgrade the repo's scaffolding to the installed quetzal-deploy's template."""

from pathlib import Path

from invoke import Exit

from quetzal_deploy.tasks.common import confirmed, quetzal_task


@quetzal_task(help={
    "check": "only say whether the repo is behind the installed version (exit 1 when it is, for CI)",
    "yes": "merge without asking (the diff is still printed)",
})
def upgrade(check=False, yes=False):
    """Merge the installed template's changes into this repo's scaffolding (a reviewable git merge)."""
    from quetzal_deploy.upgrade.scaffold import check as check_version
    from quetzal_deploy.upgrade.scaffold import repo_root
    from quetzal_deploy.upgrade.scaffold import upgrade as merge_template

    root = repo_root(Path.cwd())
    if check:
        if not check_version(root):
            raise Exit(code=1)
        return
    answer = (lambda question: True) if yes else confirmed
    if not merge_template(root, answer):
        raise Exit(code=1)
