"""The in-process vault: key store, policy and audit log in one folder outside the data home."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keystep.audit.events import (
    AuditEvent,
    BreakGlassClosedEvent,
    BreakGlassOpenedEvent,
    ContributorEnrolledEvent,
    ContributorErasedEvent,
    DeviceRegisteredEvent,
    GrantCreatedEvent,
    GrantRevokedEvent,
    LegalHoldReleasedEvent,
    LegalHoldSetEvent,
    PeriodExpiredEvent,
    UnsealBatchEvent,
    event_from_dict,
    format_time,
    parse_time,
)
from keystep.audit.log import (
    AuditLog,
    AuditLogError,
    Checkpoint,
    VerifyReport,
    read_entries,
    verify,
)
from keystep.model.batch import ContentError, decode_content
from keystep.model.periods import period_of
from keystep.policy.decide import Decision, decide
from keystep.policy.model import (
    CONTRIBUTOR,
    CREATE_GRANT,
    ERASE,
    OPEN_BREAK_GLASS,
    READ_AUDIT,
    READ_FEED,
    RUN_MAINTENANCE,
    SEALED_BATCHES,
    SET_LEGAL_HOLD,
    STEWARD,
    UNSEAL,
    VERIFY_AUDIT,
    BreakGlass,
    Grant,
    PolicyError,
    Principal,
)
from keystep.seal.envelope import (
    Envelope,
    EnvelopeError,
    open_body,
    parse_envelope,
    unwrap_dek,
)
from keystep.vault.base import (
    AccessDenied,
    AuditUnavailable,
    BadEnvelope,
    LegalHold,
    SealingKey,
    Unsealed,
    Vault,
    VaultError,
)
from keystep.vault.keystore import KEYSTORE_NAME, KeyStore, KeyStoreError, open_secret, seal_secret
from keystep.vault.master import MasterKey, create_master, load_master
from keystep.vault.signatures import DeviceVerifier

_T = TypeVar("_T")

AUDIT_DIR: Final = "audit"
DEFAULT_KEEP_MONTHS: Final = 12
_PERIOD: Final = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_VAULT_PRINCIPAL: Final = Principal("keystep-vault", "operator")
# In the embedded deployment the person at the machine is their own steward.
EMBEDDED_STEWARD: Final = Principal("local-steward", "steward")
EMBEDDED_BUILDER: Final = Principal("builder", "builder")
EMBEDDED_GRANT_DAYS: Final = 90

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _period_index(period: str) -> int:
    m = _PERIOD.match(period)
    if m is None:
        raise VaultError(f"period {period!r} is not YYYY-MM")
    return int(m.group(1)) * 12 + int(m.group(2)) - 1


def period_expired(period: str, now: datetime, keep_months: int) -> bool:
    """A period is kept for ``keep_months`` whole months after it ends."""
    return _period_index(period_of(now)) >= _period_index(period) + 1 + keep_months


@dataclass(frozen=True)
class _Device:
    verifier: DeviceVerifier
    pseudonym: str


class LocalVault(Vault):
    """Everything in ``vault_dir`` (0700): ``keystore.db``, ``master.json``, ``audit/``."""

    def __init__(
        self,
        vault_dir: Path,
        master: MasterKey,
        store: KeyStore,
        *,
        clock: Clock = _utcnow,
        checkpoint_every: int = 1000,
    ) -> None:
        self.vault_dir = vault_dir
        self.clock = clock
        self._master = master
        self._store = store
        self._lock = threading.RLock()
        self._pseudonym_key = self._meta_secret("pseudonym_key", "pseudonym-key")
        self._audit_key = Ed25519PrivateKey.from_private_bytes(
            self._meta_secret("audit_signing_key", "audit-signing-key")
        )
        if store.get_meta("audit_public_key") is None:
            # In the clear on purpose: auditors and the exposure scanner verify without unlocking.
            store.set_meta("audit_public_key", self.audit_public_key())
        keep = store.get_meta("keep_months")
        self.keep_months = int(keep) if keep else DEFAULT_KEEP_MONTHS
        self._keks: dict[str, bytes] = {}
        self._private: dict[str, tuple[str, str, X25519PrivateKey]] = {}
        self._devices: dict[str, _Device] = {}
        self._grants_cache: dict[str, list[Grant | BreakGlass]] | None = None
        self._seen_version = store.data_version()
        self._log = AuditLog(
            vault_dir / AUDIT_DIR,
            signer=self._audit_key.sign,
            checkpoint_every=checkpoint_every,
            on_checkpoint=self._store_anchor,
            clock=lambda: self.clock(),
        )

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        vault_dir: Path,
        *,
        create: bool = False,
        passphrase: str | None = None,
        keep_months: int | None = None,
        clock: Clock = _utcnow,
        env: dict[str, str] | None = None,
        keyring_backend: Any | None = None,
        argon2: dict[str, int] | None = None,
        checkpoint_every: int = 1000,
    ) -> LocalVault:
        vault_dir = vault_dir.expanduser().absolute()
        exists = (vault_dir / KEYSTORE_NAME).exists()
        if not exists and not create:
            raise VaultError(f"no vault at {vault_dir} (run keystep init)")
        if not exists:
            if (vault_dir / "master.json").exists():
                raise VaultError(
                    f"{vault_dir} holds a master secret record but no key store (an interrupted"
                    " keystep init?); move the folder aside and run init again"
                )
            vault_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(vault_dir, 0o700)
            kwargs: dict[str, Any] = {
                "passphrase": passphrase,
                "env": env,
                "keyring_backend": keyring_backend,
            }
            if argon2 is not None:
                kwargs["argon2"] = argon2
            master = create_master(vault_dir, **kwargs)
            store = KeyStore(vault_dir / KEYSTORE_NAME)
            store.set_meta(
                "pseudonym_key", seal_secret(master.key, secrets.token_bytes(32), "pseudonym-key")
            )
            signing = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            store.set_meta(
                "audit_signing_key", seal_secret(master.key, signing, "audit-signing-key")
            )
            store.set_meta("keep_months", str(keep_months or DEFAULT_KEEP_MONTHS).encode())
        else:
            master = load_master(
                vault_dir, passphrase=passphrase, env=env, keyring_backend=keyring_backend
            )
            store = KeyStore(vault_dir / KEYSTORE_NAME)
            if keep_months is not None:
                store.set_meta("keep_months", str(keep_months).encode())
        try:
            return cls(vault_dir, master, store, clock=clock, checkpoint_every=checkpoint_every)
        except AuditLogError as exc:
            store.close()
            raise AuditUnavailable(str(exc)) from exc

    def _sync(self) -> None:
        """Drop cached keys, devices and grants if another process changed the key store.

        A long-running vault (the web service) must not keep opening an erased contributor's
        data, or miss a revoked grant, because a CLI command changed them.
        """
        version = self._store.data_version()
        if version != self._seen_version:
            with self._lock:
                self._keks.clear()
                self._private.clear()
                self._devices.clear()
                self._grants_cache = None
                self._seen_version = version

    def _meta_secret(self, name: str, aad: str) -> bytes:
        blob = self._store.get_meta(name)
        if blob is None:
            raise KeyStoreError(f"the key store lacks its {aad}")
        return open_secret(self._master.key, blob, aad)

    def _store_anchor(self, cp: Checkpoint) -> None:
        self._store.set_meta("audit_anchor", cp.to_json().encode())

    def audit_anchor(self) -> Checkpoint | None:
        raw = self._store.get_meta("audit_anchor")
        return Checkpoint.from_json(raw) if raw else None

    # -- audit -----------------------------------------------------------------------------

    def _audit(self, *events: AuditEvent) -> None:
        try:
            self._log.append_many(events)
        except AuditLogError as exc:
            raise AuditUnavailable(f"refused: the audit log cannot be written ({exc})") from exc

    def record(self, event: AuditEvent) -> None:
        self._audit(event)

    def checkpoint(self) -> Checkpoint | None:
        try:
            return self._log.checkpoint()
        except AuditLogError as exc:
            raise AuditUnavailable(str(exc)) from exc

    def audit_public_key(self) -> bytes:
        return self._audit_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def audit_dir(self) -> Path:
        return self.vault_dir / AUDIT_DIR

    def verify_audit(self, *, principal: Principal) -> VerifyReport:
        self._require(principal, VERIFY_AUDIT)
        return verify(self.audit_dir, self.audit_public_key(), anchor=self.audit_anchor())

    def feed(self, pseudonym: str, *, principal: Principal, purpose: str) -> list[AuditEvent]:
        self._require(principal, READ_FEED, purpose=purpose, contributor=pseudonym)
        return self._log.feed(pseudonym)

    def read_audit(self, *, principal: Principal, purpose: str) -> list[AuditEvent]:
        """The whole log (auditors and stewards)."""
        self._require(principal, READ_AUDIT, purpose=purpose)
        return [event_from_dict(d) for d in read_entries(self.audit_dir)]

    # -- contributors, keys, devices ---------------------------------------------------------

    def pseudonym(self, contributor_id: str) -> str:
        if not contributor_id:
            raise VaultError("a contributor id is empty")
        mac = hmac.new(
            self._pseudonym_key, b"contributor|" + contributor_id.encode(), hashlib.sha256
        ).digest()
        return "p_" + base64.b32encode(mac[:20]).decode().lower()

    def enroll_contributor(self, contributor_id: str) -> str:
        p = self.pseudonym(contributor_id)
        with self._lock:
            rows = self._store.query("SELECT erased FROM contributors WHERE pseudonym = ?", (p,))
            if rows:
                if rows[0][0] is not None:
                    raise VaultError("this contributor was erased; their keys are gone")
                return p
            now = self.clock()
            self._audit(
                ContributorEnrolledEvent(
                    t=now,
                    principal=_VAULT_PRINCIPAL.name,
                    role=_VAULT_PRINCIPAL.role,
                    contributor=p,
                )
            )
            kek = secrets.token_bytes(32)
            with self._store.transaction() as db:
                db.execute(
                    "INSERT INTO contributors (pseudonym, kek, created) VALUES (?, ?, ?)",
                    (p, seal_secret(self._master.key, kek, "kek|" + p), format_time(now)),
                )
            self._keks[p] = kek
        return p

    def _kek(self, pseudonym: str) -> bytes:
        kek = self._keks.get(pseudonym)
        if kek is not None:
            return kek
        rows = self._store.query(
            "SELECT kek, erased FROM contributors WHERE pseudonym = ?", (pseudonym,)
        )
        if not rows:
            raise VaultError("unknown contributor (not enrolled in this vault)")
        blob, erased = rows[0]
        if erased is not None or blob is None:
            raise VaultError("this contributor was erased; their keys are gone")
        kek = open_secret(self._master.key, bytes(blob), "kek|" + pseudonym)
        self._keks[pseudonym] = kek
        return kek

    def sealing_key(self, pseudonym: str, period: str) -> SealingKey:
        _period_index(period)
        self._sync()
        if period_expired(period, self.clock(), self.keep_months):
            raise VaultError(f"period {period} is past retention; it takes no new data")
        with self._lock:
            kek = self._kek(pseudonym)
            rows = self._store.query(
                "SELECT key_id, public_key, private_key FROM period_keys "
                "WHERE pseudonym = ? AND period = ?",
                (pseudonym, period),
            )
            if rows:
                key_id, public, private = rows[0]
                if private is None:
                    raise VaultError(f"the key for period {period} was destroyed")
                return SealingKey(key_id, bytes(public), pseudonym, period)
            key_id = "k_" + secrets.token_hex(16)
            sk = X25519PrivateKey.generate()
            public = sk.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            raw = sk.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            with self._store.transaction() as db:
                db.execute(
                    "INSERT INTO period_keys (key_id, pseudonym, period, public_key, private_key,"
                    " created) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        key_id,
                        pseudonym,
                        period,
                        public,
                        seal_secret(kek, raw, "period|" + key_id),
                        format_time(self.clock()),
                    ),
                )
            self._private[key_id] = (pseudonym, period, sk)
            return SealingKey(key_id, public, pseudonym, period)

    def _period_private(self, key_id: str) -> tuple[str, str, X25519PrivateKey]:
        hit = self._private.get(key_id)
        if hit is not None:
            return hit
        with self._lock:
            rows = self._store.query(
                "SELECT pseudonym, period, private_key FROM period_keys WHERE key_id = ?",
                (key_id,),
            )
            if not rows:
                raise VaultError("the batch names a key this vault never issued")
            pseudonym, period, blob = rows[0]
            if blob is None:
                raise VaultError(f"the key for period {period} was destroyed (erased or expired)")
            raw = open_secret(self._kek(pseudonym), bytes(blob), "period|" + key_id)
            hit = (pseudonym, period, X25519PrivateKey.from_private_bytes(raw))
            self._private[key_id] = hit
            return hit

    def register_device(self, device_id: str, public_key: bytes, *, pseudonym: str) -> None:
        if len(public_key) != 32:
            raise VaultError("a device key is a raw 32-byte Ed25519 public key")
        Ed25519PublicKey.from_public_bytes(public_key)
        with self._lock:
            self._kek(pseudonym)
            rows = self._store.query(
                "SELECT public_key, pseudonym FROM devices WHERE device_id = ?", (device_id,)
            )
            if rows:
                if bytes(rows[0][0]) == public_key and rows[0][1] == pseudonym:
                    return
                raise VaultError(f"device {device_id} is already registered with another key")
            now = self.clock()
            self._audit(
                DeviceRegisteredEvent(
                    t=now,
                    principal=_VAULT_PRINCIPAL.name,
                    role=_VAULT_PRINCIPAL.role,
                    contributor=pseudonym,
                    device=device_id,
                )
            )
            with self._store.transaction() as db:
                db.execute(
                    "INSERT INTO devices (device_id, public_key, pseudonym, registered)"
                    " VALUES (?, ?, ?, ?)",
                    (device_id, public_key, pseudonym, format_time(now)),
                )
            self._devices[device_id] = _Device(DeviceVerifier(public_key), pseudonym)

    def _device(self, device_id: str) -> _Device:
        d = self._devices.get(device_id)
        if d is None:
            rows = self._store.query(
                "SELECT public_key, pseudonym FROM devices WHERE device_id = ?", (device_id,)
            )
            if not rows:
                raise BadEnvelope(f"batch from unregistered device {device_id}")
            d = _Device(DeviceVerifier(bytes(rows[0][0])), rows[0][1])
            self._devices[device_id] = d
        return d

    # -- the one door ----------------------------------------------------------------------

    def _as_asked(self, principal: Principal) -> Principal:
        # A contributor's pseudonym is always recomputed: a claimed one is never trusted.
        if principal.role == CONTRIBUTOR:
            return replace(principal, pseudonym=self.pseudonym(principal.name))
        return principal

    def _check(self, blob: bytes) -> Envelope:
        try:
            env = parse_envelope(blob)
        except EnvelopeError as exc:
            raise BadEnvelope(str(exc)) from exc
        device = self._device(env.header.device)
        try:
            device.verifier.verify(env)
        except EnvelopeError as exc:
            raise BadEnvelope(str(exc)) from exc
        if device.pseudonym != env.header.contributor:
            raise BadEnvelope("the batch's device does not belong to its contributor")
        return env

    def _unseal_event(
        self, env: Envelope, who: Principal, purpose: str, d: Decision, now: datetime
    ) -> UnsealBatchEvent:
        return UnsealBatchEvent(
            t=now,
            principal=who.pseudonym if who.role == CONTRIBUTOR and who.pseudonym else who.name,
            role=who.role,
            purpose=purpose,
            contributor=env.header.contributor,
            batch_id=env.header.batch_id,
            device=env.header.device,
            period=env.header.period,
            allowed=d.allowed,
            reason=d.reason,
            grant_id=d.grant_id,
        )

    def _unwrap(self, env: Envelope) -> bytes:
        pseudonym, period, sk = self._period_private(env.header.key_id)
        if pseudonym != env.header.contributor or period != env.header.period:
            raise BadEnvelope("the batch's key id belongs to another contributor or period")
        try:
            return unwrap_dek(env, sk)
        except EnvelopeError as exc:
            raise BadEnvelope(str(exc)) from exc

    def _open(self, env: Envelope) -> Unsealed:
        dek = self._unwrap(env)
        try:
            body = open_body(env, dek)
            content = decode_content(body, batch_id=env.header.batch_id)
        except (EnvelopeError, ContentError) as exc:
            raise BadEnvelope(str(exc)) from exc
        return Unsealed(env.header, content)

    def unseal(self, envelope: bytes, *, principal: Principal, purpose: str) -> Unsealed:
        result = self.unseal_many([envelope], principal=principal, purpose=purpose)[0]
        if isinstance(result, VaultError):
            raise result
        return result

    def unseal_many(
        self, envelopes: list[bytes], *, principal: Principal, purpose: str
    ) -> list[Unsealed | VaultError]:
        return self._each_allowed(envelopes, principal, purpose, self._open)

    def unseal_keys(
        self, envelopes: list[bytes], *, principal: Principal, purpose: str
    ) -> list[bytes | VaultError]:
        return self._each_allowed(envelopes, principal, purpose, self._unwrap)

    def _each_allowed(
        self,
        envelopes: list[bytes],
        principal: Principal,
        purpose: str,
        step: Callable[[Envelope], _T],
    ) -> list[_T | VaultError]:
        """``step`` on every batch the (already audited) decisions allowed; errors per batch."""
        out: list[_T | VaultError] = []
        for item in self._authorize(envelopes, principal, purpose):
            if isinstance(item, VaultError):
                out.append(item)
                continue
            try:
                out.append(step(item))
            except VaultError as exc:
                out.append(exc)
        return out

    def _authorize(
        self, envelopes: list[bytes], principal: Principal, purpose: str
    ) -> list[Envelope | VaultError]:
        """Verify and decide every batch, then make all decisions durable in one audit write.

        Returns the envelopes that may be opened, or the error refusing each.
        """
        self._sync()
        who = self._as_asked(principal)
        now = self.clock()
        grants = self._grants_for(who.name)
        results: list[Envelope | VaultError] = []
        events: list[AuditEvent] = []
        for blob in envelopes:
            try:
                env = self._check(blob)
            except VaultError as exc:
                results.append(exc)
                continue
            d = decide(
                who, UNSEAL, purpose, contributor=env.header.contributor, grants=grants, now=now
            )
            events.append(self._unseal_event(env, who, purpose, d, now))
            results.append(env if d.allowed else AccessDenied(d.reason))
        if events:
            self._audit(*events)  # raises AuditUnavailable: nothing is opened
        return results

    # -- policy administration ---------------------------------------------------------------

    def _require(
        self,
        by: Principal,
        operation: str,
        *,
        purpose: str | None = None,
        contributor: str | None = None,
    ) -> Principal:
        self._sync()
        who = self._as_asked(by)
        d = decide(
            who,
            operation,
            purpose,
            contributor=contributor,
            grants=self._grants_for(who.name),
            now=self.clock(),
        )
        if not d.allowed:
            raise AccessDenied(d.reason)
        return who

    def _grants_for(self, name: str) -> list[Grant | BreakGlass]:
        cache = self._grants_cache
        if cache is None:
            cache = {}
            for g in self.grants():
                cache.setdefault(g.principal, []).append(g)
            self._grants_cache = cache
        return cache.get(name, [])

    def grants(self) -> list[Grant | BreakGlass]:
        """Every valid grant on record. A row that is not a valid grant (written around the
        vault: no expiry, too long, unknown purpose) authorizes nothing and is skipped here;
        the exposure scanner reports it."""
        out: list[Grant | BreakGlass] = []
        for row in self._store.query(
            "SELECT grant_id, kind, principal, role, purpose, data_class, contributor, expires,"
            " created, created_by, approvers, justification, revoked FROM grants ORDER BY created"
        ):
            try:
                out.append(_grant_from_row(row))
            except (PolicyError, ValueError, TypeError):
                continue
        return out

    def create_grant(
        self,
        principal: Principal,
        purpose: str,
        data_class: str,
        *,
        expires: datetime,
        by: Principal,
        contributor: str | None = None,
        justification: str = "",
    ) -> Grant:
        steward = self._require(by, CREATE_GRANT)
        now = self.clock()
        grant = Grant(
            grant_id="g_" + secrets.token_hex(8),
            principal=principal.name,
            role=principal.role,
            purpose=purpose,
            data_class=data_class,
            expires=expires,
            created=now,
            created_by=steward.name,
            contributor=contributor,
        )
        self._audit(
            GrantCreatedEvent(
                t=now,
                principal=steward.name,
                role=steward.role,
                purpose=purpose,
                justification=justification,
                contributor=contributor,
                grant_id=grant.grant_id,
                grantee=principal.name,
                grantee_role=principal.role,
                data_class=data_class,
                expires=expires,
            )
        )
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO grants (grant_id, kind, principal, role, purpose, data_class,"
                " contributor, expires, created, created_by, justification)"
                " VALUES (?, 'grant', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    grant.grant_id,
                    grant.principal,
                    grant.role,
                    purpose,
                    data_class,
                    contributor,
                    format_time(expires),
                    format_time(now),
                    steward.name,
                    justification,
                ),
            )
        self._grants_cache = None
        return grant

    def open_break_glass(
        self,
        principal: Principal,
        contributor: str,
        *,
        approvers: tuple[Principal, Principal],
        justification: str,
        expires: datetime,
    ) -> BreakGlass:
        if principal.role != STEWARD:
            raise AccessDenied("break-glass opens raw access for a steward only")
        for a in approvers:
            self._require(a, OPEN_BREAK_GLASS)
        now = self.clock()
        bg = BreakGlass(
            grant_id="b_" + secrets.token_hex(8),
            principal=principal.name,
            contributor=contributor,
            approvers=(approvers[0].name, approvers[1].name),
            justification=justification,
            opened=now,
            expires=expires,
        )
        self._audit(
            BreakGlassOpenedEvent(
                t=now,
                principal=f"{bg.approvers[0]}+{bg.approvers[1]}",
                role=STEWARD,
                purpose="security-investigation",
                justification=justification,
                contributor=contributor,
                grant_id=bg.grant_id,
                grantee=principal.name,
                approvers=bg.approvers,
                expires=expires,
            )
        )
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO grants (grant_id, kind, principal, role, purpose, contributor,"
                " expires, created, created_by, approvers, justification)"
                " VALUES (?, 'break-glass', ?, ?, 'security-investigation', ?, ?, ?, ?, ?, ?)",
                (
                    bg.grant_id,
                    principal.name,
                    STEWARD,
                    contributor,
                    format_time(expires),
                    format_time(now),
                    bg.approvers[0],
                    json.dumps(list(bg.approvers)),
                    justification,
                ),
            )
        self._grants_cache = None
        return bg

    def revoke_grant(self, grant_id: str, *, by: Principal, justification: str = "") -> None:
        steward = self._require(by, CREATE_GRANT)
        rows = self._store.query(
            "SELECT contributor, revoked, kind FROM grants WHERE grant_id = ?", (grant_id,)
        )
        if not rows:
            raise VaultError(f"no grant {grant_id}")
        contributor, revoked, kind = rows[0]
        if revoked is not None:
            return
        now = self.clock()
        # Closing a break-glass is its own event: the contributor's feed shows when it ended.
        cls = BreakGlassClosedEvent if kind == "break-glass" else GrantRevokedEvent
        self._audit(
            cls(
                t=now,
                principal=steward.name,
                role=steward.role,
                justification=justification,
                contributor=contributor,
                grant_id=grant_id,
            )
        )
        with self._store.transaction() as db:
            db.execute(
                "UPDATE grants SET revoked = ? WHERE grant_id = ?", (format_time(now), grant_id)
            )
        self._grants_cache = None

    def end_expired_grants(self, *, by: Principal) -> list[str]:
        """Mark grants past their expiry as ended (housekeeping for ``keystep maintain``)."""
        now = self.clock()
        ended = [
            g.grant_id
            for g in self.grants()
            if not g.active(now) and now >= g.expires and _not_ended(g)
        ]
        for gid in ended:
            self.revoke_grant(gid, by=by, justification="expired")
        return ended

    def ensure_embedded_grants(
        self, *, pseudonym: str, days: int = EMBEDDED_GRANT_DAYS
    ) -> Grant | None:
        """The embedded deployment's builder grant (model-training, this contributor only).

        Created by ``keystep init`` with the local user acting as steward; it expires like
        every grant, after which ``keystep grant builder`` renews it. Returns the new grant,
        or None when an active one exists.
        """
        now = self.clock()
        for g in self._grants_for(EMBEDDED_BUILDER.name):
            if isinstance(g, Grant) and g.active(now) and g.contributor == pseudonym:
                return None
        return self.create_grant(
            EMBEDDED_BUILDER,
            "model-training",
            SEALED_BATCHES,
            expires=now + timedelta(days=days),
            by=EMBEDDED_STEWARD,
            contributor=pseudonym,
            justification="embedded deployment: export for the contributor's own datasets",
        )

    # -- legal holds, erasure, retention -------------------------------------------------------

    def set_legal_hold(
        self, pseudonym: str, periods: list[str], *, by: Principal, reason: str
    ) -> None:
        steward = self._require(by, SET_LEGAL_HOLD)
        if not reason.strip():
            raise VaultError("a legal hold needs a reason")
        for p in periods:
            _period_index(p)
        now = self.clock()
        self._audit(
            LegalHoldSetEvent(
                t=now,
                principal=steward.name,
                role=steward.role,
                justification=reason,
                contributor=pseudonym,
                periods=tuple(periods),
            )
        )
        with self._store.transaction() as db:
            for p in periods:
                db.execute(
                    "INSERT OR REPLACE INTO legal_holds (pseudonym, period, set_by, reason,"
                    " set_at) VALUES (?, ?, ?, ?, ?)",
                    (pseudonym, p, steward.name, reason, format_time(now)),
                )

    def release_legal_hold(
        self, pseudonym: str, periods: list[str], *, by: Principal, reason: str
    ) -> None:
        steward = self._require(by, SET_LEGAL_HOLD)
        now = self.clock()
        self._audit(
            LegalHoldReleasedEvent(
                t=now,
                principal=steward.name,
                role=steward.role,
                justification=reason,
                contributor=pseudonym,
                periods=tuple(periods),
            )
        )
        with self._store.transaction() as db:
            for p in periods:
                db.execute(
                    "DELETE FROM legal_holds WHERE pseudonym = ? AND period = ?", (pseudonym, p)
                )

    def legal_holds(self) -> list[LegalHold]:
        return [
            LegalHold(p, period, by, reason, parse_time(at))
            for p, period, by, reason, at in self._store.query(
                "SELECT pseudonym, period, set_by, reason, set_at FROM legal_holds"
                " ORDER BY pseudonym, period"
            )
        ]

    def erase_contributor(self, pseudonym: str, *, by: Principal, justification: str = "") -> int:
        who = self._require(by, ERASE, contributor=pseudonym)
        held = self._store.query("SELECT period FROM legal_holds WHERE pseudonym = ?", (pseudonym,))
        if held:
            raise VaultError(
                "a legal hold covers periods "
                + ", ".join(r[0] for r in held)
                + "; a steward must release it before erasure"
            )
        rows = self._store.query(
            "SELECT erased FROM contributors WHERE pseudonym = ?", (pseudonym,)
        )
        if not rows:
            raise VaultError("unknown contributor (not enrolled in this vault)")
        n = self._store.query(
            "SELECT count(*) FROM period_keys WHERE pseudonym = ? AND private_key IS NOT NULL",
            (pseudonym,),
        )[0][0]
        now = self.clock()
        self._audit(
            ContributorErasedEvent(
                t=now,
                principal=who.pseudonym if who.role == CONTRIBUTOR and who.pseudonym else who.name,
                role=who.role,
                justification=justification,
                contributor=pseudonym,
                keys_destroyed=int(n) + (0 if rows[0][0] else 1),
            )
        )
        with self._lock:
            with self._store.transaction() as db:
                db.execute(
                    "UPDATE period_keys SET private_key = NULL, destroyed = ?,"
                    " destroyed_why = 'erased' WHERE pseudonym = ? AND private_key IS NOT NULL",
                    (format_time(now), pseudonym),
                )
                db.execute(
                    "UPDATE contributors SET kek = NULL, erased = ? WHERE pseudonym = ?"
                    " AND erased IS NULL",
                    (format_time(now), pseudonym),
                )
                db.execute("DELETE FROM devices WHERE pseudonym = ?", (pseudonym,))
            self._store.compact()
            self._keks.pop(pseudonym, None)
            for kid in [k for k, v in self._private.items() if v[0] == pseudonym]:
                del self._private[kid]
            for dev in [k for k, v in self._devices.items() if v.pseudonym == pseudonym]:
                del self._devices[dev]
        return int(n)

    def expire_periods(self, now: datetime, *, by: Principal) -> list[tuple[str, str]]:
        who = self._require(by, RUN_MAINTENANCE)
        held = {
            (p, period)
            for p, period in self._store.query("SELECT pseudonym, period FROM legal_holds")
        }
        due = [
            (kid, p, period)
            for kid, p, period in self._store.query(
                "SELECT key_id, pseudonym, period FROM period_keys"
                " WHERE private_key IS NOT NULL ORDER BY period, pseudonym"
            )
            if period_expired(period, now, self.keep_months) and (p, period) not in held
        ]
        if not due:
            return []
        self._audit(
            *(
                PeriodExpiredEvent(
                    t=self.clock(),
                    principal=who.name,
                    role=who.role,
                    justification=f"retention {self.keep_months} months",
                    contributor=p,
                    period=period,
                )
                for _, p, period in due
            )
        )
        with self._lock:
            with self._store.transaction() as db:
                for kid, _, _ in due:
                    db.execute(
                        "UPDATE period_keys SET private_key = NULL, destroyed = ?,"
                        " destroyed_why = 'expired' WHERE key_id = ?",
                        (format_time(now), kid),
                    )
            self._store.compact()
            for kid, _, _ in due:
                self._private.pop(kid, None)
        return [(p, period) for _, p, period in due]

    # -- status ----------------------------------------------------------------------------

    def describe_master(self) -> str:
        return self._master.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "local",
            "vault_dir": str(self.vault_dir),
            "keystore": str(self.vault_dir / KEYSTORE_NAME),
            "audit_log": str(self.audit_dir),
            "master_key": self._master.describe(),
            "master_source": self._master.source,
            "keep_months": self.keep_months,
        }

    def close(self) -> None:
        try:
            self._log.checkpoint()
        except AuditLogError:
            pass  # closing must not hide the earlier, already-raised failure
        finally:
            self._log.close()
            self._store.close()

    def __enter__(self) -> LocalVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _not_ended(g: Grant | BreakGlass) -> bool:
    return (g.revoked if isinstance(g, Grant) else g.closed) is None


def _grant_from_row(row: tuple[Any, ...]) -> Grant | BreakGlass:
    (
        gid,
        kind,
        principal,
        role,
        purpose,
        data_class,
        contributor,
        expires,
        created,
        created_by,
        approvers,
        justification,
        revoked,
    ) = row
    if kind == "grant":
        return Grant(
            grant_id=gid,
            principal=principal,
            role=role,
            purpose=purpose,
            data_class=data_class,
            expires=parse_time(expires),
            created=parse_time(created),
            created_by=created_by,
            contributor=contributor,
            revoked=parse_time(revoked) if revoked else None,
        )
    a, b = json.loads(approvers)
    return BreakGlass(
        grant_id=gid,
        principal=principal,
        contributor=contributor,
        approvers=(a, b),
        justification=justification,
        opened=parse_time(created),
        expires=parse_time(expires),
        closed=parse_time(revoked) if revoked else None,
    )
