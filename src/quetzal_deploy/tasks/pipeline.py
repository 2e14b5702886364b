"""State machine flows: update-steps, executions."""

from quetzal_deploy.tasks.common import AWS_HELP, aws_for, quetzal_task, settings_for


@quetzal_task(help={
    "dry_run": "print the rendered definition and change nothing",
    **AWS_HELP,
})
def update_steps(c, dry_run=False, profile=None, region=None):
    """Validate step-functions.json, fill its ${...} placeholders and deploy it to the state machine."""
    from quetzal_deploy.pipeline.stepfunctions import update_steps as deploy_steps

    settings = settings_for(profile, region)
    deploy_steps(settings, aws_for(settings), dry_run=dry_run)


@quetzal_task(help={"last": "how many executions to show (default 10)", **AWS_HELP})
def executions(c, last=10, profile=None, region=None):
    """List the pipeline's most recent executions on AWS, with status and duration."""
    from quetzal_deploy.pipeline.executions import executions_table, list_executions

    settings = settings_for(profile, region)
    found = list_executions(settings, aws_for(settings), last=int(last))
    print(executions_table(found) if found else f"No execution of {settings.state_machine} yet.")
