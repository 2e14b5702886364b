"""Set up the model repo's CI/CD."""

from quetzal_deploy.tasks.common import quetzal_task


@quetzal_task
def ci_bootstrap(settings):
    """Print the one-time steps that let the repo's GitHub Actions deploy the model (no AWS call)."""
    from quetzal_deploy.infra.ci import bootstrap

    bootstrap(settings)
