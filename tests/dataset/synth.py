"""Scripted sessions with known ground truth, sealed through a real vault (tests and bench)."""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uuid6
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image, ImageDraw

from keystep.model import frame_codec
from keystep.model.batch import BatchContent, Monitor, encode_content
from keystep.model.events import Event
from keystep.policy.model import Principal
from keystep.seal.envelope import seal_batch
from keystep.vault.local import LocalVault

STEWARD = Principal("steward-1", "steward")
BUILDER = Principal("builder-1", "builder")


def open_vault(path: Path) -> LocalVault:
    key = base64.b64encode(b"k" * 32).decode()
    return LocalVault.open(path, create=True, env={"KEYSTEP_MASTER_KEY": key})


def grant_builder(vault: LocalVault) -> None:
    vault.create_grant(
        BUILDER,
        "model-training",
        "sealed-batches",
        expires=datetime.now(UTC) + timedelta(days=1),
        by=STEWARD,
    )


@dataclass
class Device:
    """A contributor's enrolled device that seals batches to the vault."""

    vault: LocalVault
    contributor_id: str
    device_id: str
    pseudonym: str = ""
    seq: int = 0
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def __post_init__(self) -> None:
        self.pseudonym = self.vault.enroll_contributor(self.contributor_id)
        public = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.vault.register_device(self.device_id, public, pseudonym=self.pseudonym)

    def seal(
        self,
        content: BatchContent,
        *,
        manifest_version: int = 1,
        kinds: tuple[str, ...] | None = None,
    ) -> bytes:
        now = datetime.now(UTC)
        period = now.strftime("%Y-%m")
        sk = self.vault.sealing_key(self.pseudonym, period)
        self.seq += 1
        return seal_batch(
            encode_content(content),
            batch_id=str(uuid6.uuid7()),
            device=self.device_id,
            seq=self.seq,
            contributor=self.pseudonym,
            period=period,
            t_hour=now.strftime("%Y-%m-%dT%H:00:00Z"),
            manifest_version=manifest_version,
            redaction_version="r1",
            kinds=kinds or tuple({e.kind for e in content.events} | {"gap"}),
            key_id=sk.key_id,
            recipient=sk.public_key,
            device_key=self.key,
            level=1,
        )


def png(img: Image.Image, codec: str = "png") -> bytes:
    if codec == frame_codec.CODEC:  # what the recorder writes (capture/frames.py)
        return frame_codec.encode_frame(img)
    buf = io.BytesIO()
    if codec == "webp":  # what recorders before zstd-ppm wrote
        img.save(buf, "WEBP", lossless=True, method=1, quality=10)
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class Truth:
    """One scripted action as the dataset should show it, and the screen before it."""

    action_type: str
    x: int | None = None
    y: int | None = None
    to_x: int | None = None
    to_y: int | None = None
    text: str | None = None
    keys: tuple[str, ...] = ()
    dx: int | None = None
    dy: int | None = None
    app: str = ""
    screen: Image.Image | None = None


