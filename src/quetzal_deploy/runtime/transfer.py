"""The one S3 transfer stack: the Lambda handler's storage and the workstation sync both use it.

``Transfers(client, bucket)`` runs a batch of uploads and downloads in parallel:

- An object below ``MULTIPART_BYTES`` is one PutObject or GetObject on a thread pool: the least
  CPU per file (a managed transfer costs several thread hand-offs per file).
- A larger one goes through s3transfer's managed transfer: ``PART_BYTES`` parts, at most
  ``PART_REQUESTS`` of them in flight for the whole batch (more only add CPU contention and
  memory: measured with ``benchmarks/bench_sync_peers.py``, 8 sent 4 files of 200 MB in 0.89 of
  the time 32 took, and fetched them in 0.68). Memory stays bounded whatever the file
  size: parts are read from the file as they are sent, and a download's writes wait in a short
  queue (``QUEUED_WRITES``).
- A download lands in a temporary file renamed into place: a reader sees the old file or the new
  one, never half of it. Large ones too (s3transfer writes into our file object), so a killed
  process leaves only hidden ``.<name>.<pid>.<thread>.quetzal-part`` files, which no sync reads
  and ``sweep_parts`` deletes once their process is gone. Sizes and ETags come from the listing,
  so no HeadObject is sent.
- An upload's ``checksum`` metadata (the front end's SHA-256, ``checksum.py``) is the hash of the
  bytes sent. A small file is hashed from the bytes in memory. A large file's digest is taken
  once, before it is sent (or given by the caller, who read it for a plan), and what proves that
  the file did not change since is its stamp (size, modification and change times, inode), as
  git's index does: any write moves the change time, which no tool sets back. That holds only for
  a file that had not been written for ``SETTLED_S`` when it was read (a second write within the
  file system's clock tick could keep the times), so a file written more recently is also hashed
  for the ETag S3 will compute from the parts it receives, which S3's answer must match
  (``digest_file``). A file edited meanwhile is digested and sent again.

Only boto3 and the standard library: the Lambda image imports this module.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import boto3
import botocore.session
import botocore.utils
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster

from quetzal_deploy.runtime.checksum import CHECKSUM_ALGORITHM, CHUNK_BYTES, bytes_checksum
from quetzal_deploy.runtime.errors import StorageError

WORKERS = 32  # small files: one request each, latency-bound
PART_REQUESTS = 8
MULTIPART_BYTES = 8 * 1024 * 1024
PART_BYTES = 16 * 1024 * 1024
QUEUED_WRITES = 64  # a download's pending writes of 256 KB: at most 16 MB waiting for the disk
SEND_ATTEMPTS = 3  # a large file still changing after this many sends is an error
CONFIG = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=PART_BYTES,
                        max_request_concurrency=PART_REQUESTS, max_io_queue_size=QUEUED_WRITES)
CONDITIONS = ("IfMatch", "IfNoneMatch")  # S3 conditional writes: a PutObject's, a multipart's last call
PART_SUFFIX = ".quetzal-part"  # a file being written: never listed, never uploaded
SETTLED_S = 2.0  # a file unwritten for this long: its stamp changes with any later write
ERRORS = (BotoCoreError, ClientError, RetriesExceededError, OSError, StorageError)

Progress = Callable[[int], object]


def no_progress(_bytes: int) -> None:
    """The default ``progress`` callback."""


Stamp = tuple[int, int, int, int]


@dataclass(frozen=True)
class Digest:
    """A file's content as S3 and the front end see it: ``etag`` is the ETag an upload by this
    module gets (the MD5, or for a multipart upload the MD5 of the parts' MD5s and ``-<parts>``),
    None for a large file read once it had settled, whose ``stamp`` then proves it unchanged."""

    size: int
    etag: str | None
    checksum: str
    stamp: Stamp | None = field(default=None, compare=False)


def file_stamp(path: Path) -> Stamp:
    """What any write to the file changes: size, modification and change times, inode."""
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino


def settled(stamp: Stamp) -> bool:
    """Whether the file was last written ``SETTLED_S`` ago or more (its stamp can be trusted)."""
    return time.time_ns() - stamp[2] > SETTLED_S * 1e9


def digest_file(path: Path) -> Digest:
    """``Digest`` of the file, in one read: the SHA-256 only for a large file that had settled
    (and did not change while it was read), the ETag's MD5s too otherwise."""
    stamp = file_stamp(path)
    if stamp[0] < MULTIPART_BYTES:
        data = Path(path).read_bytes()
        return Digest(len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(), bytes_checksum(data))
    if settled(stamp):
        with Path(path).open("rb") as stream:
            checksum = hashlib.file_digest(stream, CHECKSUM_ALGORITHM).hexdigest()
        if file_stamp(path) == stamp:
            return Digest(stamp[0], None, checksum, stamp)
    return multipart_digest(path)


def multipart_digest(path: Path) -> Digest:
    """``Digest`` with the multipart ETag S3 will compute from the parts ``CONFIG`` cuts."""
    size = os.stat(path).st_size
    checksum = hashlib.new(CHECKSUM_ALGORITHM)
    part_bytes = ChunksizeAdjuster().adjust_chunksize(PART_BYTES, size)
    parts, read = [], 0
    with Path(path).open("rb") as stream:
        while True:
            part, left = hashlib.md5(usedforsecurity=False), part_bytes
            while left and (chunk := stream.read(min(CHUNK_BYTES, left))):
                part.update(chunk)
                checksum.update(chunk)
                left -= len(chunk)
                read += len(chunk)
            if left == part_bytes:
                break
            parts.append(part.digest())
    if read < MULTIPART_BYTES:  # shrank while read: it would now be one PutObject
        return digest_file(path)
    etag = f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"
    return Digest(read, etag, checksum.hexdigest())


def parse_timestamp(value: str) -> datetime:
    """A response's timestamp: ISO 8601 (S3 listings) read by ``datetime``, 1,000 times faster
    than botocore's default (dateutil: 0.1-0.2 s per listing of 1,000 objects); others by it."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return botocore.utils.parse_timestamp(value)


def boto_session(**options) -> boto3.Session:
    """``boto3.Session(**options)`` whose clients parse timestamps with ``parse_timestamp``."""
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return boto3.Session(botocore_session=core, **options)


def read_no_follow(path: Path) -> bytes:
    """The file's bytes; a symbolic link put in its place since it was checked is refused."""
    with open(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as stream:
        return stream.read()


def list_objects(client, bucket: str, prefix: str) -> dict[str, dict]:
    """Key -> listing entry (``Size``, ``ETag``, ...) of every object under ``prefix``, sorted."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return dict(sorted((item["Key"], item) for page in pages for item in page.get("Contents", [])))


class Listed(BaseSubscriber):
    """Gives s3transfer the size and ETag from the listing (no HeadObject), and reports progress."""

    def __init__(self, progress: Progress, size: int | None = None, etag: str | None = None):
        self.progress, self.size, self.etag = progress, size, etag

    def on_queued(self, future, **kwargs):
        if self.size is not None:
            future.meta.provide_transfer_size(self.size)
        if self.etag is not None:
            future.meta.provide_object_etag(self.etag)

    def on_progress(self, future, bytes_transferred, **kwargs):
        self.progress(bytes_transferred)


def part_path(target: Path) -> Path:
    """The temporary file ``target`` is written through: hidden, named by this process (``pid``)
    and thread, ending in ``PART_SUFFIX``; never listed or uploaded, swept by ``sweep_parts``."""
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}{PART_SUFFIX}")


def part_owner(name: str) -> int | None:
    """The process id in a ``part_path`` file name, or None when the name is not one."""
    pieces = name.rsplit(PART_SUFFIX, 1)[0].split(".") if name.endswith(PART_SUFFIX) else []
    return int(pieces[-2]) if len(pieces) >= 3 and pieces[-2].isdigit() else None


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def sweep_parts(folder: Path) -> list[Path]:
    """Delete the part files under ``folder`` that a killed process left (its pid is gone)."""
    swept = []
    for parent, _, names in os.walk(folder):
        for name in names:
            owner = part_owner(name)
            if owner is not None and owner != os.getpid() and not alive(owner):
                (Path(parent) / name).unlink(missing_ok=True)
                swept.append(Path(parent) / name)
    return swept


def replace_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Write ``target`` through a temporary file beside it (``part_path``), renamed into place."""
    temporary = part_path(target)
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


class Transfers:
    """A batch of parallel transfers with one bucket; use as a context manager.

    ``upload`` and ``download`` return futures; ``wait`` collects them. Leaving the block on an
    error (or Ctrl-C) drops the transfers not yet started.
    """

    def __init__(self, client, bucket: str, workers: int = WORKERS):
        self.client = client
        self.bucket = bucket
        self.pool = ThreadPoolExecutor(workers)
        self.manager = TransferManager(client, CONFIG)
        client.meta.events.register_last("before-call.s3", send_body_with_headers,
                                         unique_id="quetzal-send-body-with-headers")
        client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload",
                                    add_multipart_conditions, unique_id="quetzal-multipart-conditions")

    def __enter__(self) -> Transfers:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.pool.shutdown(wait=error is None, cancel_futures=True)
        self.manager.__exit__(kind, error, trace)

    def upload(self, path: Path, key: str, extra: Mapping, digest: Digest | None = None,
               progress: Progress = no_progress) -> Future:
        """Send the file to ``key`` with ``extra`` (``Metadata``, ``ContentType``, a condition of
        ``CONDITIONS``) and its ``checksum``; the future gives the version written (None in an
        unversioned bucket). A condition not met fails with S3's ``PreconditionFailed``."""
        return self.pool.submit(self._upload, Path(path), key, extra, digest, progress)

    def _upload(self, path: Path, key: str, extra: Mapping, digest: Digest | None, progress: Progress):
        if os.stat(path).st_size < MULTIPART_BYTES:
            body = read_no_follow(path)
            if len(body) < MULTIPART_BYTES:
                response = self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                                  **with_checksum(extra, bytes_checksum(body)))
                progress(len(body))
                return response.get("VersionId")
        conditions = {name: extra[name] for name in CONDITIONS if name in extra}
        extra = {name: value for name, value in extra.items() if name not in CONDITIONS}
        for _ in range(SEND_ATTEMPTS):
            if digest is None or (digest.stamp is not None and file_stamp(path) != digest.stamp):
                digest = digest_file(path)
            MULTIPART_CONDITIONS[(self.bucket, key)] = conditions
            try:
                self.manager.upload(str(path), self.bucket, key,
                                    extra_args=with_checksum(extra, digest.checksum),
                                    subscribers=[Listed(progress)]).result()
            finally:
                MULTIPART_CONDITIONS.pop((self.bucket, key), None)
            head = self.client.head_object(Bucket=self.bucket, Key=key)
            if sent_as_digested(path, digest, head["ETag"].strip('"')):
                return head.get("VersionId")
            if head.get("VersionId") not in {None, "null"}:  # the version with a wrong checksum
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=head["VersionId"])
            digest = None
        raise StorageError(f"{path} kept changing while it was uploaded to s3://{self.bucket}/{key}: "
                           "upload it again once it is saved")

    def download(self, key: str, target: Path, size: int, etag: str,
                 progress: Progress = no_progress) -> Future:
        """Fetch ``key`` (``size`` and ``etag`` from the listing) to ``target``."""
        if size >= MULTIPART_BYTES:
            return self.pool.submit(self._download_parts, key, Path(target), size, etag, progress)
        return self.pool.submit(self._download, key, Path(target), etag, progress)

    def _download_parts(self, key: str, target: Path, size: int, etag: str, progress: Progress) -> None:
        """s3transfer's ranged GETs written into our own part file (``part_path``), not into the
        ``<name>.<random>`` file it would leave beside ``target`` if the process were killed."""

        def write(temporary: Path) -> None:
            with temporary.open("wb") as stream:
                self.manager.download(self.bucket, key, stream,
                                      subscribers=[Listed(progress, size, etag.strip('"'))]).result()

        replace_atomically(target, write)

    def _download(self, key: str, target: Path, etag: str, progress: Progress) -> None:
        """One GetObject of the version listed (``IfMatch``: a replaced object is an error)."""
        body = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=etag)["Body"].read()
        replace_atomically(target, lambda temporary: temporary.write_bytes(body))
        progress(len(body))

    @staticmethod
    def wait(futures: Iterable[tuple[str, Future]]) -> tuple[dict[str, object], list[tuple[str, Exception]]]:
        """``({name: result}, [(name, error)])`` once every future is done."""
        done, failed = {}, []
        for name, future in futures:
            try:
                done[name] = future.result()
            except ERRORS as ex:
                failed.append((name, ex))
        return done, failed


