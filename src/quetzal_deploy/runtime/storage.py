"""Where scenarios live: the model's S3 bucket, or a local folder standing in for it.

Both classes have the same methods, so a step runs the same way on Lambda and on a workstation:

- ``list_keys(prefix) -> list[str]``: keys under ``prefix`` (e.g. ``"base/"``), sorted.
- ``download_prefix(prefix, dest) -> Snapshot``: copy every object under ``prefix`` into ``dest``
  (key ``base/inputs/x`` -> ``dest/inputs/x``); the snapshot holds each file's version in the
  bucket (its ETag) and its local stamp once written (``len()``: the number of files).
- ``upload_changes(src, prefix, snapshot, exclude=("inputs/", "logs/"), metadata=None,
  unconditional=()) -> int``: copy to ``prefix`` + their relative path the files of ``src`` that
  the step created or changed since ``snapshot`` (an unchanged stamp, or a rewrite with the same
  bytes, is not sent), except the excluded top-level folders; returns the number of files. Each
  write is conditional: a changed file only over the version downloaded, a new one only where no
  object exists, so two parallel steps changing one key fail with ``WriteConflict`` naming it
  (except the ``unconditional`` paths, like the handler's ``info.json``). Symbolic links follow
  ``paths.tree_files``: followed inside ``src``, refused (``UnsafeKey``, nothing sent) when they
  lead outside.
- ``upload_tree(src, prefix, exclude, metadata) -> int``: every file, unconditionally.
- ``put_text(key, text, metadata=None, condition=None)``: write one text object (a log);
  ``create_text(storage, key, text)`` writes it only where no object exists.

Every key is checked before the first byte moves (``paths.safe_relative``): a key that would
land outside ``dest`` (``..``, an absolute part, control characters) raises ``UnsafeKey`` and
nothing is written.

``S3Storage(bucket, client=None)`` transfers files through ``transfer.Transfers`` (the one
transfer stack, shared with ``invoke upload-scenarios``): in parallel, multipart with bounded
memory for large files, no HeadObject per download, and ``metadata`` stored as object metadata
plus a ``checksum`` of the bytes sent, computed as the front end computes it.
``FolderStorage(root)`` maps key ``S/inputs/x`` to the file ``root/S/inputs/x``; it keeps no
metadata (a local folder has nowhere to store it, and nothing local reads it). Its versions are
the ETags S3 would give the files (``local_etag``); a conditional write creates with a hard link
(which fails where the file exists) and replaces under an exclusive lock of ``root``, so threads
and processes sharing the folder (``run --local --docker``) see the same conflicts as on S3.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

try:
    import fcntl
except ImportError:  # Windows: the threads of one process still exclude each other
    fcntl = None
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from quetzal_deploy.runtime.checksum import bytes_checksum
from quetzal_deploy.runtime.errors import StorageError, WriteConflict
from quetzal_deploy.runtime.paths import safe_relative, target_in, tree_files
from quetzal_deploy.runtime.transfer import (
    MULTIPART_BYTES,
    PART_SUFFIX,
    WORKERS,
    Stamp,
    Transfers,
    boto_session,
    file_stamp,
    list_objects,
    multipart_digest,
    replace_atomically,
)

EXCLUDED = ("inputs/", "logs/")
CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
Condition = dict[str, str]  # {} (always), {"IfMatch": version} or {"IfNoneMatch": "*"}


@dataclass
class Snapshot:
    """What a step downloaded: each file's version in the bucket and its stamp once written."""

    versions: dict[str, str] = field(default_factory=dict)  # relative path -> ETag
    stamps: dict[str, Stamp] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.versions)

    def record(self, dest: Path, plan, version: Callable[[str], str]) -> Snapshot:
        for key, path in plan:
            relative = path.relative_to(dest).as_posix()
            self.versions[relative] = version(key)
            self.stamps[relative] = file_stamp(path)
        return self


