"""What a run is, as the front end and the tools agree on it (the step's own side, its event and
params, is the runtime's: ``runtime.event``, ``runtime.params``).

- ``execution``: the state machine input a run starts with, and the cause a failure reports;
- ``params``: the front end's ``inputs/params.json`` and the ``--params`` overrides, checked;
- ``layers``: the output layers the front end can load (their CRS).
"""
