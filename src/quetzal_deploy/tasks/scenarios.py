"""Scenario flows: upload, download, lock, publish model-wide config."""

from __future__ import annotations

from invoke import Exit

from quetzal_deploy.tasks.common import AWS_HELP, confirmed, quetzal_task, settings_for

EMAIL_HELP = "email written as user_email metadata (default: $QUETZAL_USER_EMAIL, then git config user.email)"
YES_HELP = "do not ask for confirmation (for scripts)"


def confirm(question: str, yes: bool) -> None:
    """Ask before replacing data; with no answer on standard input, ask for --yes instead."""
    if not yes and not confirmed(question):
        raise Exit("Cancelled: nothing was changed.", code=1)


@quetzal_task(help={
    "names": "scenario folder(s) under scenarios/, comma-separated: base or base,other",
    "dry_run": "print the plan (files to upload, unchanged, to delete) and change nothing",
    "with_outputs": "also sync the local outputs/ and logs/ (replacing the bucket's)",
    "yes": YES_HELP, "email": EMAIL_HELP, **AWS_HELP,
})
def upload_scenarios(c, names, dry_run=False, with_outputs=False, yes=False, email=None,
                     profile=None, region=None):
    """Sync scenarios/<name>/ to s3://<bucket>/<name>/: changed files only, then delete stale ones.

    The plugins' scenario checks run first: one refusal and nothing is uploaded."""
    from quetzal_deploy.plugins import check_scenarios, plugin_manager
    from quetzal_deploy.sync.scenarios import (
        ScenarioStore,
        local_scenario,
        local_scenarios,
        parse_names,
        user_email,
    )

    settings = settings_for(profile, region)
    names = parse_names(names, known=local_scenarios(settings))
    for name in names:
        local_scenario(settings, name)
    check_scenarios(plugin_manager(settings.root), settings, names)
    email = None if dry_run else user_email(settings, email)
    store = ScenarioStore(settings)
    for name in names:
        plan = store.plan_upload(name, with_outputs)
        print("\n".join(plan.describe(all_names=dry_run)))
        if dry_run or not plan.changes:
            continue
        if plan.existing and name in store.locked():
            confirm(f"{name} is protected on s3://{settings.bucket}/: replace it?", yes)
        store.upload(plan, email)
        print(f"{name}: synced to s3://{settings.bucket}/{name}/")
    if dry_run:
        print("Dry run: nothing was changed.")


@quetzal_task(help={
    "name": "scenario to fetch from the bucket into scenarios/<name>/ (outputs and logs included)",
    "dry_run": "print the files that would be downloaded and change nothing",
    "yes": "replace local files that differ from the bucket without asking",
    **AWS_HELP,
})
def download_scenario(c, name, dry_run=False, yes=False, profile=None, region=None):
    """Fetch s3://<bucket>/<name>/ into scenarios/<name>/; local files not in the bucket are kept."""
    from quetzal_deploy.sync.scenarios import ScenarioStore, check_name

    settings = settings_for(profile, region)
    name = check_name(name)
    store = ScenarioStore(settings)
    plan = store.plan_download(name)
    print("\n".join(plan.describe(all_names=dry_run)))
    if dry_run:
        print("Dry run: nothing was changed.")
        return
    if plan.overwrite:
        confirm(f"{len(plan.overwrite)} local file(s) differ from the bucket and will be replaced "
                f"({', '.join(plan.overwrite[:5])}{', ...' if len(plan.overwrite) > 5 else ''}).", yes)
    store.download(plan)
    print(f"{name}: downloaded to {plan.folder}")


@quetzal_task(help={"name": "scenario to protect in the front end", "email": EMAIL_HELP, **AWS_HELP})
def lock_scenario(c, name, email=None, profile=None, region=None):
    """Protect a scenario in the front end (adds it to _common/lock.json)."""
    from quetzal_deploy.sync.scenarios import ScenarioStore, check_name, user_email

    settings = settings_for(profile, region)
    name = check_name(name)
    store = ScenarioStore(settings)
    changed = store.lock(name, user_email(settings, email))
    print(f"{name}: locked" if changed else f"{name}: already locked")


@quetzal_task(help={"name": "scenario to unprotect", "force": "required to unlock base",
                    "email": EMAIL_HELP, **AWS_HELP})
def unlock_scenario(c, name, force=False, email=None, profile=None, region=None):
    """Unprotect a scenario in the front end (removes it from _common/lock.json)."""
    from quetzal_deploy.sync.scenarios import ScenarioStore, check_name, user_email

    settings = settings_for(profile, region)
    name = check_name(name)
    store = ScenarioStore(settings)
    changed = store.unlock(name, user_email(settings, email), force=force)
    print(f"{name}: unlocked" if changed else f"{name}: was not locked")


@quetzal_task(help={"dry_run": "print what would change and change nothing", "email": EMAIL_HELP,
                    **AWS_HELP})
def publish_config(c, dry_run=False, email=None, profile=None, region=None):
    """Upload _common/modelConfig.json and _common/docs/ to s3://<bucket>/_common/ (changed files only)."""
    from quetzal_deploy.sync.scenarios import ScenarioStore, user_email

    settings = settings_for(profile, region)
    email = None if dry_run else user_email(settings, email)
    store = ScenarioStore(settings)
    plan = store.plan_config()
    print("\n".join(plan.describe(all_names=True)))
    if dry_run:
        print("Dry run: nothing was changed.")
    elif plan.changes:
        store.upload(plan, email)
        print(f"published to s3://{settings.bucket}/_common/")