def local_etag(path: Path) -> str:
    """The ETag S3 gives the file uploaded by ``transfer`` (an MD5, or a multipart ETag)."""
    if os.stat(path).st_size < MULTIPART_BYTES:
        with Path(path).open("rb") as stream:
            return hashlib.file_digest(stream, "md5").hexdigest()
    return multipart_digest(path).etag


def write_plan(src: Path, snapshot: Snapshot | None, exclude,
               unconditional=()) -> list[tuple[str, Path, Condition]]:
    """(relative path, file, condition) of the files of ``src`` to write back; all of them,
    unconditionally, without a snapshot."""
    plan = []
    for path, relative in tree_files(src, excluded(exclude)):
        version = snapshot.versions.get(relative) if snapshot is not None else None
        if snapshot is None or relative in unconditional:
            plan.append((relative, path, {}))
        elif version is None:
            plan.append((relative, path, {"IfNoneMatch": "*"}))
        elif file_stamp(path) != snapshot.stamps[relative] and local_etag(path) != version.strip('"'):
            plan.append((relative, path, {"IfMatch": version}))
    return plan


def conflict(keys: list[str], where: str) -> WriteConflict:
    shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
    return WriteConflict(
        f"Another step of this execution changed {shown} in {where} while this step ran, and this "
        "step changed it too: parallel steps (Map iterations, Parallel branches) must each write "
        "their own files, e.g. parallel/links_<exec_id>.geojson, merged by a later step. This "
        "step's other changes were written; the conflicting files keep the other step's version.")


class Storage(Protocol):
    def list_keys(self, prefix: str) -> list[str]: ...

    def download_prefix(self, prefix: str, dest: Path) -> Snapshot: ...

    def upload_changes(self, src: Path, prefix: str, snapshot: Snapshot | None, exclude=EXCLUDED,
                       metadata=None, unconditional=()) -> int: ...

    def upload_tree(self, src: Path, prefix: str, exclude=EXCLUDED, metadata=None) -> int: ...

    def put_text(self, key: str, text: str, metadata=None, condition: Condition | None = None) -> None: ...


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
        """Submit every transfer, then wait for all; conditions not met become one WriteConflict,
        any other failure a StorageError."""
        with Transfers(self.client, self.bucket, self.workers) as transfers:
            futures = [(key, submit(transfers, key, item)) for key, item in items]
            _, failed = transfers.wait(futures)
        conflicts = sorted(key for key, ex in failed if error_code(ex) in CONFLICT_CODES)
        if conflicts:
            raise conflict(conflicts, f"s3://{self.bucket}")
        if failed:
            key, ex = failed[0]
            raise self.failure(action, key, ex) from ex
        return len(futures)

    def download_prefix(self, prefix: str, dest: Path) -> Snapshot:
        listing = self.objects(prefix)
        plan = download_plan(list(listing), prefix, dest)
        for _, path in plan:
            path.parent.mkdir(parents=True, exist_ok=True)

        def submit(transfers, key, path):
            return transfers.download(key, path, listing[key]["Size"], listing[key]["ETag"])

        self.run_all("download", submit, plan)
        return Snapshot().record(dest, plan, lambda key: listing[key]["ETag"])

    def upload_changes(self, src: Path, prefix: str, snapshot: Snapshot | None, exclude=EXCLUDED,
                       metadata=None, unconditional=()) -> int:
        plan = [(prefix + relative, (path, condition))
                for relative, path, condition in write_plan(src, snapshot, exclude, unconditional)]
        for key, _ in plan:
            safe_relative(key, prefix)

        def submit(transfers, key, item):
            path, condition = item
            return transfers.upload(path, key, {"Metadata": dict(metadata or {}), **condition})

        return self.run_all("upload", submit, plan)

    def upload_tree(self, src: Path, prefix: str, exclude=EXCLUDED, metadata=None) -> int:
        return self.upload_changes(src, prefix, None, exclude, metadata)

    def put_text(self, key: str, text: str, metadata=None, condition: Condition | None = None) -> None:
        safe_relative(key)
        body = text.encode()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="text/plain; charset=utf-8",
                Metadata={**(metadata or {}), "checksum": bytes_checksum(body)}, **(condition or {}),
            )
        except (BotoCoreError, ClientError) as ex:
            if error_code(ex) in CONFLICT_CODES:
                raise conflict([key], f"s3://{self.bucket}") from ex
            raise self.failure("upload", key, ex) from ex


