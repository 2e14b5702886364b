"""The invoke collection a model repo's ``tasks.py`` imports: ``invoke --list`` shows its tasks,
``invoke --help <task>`` explains one. Each concern lives in its own module; every task is
available at the top level."""

from invoke import Collection

from quetzal_deploy.tasks import access, config, images, infra, observe, pipeline, run, scenarios, upgrade

ns = Collection()
for module in (config, infra, images, scenarios, pipeline, run, observe, access, upgrade):
    for task in Collection.from_module(module).tasks.values():
        ns.add_task(task)
