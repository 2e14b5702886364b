"""Where scenarios live: the model's S3 bucket, or a local folder standing in for it.

Both classes have the same methods, so a step runs the same way on Lambda and on a workstation:

- ``list_keys(prefix) -> list[str]``: keys under ``prefix`` (e.g. ``"base/"``), sorted.
- ``download_prefix(prefix, dest) -> int``: copy every object under ``prefix`` into ``dest``
  (key ``base/inputs/x`` -> ``dest/inputs/x``); returns the number of files.
- ``upload_tree(src, prefix, exclude=("inputs/", "logs/"), metadata=None) -> int``: copy the
  files of ``src`` to ``prefix`` + their relative path, except the excluded top-level folders;
  returns the number of files. Symbolic links follow ``paths.tree_files``: followed inside
  ``src``, refused (``UnsafeKey``, nothing sent) when they lead outside.
- ``put_text(key, text, metadata=None)``: write one text object (a log).

Every key is checked before the first byte moves (``paths.safe_relative``): a key that would
land outside ``dest`` (``..``, an absolute part, control characters) raises ``UnsafeKey`` and
nothing is written.

``S3Storage(bucket, client=None)`` transfers files through ``transfer.Transfers`` (the one
transfer stack, shared with ``invoke upload-scenarios``): in parallel, multipart with bounded
memory for large files, no HeadObject per download, and ``metadata`` stored as object metadata
plus a ``checksum`` of the bytes sent, computed as the front end computes it.
``FolderStorage(root)`` maps key ``S/inputs/x`` to the file ``root/S/inputs/x``; it keeps no
metadata (a local folder has nowhere to store it, and nothing local reads it).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from quetzal_deploy.runtime.checksum import bytes_checksum
from quetzal_deploy.runtime.errors import StorageError
from quetzal_deploy.runtime.paths import safe_relative, target_in, tree_files
from quetzal_deploy.runtime.transfer import (
    PART_SUFFIX,
    WORKERS,
    Transfers,
    boto_session,
    list_objects,
    replace_atomically,
)

EXCLUDED = ("inputs/", "logs/")


class Storage(Protocol):
    def list_keys(self, prefix: str) -> list[str]: ...

    def download_prefix(self, prefix: str, dest: Path) -> int: ...

    def upload_tree(self, src: Path, prefix: str, exclude=EXCLUDED, metadata=None) -> int: ...

    def put_text(self, key: str, text: str, metadata=None) -> None: ...


def excluded(exclude) -> Callable[[str], bool]:
    """``tree_files``'s ``skip`` for top-level folders like ``inputs/``."""
    return lambda rel: rel.startswith(tuple(exclude))


def download_plan(keys: list[str], prefix: str, dest: Path) -> list[tuple[str, Path]]:
    """(key, local file) for every object under ``prefix``; folder markers are skipped."""
    return [(key, target_in(dest, safe_relative(key, prefix))) for key in keys
            if not key.endswith("/")]


@lru_cache(maxsize=1)
def default_client():
    """One S3 client per process (warm Lambda containers reuse it), standard retries."""
    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=WORKERS)
    return boto_session().client("s3", config=config)


class S3Storage:
    """A scenario bucket on S3 (or anything ``AWS_ENDPOINT_URL`` points boto3 at)."""

    def __init__(self, bucket: str, client=None, *, workers: int = WORKERS):
        self.bucket = bucket
        self.client = client or default_client()
        self.workers = workers

    def failure(self, action: str, key: str, ex: Exception) -> StorageError:
        return StorageError(
            f"S3 {action} of s3://{self.bucket}/{key} failed: {ex}. Check that the bucket exists "
            "and that the Lambda's role may list, read and write it."
        )

    def objects(self, prefix: str) -> dict[str, dict]:
        """Key -> listing entry (Size, ETag, ...) of every object under ``prefix``, sorted."""
        try:
            return list_objects(self.client, self.bucket, prefix)
        except (BotoCoreError, ClientError) as ex:
            raise self.failure("listing", prefix, ex) from ex

    def list_keys(self, prefix: str) -> list[str]:
        return list(self.objects(prefix))

    def run_all(self, action: str, submit, items) -> int:
        """Submit every transfer, then wait for all; the first failure becomes a StorageError."""
        with Transfers(self.client, self.bucket, self.workers) as transfers:
            futures = [(key, submit(transfers, key, item)) for key, item in items]
            _, failed = transfers.wait(futures)
        if failed:
            key, ex = failed[0]
            raise self.failure(action, key, ex) from ex
        return len(futures)

    def download_prefix(self, prefix: str, dest: Path) -> int:
        listing = self.objects(prefix)
        plan = download_plan(list(listing), prefix, dest)
        for _, path in plan:
            path.parent.mkdir(parents=True, exist_ok=True)

        def submit(transfers, key, path):
            return transfers.download(key, path, listing[key]["Size"], listing[key]["ETag"])

        return self.run_all("download", submit, plan)

    def upload_tree(self, src: Path, prefix: str, exclude=EXCLUDED, metadata=None) -> int:
        plan = [(prefix + relative, path) for path, relative in tree_files(src, excluded(exclude))]
        for key, _ in plan:
            safe_relative(key, prefix)

        def submit(transfers, key, path):
            return transfers.upload(path, key, {"Metadata": dict(metadata or {})})

        return self.run_all("upload", submit, plan)

    def put_text(self, key: str, text: str, metadata=None) -> None:
        safe_relative(key)
        body = text.encode()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="text/plain; charset=utf-8",
                Metadata={**(metadata or {}), "checksum": bytes_checksum(body)},
            )
        except (BotoCoreError, ClientError) as ex:
            raise self.failure("upload", key, ex) from ex


class FolderStorage:
    """A local folder standing in for the bucket: key ``S/inputs/x`` is ``root/S/inputs/x``.

    Metadata is accepted and ignored.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def list_keys(self, prefix: str) -> list[str]:
        base = target_in(self.root, safe_relative(prefix.rstrip("/"))) if prefix else self.root
        if not base.is_dir():
            return []
        # A part file may vanish mid-walk (renamed into place): skipped before it is looked at.
        return [prefix + relative for _, relative in tree_files(base, lambda rel: rel.endswith(PART_SUFFIX))]

    def download_prefix(self, prefix: str, dest: Path) -> int:
        plan = download_plan(self.list_keys(prefix), prefix, dest)
        for key, path in plan:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.root / key, path)
        return len(plan)

    def upload_tree(self, src: Path, prefix: str, exclude=EXCLUDED, metadata=None) -> int:
        plan = [(target_in(self.root, safe_relative(prefix + relative)), path)
                for path, relative in tree_files(src, excluded(exclude))]
        for target, path in plan:
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(target, lambda temporary, source=path: shutil.copyfile(source, temporary))
        return len(plan)

    def put_text(self, key: str, text: str, metadata=None) -> None:
        target = target_in(self.root, safe_relative(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))
