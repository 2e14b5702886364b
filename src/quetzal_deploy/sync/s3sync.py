"""Sync a local folder with one prefix of an S3 bucket: plan first, then transfer in parallel.

Requests dominate a sync's time, so a plan costs one paginated ListObjectsV2 plus a HeadObject
only where the listing cannot tell whether a file changed (same size, but an ETag other than the
one our upload gives: another tool's part size, an encrypted object). Transfers go through
``runtime.transfer`` (the one transfer stack, shared with the Lambda handler). Every local file
is read (hashed) before the first write, so a local fault aborts with the bucket untouched.
Deletions run only after every upload succeeded; when an upload fails, the versions the others
wrote are deleted again (the model's bucket is versioned), so the prefix is left exactly as it was.

Which files and keys may move is ``runtime.paths``'s rule, shared with the Lambda handler: a
symbolic link is followed only inside the folder, a key never lands outside it (``..``, control
characters, a local folder link leading elsewhere). The ``checksum`` metadata is the hash of the
bytes sent, even if a file was edited since the plan: a large file is hashed once, for the plan,
and the ETag S3 computes from what it received proves the digest still holds (``transfer``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.runtime.checksum import CHECKSUM_ALGORITHM
from quetzal_deploy.runtime.errors import StepError, UnsafeKey
from quetzal_deploy.runtime.paths import safe_relative, shown, target_in, tree_files
from quetzal_deploy.runtime.transfer import (
    PART_SUFFIX,
    Digest,
    Stamp,
    Transfers,
    digest_file,
    file_stamp,
    list_objects,
    replace_atomically,
    settled,
)
from quetzal_deploy.runtime.transfer import WORKERS as CONCURRENCY

DELETE_BATCH = 1000  # DeleteObjects limit
KEY_BYTES = 1024  # the longest key S3 takes (UTF-8)
REMEMBERED = 10_000  # EtagMemory's entries
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
    digest: Digest

    @property
    def size(self) -> int:
        return self.digest.size


@dataclass(frozen=True)
class RemoteObject:
    rel: str
    size: int
    etag: str


@dataclass
class UploadPlan:
    """What an upload would do; ``remote`` is the prefix's listing the plan was made from."""

    prefix: str
    upload: list[LocalFile] = field(default_factory=list)
    skip: list[LocalFile] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    remote: dict[str, RemoteObject] = field(default_factory=dict)

    @property
    def existing(self) -> int:
        """How many objects were already under the prefix."""
        return len(self.remote)

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
    generation: object = None  # the scenario's upload lease when planned (``sync.lease``)

    def describe(self, all_names: bool = False) -> list[str]:
        lines = [f"{self.prefix}: {len(self.fetch)} to download ({len(self.overwrite)} replacing "
                 f"a different local file), {len(self.skip)} unchanged"]
        lines += _names("download", [o.rel for o in self.fetch], all_names)
        return lines


def _names(verb: str, names: list[str], all_names: bool) -> list[str]:
    listed = names if all_names else names[:SHOWN_NAMES]
    more = [f"  ... and {len(names) - len(listed)} more"] if len(names) > len(listed) else []
    return [f"  {verb} {shown(name)}" for name in listed] + more


def file_checksum(path: Path) -> str:
    """The front end's checksum (SHA-256) of a file."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, CHECKSUM_ALGORITHM).hexdigest()


def content_type(rel: str) -> str:
    return mimetypes.guess_type(rel)[0] or "application/octet-stream"


def read_json_object(file: Path) -> dict:
    """A cache file's JSON object; anything else (missing, not JSON, ``[]``, ``null``) is empty."""
    try:
        found = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def write_json(file: Path, data: object) -> None:
    """Write a cache file atomically (best effort: a cache)."""
    with contextlib.suppress(OSError):
        file.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(file, lambda temporary: temporary.write_text(json.dumps(data)))


