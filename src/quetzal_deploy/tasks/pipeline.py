"""State machine flows: update-steps, executions."""

from invoke import Exit

from quetzal_deploy.tasks.common import quetzal_task


@quetzal_task(aws=True, help={
    "dry_run": "print the rendered definition and change nothing",
    "fix": "rewrite step-functions.json copied from another account (its ARNs, -dev names, ECS notebook "
           "steps) into placeholders and Fargate steps, then stop; deploys nothing",
})
def update_steps(settings, dry_run=False, fix=False):
    """Validate step-functions.json, fill its ${...} placeholders and deploy it to the state machine."""
    if fix:
        from quetzal_deploy.pipeline.porting import fix_file

        fix_file(settings)
        return
    from quetzal_deploy.aws import Aws  # after --fix, which needs no AWS
    from quetzal_deploy.pipeline.stepfunctions import update_steps as deploy_steps

    deploy_steps(settings, Aws(settings), dry_run=dry_run)


@quetzal_task(aws=True, help={
    "last": "how many executions to show (default 10)",
    "report": "write the HTML report of this execution (its name or ARN) under .quetzal/executions/",
    "open": "with --report: open the report in the browser",
    "tiles": "with --report: draw its layers over these XYZ raster tiles (http(s)://.../{z}/{x}/{y}.png; "
             "default REPORT_TILE_URL in .env, else none: the report fetches nothing)",
})
def executions(settings, aws, last=10, report=None, open=False, tiles=None):
    """List the pipeline's most recent executions on AWS, with status and duration (or --report one)."""
    if (open or tiles is not None) and not report:
        raise Exit("ERROR: --open and --tiles go with --report <execution>.", code=2)
    if report:
        import webbrowser

        from quetzal_deploy.report.execution import write_execution_report
        from quetzal_deploy.settings import with_tiles

        path = write_execution_report(with_tiles(settings, tiles), aws, report)
        if open:
            webbrowser.open(path.as_uri())
        return
    from quetzal_deploy.pipeline.executions import executions_table, list_executions

    found = list_executions(settings, aws, last=int(last))
    print(executions_table(found) if found else f"No execution of {settings.state_machine} yet.")
