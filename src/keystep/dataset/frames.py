"""Full screenshots rebuilt from a batch's keyframes and patch frames, in recorded order."""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from PIL import Image

from keystep.model.events import Event
from keystep.model.frame_codec import FrameError, open_frame
from keystep.trajectory.reduce import Issue

IMAGE_FORMATS: Final = ("jpeg", "webp", "png")
# Canvases kept for patches whose base is not the frame just before them.
CANVAS_CACHE: Final = 4


@dataclass(frozen=True, slots=True)
class ImageEncoding:
    """How rebuilt screenshots are stored. JPEG q90 (4:2:0, as most screenshot datasets)
    costs ~2 ms per 1280x800 frame; ``subsampling=0`` keeps coloured text sharper for ~1.5 ms
    more; WebP (lossless, several times smaller) and PNG cost 4-6x more CPU per step
    (bench/export.py measures them)."""

    format: str = "jpeg"
    quality: int = 90
    subsampling: int = 2  # PIL: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0

    def __post_init__(self) -> None:
        if self.format not in IMAGE_FORMATS:
            raise ValueError(f"image format must be one of {IMAGE_FORMATS}")

    def encode(self, image: Image.Image) -> bytes:
        buf = io.BytesIO()
        if self.format == "jpeg":
            image.save(buf, "JPEG", quality=self.quality, subsampling=self.subsampling)
        elif self.format == "webp":
            image.save(buf, "WEBP", lossless=True, quality=0, method=0)
        else:
            image.save(buf, "PNG", compress_level=1)
        return buf.getvalue()


class FrameRebuilder:
    """Applies a batch's ``screen.frame`` events in order; encodes each full screen once.

    A keyframe (no ``base``) covers the whole screen; a patch covers ``rect`` over the
    frame ``base``. Anything that does not fit (a missing image, an unknown base, a patch
    outside the screen) is reported and yields no screenshot, never a guess.
    """

    def __init__(self, frames: Sequence[bytes], encoding: ImageEncoding | None = None) -> None:
        self.frames = frames
        self.encoding = encoding or ImageEncoding()
        self.issues: list[Issue] = []
        self._canvas: OrderedDict[int, Image.Image] = OrderedDict()
        self._keyframes: set[int] = set()

    def rebuild(self, event: Event) -> bytes | None:
        """The encoded full screen this frame event shows (None, reported, if it cannot be)."""
        d = event.data
        idx = d.get("frame")
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(self.frames):
            self.issues.append(Issue("missing_frame", event.eid, f"frame index {idx!r:.20}"))
            return None
        try:
            img = open_frame(self.frames[idx])
        except FrameError:
            self.issues.append(Issue("bad_frame", event.eid, f"frame {idx} does not decode"))
            return None
        base = d.get("base")
        if base is None:
            self._keyframes.add(idx)
            full = img
            w, h = d.get("w"), d.get("h")
            if (isinstance(w, int) and w != img.width) or (isinstance(h, int) and h != img.height):
                self.issues.append(Issue("bad_frame", event.eid, f"keyframe {idx} is not {w}x{h}"))
                return None
        else:
            below = self._canvas.get(base) if isinstance(base, int) else None
            rect = d.get("rect")
            if below is None:
                self.issues.append(Issue("missing_frame", event.eid, f"patch base {base!r:.20}"))
                return None
            if not (
                isinstance(rect, list)
                and len(rect) == 4
                and all(isinstance(v, int) for v in rect)
                and rect[0] >= 0
                and rect[1] >= 0
                and rect[0] + img.width <= below.width
                and rect[1] + img.height <= below.height
            ):
                self.issues.append(Issue("bad_frame", event.eid, f"patch {idx} outside the screen"))
                return None
            latest = next(reversed(self._canvas))
            if base == latest and base not in self._keyframes:
                # The usual case (each patch on the frame just before it): paste in place;
                # the older frame's pixels are not needed again. Keyframes stay pristine.
                full = self._canvas.pop(base)
            else:
                full = below.copy()
            full.paste(img, (rect[0], rect[1]))
        self._canvas[idx] = full
        self._canvas.move_to_end(idx)
        while len(self._canvas) > CANVAS_CACHE:
            self._canvas.popitem(last=False)
        return self.encoding.encode(full)
