"""What a run is, as the front end, the tools and the notebooks agree on it. Standard library only:
the image ships this subpackage next to the runtime, which imports it.

- ``execution``: the state machine input a run starts with, and the cause a failure reports;
- ``params``: everything about a run's params: the front end's ``inputs/params.json`` and the
  ``--params`` overrides checked, what a run sends, and ``run_params``, what a notebook reads;
- ``fargate``: how a Fargate step's container receives its event and returns its result;
- ``limits``: the 256 KiB Step Functions allows a state, as it counts them;
- ``layers``: the output layers the front end can load (their CRS).

The step's event is checked by the runtime (``runtime.event``), against the image's files.
"""
