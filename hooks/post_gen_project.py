"""Finish the generated model repo with the quetzal_deploy package beside the template
(``quetzal_deploy.upgrade.bake``): inputs, notebooks, state machine, Terraform module, git."""

import json
import sys
from pathlib import Path

sys.path.insert(0, {{ quetzal_deploy_path | tojson }})
from quetzal_deploy.upgrade.bake import finish  # noqa: E402

if __name__ == "__main__":
    finish(json.loads({{ cookiecutter | tojson | tojson }}), Path({{ cookiecutter._repo_dir | absolute_path | tojson }}))
