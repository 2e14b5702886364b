"""The model's invoke tasks come from the installed quetzal-deploy (``requirements-dev.txt``):
``invoke --list`` shows them, ``invoke --help <task>`` explains one."""

from quetzal_deploy.tasks import ns  # noqa: F401