class Session:
    """Scripts a session: each action changes a patch of the screen; every batch opens with
    a keyframe and the focused window, then a patch frame before each action."""

    def __init__(
        self,
        w: int = 320,
        h: int = 200,
        *,
        seed: int = 1,
        t0: float = 1.7e9,
        keep_screens: bool = True,
        codec: str = "png",
    ) -> None:
        self.w, self.h = w, h
        self.keep_screens = keep_screens
        self.codec = codec
        self.rng = random.Random(seed)
        self.t = t0
        self.canvas = Image.new("RGB", (w, h), (235, 235, 235))
        draw = ImageDraw.Draw(self.canvas)
        for i in range(0, h, 14):
            draw.text((4, i), f"line {i} of some window text", fill=(20, 20, 20))
        self.events: list[dict[str, Any]] = []
        self.frames: list[bytes] = []
        self.truth: list[Truth] = []
        self.app = "xterm"
        self._last_frame: int | None = None

    # -- building blocks -------------------------------------------------------------------

    def _ev(self, kind: str, **data: Any) -> None:
        self.events.append({"t": round(self.t, 4), "kind": kind, **data})

    def _tick(self, s: float) -> None:
        self.t += s

    def start_batch(self) -> None:
        self.events, self.frames = [], []
        self._ev("window.focus", window="w-" + self.app, app=self.app, title=f"{self.app} main")
        self.frames.append(png(self.canvas, self.codec))
        self._ev("screen.frame", frame=0, rect=[0, 0, self.w, self.h], w=self.w, h=self.h)
        self._last_frame = 0
        self._tick(0.05)

    def end_batch(self) -> BatchContent:
        events = [Event.from_wire(e) for e in self.events]
        return BatchContent(events, list(self.frames), [Monitor(0, 0, self.w, self.h, True)], {})

    def _frame_before_action(self) -> None:
        """Change a patch of the screen (the previous action's effect) and record it."""
        # A widget changes (a button, a field): one of a few fixed slots, so the screen stays
        # a UI rather than turning into noise.
        pw, ph = min(64, self.w), min(32, self.h)
        slot = self.rng.randrange(24)
        x = (slot % 6) * (self.w - pw) // 5
        y = (slot // 6) * (self.h - ph) // 3
        color = tuple(self.rng.randrange(256) for _ in range(3))
        ImageDraw.Draw(self.canvas).rectangle((x, y, x + pw - 1, y + ph - 1), fill=color)
        patch = self.canvas.crop((x, y, x + pw, y + ph))
        self.frames.append(png(patch, self.codec))
        idx = len(self.frames) - 1
        self._ev(
            "screen.frame",
            frame=idx,
            rect=[x, y, pw, ph],
            base=self._last_frame,
            w=self.w,
            h=self.h,
        )
        self._last_frame = idx
        self._tick(0.01)

    def _truth(self, action_type: str, **kw: Any) -> None:
        screen = self.canvas.copy() if self.keep_screens else None
        self.truth.append(Truth(action_type, app=self.app, screen=screen, **kw))

    def _move(self, x: int, y: int) -> None:
        self._ev("pointer.move", x=x, y=y)
        self._tick(0.05)

    # -- scripted actions --------------------------------------------------------------------

    def click(self, x: int, y: int, button: str = "left", n: int = 1) -> None:
        self._move(x - 3, y - 2)
        self._frame_before_action()
        kind = {1: "click", 2: "double_click", 3: "triple_click"}[n]
        if button != "left":
            kind = f"{button}_click"
        self._truth(kind, x=x, y=y)
        for _ in range(n):
            self._ev("pointer.down", x=x, y=y, button=button)
            self._tick(0.06)
            self._ev("pointer.up", x=x, y=y, button=button)
            self._tick(0.12)
        self._tick(0.6)

    def drag(self, x: int, y: int, x2: int, y2: int) -> None:
        self._move(x, y)
        self._frame_before_action()
        self._truth("drag", x=x, y=y, to_x=x2, to_y=y2)
        self._ev("pointer.down", x=x, y=y, button="left")
        for i in range(1, 5):
            self._tick(0.05)
            self._ev("pointer.move", x=x + (x2 - x) * i // 5, y=y + (y2 - y) * i // 5)
        self._tick(0.05)
        self._ev("pointer.up", x=x2, y=y2, button="left")
        self._tick(0.7)

    def scroll(self, x: int, y: int, dy: int) -> None:
        self._move(x, y)
        self._frame_before_action()
        self._truth("scroll", x=x, y=y, dx=0, dy=dy)
        step = 1 if dy > 0 else -1
        for _ in range(abs(dy)):
            self._ev("pointer.scroll", x=x, y=y, dx=0, dy=step)
            self._tick(0.04)
        self._tick(0.8)

    def type(self, text: str) -> None:
        self._frame_before_action()
        self._truth("type", text=text)
        start = self.t
        self._tick(0.09 * len(text))
        self._ev("text.typed", text=text, t_end=round(self.t, 4), window="w-" + self.app)
        self.events[-1]["t"] = round(start, 4)
        self._tick(0.6)

    def key(self, key: str, repeats: int = 0) -> None:
        self._frame_before_action()
        self._truth("key", keys=(key,))
        self._ev("key.down", key=key, repeat=False)
        for _ in range(repeats):
            self._tick(0.03)
            self._ev("key.down", key=key, repeat=True)
        self._tick(0.05)
        self._ev("key.up", key=key)
        self._tick(0.6)

    def hotkey(self, *keys: str) -> None:
        self._frame_before_action()
        self._truth("hotkey", keys=keys)
        for k in keys:
            self._ev("key.down", key=k, repeat=False)
            self._tick(0.03)
        for k in reversed(keys):
            self._ev("key.up", key=k)
            self._tick(0.02)
        self._tick(0.6)

    def switch_app(self, app: str) -> None:
        self.app = app
        self._ev("window.focus", window="w-" + app, app=app, title=f"{app} main")
        self._tick(0.1)

    def gap(self, seconds: float) -> None:
        self._ev("gap", t_end=round(self.t + seconds, 4))
        self._tick(seconds + 0.1)
        self._ev("window.focus", window="w-" + self.app, app=self.app, title=f"{self.app} main")
        self.frames.append(png(self.canvas, self.codec))
        self._ev(
            "screen.frame",
            frame=len(self.frames) - 1,
            rect=[0, 0, self.w, self.h],
            w=self.w,
            h=self.h,
        )
        self._last_frame = len(self.frames) - 1
        self._tick(0.05)

    def random_action(self) -> None:
        r = self.rng.random()
        x, y = self.rng.randrange(20, self.w - 20), self.rng.randrange(20, self.h - 20)
        if r < 0.35:
            self.click(x, y)
        elif r < 0.45:
            self.click(x, y, n=2)
        elif r < 0.5:
            self.click(x, y, button="right")
        elif r < 0.6:
            self.drag(x, y, min(self.w - 1, x + 15), min(self.h - 1, y + 10))
        elif r < 0.7:
            self.scroll(x, y, self.rng.choice([-3, -1, 2, 4]))
        elif r < 0.85:
            self.type("".join(self.rng.choice("abcdef XYZ") for _ in range(8)))
        elif r < 0.93:
            self.key(self.rng.choice(["enter", "tab", "esc", "down"]))
        else:
            self.hotkey("ctrl", self.rng.choice(["c", "v", "s"]))


def scripted_batches(
    device: Device, session: Session, *, batches: int, actions_per_batch: int
) -> Iterator[bytes]:
    for _ in range(batches):
        session.start_batch()
        for _ in range(actions_per_batch):
            session.random_action()
        yield device.seal(session.end_batch())
