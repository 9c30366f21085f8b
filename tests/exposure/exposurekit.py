"""An embedded deployment with sealed data in every store, clean for the scanner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import uuid6
from cryptography.hazmat.primitives import serialization

from keystep.cli.setup import init_home, sealing_keys_file
from keystep.exposure import ScanContext, context_for_home
from keystep.home import Home
from keystep.model.batch import BatchContent, encode_content
from keystep.model.events import Event
from keystep.outbox.sqlite import Outbox
from keystep.seal.envelope import seal_batch
from keystep.store.blobs import FolderBlobStore


@dataclass
class Deployment:
    home: Home
    vault_dir: Path
    ctx: ScanContext
    envelope: bytes


def _envelope(home: Home) -> bytes:
    import base64
    import json

    cfg = json.loads(home.config_file.read_text())
    keys = json.loads(sealing_keys_file(home).read_text())
    period, key = sorted(keys.items())[0]
    device_key = serialization.load_pem_private_key(home.device_key_file.read_bytes(), None)
    content = encode_content(
        BatchContent(
            events=[Event(1.7e9, "text.typed", {"text": "my secret memo", "t_end": 1.7e9 + 1})]
        )
    )
    return seal_batch(
        content,
        batch_id=str(uuid6.uuid7()),
        device=cfg["device_id"],
        seq=1,
        contributor=cfg["pseudonym"],
        period=period,
        t_hour=f"{period}-01T09:00:00Z",
        manifest_version=1,
        redaction_version="r1",
        kinds=["text.typed"],
        key_id=key["key_id"],
        recipient=base64.b64decode(key["public_key"]),
        device_key=device_key,  # type: ignore[arg-type]
    )


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    home = Home(tmp_path / "home")
    vault_dir = tmp_path / "home-vault"
    init_home(home, contributor="ann@example.org", vault_dir=vault_dir)
    env = _envelope(home)
    outbox = Outbox(home.outbox_db)
    outbox.put("0190f5e2-7c4a-7d2e-9b1a-000000000001", 1, 1.7e9, 1.7e9 + 5, env)
    outbox.close()
    FolderBlobStore(home.blobs_dir).put("ab/batch-1", env)
    ctx = context_for_home(home.root)
    (tmp_path / "tmp").mkdir(mode=0o700)
    ctx.temp_dir = tmp_path / "tmp"  # the real /tmp is shared with other programs
    return Deployment(home, vault_dir, ctx, env)
