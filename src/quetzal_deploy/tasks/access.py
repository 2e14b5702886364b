"""Access for the front end's users (Cognito groups)."""

from quetzal_deploy.tasks.common import quetzal_task


@quetzal_task(aws=True, help={
    "group": "the Cognito user group (created when it does not exist)",
    "revoke": "take the access back instead",
})
def grant_access(settings, aws, group, revoke=False):
    """Give a Cognito user group access to this model in the front end (--revoke: take it back)."""
    from quetzal_deploy.access.cognito import grant_access as grant

    grant(settings, aws, group, revoke=revoke)
