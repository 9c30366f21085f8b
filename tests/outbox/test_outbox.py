"""The outbox contract: durable puts, pending/acknowledge, forget by time, survives kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keystep.outbox import Outbox, OutboxError


def test_put_pending_acknowledge_forget(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o" / "outbox.sqlite")
    seqs = [ob.reserve_seq() for _ in range(3)]
    assert seqs == [1, 2, 3]
    ob.put("a", 1, 100.0, 160.0, b"env-a")
    ob.put("b", 2, 160.0, 220.0, b"env-b")
    ob.put("c", 3, 300.0, 360.0, b"env-c")
    assert [p.batch_id for p in ob.pending()] == ["a", "b", "c"]
    ob.acknowledge("a")
    assert [p.batch_id for p in ob.pending()] == ["b", "c"]
    assert ob.counts() == {"pending": 2, "acknowledged": 1, "pending_bytes": 10}
    assert ob.overlapping(150.0, 170.0) == [("a", "acknowledged"), ("b", "pending")]
    assert sorted(ob.forget(150.0, 170.0)) == ["a", "b"]
    assert [p.batch_id for p in ob.pending()] == ["c"]
    assert ob.counts()["acknowledged"] == 0
    assert ob.reserve_seq() == 4  # never reused after forget
    ob.close()
    mode = os.stat(tmp_path / "o" / "outbox.sqlite").st_mode & 0o777
    assert mode == 0o600


def test_acknowledged_rows_keep_no_envelope_bytes(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite")
    ob.put("a", 1, 1.0, 2.0, b"X" * 5000)
    ob.acknowledge("a")
    ob.close()
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    assert db.execute("SELECT envelope, state FROM batches").fetchall() == [(None, "acknowledged")]
    db.close()


def test_duplicate_batch_id_is_refused_without_damage(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite")
    ob.put("a", 1, 1.0, 2.0, b"one")
    with pytest.raises(OutboxError):
        ob.put("a", 2, 1.0, 2.0, b"two")
    assert [p.envelope for p in ob.pending()] == [b"one"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(OutboxError, match="newer"):
        Outbox(path)


WRITER = """
import sys
from pathlib import Path
from keystep.outbox import Outbox
ob = Outbox(Path(sys.argv[1]))
i = 0
while True:
    seq = ob.reserve_seq()
    ob.put(f"b{seq}", seq, float(seq), float(seq) + 1, bytes([seq % 256]) * 20000)
    print(seq, flush=True)
    i += 1
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_kill_9_while_writing_keeps_every_committed_batch(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "outbox.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    committed: list[int] = []
    deadline = time.monotonic() + 10
    while not committed and time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if line:
            committed.append(int(line))
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rest = proc.stdout.read() if proc.stdout else ""
    committed += [int(x) for x in rest.split()]
    proc.stdout.close() if proc.stdout else None
    ob = Outbox(path)
    rows = {p.seq: p for p in ob.pending()}
    assert set(committed) <= set(rows)
    for seq, p in rows.items():
        assert p.envelope == bytes([seq % 256]) * 20000
    ob.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
