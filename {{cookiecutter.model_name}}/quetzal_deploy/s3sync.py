"""Sync a local folder with one prefix of an S3 bucket: plan first, then transfer in parallel.

Requests dominate a sync's time, so a plan costs one paginated ListObjectsV2 plus a HeadObject
only where the listing cannot tell whether a file changed (same size, but a multipart or
encrypted ETag that is not the content MD5). Every local file is read (hashed) before the first
write, so a local fault aborts with the bucket untouched. Deletions run only after every upload
succeeded; when an upload fails, the versions the others wrote are deleted again (the model's
bucket is versioned), so the prefix is left exactly as it was.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.runtime.checksum import CHECKSUM_ALGORITHM, file_digests

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
    shown = names if all_names else names[:SHOWN_NAMES]
    more = [f"  ... and {len(names) - len(shown)} more"] if len(names) > len(shown) else []
    return [f"  {verb} {name}" for name in shown] + more


def content_type(rel: str) -> str:
    return mimetypes.guess_type(rel)[0] or "application/octet-stream"


def escapes(rel: str) -> bool:
    """Whether a key (relative to its prefix) would land outside the folder it is downloaded into."""
    parts = rel.split("/")
    return "\\" in rel or "\0" in rel or any(p in {"", ".", ".."} for p in parts) or ":" in parts[0]


def read_local(folder: Path, include: Callable[[str], bool],
               concurrency: int = CONCURRENCY) -> dict[str, LocalFile]:
    """Hash every file under ``folder`` that ``include(rel)`` accepts; any unreadable one is an error."""
    paths = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if not include(rel) or path.is_dir():
            continue
        if not path.is_file():
            raise SyncError(f"{path} is not a regular file (broken link, pipe or device): "
                            "replace it with a file or remove it, then re-run")
        paths.append((rel, path))

    def digest(item: tuple[str, Path]) -> LocalFile:
        rel, path = item
        try:
            md5, checksum = file_digests(path, "md5", CHECKSUM_ALGORITHM)
            return LocalFile(rel, path, path.stat().st_size, md5, checksum)
        except OSError as ex:
            raise SyncError(f"cannot read {path} ({ex.strerror or ex}): fix or remove it, "
                            "then re-run; nothing was transferred") from ex

    with ThreadPoolExecutor(concurrency) as pool:
        return {f.rel: f for f in pool.map(digest, paths)}


class S3Prefix:
    """One folder-like prefix of a bucket (``<scenario>/``, ``_common/``), on an injected client."""

    def __init__(self, s3, bucket: str, prefix: str, *, concurrency: int = CONCURRENCY):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.concurrency = concurrency

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
            extra = {"Metadata": {**metadata, "checksum": file.checksum},
                     "ContentType": content_type(file.rel)}
            key = self.prefix + file.rel
            if file.size >= LARGE.multipart_threshold:
                self.s3.upload_file(str(file.path), self.bucket, key, ExtraArgs=extra,
                                    Callback=progress, Config=LARGE)
                return self.s3.head_object(Bucket=self.bucket, Key=key).get("VersionId")
            with file.path.open("rb") as body:
                response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
            progress(file.size)
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
                                f"(first: {error['Key']}: {error.get('Message', error.get('Code'))}); "
                                "re-run to retry")

    def plan_download(self, folder: Path, include: Callable[[str], bool]) -> DownloadPlan:
        """Fetch objects missing or different locally; refuse keys that would escape ``folder``."""
        remote = self.list()
        unsafe = sorted(rel for rel in remote if escapes(rel))
        if unsafe:
            raise SyncError(f"refusing to download keys that would land outside {folder}: "
                            f"{', '.join(self.prefix + rel for rel in unsafe)}; nothing was written")
        remote = {rel: obj for rel, obj in remote.items() if include(rel)}
        blocked = sorted(rel for rel in remote if (folder / rel).exists() and not (folder / rel).is_file())
        if blocked:
            raise SyncError(f"{', '.join(str(folder / rel) for rel in blocked)} exist(s) locally but are "
                            "not files: move them away, then re-run; nothing was written")
        local = read_local(folder, lambda rel: rel in remote, self.concurrency) if folder.is_dir() else {}
        same = self._same(local, remote)
        plan = DownloadPlan(prefix=self.prefix, folder=folder)
        for rel, obj in sorted(remote.items()):
            (plan.skip if rel in same else plan.fetch).append(obj)
        plan.overwrite = sorted(rel for rel in local if rel not in same)
        return plan

    def download(self, plan: DownloadPlan) -> None:
        """Fetch each object to a temporary file renamed into place (boto3's managed download)."""

        def fetch(obj: RemoteObject, progress: Callable[[int], object]) -> None:
            target = plan.folder / obj.rel
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
