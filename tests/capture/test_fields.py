"""Field probes on real pseudo-terminals: a secret prompt is seen, everything else is not."""

from __future__ import annotations

import os
import pty
import statistics
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keystep.capture.fields import (
    BUDGET_S,
    AnyProbe,
    AtspiFocusProbe,
    FieldProbe,
    PtyEchoProbe,
    default_probe,
)
from keystep.capture.redaction import Redaction
from keystep.capture.sources.base import KEY_PRESS, RawInput, WindowInfo
from keystep.capture.typing import PASSWORD_RUN, TypingAssembler
from keystep.model.manifest import default_manifest

SECRET_PROMPT = "read -s -p 'Password: ' p; echo; read -p 'Name: ' n"
NO_BUS = "unix:path=/nonexistent/keystep-a11y-bus"


class Terminal:
    """What a terminal emulator is to the kernel: this process holds a pty master and a
    shell runs on the slave, in its own session."""

    def __init__(self, script: str) -> None:
        self.master, slave = pty.openpty()
        self.slave_path = os.ttyname(slave)
        self.proc = subprocess.Popen(
            ["bash", "-c", script],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)

    def lflag(self) -> int:
        fd = os.open(self.slave_path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            return int(termios.tcgetattr(fd)[3])
        finally:
            os.close(fd)

    def wait_echo(self, on: bool) -> None:
        deadline = time.monotonic() + 10
        while bool(self.lflag() & termios.ECHO) != on:
            assert time.monotonic() < deadline, "the shell never reached its prompt"
            time.sleep(0.01)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(SECRET_PROMPT)
    try:
        yield term
    finally:
        term.close()


def window(pid: int | None, handle: int = 7) -> WindowInfo:
    return WindowInfo(handle=handle, app="XTerm", title="xterm", pid=pid, geometry=None)


def probes() -> list[FieldProbe]:
    return [PtyEchoProbe(), AtspiFocusProbe(address=NO_BUS), default_probe()]


@pytest.mark.parametrize("index", range(len(probes())))
def test_unknown_or_missing_process_says_nothing(index: int) -> None:
    probe = probes()[index]
    try:
        assert probe.password_state(window(None)) is None
        assert probe.password_state(window(2**22 + 12345)) is None  # beyond pid_max
        assert probe.password_state(window(os.getpid())) is None  # no pty, no focus
    finally:
        probe.close()


def test_without_an_accessibility_bus_the_atspi_probe_says_nothing(terminal: Terminal) -> None:
    atspi = AtspiFocusProbe(address=NO_BUS)
    probe = AnyProbe([PtyEchoProbe(), atspi])
    try:
        deadline = time.monotonic() + 5
        while atspi.error is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not atspi.connected.is_set()
        terminal.wait_echo(on=False)
        # The terminal's verdict still comes through the combined probe.
        assert probe.password_state(window(os.getpid())) is True
    finally:
        probe.close()


def test_secret_prompt_then_ordinary_prompt(terminal: Terminal) -> None:
    probe = PtyEchoProbe()
    me = window(os.getpid())
    terminal.wait_echo(on=False)
    assert probe.password_state(me) is True
    # The verdict is read afresh every time (only the list of ptys is cached): right after
    # Enter the shell's echo is back and the next run is ordinary typing.
    terminal.type("hunter2-secret\n")
    terminal.wait_echo(on=True)
    assert probe.password_state(me) is None


def test_full_screen_programs_are_not_secret_prompts(terminal: Terminal) -> None:
    """vim, less and a remote ssh session turn off ECHO and ICANON: that says nothing."""
    terminal.wait_echo(on=False)
    fd = os.open(terminal.slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~(termios.ECHO | termios.ICANON)
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    finally:
        os.close(fd)
    assert PtyEchoProbe().password_state(window(os.getpid())) is None


def test_children_controlling_ttys_when_fdinfo_does_not_name_the_pty(
    terminal: Terminal, tmp_path: Path
) -> None:
    """Kernels without ``tty-index`` in fdinfo: the emulator's children's tty_nr is used.
    The /proc given here lists only the shell (its real stat line) as the emulator's child."""
    terminal.wait_echo(on=False)
    emulator = 424242
    stat = Path(f"/proc/{terminal.proc.pid}/stat").read_bytes()
    head, _, tail = stat.rpartition(b")")
    fields = tail.split()
    fields[1] = str(emulator).encode()  # the shell's parent is the emulator
    (tmp_path / str(terminal.proc.pid)).mkdir()
    (tmp_path / str(terminal.proc.pid) / "stat").write_bytes(head + b") " + b" ".join(fields))
    (tmp_path / str(emulator)).mkdir()
    assert PtyEchoProbe(proc=tmp_path).password_state(window(emulator)) is True
    assert PtyEchoProbe(proc=tmp_path).password_state(window(emulator + 1)) is None


def test_probe_cost_stays_within_budget(terminal: Terminal) -> None:
    terminal.wait_echo(on=False)
    probe = PtyEchoProbe()
    me = window(os.getpid())
    cold = []
    warm = []
    for i in range(200):
        fresh = PtyEchoProbe()
        t = time.perf_counter()
        assert fresh.password_state(window(os.getpid(), handle=i)) is True
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert probe.password_state(me) is True
        warm.append(time.perf_counter() - t)
    print(
        f"probe cost: cold median {statistics.median(cold) * 1e3:.3f} ms, "
        f"warm median {statistics.median(warm) * 1e3:.3f} ms, "
        f"cold max {max(cold) * 1e3:.3f} ms"
    )
    assert statistics.median(cold) < BUDGET_S
    assert statistics.median(warm) < BUDGET_S / 4


def key(t: float, char: str, keycode: int) -> RawInput:
    return RawInput(t, KEY_PRESS, keycode=keycode, char=char, base=char)


def test_the_verdict_rides_on_the_run() -> None:
    ta = TypingAssembler(max_chars=3)
    out = []
    for i, c in enumerate("secret"):
        # The recorder asks the probe only at a run's first key.
        out += ta.press(key(i, c, 30 + i), 1, password=True if i == 0 else None)
    out += ta.flush()
    out += ta.press(key(9, "n", 60), 1)
    out += ta.flush()
    flags = [(e.data["text"], e.data.get(PASSWORD_RUN)) for e in out]
    # A run split for length keeps its verdict; the next run is asked afresh.
    assert flags == [("sec", True), ("ret", True), ("n", None)]


@pytest.mark.parametrize(
    ("verdict", "title", "expected"),
    [
        (True, "xterm", "<PASSWORD>"),
        (None, "xterm", "fern tuesday"),
        (None, "[sudo] password for alex", "<PASSWORD>"),
        # A probe's "ordinary field" never removes a mask the window's title asks for.
        (False, "Sign in", "<PASSWORD>"),
        (False, "xterm", "fern tuesday"),
    ],
)
def test_redaction_takes_the_verdict(verdict: bool | None, title: str, expected: str) -> None:
    redaction = Redaction(default_manifest(), passthrough=False)
    text, n = redaction.text(
        "fern tuesday", app="XTerm", title=title, field=None, password_field=verdict
    )
    assert text == expected
    assert n == (1 if expected == "<PASSWORD>" else 0)
