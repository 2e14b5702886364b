"""The model's bucket as the front end sees it: scenarios, ``_common/lock.json``, ``_common/``.

What an upload sends: everything under ``scenarios/<name>/`` (``inputs/``, ``info.json``,
``styles.json``, ...) except hidden files and, unless asked, the ``outputs/`` and ``logs/`` a
local run leaves (they are the cloud run's results on the bucket side, and are never deleted
there by a plain upload). A download fetches everything, outputs and logs included.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from quetzal_deploy.aws import CONDITION_FAILED, Aws, s3_object, translated
from quetzal_deploy.errors import ConfigError, QuetzalError
from quetzal_deploy.git import user_email as user_email_of
from quetzal_deploy.runtime.checksum import bytes_checksum
from quetzal_deploy.runtime.info import STAMP_KEYS, info_bytes, parse_info, stamped
from quetzal_deploy.runtime.names import COMMON, InvalidScenarioName, check_scenario_name
from quetzal_deploy.runtime.paths import shown
from quetzal_deploy.runtime.transfer import alive, sweep_parts
from quetzal_deploy.settings import Settings
from quetzal_deploy.sync.lease import UPLOAD, Found, Lease, LeaseHeld, generation
from quetzal_deploy.sync.s3sync import DownloadPlan, S3Prefix, UploadPlan

LOCK_KEY = f"{COMMON}/lock.json"
DEFAULT_LOCKED = ("base",)
RUN_RESULTS = ("outputs", "logs")
CONFIG_FILES = ("modelConfig.json",)
CONFIG_FOLDERS = ("docs",)
EMAIL_VARIABLE = "QUETZAL_USER_EMAIL"
INFO = "info.json"


@dataclass
class ScenarioUpload:
    """An upload's file sync, and the ``info.json`` to write when anything changes.

    ``info`` is the bucket's info.json updated with the local one (``merged_info``); it is
    written with ``last_modified_date`` and ``last_modified_email`` whenever a file or the info
    changes.
    """

    files: UploadPlan
    info: dict
    info_changed: bool

    @property
    def prefix(self) -> str:
        return self.files.prefix

    @property
    def existing(self) -> int:
        return self.files.existing

    @property
    def changes(self) -> bool:
        return self.files.changes or self.info_changed

    def deleted_results(self) -> int:
        """How many of the bucket's run results (``outputs/``, ``logs/``) the upload deletes."""
        return sum(1 for rel in self.files.delete if rel.split("/")[0] in RUN_RESULTS)

    def describe(self, all_names: bool = False) -> list[str]:
        stamp = [f"  update {INFO} (last_modified_date, last_modified_email)"] if self.changes else []
        return self.files.describe(all_names) + stamp


def unstamped(info: dict) -> dict:
    return {key: value for key, value in info.items() if key not in STAMP_KEYS}


def merged_info(remote: dict, mine: dict) -> dict:
    """The bucket's info.json with the local one's keys (the description, ...); an empty local
    value never erases the bucket's (so ``model_tag`` stays the last run's), stamps stay apart."""
    return {**remote, **{k: v for k, v in unstamped(mine).items() if v or k not in remote}}


def is_hidden(rel: str) -> bool:
    """Hidden files and folders (.DS_Store, .ipynb_checkpoints, the old ``S/.lock`` marker)."""
    return any(part.startswith(".") for part in rel.split("/"))


def scenario_files(with_outputs: bool) -> Callable[[str], bool]:
    """Which paths under a scenario an upload syncs (and may delete on the bucket); ``info.json``
    is written apart, stamped with the change (see ``ScenarioUpload``)."""

    def include(rel: str) -> bool:
        return (not is_hidden(rel) and rel != INFO
                and (with_outputs or rel.split("/")[0] not in RUN_RESULTS))

    return include


def config_files(rel: str) -> bool:
    """The model-wide files ``publish-config`` owns under ``_common/``."""
    return not is_hidden(rel) and (rel in CONFIG_FILES or rel.split("/")[0] in CONFIG_FOLDERS)


def check_name(name: str) -> str:
    """A scenario name as the front end allows it (``runtime.names``), else a ConfigError."""
    try:
        return check_scenario_name(name)
    except InvalidScenarioName as ex:
        raise ConfigError(f"{ex} Use a folder name from scenarios/ as the front end shows it.") from ex