class EtagMemory:
    """ETag -> checksum of objects fetched whose ETag says nothing of their bytes (another tool's
    multipart upload, without ``checksum`` metadata): hashed once after the download, so later
    plans compare them without a HeadObject and never fetch them again while unchanged. Kept beside
    the digest cache, the newest ``REMEMBERED`` entries."""

    def __init__(self, folder: Path | None):
        self.file = folder / "etags.json" if folder else None
        self.known = read_json_object(self.file) if self.file else {}

    def checksum(self, etag: str) -> str | None:
        found = self.known.get(etag)
        return found if isinstance(found, str) else None

    def remember(self, found: Mapping[str, str]) -> None:
        if self.file and found:
            self.known.update(found)
            write_json(self.file, dict(list(self.known.items())[-REMEMBERED:]))


class DigestCache:
    """Digests of the files of one folder already read, kept in a JSON file under ``folder`` (the
    repo's ``.quetzal/digests/``), so that an unchanged file is not read again, as git's index does:
    an entry holds only while the file's stamp (``transfer.file_stamp``: size, modification and
    change times, inode) is the same (any write changes the change time, which no tool sets back).
    A file changed within ``transfer.SETTLED_S`` of being read is not kept: a second write in the
    same clock tick could keep its times.
    """

    def __init__(self, folder: Path | None, source: Path):
        name = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:32] + ".json"
        self.file = folder / name if folder else None
        self.seen: dict[str, list] = {}
        self.kept = read_json_object(self.file) if self.file else {}

    def known(self, path: Path) -> Digest | None:
        """The digest kept for the file, if its stamp is unchanged (then kept for the next read);
        an entry of another shape (a damaged or hand-edited cache) is ignored."""
        stamp = file_stamp(path)
        try:
            (kept_stamp, (size, etag, checksum)) = self.kept.get(str(path)) or ((), (None, None, None))
            if tuple(kept_stamp) == stamp and isinstance(size, int) and isinstance(checksum, str):
                return self.keep(path, stamp, Digest(size, etag, checksum, stamp=stamp))
        except (TypeError, ValueError):
            pass
        return None

    def digest(self, path: Path) -> Digest:
        """The file's digest, read from the file (kept if the file has settled)."""
        stamp = file_stamp(path)
        return self.keep(path, stamp, digest_file(path))

    def keep(self, path: Path, stamp: Stamp, digest: Digest) -> Digest:
        if settled(stamp) and stamp[0] == digest.size:
            self.seen[str(path)] = [stamp, [digest.size, digest.etag, digest.checksum]]
        return digest

    def save(self) -> None:
        """Keep the entries of the files seen in this read (best effort: a cache)."""
        if self.file:
            write_json(self.file, self.seen)


def read_local(folder: Path, include: Callable[[str], bool], concurrency: int = CONCURRENCY,
               cache: Path | None = None) -> dict[str, LocalFile]:
    """Hash every file under ``folder`` that ``include(rel)`` accepts (``paths.tree_files``: links
    leading outside the folder, loops, pipes are errors); any unreadable one is an error. With a
    ``cache`` folder, files unchanged since the last read are not read again (``DigestCache``)."""
    try:
        files = tree_files(folder, lambda rel: rel.endswith(PART_SUFFIX) or not include(rel))
    except StepError as ex:
        raise SyncError(str(ex)) from ex
    return digest_files(nfc_keys(files, folder), concurrency, DigestCache(cache, folder))


def nfc_keys(files: list[tuple[Path, str]], folder: Path) -> list[tuple[Path, str]]:
    """Each file's key in Unicode's composed form (NFC: what the front end and Windows write; macOS
    names files decomposed, NFD), so one name is one key; two files whose names differ only so are
    refused, naming both."""
    keys: dict[str, list[str]] = {}
    for _, rel in files:
        keys.setdefault(unicodedata.normalize("NFC", rel), []).append(rel)
    clashes = [names for names in keys.values() if len(names) > 1]
    if clashes:
        pairs = "; ".join(" and ".join(repr(name) for name in names) for names in clashes[:SHOWN_NAMES])
        raise SyncError(f"{folder} has files whose names differ only in Unicode form (composed or "
                        f"decomposed accents, which print alike): {shown(pairs)}. They would be one key "
                        "for the front end: rename or remove one of each; nothing was transferred.")
    return [(path, unicodedata.normalize("NFC", rel)) for path, rel in files]


