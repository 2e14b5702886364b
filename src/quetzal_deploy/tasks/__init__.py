"""The invoke collection a model repo's ``tasks.py`` imports: ``invoke --list`` shows its tasks,
``invoke --help <task>`` explains one. Each concern lives in its own module; every task is
available at the top level.

A command ends by freezing the garbage collector (``gc.freeze`` at exit): the interpreter's last
collection would otherwise walk every object botocore loaded (its service models), about 60 ms
of a sync's 0.5 s. What runs at exit still runs (``atexit``, ``weakref.finalize``, flushing the
standard streams); only objects in reference cycles are left to the operating system.
"""

import atexit
import gc

from invoke import Collection

from quetzal_deploy.tasks import access, ci, config, images, infra, observe, pipeline, run, scenarios, upgrade

ns = Collection()
for module in (config, infra, images, scenarios, pipeline, run, observe, access, upgrade, ci):
    for task in Collection.from_module(module).tasks.values():
        ns.add_task(task)

atexit.register(gc.freeze)
