"""Replacement values: realistic surrogates consistent within an episode, or type tokens."""

from __future__ import annotations

import hashlib
import hmac
import random
import string
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Literal

from faker import Faker

from keystep.redact.normalize import leak_key
from keystep.redact.spans import (
    CREDIT_CARD,
    CRYPTO,
    DATE_OF_BIRTH,
    EMAIL,
    IBAN,
    IP_ADDRESS,
    NUMBER,
    PASSWORD,
    PERSON,
    PHONE,
    SECRET,
    US_DRIVER_LICENSE,
    US_ITIN,
    US_PASSPORT,
    US_SSN,
)

PASSWORD_FIELD_TOKEN: Final = "<PASSWORD>"
_CACHE_SIZE: Final = 20_000
# Prefixes that say what kind of secret a token is without saying which one: a surrogate
# keeps them so a model still learns that a GitHub token starts with "ghp_".
_SECRET_PREFIXES: Final = (
    "AKIA",
    "ASIA",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "sk_live_",
    "sk_test_",
    "pk_live_",
    "rk_live_",
    "sk-",
    "SG.",
    "npm_",
    "pypi-",
    "eyJ",
)


def token_for(entity: str) -> str:
    """The type token used when the manifest asks for tokens instead of surrogates."""
    return f"<{entity}>"


def _shaped_like(rng: random.Random, value: str) -> str:
    """A random string with the same character classes position by position."""
    out = []
    for ch in value:
        if ch.isdigit():
            out.append(rng.choice(string.digits))
        elif ch.isupper():
            out.append(rng.choice(string.ascii_uppercase))
        elif ch.islower():
            out.append(rng.choice(string.ascii_lowercase))
        else:
            out.append(ch)
    return "".join(out)


def _secret(fake: Faker, value: str) -> str:
    rng = fake.random
    for prefix in _SECRET_PREFIXES:
        if value.startswith(prefix):
            return prefix + _shaped_like(rng, value[len(prefix) :])
    return _shaped_like(rng, value)


def _shaped(fake: Faker, value: str) -> str:
    return _shaped_like(fake.random, value)


def _password(fake: Faker, value: str) -> str:
    return str(fake.password(length=max(10, min(len(value), 24))))


_MAKERS: Final[dict[str, Callable[[Faker, str], str]]] = {
    EMAIL: lambda f, v: str(f.email()),
    PHONE: lambda f, v: str(f.phone_number()),
    CREDIT_CARD: lambda f, v: str(f.credit_card_number()),
    IBAN: lambda f, v: str(f.iban()),
    US_SSN: lambda f, v: str(f.ssn()),
    US_ITIN: lambda f, v: str(f.itin()),
    US_PASSPORT: lambda f, v: str(f.bothify("?########").upper()),
    US_DRIVER_LICENSE: lambda f, v: str(f.bothify("?#######").upper()),
    IP_ADDRESS: lambda f, v: str(f.ipv4_private()),
    CRYPTO: lambda f, v: (
        "bc1q" + "".join(f.random.choices(string.ascii_lowercase + "023456789", k=38))
    ),
    DATE_OF_BIRTH: lambda f, v: f.date_of_birth(minimum_age=18, maximum_age=80).strftime(
        "%m/%d/%Y"
    ),
    PERSON: lambda f, v: str(f.name()),
    SECRET: _secret,
    PASSWORD: _password,
    NUMBER: _shaped,
}


class SurrogateFactory:
    """Maps a sensitive value to its replacement.

    Surrogates are drawn from Faker seeded by HMAC(episode salt, entity, value), so the same
    value always gets the same surrogate within an episode (and across the text and the
    title of that episode) while another episode's salt gives another one.
    """

    def __init__(
        self, *, episode_salt: bytes, mode: Literal["surrogate", "token"] = "surrogate"
    ) -> None:
        self._salt = bytes(episode_salt)
        self._mode = mode
        self._fake = Faker("en_US")
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()

    @property
    def mode(self) -> str:
        return self._mode

    def replacement(self, entity: str, value: str) -> str:
        if self._mode == "token":
            return token_for(entity)
        # Numbers compare by their digits, emails by case: "4111-1111..." and "4111 1111..."
        # are the same card and get the same surrogate.
        value_key = leak_key(value)
        canonical = value if entity in (PASSWORD, SECRET) else value_key
        key = (entity, canonical)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            digest = hmac.new(self._salt, f"{entity}\0{canonical}".encode(), hashlib.sha256)
            self._fake.seed_instance(int.from_bytes(digest.digest()[:8], "big"))
            maker = _MAKERS.get(entity, _shaped)
            surrogate = str(maker(self._fake, value))
            for _ in range(3):
                # A surrogate must never reproduce the value it hides.
                if leak_key(surrogate) != value_key:
                    break
                surrogate = str(maker(self._fake, value))
            else:
                surrogate = token_for(entity)
            self._cache[key] = surrogate
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return surrogate