def send_body_with_headers(model, params: dict, **_) -> None:
    """A PutObject (a small file: large ones go in parts) sends its body with its headers, without
    botocore's ``Expect: 100-continue``, which waits a round trip for S3's go-ahead before sending
    a few kilobytes: one round trip less per small file (an error still comes back)."""
    if model.name == "PutObject":
        params["headers"].pop("Expect", None)


# (bucket, key) -> the conditions of its multipart upload under way: s3transfer passes no condition
# to CompleteMultipartUpload, where S3 checks them, so ``add_multipart_conditions`` adds them there.
MULTIPART_CONDITIONS: dict[tuple[str, str], dict[str, str]] = {}


def add_multipart_conditions(params: dict, **_) -> None:
    params.update(MULTIPART_CONDITIONS.get((params.get("Bucket"), params.get("Key")), {}))


def sent_as_digested(path: Path, digest: Digest, etag: str) -> bool:
    """Whether the object S3 stored (its ``etag``) holds the bytes ``digest`` describes: the file's
    stamp is unchanged, or else S3's ETag is the one predicted (or, where S3's ETag is not an MD5, as
    in a KMS-encrypted bucket, the file still has that digest)."""
    if digest.stamp is not None:
        return file_stamp(path) == digest.stamp
    if etag == digest.etag:
        return True
    now = digest_file(path)
    return (now.size, now.checksum) == (digest.size, digest.checksum)


def with_checksum(extra: Mapping, checksum: str) -> dict:
    """``extra`` with the front end's ``checksum`` added to its ``Metadata``."""
    return {**extra, "Metadata": {**extra.get("Metadata", {}), "checksum": checksum}}
