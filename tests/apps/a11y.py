"""An accessibility bus for end-to-end tests: a session bus, at-spi-bus-launcher and its
registry on a virtual display, reaped afterwards (PID 1 here does not reap orphans)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest
from xsession import stop

from keystep.capture.fields import AtspiFocusProbe

ATSPI_LAUNCHER: Final = "/usr/libexec/at-spi-bus-launcher"
_PR_SET_CHILD_SUBREAPER: Final = 36


def _reap_orphans(keep: set[int]) -> None:
    """The bus launcher's children are orphaned to us (a subreaper) when it exits."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in keep:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] == b"Z":
            os.waitpid(int(entry), 0)


@contextmanager
def a11y_session(display: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A session bus and an accessibility bus (at-spi-bus-launcher, registry) on ``display``;
    yields the session bus address, which is also put in this process's environment."""
    libc = ctypes.CDLL(None)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    procs: list[subprocess.Popen[str]] = []
    try:
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(bus)
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        assert address.startswith("unix:"), address
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        monkeypatch.delenv("AT_SPI_BUS_ADDRESS", raising=False)
        monkeypatch.delenv("NO_AT_BRIDGE", raising=False)
        launcher = subprocess.Popen(
            [ATSPI_LAUNCHER, "--launch-immediately"],
            env={**os.environ, "DISPLAY": display},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(launcher)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while True:
            # Ready once a probe gets through to the registry on the accessibility bus.
            probe = AtspiFocusProbe()
            up = probe.connected.wait(1.0)
            probe.close()
            if up:
                break
            assert time.monotonic() < deadline, probe.error
        yield address
    finally:
        for proc in reversed(procs):
            stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        time.sleep(0.2)
        _reap_orphans({p.pid for p in procs})
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
