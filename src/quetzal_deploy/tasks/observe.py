"""Observe and check: logs, doctor."""

from functools import partial

from invoke import Exit

from quetzal_deploy.tasks.common import AWS_HELP, quetzal_task


@quetzal_task(aws=True, help={
    "since": "how far back to start: 30s, 10m, 2h or 1d (default 10m)",
    "follow": "keep printing new events until Ctrl-C",
})
def logs(settings, aws, since="10m", follow=False):
    """Print the model Lambda's CloudWatch logs."""
    from quetzal_deploy.pipeline.logs import show_logs

    # Flushed line by line, so `invoke logs --follow | grep ...` shows events as they come.
    show_logs(settings, aws, since=since, follow=follow, out=partial(print, flush=True))


@quetzal_task(help=AWS_HELP)
def doctor(profile=None, region=None):
    """Check .env, credentials, the model's AWS resources, Docker and terraform, with fixes."""
    from quetzal_deploy.doctor import report, run_checks

    checks = run_checks(profile, region)
    print(report(checks))
    failed = sum(not check.ok for check in checks)
    if failed:
        raise Exit(f"{failed} check(s) failed: fix them and run `invoke doctor` again.", code=1)
    print("Everything is ready.")
