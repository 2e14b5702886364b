"""Shared fixtures live in tests/fixtures/, one module per part (AWS emulator, bakes, Docker).

Every process the tests start (invoke in a baked repo, the handler, the runtime's command line)
imports ``quetzal_deploy`` from this checkout's ``src/``, whatever else is installed."""

import os
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))

pytest_plugins = ["fixtures.parts", "fixtures.aws", "fixtures.bake", "fixtures.docker", "fixtures.terraform",
                  "fixtures.warm"]
