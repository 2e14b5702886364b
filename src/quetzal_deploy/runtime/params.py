"""Moved to ``quetzal_deploy.contract.params``: kept because notebooks of already-baked models
import ``run_params`` from here (their ``notebooks/_step.ipynb`` copies)."""

from quetzal_deploy.contract.params import run_params  # noqa: F401
