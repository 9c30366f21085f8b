"""The HTTP surface as a whole: authentication on every route, the published OpenAPI schema
fuzzed with Schemathesis (no 5xx), aggregate-only metrics, and a contributor's own data."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
import schemathesis
from harness import TOKENS, CollectorProc, SimDevice, enroll_sim
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families

from keystep.collector.metrics import REASONS

pytestmark = pytest.mark.postgres

PUBLIC = {("GET", "/healthz"), ("GET", "/metrics")}
# The one-time code in the body is this route's authentication.
CODE_AUTH = {("POST", "/v1/devices")}


def _operations(c: CollectorProc) -> list[tuple[str, str]]:
    spec = httpx.get(f"{c.url}/openapi.json").json()
    return [(m.upper(), p) for p, item in spec["paths"].items() for m in item]


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_but_health_and_metrics_requires_authentication(
    collectors: Callable[..., CollectorProc],
) -> None:
    c = collectors("auth")
    ops = _operations(c)
    assert len(ops) >= 20
    for method, path in ops:
        for headers in (
            {},
            {"Authorization": "Bearer not-a-token"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            r = httpx.request(
                method,
                f"{c.url}{_fill(path)}",
                headers=headers,
                timeout=10,
                json={"code": "AAAAA-BBBBB-CCCCC-DDDDD", "public_key": "A" * 43 + "="},
            )
            if (method, path) in PUBLIC:
                assert r.status_code == 200, (method, path)
            elif (method, path) in CODE_AUTH:
                assert r.status_code == 403, (method, path, r.text)
            else:
                assert r.status_code == 401, (method, path, headers, r.status_code)
                assert r.headers.get("www-authenticate") == "Bearer"


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(collectors: Callable[..., CollectorProc]) -> None:
    c = collectors("fuzz")
    dev = enroll_sim(c, "fuzzed")
    principals = {
        "steward": TOKENS["steward"],
        "auditor": TOKENS["auditor"],
        "device": dev.credential,
        "contributor": dev.contributor_token,
    }
    schema = schemathesis.openapi.from_url(f"{c.url}/openapi.json")
    seen: list[tuple[str, str, int]] = []

    def fuzz(op: schemathesis.APIOperation, who: str, token: str) -> None:
        @settings(
            max_examples=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def check(case: schemathesis.Case) -> None:
            resp = case.call(
                base_url=c.url, headers={"Authorization": f"Bearer {token}"}, timeout=15
            )
            seen.append((case.path, who, resp.status_code))
            assert resp.status_code < 500, (case.method, case.path, who, resp.text[:300])

        check()

    for result in schema.get_all_operations():
        op = result.ok()
        if op.path == "/v1/lease/stream":
            continue  # an endless stream by design; covered by the fleet tests
        for who, token in principals.items():
            fuzz(op, who, token)
    assert {p for p, _, _ in seen} >= {"/v1/batches", "/v1/enrollment-codes", "/v1/fleet/halt"}
    with c.staff() as s:
        s.post("/v1/fleet/resume", json={"reason": "after fuzzing"})


def test_metrics_are_aggregates_only(collectors: Callable[..., CollectorProc]) -> None:
    c = collectors("metrics")
    devs = [enroll_sim(c, f"m{i}") for i in range(3)]
    ids: list[str] = []
    for d in devs:
        ok = d.upload(d.seal())
        assert ok.status_code == 200
        ids += [d.device_id, d.pseudonym, ok.json()["batch_id"], d.credential.split(".")[-1]]
        assert d.upload(d.seal(kinds=("clipboard.copy",))).status_code == 422
        assert d.upload(b"x", content_type="text/plain").status_code == 415
        with d.http() as h:
            assert h.post("/v1/lease").status_code == 200
    nope = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{c.url}/v1/batches", headers=nope).status_code == 401
    text = httpx.get(f"{c.url}/metrics").text
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    assert any(s.name == "keystep_batches_accepted_total" and s.value == 3 for s in samples)
    assert any(
        s.name == "keystep_batches_rejected_total"
        and s.labels == {"reason": "invalid"}
        and s.value == 3
        for s in samples
    )
    for s in samples:
        assert set(s.labels) <= {"reason"}, s
        assert s.labels.get("reason", "other") in REASONS, s
    for ident in ids:
        assert ident not in text
    assert not re.search(r"device|contributor|pseudonym|user|ip=", text.split("# HELP")[0])


def test_contributor_exports_sees_access_and_erases_own_data(
    collectors: Callable[..., CollectorProc],
) -> None:
    c = collectors("me")
    alice, bob = enroll_sim(c, "alice"), enroll_sim(c, "bob")
    for _ in range(2):
        assert alice.upload(alice.seal()).status_code == 200
    assert bob.upload(bob.seal()).status_code == 200
    with alice.http(alice.contributor_token) as h:
        mine = h.get("/v1/me/batches").json()
        assert len(mine) == 2 and {b["device"] for b in mine} == {alice.device_id}
        export = h.get("/v1/me/export").json()
        assert len(export) == 2 and all(e["events"] for e in export), export
        assert export[0]["events"][0]["kind"] == "pointer.move"
        feed = h.get("/v1/me/feed").json()
        assert any(
            e["event"] == "unseal-batch" and e["purpose"] == "contributor-access" for e in feed
        )
        # Erasure: keys destroyed, batches gone; bob keeps his.
        assert h.post("/v1/erase", json={}).json()["count"] == 2
        assert h.get("/v1/me/batches").json() == []
        assert h.post("/v1/erase", json={"contributor": bob.pseudonym}).status_code == 403
    with bob.http(bob.contributor_token) as h:
        assert len(h.get("/v1/me/batches").json()) == 1
        assert h.post("/v1/forget", json={"last_seconds": 600}).json()["count"] == 1
        assert h.get("/v1/me/batches").json() == []


def test_consent_withdrawal_reaches_a_connected_device_at_once(
    collectors: Callable[..., CollectorProc],
) -> None:
    import time

    from keystep.agent.lease import LeaseHolder, LeaseStream

    c = collectors("withdraw", lease_ttl=30.0)
    dev: SimDevice = enroll_sim(c, "erin")
    holder = LeaseHolder(device_id=dev.device_id, public_key=dev.lease_public_key)
    stream = LeaseStream(c.url, dev.credential, holder)
    stream.start()
    try:
        t0 = time.monotonic()
        while not holder.may_record() and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        assert holder.may_record()
        with dev.http(dev.contributor_token) as h:
            assert h.post("/v1/consent/withdraw").status_code == 200
        t1 = time.monotonic()
        while holder.may_record() and time.monotonic() - t1 < 5:
            time.sleep(0.01)
        assert not holder.may_record() and time.monotonic() - t1 < 1.0
        assert holder.reason == "consent-withdrawn"
    finally:
        stream.stop()
