"""Batch content codec: round trips (hypothesis) and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystep.model.batch import BatchContent, ContentError, Monitor, decode_content, encode_content
from keystep.model.events import Event

_events = st.lists(
    st.one_of(
        st.builds(
            lambda t, x, y, b: Event(t, "pointer.down", {"x": x, "y": y, "button": b}),
            st.floats(0, 2e9, allow_nan=False),
            st.integers(-5000, 5000),
            st.integers(-5000, 5000),
            st.sampled_from(["left", "right", "middle"]),
        ),
        st.builds(
            lambda t, text: Event(t, "text.typed", {"text": text, "t_end": t + 1, "window": 3}),
            st.floats(0, 2e9, allow_nan=False),
            st.text(max_size=50),
        ),
        st.builds(lambda t: Event(t, "gap", {"t_end": t + 5}), st.floats(0, 2e9, allow_nan=False)),
    ),
    max_size=30,
)


@given(_events, st.lists(st.binary(max_size=200), max_size=5))
def test_round_trip(events: list[Event], frames: list[bytes]) -> None:
    c = BatchContent(
        events=events, frames=frames, monitors=[Monitor(0, 0, 1280, 800, True)], meta={"a": 1}
    )
    out = decode_content(encode_content(c), batch_id="b")
    assert [e.to_wire() for e in out.events] == [e.to_wire() for e in events]
    assert out.frames == frames and out.monitors == c.monitors and out.meta == {"a": 1}
    assert all(e.eid == f"b:{i}" for i, e in enumerate(out.events))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:3],
        lambda b: b"XXXX" + b[4:],
        lambda b: b[:-1],
        lambda b: b + b"extra",
        lambda b: b[:8] + b"[" + b[9:],
    ],
)
def test_malformed_content_is_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    data = encode_content(BatchContent(events=[Event(1.0, "gap", {"t_end": 2.0})], frames=[b"img"]))
    with pytest.raises(ContentError):
        decode_content(mangle(data))


def test_unknown_kind_or_field_is_refused() -> None:
    import json
    import struct

    for ev in ({"t": 1, "kind": "audio.clip"}, {"t": 1, "kind": "gap", "t_end": 2, "why": "x"}):
        head = json.dumps(
            {"v": 1, "events": [ev], "monitors": [], "meta": {}, "frames": []}
        ).encode()
        with pytest.raises(ContentError):
            decode_content(b"KSC1" + struct.pack(">I", len(head)) + head)
