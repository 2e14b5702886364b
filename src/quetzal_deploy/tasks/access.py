"""Access for the front end's users (Cognito groups)."""

from quetzal_deploy.tasks.common import AWS_HELP, aws_for, quetzal_task, settings_for


@quetzal_task(help={
    "group": "the Cognito user group (created when it does not exist)",
    "revoke": "take the access back instead",
    **AWS_HELP,
})
def grant_access(c, group, revoke=False, profile=None, region=None):
    """Give a Cognito user group access to this model in the front end (--revoke: take it back)."""
    from quetzal_deploy.access.cognito import grant_access as grant

    settings = settings_for(profile, region)
    grant(settings, aws_for(settings), group, revoke=revoke)
