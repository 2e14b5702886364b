"""Show the model's settings."""

from dataclasses import asdict

from quetzal_deploy.tasks.common import AWS_HELP, quetzal_task, settings_for


@quetzal_task(help=AWS_HELP)
def config(c, profile=None, region=None):
    """Show the model's settings read from .env and .env.local."""
    for key, value in asdict(settings_for(profile, region)).items():
        print(f"{key:16} {value}")
