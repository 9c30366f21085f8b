"""`keystep agent --server URL`: enroll if needed, then hold the lease, record and upload."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

import httpx

from keystep.agent.client import (
    CollectorClient,
    DeviceCredential,
    Uploader,
    enroll,
    sealing_key_fetcher,
)
from keystep.agent.deletions import DeletionQueue
from keystep.agent.lease import LeaseHolder, LeaseStream
from keystep.agent.status import write_agent_status
from keystep.home import Home
from keystep.outbox import Outbox

log = logging.getLogger(__name__)


@dataclass
class AgentOptions:
    server: str
    enroll_code: str | None = None
    record: bool = True
    display: str | None = None
    duration: float | None = None


def sync_consent(
    home: Home, cred: DeviceCredential, *, transport: httpx.BaseTransport | None = None
) -> str:
    """Tell the collector what the person decided on this device (consent is given here)."""
    from keystep.capture.consent import read_consent

    state = read_consent(home)
    headers = {"Authorization": f"Bearer {cred.contributor_token}"}
    with httpx.Client(
        base_url=cred.server, timeout=30, transport=transport, headers=headers
    ) as http:
        if state.state == "given":
            r = http.post(
                "/v1/consent",
                json={
                    "manifest_version": state.manifest_version,
                    "manifest_digest": state.manifest_digest,
                },
            )
            return "given" if r.status_code == 201 else f"refused ({r.status_code})"
        if state.state == "withdrawn":
            http.post("/v1/consent/withdraw")
            return "withdrawn"
    return "none"


class _ConsentSync:
    """Re-sends the local consent decision whenever the consent file changes."""

    def __init__(self, home: Home, cred: DeviceCredential) -> None:
        self._home, self._cred = home, cred
        self._stamp: tuple[float, int] | None = None

    def poll(self) -> None:
        try:
            st = self._home.consent_file.stat()
            stamp = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            return
        if stamp == self._stamp:
            return
        try:
            log.info("consent sync: %s", sync_consent(self._home, self._cred))
            self._stamp = stamp
        except httpx.HTTPError as exc:
            log.info("consent not synchronised yet: %s", exc)


def run(home: Home, opts: AgentOptions) -> int:
    cred = enroll(home, opts.server, opts.enroll_code)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consent = _ConsentSync(home, cred)
    consent.poll()
    holder = LeaseHolder(device_id=cred.device_id, public_key=cred.lease_public_key)
    stream = LeaseStream(cred.server, cred.credential, holder)
    stream.start()
    outbox = Outbox(home.outbox_db)
    client = CollectorClient(cred.server, cred.credential)
    uploader = Uploader(
        outbox,
        client,
        deletions=DeletionQueue.of(home),
        contributor_token=cred.contributor_token,
    )
    up = threading.Thread(target=uploader.run, args=(stop,), name="keystep-upload", daemon=True)
    up.start()
    reporter = threading.Thread(
        target=report_status,
        args=(home, cred, holder, stream, stop),
        name="keystep-status",
        daemon=True,
    )
    reporter.start()
    deadline = None if opts.duration is None else time.monotonic() + opts.duration
    try:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            consent.poll()
            if opts.record and _record(home, holder, cred, opts, deadline):
                break  # the recorder ran to its end (duration or a signal)
            stop.wait(1.0)
    finally:
        stop.set()
        stream.stop()
        up.join(timeout=10)
        reporter.join(timeout=5)
        # What the recorder flushed last, if the collector answers.
        with contextlib.suppress(httpx.HTTPError, OSError):
            uploader.drain_once()
        client.close()
        outbox.close()
    return 0


def report_status(
    home: Home,
    cred: DeviceCredential,
    holder: LeaseHolder,
    stream: LeaseStream,
    stop: threading.Event,
    *,
    every: float = 1.0,
) -> None:
    """Keep the status file ``keystep status`` reads fresh until ``stop``."""
    while True:
        lease, left, reason = holder.state()
        try:
            write_agent_status(
                home,
                server=cred.server,
                device_id=cred.device_id,
                lease=lease,
                seconds_left=left,
                reason=reason,
                connected=stream.connected.is_set(),
            )
        except OSError as exc:
            log.warning("cannot write the agent status: %s", exc)
        if stop.wait(every):
            return


def _record(
    home: Home,
    holder: LeaseHolder,
    cred: DeviceCredential,
    opts: AgentOptions,
    deadline: float | None,
) -> bool:
    """Run the recorder on this (main) thread, gated on the lease. False: not possible yet
    (no consent, no display); the caller tries again shortly."""
    from keystep.capture.recorder import Recorder, RecorderError

    left = None if deadline is None else max(0.1, deadline - time.monotonic())
    rec = Recorder(home, display=opts.display, duration=left, fetch_key=sealing_key_fetcher(cred))
    try:
        rec.preflight()
    except RecorderError as exc:
        log.info("not recording yet: %s", exc)
        rec.close()
        return False
    rec.gate.add_condition("lease", holder.may_record)
    try:
        rec.run()
    finally:
        rec.close()
    return True