def check_keys(bucket: str, prefix: str, rels: Iterable[str], forms: bool = False) -> None:
    """Refuse keys no folder can hold: ``x`` beside ``x/y`` (a file and a folder of one name), with
    ``forms`` two keys differing only in Unicode form; and keys longer than S3 takes (``KEY_BYTES``)."""
    rels = set(rels)
    folders = {rel[:cut] for rel in rels for cut in range(len(rel)) if rel[cut] == "/"}
    clashes = sorted(f"{rel} and {rel}/..." for rel in rels & folders)
    named: dict[str, list[str]] = {}
    for rel in rels if forms else ():
        named.setdefault(unicodedata.normalize("NFC", rel), []).append(rel)
    clashes += sorted(" and ".join(map(repr, sorted(names))) for names in named.values() if len(names) > 1)
    if clashes:
        raise SyncError(f"s3://{bucket}/{prefix} holds keys no folder can hold at once: "
                        f"{shown('; '.join(clashes[:SHOWN_NAMES]))} (a file and a folder of one name, or "
                        "one name in two Unicode forms). Rename or delete one of each in the bucket; "
                        "nothing was transferred.")
    long = sorted(rel for rel in rels if len((prefix + rel).encode("utf-8", "surrogatepass")) > KEY_BYTES)
    if long:
        raise SyncError(f"{len(long)} key(s) under s3://{bucket}/{prefix} would be longer than the "
                        f"{KEY_BYTES} bytes S3 allows (first: {shown(long[0][:120])}...): shorten those "
                        "paths; nothing was transferred.")


def digest_files(files: list[tuple[Path, str]], concurrency: int = CONCURRENCY,
                 cache: DigestCache | None = None) -> dict[str, LocalFile]:
    """``LocalFile`` of each (path, rel): the digests ``cache`` keeps for unchanged files, the other
    files hashed in parallel."""

    def local_file(read: Callable[[Path], Digest | None], item: tuple[Path, str]) -> LocalFile | None:
        path, rel = item
        try:
            found = read(path)
        except OSError as ex:
            raise SyncError(f"cannot read {shown(str(path))} ({ex.strerror or ex}): fix or remove it, "
                            "then re-run; nothing was transferred") from ex
        return found and LocalFile(rel, path, found)

    known = {f.rel: f for item in files if (f := local_file(cache.known, item))} if cache else {}
    unknown = [item for item in files if item[1] not in known]
    read = cache.digest if cache else digest_file
    with ThreadPoolExecutor(concurrency) as pool:
        fresh = {f.rel: f for f in pool.map(partial(local_file, read), unknown)}
    if cache:
        cache.save()
    return {rel: known.get(rel) or fresh[rel] for _, rel in files}


