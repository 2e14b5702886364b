"""Run the pipeline: on AWS, or on this machine with --local."""

import functools
import os

from invoke import Exit

from quetzal_deploy.tasks.common import quetzal_task


@quetzal_task(aws=True, help={
    "scenario": "scenario folder name (scenarios/<name>/ locally, <name>/ in the bucket on AWS)",
    "local": "run every step on this machine (no AWS account, no Docker needed)",
    "docker": "with --local: run each step in the model's image (built first) behind its Lambda emulator",
    "params": 'JSON file {"category": {"name": value}} or flat {"name": value} over inputs/params.json',
    "choice": "pipeline variant to run (the front end's tab; default: the Choice state's Default)",
    "open": "with --local: open the run's HTML report in the browser when it ends",
    "tiles": "with --local: draw the report's layers over these XYZ raster tiles (http(s)://.../{z}/{x}/{y}.png;"
             " default REPORT_TILE_URL in .env, else none: the report fetches nothing)",
    "wait": "on AWS: follow the execution until it ends (--no-wait: start it and return)",
    "keep-outputs": "on AWS: keep the last run's results in the bucket (<scenario>/outputs/ and"
                    " <scenario>/logs/), which a run otherwise deletes first, as the front end does",
})
def run(settings, aws, scenario, local=False, docker=False, params=None, choice=None, wait=True,
        open=False, tiles=None, keep_outputs=False):
    """Run the whole pipeline on a scenario: on AWS, or on this machine with --local."""
    if docker and not local:
        raise Exit("ERROR: --docker runs the steps on this machine: add --local.", code=2)
    if open and not local:
        raise Exit("ERROR: --open opens a local run's report: add --local (an execution on AWS: "
                   "invoke executions --report <name>).", code=2)
    if keep_outputs and local:
        raise Exit("ERROR: --keep-outputs keeps the results of the last run on AWS in the bucket: a local "
                   "run writes a new folder of its own (.quetzal/runs/), drop --local or --keep-outputs.",
                   code=2)
    if tiles is not None and not local:
        raise Exit("ERROR: --tiles sets the tiles of a local run's report: add --local (an execution on "
                   "AWS: invoke executions --report <name> --tiles URL).", code=2)
    if local:
        from quetzal_deploy.local.runner import run_local
        from quetzal_deploy.settings import with_tiles

        settings = with_tiles(settings, tiles)

        code = run_local(settings, scenario, params=params, choice=choice, docker=docker, open_report=open)
    else:
        from quetzal_deploy.pipeline.executions import run_remote

        follow = functools.partial(print, flush=True)  # each state as it happens, even in a pipe
        # A token for the Authorization state comes from the environment, never the command line.
        # The run starts under the scenario's upload lease: never while an upload is half way.
        code = run_remote(settings, aws, scenario, params=params, choice=choice, wait=wait, out=follow,
                          authorization=os.environ.get("QUETZAL_AUTHORIZATION", ""),
                          keep_outputs=keep_outputs)
    if code:
        raise Exit(code=code)
