"""The model's invoke tasks: ``invoke --list`` shows them, ``invoke --help <task>`` explains one.

Each concern lives in its own module; every task is also available at the top level.
"""

import sys
from pathlib import Path

from invoke import Collection

# invoke imports this package by path: make the repo's own packages importable too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import access, config, images, infra, observe, pipeline, run, scenarios  # noqa: E402

ns = Collection()
for module in (config, infra, images, scenarios, pipeline, run, observe, access):
    for task in Collection.from_module(module).tasks.values():
        ns.add_task(task)
