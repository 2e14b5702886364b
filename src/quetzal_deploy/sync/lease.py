"""One upload of a scenario at a time: a lease object on the bucket, taken with S3 conditional writes.

``_common/.leases/<scenario>.json`` holds who uploads (``user_email``, ``host``, ``pid``), since
when, what for (``doing``: an upload, or ``invoke run`` clearing the last run's results), and a
``generation`` counted up by each holder. It is taken as ``lock.json`` is rewritten:
``If-None-Match: *`` when there is none, ``If-Match`` on the ETag read otherwise, so of two
modellers starting at once exactly one write succeeds; the other is refused with the holder's
name, host and start time. While held it is rewritten every ``RENEW_S`` (``If-Match`` again); a
lease not rewritten for ``TTL_S`` by S3's own clock (its ``Date`` answer against the object's
``LastModified``: no workstation clock involved), or held by a process gone from this host, is
stale and may be taken over. Released, it stays, marked ``released``: a download compares its
``generation`` before and after, so an upload that ran meanwhile is noticed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from quetzal_deploy.aws import CONDITION_FAILED, MISSING_OBJECT, unless_absent
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.runtime.checksum import bytes_checksum
from quetzal_deploy.runtime.names import COMMON
from quetzal_deploy.runtime.paths import shown
from quetzal_deploy.runtime.transfer import alive

LEASES = f"{COMMON}/.leases/"
TTL_S = 600
RENEW_S = 60
UPLOAD = ("uploaded", "nothing was uploaded")  # what a holder is doing, what a refusal did not do


class LeaseHeld(QuetzalError):
    """Another upload of the scenario holds its lease."""


@dataclass(frozen=True)
class Found:
    """The lease object as read: its content, ETag and age by S3's clock (seconds)."""

    data: dict
    etag: str
    age_s: float

    def active(self) -> bool:
        """Held, rewritten less than ``TTL_S`` ago, and not by a process gone from this host."""
        data = self.data
        if data.get("state") != "held" or self.age_s >= TTL_S:
            return False
        pid = data.get("pid")
        return not (data.get("host") == socket.gethostname() and isinstance(pid, int) and not alive(pid))

    def who(self) -> str:
        data = self.data
        return shown(f"{data.get('user_email', 'someone')} from host {data.get('host', '?')} "
                     f"(pid {data.get('pid', '?')}), started {data.get('started', '?')}")


class Lease:
    """The lease of one scenario; ``with lease:`` holds it (``acquire`` ... ``release``)."""

    def __init__(self, s3, bucket: str, scenario: str, email: str, profile: str | None = None,
                 known: Mapping[str, str] | None = None, doing: tuple[str, str] = UPLOAD):
        self.s3, self.bucket, self.scenario = s3, bucket, scenario
        self.doing, self.refused = doing
        self.key = f"{LEASES}{scenario}.json"
        self.email, self.profile, self.known = email, profile, dict(known or {})
        self.etag: str | None = None
        self.body: dict = {}
        self.lost = False
        self.acquired_at: datetime | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def read(self) -> Found | None:
        """The lease as stored, or None when there is none (or it is not JSON: taken over)."""
        def fetch() -> tuple[dict, bytes]:
            stored = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            return stored, stored["Body"].read()

        fetched = unless_absent(fetch, MISSING_OBJECT, None, self.profile, self.known)
        if fetched is None:
            return None
        stored, body = fetched
        date = stored["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        return Found(data if isinstance(data, dict) else {}, stored["ETag"],
                     (utc(now) - utc(stored["LastModified"])).total_seconds())

    def held_message(self, found: Found, verb: str) -> str:
        doing = found.data.get("doing", UPLOAD[0])
        return (f"s3://{self.bucket}/{self.scenario}/ is being {shown(str(doing))} by {found.who()} "
                f"(lease s3://{self.bucket}/{self.key}); {verb}. Wait for that to end and re-run "
                f"(a lease not renewed for {TTL_S // 60} minutes expires).")

    def acquire(self) -> Lease:
        """Take the lease, or raise ``LeaseHeld`` naming the upload that holds it."""
        found = self.read()
        if found and found.active():
            raise LeaseHeld(self.held_message(found, self.refused))
        generation = found.data.get("generation", 0) if found else 0
        self.body = {"scenario": self.scenario, "state": "held", "user_email": self.email,
                     "host": socket.gethostname(), "pid": os.getpid(), "doing": self.doing,
                     "started": datetime.now(UTC).isoformat(timespec="seconds"),
                     "generation": (generation if isinstance(generation, int) else 0) + 1}
        if not self._write({"IfMatch": found.etag} if found else {"IfNoneMatch": "*"}):
            now = self.read()
            raise LeaseHeld(self.held_message(now, self.refused) if now else
                            f"s3://{self.bucket}/{self.key} changed while it was taken: re-run")
        self.acquired_at = datetime.now(UTC)
        self._renewer = threading.Thread(target=self._renew, daemon=True, name="quetzal-lease")
        self._renewer.start()
        return self

    def _write(self, condition: dict) -> bool:
        """Write ``body`` under ``condition``; False when the condition no longer holds."""
        body = json.dumps(self.body).encode()
        written = unless_absent(
            lambda: self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                       ContentType="application/json",
                                       Metadata={"checksum": bytes_checksum(body), "user_email": self.email},
                                       **condition),
            CONDITION_FAILED, None, self.profile, self.known)
        if written is None:
            return False
        self.etag = written["ETag"]
        return True

    def _renew(self) -> None:
        """Rewrite the lease every ``RENEW_S`` while held; ``lost`` once someone took it over."""
        while not self._stop.wait(RENEW_S):
            try:
                if not self._write({"IfMatch": self.etag}):
                    self.lost = True
                    return
            except QuetzalError:
                continue  # a network fault: the next renewal retries, the lease lasts TTL_S

    def check(self) -> None:
        """Raise when the lease was taken over (this upload stalled past ``TTL_S``)."""
        if self.lost:
            raise LeaseHeld(f"the lease on s3://{self.bucket}/{self.scenario}/ expired and was taken by "
                            "another upload: this one stopped before deleting anything; re-run")

    def release(self) -> None:
        """Mark the lease released (kept, with its generation, for downloads to compare)."""
        self._stop.set()
        if self._renewer:
            self._renewer.join()
        if self.etag and not self.lost:
            self.body["state"] = "released"
            self._write({"IfMatch": self.etag})

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *_) -> None:
        self.release()


def utc(moment: datetime) -> datetime:
    """``moment`` with its time zone; a naive one (as some answers are parsed) is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def generation(found: Found | None) -> object:
    """What tells one upload from the next: the lease's generation (None when never uploaded)."""
    return found.data.get("generation") if found else None