def parse_names(text: str, known: Iterable[str] = ()) -> list[str]:
    """Scenario names from ``base`` or ``base,other``; a ``known`` name is taken whole, commas and all."""
    pieces = [text] if text in known or "," not in text else [p.strip() for p in text.split(",")]
    names = [check_name(name) for name in pieces if name]
    if not names:
        raise ConfigError("give at least one scenario name, e.g. `base` or `base,other`")
    return list(dict.fromkeys(names))


def local_scenarios(settings: Settings) -> list[str]:
    folder = settings.scenarios_dir
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if folder.is_dir() else []


def not_a_link(folder: Path) -> Path:
    """``folder``, refused when it is a symbolic link: it would sync whatever it points to."""
    if folder.is_symlink():
        raise ConfigError(f"{shown(str(folder))} is a symbolic link (to {shown(os.readlink(folder))}): "
                          "refusing to sync through it; make it a real folder. Nothing was transferred.")
    return folder


def local_scenario(settings: Settings, name: str) -> Path:
    """``scenarios/<name>/``, or an error listing the scenarios that exist."""
    folder = not_a_link(settings.scenarios_dir / check_name(name))
    if not folder.is_dir():
        existing = ", ".join(local_scenarios(settings)) or "none"
        raise ConfigError(f"no scenario {name!r} in {settings.scenarios_dir} (existing: {existing})")
    return folder


def user_email(settings: Settings, option: str | None = None, default: str | None = None) -> str:
    """Who uploads: ``--email``, else $QUETZAL_USER_EMAIL, else ``git config user.email``,
    else ``default`` (local runs), else an error saying how to set one."""
    email = option or os.environ.get(EMAIL_VARIABLE, "")
    if not email:
        email = user_email_of(settings.root)
    email = email or default
    if not email:
        raise ConfigError(f"no user email for the objects' user_email metadata: run "
                          f"`git config user.email you@example.com`, set {EMAIL_VARIABLE}, or pass --email")
    return email