class S3Prefix:
    """One folder-like prefix of a bucket (``<scenario>/``, ``_common/``), on an injected client."""

    def __init__(self, s3, bucket: str, prefix: str, *, concurrency: int = CONCURRENCY,
                 cache: Path | None = None):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.concurrency = concurrency
        self.cache = cache  # DigestCache's folder for the local files its plans compare
        self.etags = EtagMemory(cache)

    def list(self) -> dict[str, RemoteObject]:
        """Every object under the prefix (folder markers left out), by relative path."""
        objects = {}
        for key, item in list_objects(self.s3, self.bucket, self.prefix).items():
            rel = key[len(self.prefix):]
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
            if obj.etag == file.digest.etag or self.etags.checksum(obj.etag) == file.digest.checksum:
                same.add(rel)
            else:
                unsure.append(rel)
        stored = self.checksums(unsure)
        return same | {rel for rel in unsure if stored[rel] == local[rel].digest.checksum}

    def plan_folder(self, folder: Path, include: Callable[[str], bool]) -> UploadPlan:
        """``plan_upload`` of ``folder``'s files (``read_local``, through this prefix's digest cache),
        read while the listing request travels; a local fault still wins over a listing's."""
        with ThreadPoolExecutor(1) as pool:
            listing = pool.submit(self.list)
            local = read_local(folder, include, self.concurrency, self.cache)
            return self.plan_upload(local, include, listing.result())

    def plan_upload(self, local: Mapping[str, LocalFile], owned: Callable[[str], bool],
                    remote: Mapping[str, RemoteObject] | None = None) -> UploadPlan:
        """Upload new and changed files; delete remote files gone locally for which ``owned(rel)``
        (``remote``: the prefix's listing, when already taken)."""
        remote = self.list() if remote is None else remote
        check_keys(self.bucket, self.prefix, remote)
        check_keys(self.bucket, self.prefix, local)
        same = self._same(local, remote)
        return UploadPlan(
            prefix=self.prefix,
            upload=[f for rel, f in sorted(local.items()) if rel not in same],
            skip=[f for rel, f in sorted(local.items()) if rel in same],
            delete=sorted(rel for rel in remote if rel not in local and owned(rel)),
            remote=dict(remote),
        )

    def upload(self, plan: UploadPlan, metadata: Mapping[str, str],
               check: Callable[[], object] | None = None) -> None:
        """Upload, then delete; if an upload fails, undo the others and delete nothing. ``check()``
        runs before the deletions (it raises to keep them from happening)."""

        def send(transfers: Transfers, file: LocalFile, progress: Callable[[int], object]):
            """Upload one file; its future gives the version it created (None if unversioned)."""
            extra = {"Metadata": dict(metadata), "ContentType": content_type(file.rel)}
            return transfers.upload(file.path, self.prefix + file.rel, extra, file.digest, progress)

        written, failed = self._transfer(plan.upload, send, sum(f.size for f in plan.upload), "upload")
        if failed:
            rel, ex = failed[0]
            raise SyncError(
                f"{len(failed)} of {len(plan.upload)} uploads to s3://{self.bucket}/{self.prefix} failed "
                f"(first: {rel}: {ex}). {self._roll_back(written, plan)} Fix the cause and re-run."
            ) from ex
        if check:
            check()
        self._delete([{"Key": self.prefix + rel} for rel in plan.delete])

    def abort_multipart(self, which: Callable[[dict], bool]) -> None:
        """Abort the incomplete multipart uploads under the prefix for which ``which(upload)`` (a
        ListMultipartUploads entry): what a killed upload leaves, stored and billed but never listed."""
        for page in self.s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket,
                                                                              Prefix=self.prefix):
            for upload in page.get("Uploads", []):
                if which(upload):
                    self.s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                   UploadId=upload["UploadId"])

    def _roll_back(self, written: Mapping[str, str | None], plan: UploadPlan) -> str:
        """Delete the versions this run wrote, so the previous ones are current again; says how it
        went: "exactly as it was" only once a new listing matched the plan's, object for object."""
        versions = [{"Key": self.prefix + rel, "VersionId": version}
                    for rel, version in written.items() if version not in {None, "null"}]
        if len(versions) < len(written):
            return (f"Nothing was deleted; the bucket keeps no versions, so {len(written)} file(s) "
                    "already uploaded stay replaced.")
        try:
            self._delete(versions)
            keys = {self.prefix + f.rel for f in plan.upload}  # s3transfer aborts only what it saw fail
            self.abort_multipart(lambda upload: upload["Key"] in keys)
            now = self.list()
        except (BotoCoreError, ClientError, SyncError) as ex:
            return (f"Nothing was deleted, but the {len(written)} file(s) already uploaded could not be "
                    f"rolled back ({ex}): each object is either as it was or fully replaced.")
        differ = sorted(rel for rel in now.keys() | plan.remote.keys()
                        if now.get(rel) != plan.remote.get(rel))
        if differ:
            return (f"Nothing was deleted and the {len(written)} file(s) uploaded were rolled back, but "
                    f"{len(differ)} object(s) differ from before the upload, changed by someone else "
                    f"meanwhile: {', '.join(shown(rel) for rel in differ[:SHOWN_NAMES])}.")
        return (f"The {len(written)} file(s) already uploaded were rolled back: "
                f"s3://{self.bucket}/{self.prefix} is exactly as it was (checked: {len(now)} objects "
                "listed as before).")

    def clear(self) -> int:
        """Delete every object under the prefix, folder markers too (a versioned bucket keeps the
        versions: this writes delete markers); returns how many were deleted."""
        keys = list(list_objects(self.s3, self.bucket, self.prefix))
        self._delete([{"Key": key} for key in keys])
        return len(keys)

    def _delete(self, objects: list[dict[str, str]]) -> None:
        """DeleteObjects in batches; ``objects`` are ``{"Key"[, "VersionId"]}``. Every batch is
        sent; then a ``SyncError`` names each key that could not be deleted, and why."""
        errors = []
        for start in range(0, len(objects), DELETE_BATCH):
            batch = objects[start:start + DELETE_BATCH]
            response = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors += response.get("Errors", [])
        if errors:
            lines = [f"  {shown(e['Key'])}: {e.get('Message') or e.get('Code')}"
                     for e in errors[:SHOWN_NAMES]]
            more = [f"  ... and {len(errors) - SHOWN_NAMES} more"] if len(errors) > SHOWN_NAMES else []
            raise SyncError("\n".join([f"could not delete {len(errors)} of {len(objects)} object(s) under "
                                        f"s3://{self.bucket}/{shown(self.prefix)}:", *lines, *more,
                                        "Fix the cause (permissions, object lock) and re-run."]))

    def plan_download(self, folder: Path, include: Callable[[str], bool]) -> DownloadPlan:
        """Fetch objects missing or different locally; refuse keys that would land outside ``folder``
        (``paths.safe_relative``, and ``paths.target_in``: a local folder link leading elsewhere)."""
        remote = self.list()
        check_keys(self.bucket, self.prefix, remote, forms=True)
        targets = self.targets(folder, remote)
        remote = {rel: obj for rel, obj in remote.items() if include(rel)}
        blocked = sorted(rel for rel in remote if targets[rel].exists() and not targets[rel].is_file())
        if blocked:
            raise SyncError(f"{', '.join(shown(str(targets[rel])) for rel in blocked)} exist(s) locally "
                            "but are not files: move them away, then re-run; nothing was written")
        local = digest_files([(targets[rel], rel) for rel in remote if targets[rel].is_file()],
                             self.concurrency, DigestCache(self.cache, folder))
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

        for obj in plan.fetch:
            targets[obj.rel].parent.mkdir(parents=True, exist_ok=True)

        def fetch(transfers: Transfers, obj: RemoteObject, progress: Callable[[int], object]):
            return transfers.download(self.prefix + obj.rel, targets[obj.rel], obj.size, obj.etag, progress)

        done, failed = self._transfer(plan.fetch, fetch, sum(o.size for o in plan.fetch), "download")
        opaque = [obj for obj in plan.fetch if obj.rel in done and "-" in obj.etag]  # multipart ETags
        with ThreadPoolExecutor(self.concurrency) as pool:
            checksums = pool.map(lambda obj: (obj.etag, file_checksum(targets[obj.rel])), opaque)
            self.etags.remember(dict(checksums))
        if failed:
            rel, ex = failed[0]
            raise SyncError(f"{len(failed)} of {len(plan.fetch)} downloads failed (first: {rel}: {ex}); "
                            "files already fetched are complete: re-run to finish") from ex

    def _transfer(self, items, submit, total_bytes: int, label: str):
        """``submit(transfers, item, progress)`` for every item, then wait for all (on Ctrl-C,
        transfers not yet started are dropped).

        Returns ``({rel: result}, [(rel, error)])``: what succeeded, then what failed.
        """
        from tqdm import tqdm  # only a sync that moves files pays for loading it

        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=label, disable=None) as bar, \
                Transfers(self.s3, self.bucket, self.concurrency) as transfers:
            return transfers.wait([(item.rel, submit(transfers, item, bar.update)) for item in items])
