"""What runs inside the Lambda image: one pipeline step (one notebook) per invocation.

Imports only boto3/botocore, the standard library and the run contract (``quetzal_deploy.contract``,
shipped next to it), so the image needs nothing else and the local runner can reuse it:

- ``handler.handler(event, context)``: the Lambda entry point (the image's ``CMD``).
- ``handler.run_step(event, storage=..., workdir=..., task_root=..., time_left_s=...,
  image_tag=...) -> StepResult``: the same step against any storage, with its statistics.
- ``warm.prepare(task_root)``: the fork server each step's process is forked from, with the
  notebooks' top-level imports done once per container (``QUETZAL_WARM=0``: a fresh process);
  ``preload``: what it imports and how (packages that start threads refused, what else their
  users need preloaded around them).
- ``convert``: notebooks to scripts at image build time (``python -m
  quetzal_deploy.runtime.convert notebooks``), display magics dropped, other IPython refused.
- ``storage.S3Storage(bucket)`` / ``storage.FolderStorage(root)``: the scenario's bucket, or a
  local folder standing in for it.
- ``transfer.Transfers(client, bucket)``: the one S3 transfer stack (parallel, multipart with
  bounded memory, checksum of the bytes sent), used by ``S3Storage`` and by the workstation's
  scenario sync (``sync.s3sync``).
- ``errors``: ``NotebookError``, ``NotebookTimeout``, ``InvalidEvent``, ``StateTooLarge``,
  ``UnsafeKey``, ``UnsafeWorkdir``, ``StorageError``; on Lambda the class name becomes the Step
  Functions ``Error`` and the message its ``Cause``.
"""