class ScenarioStore:
    """Scenario and model-config flows on the model's bucket."""

    def __init__(self, settings: Settings, aws: Aws | None = None):
        self.settings = settings
        self.aws = aws or Aws(settings)
        self.bucket = settings.bucket

    @cached_property
    def s3(self):
        return self.aws.client("s3")

    @property
    def digests(self) -> Path:
        """Where the digests of local files already read are kept (``s3sync.DigestCache``)."""
        return self.settings.root / ".quetzal" / "digests"

    def prefix(self, name: str) -> S3Prefix:
        """``name/`` on the bucket."""
        return S3Prefix(self.s3, self.bucket, name, cache=self.digests)

    @property
    def known(self) -> dict[str, str]:
        """The messages of this bucket's own errors: a missing bucket says to deploy first."""
        return {"NoSuchBucket": f"bucket {self.bucket} does not exist in {self.settings.region}: "
                                "run `invoke infra` (or `invoke deploy`) first"}

    def errors(self):
        """botocore errors raised inside as domain errors."""
        return translated(self.settings.profile, self.known)

    def plan_folder(self, prefix: str, folder: Path, include: Callable[[str], bool]) -> UploadPlan:
        """``folder``'s files against ``prefix/``, read while the listing request travels."""
        with self.errors():
            return self.prefix(prefix).plan_folder(folder, include)

    def download_marker(self, name: str) -> Path:
        """Written when a download of ``name`` starts, removed when it completes: while it exists,
        the local folder may lack files the bucket has, so an upload would delete them."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        return self.settings.root / ".quetzal" / "downloads" / f"{digest}.json"

    def check_not_half_downloaded(self, name: str) -> None:
        """Refuse to upload a folder whose last download did not finish (or is running)."""
        marker = self.download_marker(name)
        if not marker.is_file():
            return
        try:
            started = json.loads(marker.read_text())
            pid, when = int(started["pid"]), str(started["started"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, when = 0, "at an unknown time"
        state = (f"is still running (pid {pid})" if pid and alive(pid)
                 else f"started {when} did not finish (killed or failed)")
        raise ConfigError(
            f"the download of {name!r} into {local_scenario(self.settings, name)} {state}: the folder may "
            f"lack files, and an upload would delete them from s3://{self.bucket}/{name}/. Run "
            f"`invoke download-scenario {name}` to completion, then upload. Nothing was uploaded.")

    def plan_upload(self, name: str, with_outputs: bool = False) -> ScenarioUpload:
        include = scenario_files(with_outputs)
        folder = local_scenario(self.settings, name)
        self.check_not_half_downloaded(name)
        files = self.plan_folder(name, folder, include)
        local_info = folder / INFO
        if not (files.upload or files.skip or local_info.is_file()):
            raise ConfigError(f"{folder} has no files to upload: an empty folder would empty "
                              f"s3://{self.bucket}/{name}/ (add inputs/, info.json, styles.json)")
        remote = parse_info(self.read_object(f"{name}/{INFO}"))
        mine = parse_info(local_info.read_bytes()) if local_info.is_file() else {}
        info = merged_info(remote, mine)
        return ScenarioUpload(files, info, unstamped(info) != unstamped(remote) or not remote)

    def read_object(self, key: str) -> bytes | None:
        """An object's bytes, or None when it does not exist."""
        found = s3_object(self.s3, self.bucket, key, self.settings.profile, self.known)
        return None if found is None else found[0]

    def lease(self, name: str, email: str, doing: tuple[str, str] = UPLOAD) -> Lease:
        """The scenario's upload lease (``sync.lease``): ``with store.lease(...)`` holds it (``doing``:
        what the holder does, what a refusal did not do, as its messages say)."""
        return Lease(self.s3, self.bucket, name, email, self.settings.profile, self.known, doing)

    def clear_results(self, name: str) -> dict[str, int]:
        """Delete ``<name>/outputs/`` and ``<name>/logs/``, as the front end does before a run;
        how many objects each held."""
        with self.errors():
            return {folder: S3Prefix(self.s3, self.bucket, f"{name}/{folder}").clear()
                    for folder in RUN_RESULTS}

    def upload(self, plan: ScenarioUpload | UploadPlan, email: str, lease: Lease | None = None) -> None:
        """Sync the files, then (a scenario) write its stamped ``info.json``. Under a held ``lease``,
        multipart uploads a killed upload left under the prefix are aborted first, and nothing is
        deleted once the lease was lost."""
        files = plan.files if isinstance(plan, ScenarioUpload) else plan
        prefix = self.prefix(files.prefix)
        with self.errors():
            if lease:
                prefix.abort_multipart(lambda upload: upload["Initiated"] < lease.acquired_at)
            prefix.upload(files, {"user_email": email}, lease.check if lease else None)
        if isinstance(plan, ScenarioUpload) and plan.changes:
            self.put_json(f"{files.prefix}{INFO}", info_bytes(stamped(plan.info, email)), email)

    def put_json(self, key: str, body: bytes, email: str | None) -> None:
        """One JSON object with the front end's metadata (``checksum``; ``user_email`` when known)."""
        metadata = {"checksum": bytes_checksum(body), **({"user_email": email} if email else {})}
        with self.errors():
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
                               Metadata=metadata)

    def remote_scenarios(self) -> list[str]:
        with self.errors():
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Delimiter="/")
            prefixes = [p["Prefix"].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]
        return sorted(p for p in prefixes if p != COMMON)

    def refuse_during_upload(self, name: str, nothing: str) -> Found | None:
        """The scenario's lease as read; ``LeaseHeld`` while an upload holds it (``nothing``: what
        the message says was not done)."""
        lease = self.lease(name, "")
        found = lease.read()
        if found and found.active():
            raise LeaseHeld(lease.held_message(found, nothing))
        return found

    def plan_download(self, name: str) -> DownloadPlan:
        """What to fetch; refused while an upload of the scenario holds its lease (the plan keeps
        the lease's generation, which ``download`` checks again at the end)."""
        found = self.refuse_during_upload(name, "nothing was downloaded")
        with self.errors():
            plan = self.prefix(name).plan_download(not_a_link(self.settings.scenarios_dir / name),
                                                   lambda rel: not is_hidden(rel))
        if not (plan.fetch or plan.skip):
            existing = shown(", ".join(self.remote_scenarios())) or "none"
            raise QuetzalError(f"no scenario {name!r} in bucket {self.bucket} (existing: {existing})")
        plan.generation = generation(found)
        return plan

    def download(self, plan: DownloadPlan) -> None:
        """Fetch the plan's files, with ``download_marker`` present until every one is in place;
        part files a killed download left in the folder are swept first."""
        marker = self.download_marker(plan.prefix.rstrip("/"))
        marker.parent.mkdir(parents=True, exist_ok=True)
        started = {"scenario": plan.prefix.rstrip("/"), "pid": os.getpid(),
                   "started": datetime.now(UTC).isoformat(timespec="seconds")}
        marker.write_text(json.dumps(started))
        if plan.folder.is_dir():
            sweep_parts(plan.folder)
        with self.errors():
            self.prefix(plan.prefix).download(plan)
        lease = self.lease(plan.prefix.rstrip("/"), "")
        found = lease.read()
        if (found and found.active()) or generation(found) != plan.generation:
            raise LeaseHeld(f"an upload ran while {plan.prefix} was downloaded (by "
                            f"{found.who() if found else 'someone'}): the local files may mix two versions. "
                            f"Re-run `invoke download-scenario {plan.prefix.rstrip('/')}` once it ended; "
                            "until then an upload of this folder is refused.")
        marker.unlink()

    def locked(self) -> list[str]:
        """The protected scenarios the front end reads; ``["base"]`` when lock.json is absent."""
        return self._read_lock()[0]

    def _read_lock(self) -> tuple[list[str], str | None]:
        """lock.json's names and ETag (None when absent), for a conditional rewrite."""
        found = s3_object(self.s3, self.bucket, LOCK_KEY, self.settings.profile, self.known)
        if found is None:
            return list(DEFAULT_LOCKED), None
        body, etag = found
        try:
            names = json.loads(body)
        except ValueError as ex:
            raise QuetzalError(f"s3://{self.bucket}/{LOCK_KEY} is not JSON: fix or delete it") from ex
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise QuetzalError(f"s3://{self.bucket}/{LOCK_KEY} must be a JSON array of scenario names")
        return names, etag

    def _write_lock(self, names: list[str], etag: str | None, email: str) -> None:
        """Rewrite lock.json only if nobody changed it since it was read (S3 conditional write)."""
        body = json.dumps(names).encode()
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        metadata = {"user_email": email, "checksum": bytes_checksum(body)}
        changed = (f"s3://{self.bucket}/{LOCK_KEY} changed while it was being updated "
                   "(someone else locked or unlocked a scenario): re-run")
        with translated(self.settings.profile, {**self.known, **dict.fromkeys(CONDITION_FAILED, changed)}):
            self.s3.put_object(Bucket=self.bucket, Key=LOCK_KEY, Body=body, Metadata=metadata,
                               ContentType="application/json", **condition)

    def lock(self, name: str, email: str) -> bool:
        """Protect a scenario that exists on the bucket; False when it already was."""
        names, etag = self._read_lock()
        if name in names:
            return False
        existing = self.remote_scenarios()
        if name not in existing:
            raise QuetzalError(f"no scenario {name!r} in bucket {self.bucket} "
                               f"(existing: {shown(', '.join(existing)) or 'none'}); upload it first")
        self._write_lock([*names, name], etag, email)
        return True

    def unlock(self, name: str, email: str, *, force: bool = False) -> bool:
        """Unprotect a scenario (``base`` only with ``force``); False when it was not locked."""
        if name in DEFAULT_LOCKED and not force:
            raise QuetzalError(f"{name} is protected by default: pass --force to unlock it")
        names, etag = self._read_lock()
        if name not in names:
            return False
        self._write_lock([n for n in names if n != name], etag, email)
        return True

    def plan_config(self) -> UploadPlan:
        """Upload ``_common/modelConfig.json`` and ``_common/docs/``; delete docs gone from the repo."""
        folder = not_a_link(self.settings.root / COMMON)
        if not folder.is_dir():
            raise ConfigError(f"{folder} not found: restore it from git (it holds modelConfig.json)")
        return self.plan_folder(COMMON, folder, config_files)
