"""Hypothesis properties of seal → unseal: round trip, tamper evidence, key separation."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vaultkit import BUILDER, STEWARD_A, Clock, Device, make_device, seal_for

from keystep.model.batch import BatchContent, Monitor
from keystep.model.events import Event
from keystep.policy.model import Principal
from keystep.seal.envelope import EnvelopeError, open_body, parse_envelope
from keystep.vault.base import BadEnvelope, VaultError
from keystep.vault.local import LocalVault

FIXTURES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_t = st.floats(min_value=1.6e9, max_value=2.0e9, allow_nan=False)
_events = st.lists(
    st.one_of(
        st.builds(
            lambda t, x, y, b: Event(t, "pointer.down", {"x": x, "y": y, "button": b}),
            _t,
            st.integers(-10_000, 10_000),
            st.integers(-10_000, 10_000),
            st.sampled_from(["left", "right", "middle"]),
        ),
        st.builds(
            lambda t, s: Event(t, "text.typed", {"text": s, "t_end": t + 1}),
            _t,
            st.text(max_size=200),
        ),
        st.builds(
            lambda t, dy: Event(t, "pointer.scroll", {"x": 0, "y": 0, "dx": 0, "dy": dy}),
            _t,
            st.integers(-50, 50),
        ),
    ),
    max_size=30,
)
_contents = st.builds(
    lambda events, frames, meta: BatchContent(
        events=events, frames=frames, monitors=[Monitor(0, 0, 1280, 800, True)], meta=meta
    ),
    _events,
    st.lists(st.binary(max_size=2000), max_size=3),
    st.dictionaries(st.sampled_from(["app", "note"]), st.text(max_size=20), max_size=2),
)


@pytest.fixture
def granted(vault: LocalVault, clock: Clock) -> LocalVault:
    vault.create_grant(
        BUILDER,
        "model-training",
        "sealed-batches",
        expires=clock.now + timedelta(days=1),
        by=STEWARD_A,
    )
    return vault


@FIXTURES
@given(body=_contents)
def test_round_trip(granted: LocalVault, device: Device, body: BatchContent) -> None:
    blob = seal_for(granted, device, body)
    out = granted.unseal(blob, principal=BUILDER, purpose="model-training")
    assert [e.to_wire() for e in out.content.events] == [e.to_wire() for e in body.events]
    assert out.content.frames == body.frames and out.content.meta == body.meta
    mine = granted.unseal(
        blob,
        principal=Principal(device.contributor_id, "contributor"),
        purpose="contributor-access",
    )
    assert mine.content.frames == body.frames


@FIXTURES
@given(data=st.data())
def test_any_changed_byte_fails(granted: LocalVault, device: Device, data: st.DataObject) -> None:
    blob = seal_for(granted, device)
    # The envelope's length varies with its batch id; draw independently of it.
    i = data.draw(st.integers(0, 1 << 20), label="offset") % len(blob)
    delta = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(blob)
    tampered[i] ^= delta
    with pytest.raises(VaultError):
        granted.unseal(bytes(tampered), principal=BUILDER, purpose="model-training")


@FIXTURES
@given(a=_contents, b=_contents)
def test_a_data_key_for_one_batch_never_opens_another(
    granted: LocalVault, device: Device, a: BatchContent, b: BatchContent
) -> None:
    blob_a, blob_b = seal_for(granted, device, a), seal_for(granted, device, b)
    (dek_a,) = granted.unseal_keys([blob_a], principal=BUILDER, purpose="model-training")
    assert isinstance(dek_a, bytes)
    open_body(parse_envelope(blob_a), dek_a)
    with pytest.raises(EnvelopeError):
        open_body(parse_envelope(blob_b), dek_a)


@FIXTURES
@given(body=_contents, same_contributor=st.booleans())
def test_a_batch_signed_by_another_device_fails(
    granted: LocalVault, device: Device, body: BatchContent, same_contributor: bool
) -> None:
    other_id = device.contributor_id if same_contributor else "ben@example.org"
    other = make_device(granted, other_id, device_id=f"d-{uuid.uuid4().hex}")
    # Claims to come from `device` but carries the other device's signature.
    forged = seal_for(granted, device, body, signer=other.key)
    with pytest.raises(BadEnvelope, match="signature"):
        granted.unseal(forged, principal=BUILDER, purpose="model-training")
    # Signed honestly by a device of another contributor but naming this contributor.
    if not same_contributor:
        misfiled = seal_for(
            granted,
            Device(other.device_id, other.key, device.contributor_id, device.pseudonym),
            body,
        )
        with pytest.raises(BadEnvelope, match="belong"):
            granted.unseal(misfiled, principal=BUILDER, purpose="model-training")
