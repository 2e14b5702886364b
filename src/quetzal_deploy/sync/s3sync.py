"""Sync a local folder with one prefix of an S3 bucket: plan first, then transfer in parallel.

Requests dominate a sync's time, so a plan costs one paginated ListObjectsV2 plus a HeadObject
only where the listing cannot tell whether a file changed (same size, but a multipart or
encrypted ETag that is not the content MD5). Every local file is read (hashed) before the first
write, so a local fault aborts with the bucket untouched. Deletions run only after every upload
succeeded; when an upload fails, the versions the others wrote are deleted again (the model's
bucket is versioned), so the prefix is left exactly as it was.

Which files and keys may move is ``runtime.paths``'s rule, shared with the Lambda handler: a
symbolic link is followed only inside the folder, a key never lands outside it (``..``, control
characters, a local folder link leading elsewhere). A file is read again when it is sent, and its
``checksum`` metadata is the hash of the bytes sent, even if it was edited since the plan.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.runtime.checksum import CHECKSUM_ALGORITHM, CHUNK_BYTES, bytes_checksum, file_digests
from quetzal_deploy.runtime.errors import StepError, UnsafeKey
from quetzal_deploy.runtime.paths import safe_relative, shown, target_in, tree_files

CONCURRENCY = 16
# Files from this size go through boto3's managed transfer (multipart, parallel parts); smaller
# ones are one PutObject each, which costs less CPU per file than a managed transfer.
LARGE = TransferConfig(max_concurrency=4)
DELETE_BATCH = 1000  # DeleteObjects limit
SHOWN_NAMES = 10

mimetypes.add_type("application/geo+json", ".geojson")
mimetypes.add_type("text/markdown", ".md")


class SyncError(QuetzalError):
    """A sync could not be planned or did not complete."""


@dataclass(frozen=True)
class LocalFile:
    """A file to sync; ``rel`` is its POSIX path under the folder (= its key under the prefix)."""

    rel: str
    path: Path
    size: int
    md5: str
    checksum: str


@dataclass(frozen=True)
class RemoteObject:
    rel: str
    size: int
    etag: str


@dataclass
class UploadPlan:
    """What an upload would do; ``existing`` counts the objects already under the prefix."""

    prefix: str
    upload: list[LocalFile] = field(default_factory=list)
    skip: list[LocalFile] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    existing: int = 0

    @property
    def changes(self) -> bool:
        return bool(self.upload or self.delete)

    def describe(self, all_names: bool = False) -> list[str]:
        """A summary line, then the files to upload and delete."""
        lines = [f"{self.prefix}: {len(self.upload)} to upload, {len(self.skip)} unchanged, "
                 f"{len(self.delete)} to delete"]
        lines += _names("upload", [f.rel for f in self.upload], all_names)
        lines += _names("delete", self.delete, all_names)
        return lines


@dataclass
class DownloadPlan:
    """What a download would do; ``overwrite`` lists local files that differ from the bucket."""

    prefix: str
    folder: Path
    fetch: list[RemoteObject] = field(default_factory=list)
    skip: list[RemoteObject] = field(default_factory=list)
    overwrite: list[str] = field(default_factory=list)

    def describe(self, all_names: bool = False) -> list[str]:
        lines = [f"{self.prefix}: {len(self.fetch)} to download ({len(self.overwrite)} replacing "
                 f"a different local file), {len(self.skip)} unchanged"]
        lines += _names("download", [o.rel for o in self.fetch], all_names)
        return lines


def _names(verb: str, names: list[str], all_names: bool) -> list[str]:
    listed = names if all_names else names[:SHOWN_NAMES]
    more = [f"  ... and {len(names) - len(listed)} more"] if len(names) > len(listed) else []
    return [f"  {verb} {shown(name)}" for name in listed] + more


def content_type(rel: str) -> str:
    return mimetypes.guess_type(rel)[0] or "application/octet-stream"


def read_local(folder: Path, include: Callable[[str], bool],
               concurrency: int = CONCURRENCY) -> dict[str, LocalFile]:
    """Hash every file under ``folder`` that ``include(rel)`` accepts (``paths.tree_files``: links
    leading outside the folder, loops, pipes are errors); any unreadable one is an error."""
    try:
        files = tree_files(folder, lambda rel: not include(rel))
    except StepError as ex:
        raise SyncError(str(ex)) from ex
    return digest_files(files, concurrency)


def digest_files(files: list[tuple[Path, str]], concurrency: int = CONCURRENCY) -> dict[str, LocalFile]:
    """``LocalFile`` of each (path, rel), hashed in parallel."""

    def digest(item: tuple[Path, str]) -> LocalFile:
        path, rel = item
        try:
            md5, checksum = file_digests(path, "md5", CHECKSUM_ALGORITHM)
            return LocalFile(rel, path, path.stat().st_size, md5, checksum)
        except OSError as ex:
            raise SyncError(f"cannot read {shown(str(path))} ({ex.strerror or ex}): fix or remove it, "
                            "then re-run; nothing was transferred") from ex

    with ThreadPoolExecutor(concurrency) as pool:
        return {f.rel: f for f in pool.map(digest, files)}


@contextmanager
def frozen(path: Path, spool: Path | None) -> Iterator[tuple[bytes | Path, str]]:
    """The file's content as it is now, and its checksum: bytes below the multipart threshold,
    else a private copy in ``spool``. What is hashed is what is sent, even if the file changes."""
    with open(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as stream:
        head = stream.read(LARGE.multipart_threshold)
        if len(head) < LARGE.multipart_threshold:
            yield head, bytes_checksum(head)
            return
        digest = hashlib.new(CHECKSUM_ALGORITHM, head)
        if spool:
            spool.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="quetzal-upload-", dir=spool) as folder:
            copy = Path(folder, "body")
            with copy.open("wb") as out:
                out.write(head)
                while chunk := stream.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
            yield copy, digest.hexdigest()


class S3Prefix:
    """One folder-like prefix of a bucket (``<scenario>/``, ``_common/``), on an injected client."""

    def __init__(self, s3, bucket: str, prefix: str, *, concurrency: int = CONCURRENCY,
                 spool: Path | None = None):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.concurrency = concurrency
        self.spool = spool  # where large files are copied while they are sent (default: temp)

    def list(self) -> dict[str, RemoteObject]:
        """Every object under the prefix (folder markers left out), by relative path."""
        objects = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                rel = item["Key"][len(self.prefix):]
                if rel and not rel.endswith("/"):
                    objects[rel] = RemoteObject(rel, item["Size"], item["ETag"].strip('"'))
        return objects

    def checksums(self, rels: Iterable[str]) -> dict[str, str | None]:
        """The ``checksum`` metadata of these objects (HeadObject, in parallel)."""

        def head(rel: str) -> tuple[str, str | None]:
            response = self.s3.head_object(Bucket=self.bucket, Key=self.prefix + rel)
            return rel, response.get("Metadata", {}).get("checksum")

        with ThreadPoolExecutor(self.concurrency) as pool:
            return dict(pool.map(head, list(rels)))

    def _same(self, local: Mapping[str, LocalFile], remote: Mapping[str, RemoteObject]) -> set[str]:
        """Paths whose content is the same on both sides: by ETag, else by checksum metadata."""
        same, unsure = set(), []
        for rel, file in local.items():
            obj = remote.get(rel)
            if obj is None or obj.size != file.size:
                continue
            if obj.etag == file.md5:
                same.add(rel)
            else:
                unsure.append(rel)
        stored = self.checksums(unsure)
        return same | {rel for rel in unsure if stored[rel] == local[rel].checksum}

    def plan_upload(self, local: Mapping[str, LocalFile], owned: Callable[[str], bool]) -> UploadPlan:
        """Upload new and changed files; delete remote files gone locally for which ``owned(rel)``."""
        remote = self.list()
        same = self._same(local, remote)
        return UploadPlan(
            prefix=self.prefix,
            upload=[f for rel, f in sorted(local.items()) if rel not in same],
            skip=[f for rel, f in sorted(local.items()) if rel in same],
            delete=sorted(rel for rel in remote if rel not in local and owned(rel)),
            existing=len(remote),
        )

    def upload(self, plan: UploadPlan, metadata: Mapping[str, str]) -> None:
        """Upload, then delete; if an upload fails, undo the others and delete nothing."""

        def send(file: LocalFile, progress: Callable[[int], object]) -> str | None:
            """Upload one file; returns the version it created (None in an unversioned bucket)."""
            key = self.prefix + file.rel
            with frozen(file.path, self.spool) as (body, checksum):
                extra = {"Metadata": {**metadata, "checksum": checksum},
                         "ContentType": content_type(file.rel)}
                if isinstance(body, Path):
                    self.s3.upload_file(str(body), self.bucket, key, ExtraArgs=extra,
                                        Callback=progress, Config=LARGE)
                    return self.s3.head_object(Bucket=self.bucket, Key=key).get("VersionId")
                response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
                progress(len(body))
                return response.get("VersionId")

        written, failed = self._transfer(plan.upload, send, sum(f.size for f in plan.upload), "upload")
        if failed:
            rel, ex = failed[0]
            raise SyncError(
                f"{len(failed)} of {len(plan.upload)} uploads to s3://{self.bucket}/{self.prefix} failed "
                f"(first: {rel}: {ex}). {self._roll_back(written)} Fix the cause and re-run."
            ) from ex
        self._delete([{"Key": self.prefix + rel} for rel in plan.delete])

    def _roll_back(self, written: Mapping[str, str | None]) -> str:
        """Delete the versions this run wrote, so the previous ones are current again; says how it went."""
        versions = [{"Key": self.prefix + rel, "VersionId": version}
                    for rel, version in written.items() if version not in {None, "null"}]
        if len(versions) < len(written):
            return (f"Nothing was deleted; the bucket keeps no versions, so {len(written)} file(s) "
                    "already uploaded stay replaced.")
        try:
            self._delete(versions)
        except (BotoCoreError, ClientError, SyncError) as ex:
            return (f"Nothing was deleted, but the {len(written)} file(s) already uploaded could not be "
                    f"rolled back ({ex}): each object is either as it was or fully replaced.")
        return (f"The {len(written)} file(s) already uploaded were rolled back: "
                f"s3://{self.bucket}/{self.prefix} is exactly as it was.")

    def _delete(self, objects: list[dict[str, str]]) -> None:
        """DeleteObjects in batches; ``objects`` are ``{"Key"[, "VersionId"]}``."""
        for start in range(0, len(objects), DELETE_BATCH):
            batch = objects[start:start + DELETE_BATCH]
            response = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                error = response["Errors"][0]
                raise SyncError(f"could not delete {len(response['Errors'])} object(s) "
                                f"(first: {shown(error['Key'])}: {error.get('Message', error.get('Code'))}); "
                                "re-run to retry")

    def plan_download(self, folder: Path, include: Callable[[str], bool]) -> DownloadPlan:
        """Fetch objects missing or different locally; refuse keys that would land outside ``folder``
        (``paths.safe_relative``, and ``paths.target_in``: a local folder link leading elsewhere)."""
        remote = self.list()
        targets = self.targets(folder, remote)
        remote = {rel: obj for rel, obj in remote.items() if include(rel)}
        blocked = sorted(rel for rel in remote if targets[rel].exists() and not targets[rel].is_file())
        if blocked:
            raise SyncError(f"{', '.join(shown(str(targets[rel])) for rel in blocked)} exist(s) locally "
                            "but are not files: move them away, then re-run; nothing was written")
        local = digest_files([(targets[rel], rel) for rel in remote if targets[rel].is_file()],
                             self.concurrency)
        same = self._same(local, remote)
        plan = DownloadPlan(prefix=self.prefix, folder=folder)
        for rel, obj in sorted(remote.items()):
            (plan.skip if rel in same else plan.fetch).append(obj)
        plan.overwrite = sorted(rel for rel in local if rel not in same)
        return plan

    def targets(self, folder: Path, remote: Iterable[str]) -> dict[str, Path]:
        """The local file of each key, all checked first: one unsafe key and nothing is written."""
        targets, unsafe = {}, []
        for rel in remote:
            try:
                targets[rel] = target_in(folder, safe_relative(rel))
            except UnsafeKey:
                unsafe.append(rel)
        if unsafe:
            raise SyncError(f"refusing to download {len(unsafe)} key(s) that would land outside {folder} "
                            "('..' or empty parts, control characters, or a local symbolic link leading "
                            f"elsewhere): {', '.join(shown(self.prefix + rel) for rel in sorted(unsafe))}; "
                            "nothing was written")
        return targets

    def download(self, plan: DownloadPlan) -> None:
        """Fetch each object to a temporary file renamed into place (boto3's managed download)."""
        targets = self.targets(plan.folder, [obj.rel for obj in plan.fetch])  # links made since the plan

        def fetch(obj: RemoteObject, progress: Callable[[int], object]) -> None:
            target = targets[obj.rel]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.bucket, self.prefix + obj.rel, str(target),
                                  Callback=progress, Config=LARGE)

        _, failed = self._transfer(plan.fetch, fetch, sum(o.size for o in plan.fetch), "download")
        if failed:
            rel, ex = failed[0]
            raise SyncError(f"{len(failed)} of {len(plan.fetch)} downloads failed (first: {rel}: {ex}); "
                            "files already fetched are complete: re-run to finish") from ex

    def _transfer(self, items, action, total_bytes: int, label: str):
        """Run ``action(item, progress)`` for every item on a thread pool.

        Returns ``({rel: result}, [(rel, error)])``: what succeeded, then what failed.
        """

        def attempt(item):
            try:
                return item.rel, action(item, bar.update), None
            except (BotoCoreError, ClientError, OSError) as ex:
                return item.rel, None, ex

        pool = ThreadPoolExecutor(self.concurrency)
        try:
            with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=label, disable=None) as bar:
                outcomes = list(pool.map(attempt, items))
        finally:  # on Ctrl-C, transfers not yet started are dropped
            pool.shutdown(cancel_futures=True)
        done = {rel: result for rel, result, error in outcomes if error is None}
        return done, [(rel, error) for rel, _, error in outcomes if error is not None]
