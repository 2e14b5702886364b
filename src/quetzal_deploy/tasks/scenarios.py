"""Scenario flows: upload, download, lock, publish model-wide config."""

from __future__ import annotations

from quetzal_deploy.tasks.common import confirm_or_cancel, quetzal_task

EMAIL_HELP = "email written as user_email metadata (default: $QUETZAL_USER_EMAIL, then git config user.email)"
YES_HELP = "do not ask for confirmation (for scripts)"


def confirm_upload(store, name: str, plan, yes: bool) -> None:
    """Ask before deleting the cloud run's results, and before replacing a protected scenario."""
    bucket = store.settings.bucket
    if plan.deleted_results():
        confirm_or_cancel(f"{plan.deleted_results()} object(s) of the cloud run's outputs/ and logs/ on "
                          f"s3://{bucket}/{name}/ are not in the local folder and will be deleted: "
                          "continue?", yes)
    if plan.existing and name in store.locked():
        confirm_or_cancel(f"{name} is protected on s3://{bucket}/: replace it?", yes)


@quetzal_task(aws=True, help={
    "names": "scenario folder(s) under scenarios/, comma-separated: base or base,other",
    "dry_run": "print the plan (files to upload, unchanged, to delete) and change nothing",
    "with_outputs": "also sync the local outputs/ and logs/ (replacing the bucket's)",
    "yes": YES_HELP, "email": EMAIL_HELP,
})
def upload_scenarios(settings, names, dry_run=False, with_outputs=False, yes=False, email=None):
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
        confirm_upload(store, name, plan, yes)
        with store.lease(name, email) as lease:  # one upload of a scenario at a time: plan again under it
            confirmed = plan.deleted_results()
            plan = store.plan_upload(name, with_outputs)
            if not plan.changes:
                continue
            if plan.deleted_results() > confirmed:
                print("\n".join(plan.describe()))
                confirm_upload(store, name, plan, yes)
            store.upload(plan, email, lease)
        print(f"{name}: synced to s3://{settings.bucket}/{name}/")
    if dry_run:
        print("Dry run: nothing was changed.")


@quetzal_task(aws=True, help={
    "name": "scenario to fetch from the bucket into scenarios/<name>/ (outputs and logs included)",
    "dry_run": "print the files that would be downloaded and change nothing",
    "yes": "replace local files that differ from the bucket without asking",
})
def download_scenario(settings, name, dry_run=False, yes=False):
    """Fetch s3://<bucket>/<name>/ into scenarios/<name>/; local files not in the bucket are kept."""
    from quetzal_deploy.sync.scenarios import ScenarioStore, check_name

    name = check_name(name)
    store = ScenarioStore(settings)
    plan = store.plan_download(name)
    print("\n".join(plan.describe(all_names=dry_run)))
    if dry_run:
        print("Dry run: nothing was changed.")
        return
    if plan.overwrite:
        confirm_or_cancel(f"{len(plan.overwrite)} local file(s) differ from the bucket and will be replaced "
                f"({', '.join(plan.overwrite[:5])}{', ...' if len(plan.overwrite) > 5 else ''}).", yes)
    store.download(plan)
    print(f"{name}: downloaded to {plan.folder}")


@quetzal_task(aws=True, help={"name": "scenario to protect in the front end", "email": EMAIL_HELP})
def lock_scenario(settings, name, email=None):
    """Protect a scenario in the front end (adds it to _common/lock.json)."""
    from quetzal_deploy.sync.scenarios import ScenarioStore, check_name, user_email

    name = check_name(name)
    store = ScenarioStore(settings)
    changed = store.lock(name, user_email(settings, email))
    print(f"{name}: locked" if changed else f"{name}: already locked")


@quetzal_task(aws=True, help={"name": "scenario to unprotect", "force": "required to unlock base",
                            "email": EMAIL_HELP})
def unlock_scenario(settings, name, force=False, email=None):
    """Unprotect a scenario in the front end (removes it from _common/lock.json)."""
    from quetzal_deploy.sync.scenarios import ScenarioStore, check_name, user_email

    name = check_name(name)
    store = ScenarioStore(settings)
    changed = store.unlock(name, user_email(settings, email), force=force)
    print(f"{name}: unlocked" if changed else f"{name}: was not locked")


@quetzal_task(aws=True, help={"dry_run": "print what would change and change nothing", "email": EMAIL_HELP})
def publish_config(settings, dry_run=False, email=None):
    """Upload _common/modelConfig.json and _common/docs/ to s3://<bucket>/_common/ (changed files only)."""
    from quetzal_deploy.sync.scenarios import ScenarioStore, user_email

    email = None if dry_run else user_email(settings, email)
    store = ScenarioStore(settings)
    plan = store.plan_config()
    print("\n".join(plan.describe(all_names=True)))
    if dry_run:
        print("Dry run: nothing was changed.")
    elif plan.changes:
        store.upload(plan, email)
        print(f"published to s3://{settings.bucket}/_common/")