def create_text(storage: Storage, key: str, text: str, metadata=None) -> bool:
    """Write one text object only where none exists; False when the key is taken."""
    try:
        storage.put_text(key, text, metadata, {"IfNoneMatch": "*"})
    except WriteConflict:
        return False
    return True


def error_code(ex: Exception) -> str:
    return ex.response.get("Error", {}).get("Code", "") if isinstance(ex, ClientError) else ""


class FolderStorage:
    """A local folder standing in for the bucket: key ``S/inputs/x`` is ``root/S/inputs/x``.

    Metadata is accepted and ignored.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lock = threading.Lock()

    @contextmanager
    def locked(self):
        """This process's threads, then other processes (``flock`` on the root folder)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.lock:
            if fcntl is None:
                yield
                return
            descriptor = os.open(self.root, os.O_RDONLY)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)

    def write(self, key: str, fill: Callable[[Path], object], condition: Condition) -> None:
        """Write ``key`` through ``fill(temporary)``, as S3 would under ``condition``."""
        target = target_in(self.root, safe_relative(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        if not condition:
            replace_atomically(target, fill)
        elif "IfNoneMatch" in condition:
            replace_atomically(target, lambda temporary: create_from(temporary, fill, target, key, self.root))
        else:
            with self.locked():
                if not target.is_file() or local_etag(target) != condition["IfMatch"].strip('"'):
                    raise conflict([key], str(self.root))
                replace_atomically(target, fill)

    def list_keys(self, prefix: str) -> list[str]:
        base = target_in(self.root, safe_relative(prefix.rstrip("/"))) if prefix else self.root
        if not base.is_dir():
            return []
        # A part file may vanish mid-walk (renamed into place): skipped before it is looked at.
        return [prefix + relative for _, relative in tree_files(base, lambda rel: rel.endswith(PART_SUFFIX))]

    def download_prefix(self, prefix: str, dest: Path) -> Snapshot:
        plan = download_plan(self.list_keys(prefix), prefix, dest)
        versions = {}
        for key, path in plan:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.root / key, path)
            versions[key] = local_etag(path)
        return Snapshot().record(dest, plan, versions.__getitem__)

    def upload_changes(self, src: Path, prefix: str, snapshot: Snapshot | None, exclude=EXCLUDED,
                       metadata=None, unconditional=()) -> int:
        plan = write_plan(src, snapshot, exclude, unconditional)
        for relative, _, _ in plan:
            target_in(self.root, safe_relative(prefix + relative))
        conflicts = []
        for relative, path, condition in plan:
            try:
                self.write(prefix + relative,
                           lambda temporary, source=path: shutil.copyfile(source, temporary), condition)
            except WriteConflict:
                conflicts.append(prefix + relative)
        if conflicts:
            raise conflict(conflicts, str(self.root))
        return len(plan)

    def upload_tree(self, src: Path, prefix: str, exclude=EXCLUDED, metadata=None) -> int:
        return self.upload_changes(src, prefix, None, exclude, metadata)

    def put_text(self, key: str, text: str, metadata=None, condition: Condition | None = None) -> None:
        self.write(key, lambda temporary: temporary.write_text(text, encoding="utf-8"), condition or {})


def create_from(temporary: Path, fill: Callable[[Path], object], target: Path, key: str, root: Path) -> None:
    """Fill ``temporary``, then link it at ``target`` only if nothing is there (``os.link`` fails
    where a file exists: S3's ``If-None-Match: *``); the replace that follows is then a no-op."""
    fill(temporary)
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise conflict([key], str(root)) from None
