"""Text redaction: find sensitive spans with every detector and replace them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from keystep.redact.normalize import Stripped
from keystep.redact.secrets_detector import private_key_spans
from keystep.redact.spans import Span, TextDetector, merge_spans
from keystep.redact.surrogates import SurrogateFactory

# Detectors see the text in windows this long so that a 1 MB paste costs linear time and
# never meets a library's input limit; windows overlap so a value on a boundary is whole
# in one of them.
CHUNK: Final = 4096
OVERLAP: Final = 256


class TextRedactor:
    """Runs the detectors over text stripped of invisible characters and replaces what they
    find on the original text, invisible characters inside a value included.

    Replacement is one linear splice rather than Presidio's anonymizer, which rebuilds the
    whole string per span: quadratic, 20+ s on a 1 MB paste full of numbers.
    """

    def __init__(self, detectors: Sequence[TextDetector], surrogates: SurrogateFactory) -> None:
        self._detectors = tuple(detectors)
        self._surrogates = surrogates

    def find(self, text: str) -> list[Span]:
        """Sensitive spans of ``text`` (offsets into ``text`` itself)."""
        stripped = Stripped(text)
        clean = stripped.text
        windows = _windows(clean)
        found: list[Span] = private_key_spans(clean) if len(windows) > 1 else []
        for offset, window in windows:
            for detector in self._detectors:
                if offset == 0:
                    found.extend(detector.detect(window))
                    continue
                for span in detector.detect(window):
                    found.append(
                        Span(span.start + offset, span.end + offset, span.entity, span.score)
                    )
        merged = merge_spans(found)
        if clean is text:
            return merged
        spans = []
        for span in merged:
            start, end = stripped.to_original(span.start, span.end)
            spans.append(Span(start, end, span.entity, span.score))
        return spans

    def redact(self, text: str) -> tuple[str, int]:
        """``text`` with every sensitive span replaced, and how many spans were."""
        if not text:
            return text, 0
        spans = self.find(text)
        if not spans:
            return text, 0
        pieces = []
        cursor = 0
        for span in spans:
            pieces.append(text[cursor : span.start])
            pieces.append(self._surrogates.replacement(span.entity, text[span.start : span.end]))
            cursor = span.end
        pieces.append(text[cursor:])
        return "".join(pieces), len(spans)


def _windows(text: str) -> list[tuple[int, str]]:
    if len(text) <= CHUNK + OVERLAP:
        return [(0, text)]
    windows = []
    start = 0
    while start < len(text):
        end = min(len(text), start + CHUNK + OVERLAP)
        windows.append((start, text[start:end]))
        if end == len(text):
            break
        # Start the next window at a space inside the overlap, so no token is cut there.
        nxt = start + CHUNK
        space = text.rfind(" ", start + CHUNK // 2, nxt)
        start = space + 1 if space > 0 else nxt
    return windows
