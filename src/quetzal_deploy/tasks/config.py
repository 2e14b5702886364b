"""Show the model's settings."""

from dataclasses import asdict

from quetzal_deploy.tasks.common import quetzal_task


@quetzal_task(aws=True)
def config(settings):
    """Show the model's settings read from .env and .env.local."""
    for key, value in asdict(settings).items():
        print(f"{key:16} {value}")
