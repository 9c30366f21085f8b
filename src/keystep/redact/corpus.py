"""A synthetic corpus with planted values: typed-text cases and rendered screens."""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from faker import Faker
from PIL import Image, ImageDraw, ImageFont

from keystep.redact.spans import (
    CREDIT_CARD,
    DATE_OF_BIRTH,
    EMAIL,
    IBAN,
    IP_ADDRESS,
    PASSWORD,
    PERSON,
    PHONE,
    SECRET,
    US_SSN,
)

ZERO_LEAK_ENTITIES: Final = (PASSWORD, SECRET, CREDIT_CARD, US_SSN, EMAIL, PHONE, IBAN)
PATTERN_ENTITIES: Final = (*ZERO_LEAK_ENTITIES, IP_ADDRESS, DATE_OF_BIRTH)
FONT_DIR: Final = "/usr/share/fonts/truetype"
FONTS: Final = (
    "dejavu/DejaVuSans.ttf",
    "dejavu/DejaVuSansMono.ttf",
    "dejavu/DejaVuSerif.ttf",
    "liberation/LiberationSans-Regular.ttf",
    "liberation/LiberationSerif-Regular.ttf",
    "liberation/LiberationMono-Regular.ttf",
    "noto/NotoSans-Regular.ttf",
    "noto/NotoSansMono-Regular.ttf",
)
SIZES: Final = (11, 12, 13, 14, 15, 16, 18, 20, 24)
BAD_SIZES: Final = (8, 9, 40, 56)
SCREEN_W: Final = 1280
SCREEN_H: Final = 800
DIRECTORY_SIZE: Final = 40


# --- planted values ------------------------------------------------------------------


def _secret(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    kind = rng.randrange(6)
    if kind == 0:
        return "AKIA" + "".join(rng.choices(string.ascii_uppercase + "234567", k=16))
    if kind == 1:
        return "ghp_" + "".join(rng.choices(alnum, k=36))
    if kind == 2:
        return "sk_live_" + "".join(rng.choices(alnum, k=24))
    if kind == 3:
        return f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**11, 10**12)}-" + "".join(
            rng.choices(alnum, k=24)
        )
    if kind == 4:
        payload = json.dumps(
            {"sub": str(rng.randrange(10**6)), "iat": rng.randrange(10**9, 2 * 10**9)}
        )
        body = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
        signature = "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=43))
        return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{body}.{signature}"
    return "glpat-" + "".join(rng.choices(alnum + "-_", k=20))


def _card(fake: Faker, rng: random.Random) -> str:
    number = str(
        fake.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "discover"]))
    )
    sep = rng.choice(["", " ", " ", "-", "."])
    if not sep:
        return number
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def _ssn(fake: Faker, rng: random.Random) -> str:
    ssn = str(fake.ssn())
    return ssn.replace("-", rng.choice(["-", "-", " ", "."]))


def _iban(rng: random.Random) -> str:
    value = str(_faker(rng.choice(["de_DE", "en_GB", "fr_FR", "nl_NL", "es_ES"]), rng).iban())
    if rng.random() < 0.5:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def _password(fake: Faker, rng: random.Random) -> str:
    return str(fake.password(length=rng.randrange(10, 17)))


@lru_cache(maxsize=8)
def _locale_faker(locale: str) -> Faker:
    return Faker(locale)


def _faker(locale: str, rng: random.Random) -> Faker:
    fake = _locale_faker(locale)
    fake.seed_instance(rng.randrange(2**32))
    return fake


def directory(seed: int) -> tuple[str, ...]:
    """The names of the employer's directory for a corpus seed."""
    fake = Faker("en_US")
    fake.seed_instance(seed ^ 0x5EED)
    names: set[str] = set()
    while len(names) < DIRECTORY_SIZE:
        names.add(f"{fake.first_name()} {fake.last_name()}")
    return tuple(sorted(names))


class Values:
    """Draws planted values of each entity."""

    def __init__(self, rng: random.Random, names: tuple[str, ...]) -> None:
        self.rng = rng
        self.fake = Faker("en_US")
        self.fake.seed_instance(rng.randrange(2**32))
        self.names = names

    def draw(self, entity: str) -> str:
        rng, fake = self.rng, self.fake
        makers: dict[str, Callable[[], str]] = {
            EMAIL: lambda: str(fake.email()),
            PHONE: lambda: str(fake.phone_number()),
            CREDIT_CARD: lambda: _card(fake, rng),
            US_SSN: lambda: _ssn(fake, rng),
            IBAN: lambda: _iban(rng),
            SECRET: lambda: _secret(rng),
            PASSWORD: lambda: _password(fake, rng),
            IP_ADDRESS: lambda: str(fake.ipv4_public()),
            DATE_OF_BIRTH: lambda: fake.date_of_birth(minimum_age=18, maximum_age=90).strftime(
                rng.choice(["%m/%d/%Y", "%Y-%m-%d", "%B %d, %Y"])
            ),
            PERSON: lambda: rng.choice(self.names),
        }
        return makers[entity]()


# --- templates -----------------------------------------------------------------------
# "{E}" marks where a value of entity E goes; everything else is benign text a real
# screen or typing burst has around personal data.

TEMPLATES: Final[dict[str, tuple[str, ...]]] = {
    "form": (
        "Email: {EMAIL_ADDRESS}",
        "Phone number: {PHONE_NUMBER}",
        "Card number: {CREDIT_CARD}",
        "Social Security Number: {US_SSN}",
        "IBAN: {IBAN_CODE}",
        "Date of birth: {DATE_OF_BIRTH}",
        "Employee: {PERSON}",
        "Password: {PASSWORD}",
    ),
    "chat": (
        "hey, can you send the invoice to {EMAIL_ADDRESS} before lunch?",
        "my cell is {PHONE_NUMBER}, call me when you land",
        "use my card {CREDIT_CARD} for the team dinner, I'll expense it",
        "the wifi password is {PASSWORD} btw",
        "{PERSON} said the deploy is done",
        "my ssn is {US_SSN} for the HR form",
        "wire it to {IBAN_CODE} please",
        "the server is at {IP_ADDRESS} if you need it",
    ),
    "terminal": (
        "$ export AWS_ACCESS_KEY_ID={SECRET}",
        "$ git remote set-url origin https://oauth2:{SECRET}@gitlab.example.com/team/app.git",
        "$ curl -H 'Authorization: Bearer {SECRET}' https://api.example.com/v1/users",
        "$ ssh deploy@{IP_ADDRESS} -p 2222",
        "$ mysql -u admin --password={PASSWORD} orders",
        "$ echo {SECRET} | docker login ghcr.io -u ci --password-stdin",
    ),
    "email": (
        "Hi, please update my direct deposit to IBAN {IBAN_CODE}.",
        "You can reach me at {PHONE_NUMBER} or {EMAIL_ADDRESS}.",
        "For the background check: SSN {US_SSN}, born {DATE_OF_BIRTH}.",
        "Thanks, {PERSON}",
        "The corporate card on file is {CREDIT_CARD}.",
    ),
    "code": (
        'STRIPE_KEY = "{SECRET}"',
        "GITHUB_TOKEN={SECRET}",
        "client = Client(api_key='{SECRET}')",
        'DATABASE_URL = "postgres://app:{PASSWORD}@db.internal:5432/app"',
        'ADMIN_EMAIL = "{EMAIL_ADDRESS}"',
    ),
}

BENIGN: Final = (
    "Quarterly planning review moved to Thursday at 10:30 AM",
    "def get_user_by_id(user_id: int) -> Optional[User]:",
    "    return self.session.query(User).filter(User.id == user_id).first()",
    "See https://docs.example.com/guides/getting-started#install for details",
    "/usr/local/lib/python3.11/site-packages/requests/adapters.py",
    "Build #4821 passed in 3m 12s on main (commit 9f2c1ab)",
    "Invoice total: $1,249.00 due 2026-03-15",
    "Release v2.14.0-rc.1 is available for testing",
    "The state-of-the-art parser handles UTF-8 and ISO-8859-1 input",
    "Meeting notes: agreed to ship the onboarding flow next sprint",
    "for (let i = 0; i < items.length; i++) { total += items[i].price; }",
    "MAX_RETRY_COUNT = 5  # retries before giving up",
    "README.md  package.json  src/  tests/  tsconfig.json",
    "Order status: shipped, tracking available tomorrow",
    "Room 4B, 2nd floor, next to the kitchen",
    "npm install --save-dev typescript@5.4.2 eslint@9.1.0",
    "Inbox (24)   Drafts   Sent   Archive   Spam",
    "CPU 37%   Memory 5.2 GB   Disk 61%   Uptime 12 days",
)
BAD_TEXT: Final = (
    "مرحبا، هذا نص من اليمين إلى اليسار",
    "这是一个测试句子，没有个人数据",
    "Привет, как дела? Всё хорошо",
    "🎉🚀 shipped it! 👍👍",
    "שלום עולם, זה טקסט בעברית",
)


@dataclass(frozen=True)
class Planted:
    entity: str
    value: str
    start: int  # offsets in the case's text
    end: int


@dataclass(frozen=True)
class TypedCase:
    kind: str
    text: str
    planted: tuple[Planted, ...]
    title: str | None = None
    app: str | None = None
    password_field: bool | None = None


def _fill(template: str, values: Values) -> tuple[str, list[Planted]]:
    out = ""
    planted: list[Planted] = []
    rest = template
    while "{" in rest:
        before, _, tail = rest.partition("{")
        entity, _, rest = tail.partition("}")
        out += before
        value = values.draw(entity)
        planted.append(Planted(entity, value, len(out), len(out) + len(value)))
        out += value
    return out + rest, planted


def _disguise(text: str, planted: list[Planted], rng: random.Random) -> tuple[str, list[Planted]]:
    """Bad input: zero-width characters between the digits of every numeric value."""
    out = ""
    cursor = 0
    moved = []
    for p in sorted(planted, key=lambda p: p.start):
        out += text[cursor : p.start]
        value = p.value
        if p.entity in (CREDIT_CARD, US_SSN, PHONE):
            zw = rng.choice(["\u200b", "\u200c", "\u2060", "\ufeff"])
            value = zw.join(value)
        moved.append(Planted(p.entity, p.value, len(out), len(out) + len(value)))
        out += value
        cursor = p.end
    return out + text[cursor:], moved


def typed_cases(n: int, *, seed: int = 0) -> list[TypedCase]:
    """``n`` typed-text cases: forms, chats, terminals, emails, code, with planted values;
    about a fifth benign or non-Latin; some in password fields; some disguised."""
    rng = random.Random(seed)
    values = Values(rng, directory(seed))
    kinds = sorted(TEMPLATES)
    cases: list[TypedCase] = []
    for i in range(n):
        roll = i % 10
        if roll == 8:
            text = " ".join(rng.sample(BENIGN, 3) + rng.sample(BAD_TEXT, 1))
            cases.append(TypedCase("benign", text, ()))
            continue
        if roll == 9:
            value = values.draw(PASSWORD)
            title = rng.choice(
                [
                    "Sign in - Google Accounts",
                    "[sudo] password for alex",
                    "Unlock Keyring",
                    "ssh alex@build01",
                    "Enter passphrase",
                ]
            )
            cases.append(
                TypedCase(
                    "password-field", value, (Planted(PASSWORD, value, 0, len(value)),), title=title
                )
            )
            continue
        kind = kinds[i % len(kinds)]
        lines = rng.sample(TEMPLATES[kind], k=min(3, len(TEMPLATES[kind])))
        text = ""
        planted: list[Planted] = []
        for line in lines:
            if rng.random() < 0.3:
                text += rng.choice(BENIGN) + "\n"
            filled, found = _fill(line, values)
            planted.extend(
                Planted(p.entity, p.value, p.start + len(text), p.end + len(text)) for p in found
            )
            text += filled + "\n"
        if rng.random() < 0.1:
            text, planted = _disguise(text, planted, rng)
            kind += "+zero-width"
        elif rng.random() < 0.1:
            emoji = rng.choice(BAD_TEXT)
            planted = [
                Planted(p.entity, p.value, p.start + len(emoji) + 1, p.end + len(emoji) + 1)
                for p in planted
            ]
            text = emoji + " " + text
            kind += "+non-latin"
        cases.append(TypedCase(kind, text, tuple(planted)))
    return cases


# --- screens -------------------------------------------------------------------------


@dataclass(frozen=True)
class GlyphBox:
    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class PlantedOnScreen:
    entity: str
    value: str
    size: int
    glyphs: tuple[GlyphBox, ...]


@dataclass
class ScreenSpec:
    """What a screen shows; ``render`` draws it. Mutating rows gives the next frame."""

    theme: str
    font: str
    size: int
    rows: list[str]
    sidebar: list[str]
    title: str
    seed: int
    planted_rows: dict[int, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Screen:
    spec: ScreenSpec
    image: npt.NDArray[np.uint8]
    planted: tuple[PlantedOnScreen, ...]
    text_pixels: int  # area of all glyph boxes on the screen (for masked-area ratios)


THEMES: Final = {
    "light": {
        "bg": (250, 250, 250),
        "fg": (28, 28, 30),
        "side": (236, 238, 242),
        "side_fg": (60, 64, 72),
        "bar": (222, 224, 228),
        "line": (200, 200, 205),
    },
    "dark": {
        "bg": (30, 31, 34),
        "fg": (220, 221, 222),
        "side": (43, 45, 49),
        "side_fg": (180, 184, 190),
        "bar": (55, 57, 62),
        "line": (70, 72, 78),
    },
}


@lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(f"{FONT_DIR}/{path}", size)


def screen_spec(
    rng: random.Random, values: Values, *, sizes: tuple[int, ...] = SIZES, dense: bool | None = None
) -> ScreenSpec:
    size = rng.choice(sizes)
    dense = rng.random() < 0.5 if dense is None else dense
    kind = rng.choice(sorted(TEMPLATES))
    line_h = int(size * 1.6) + 2
    capacity = max(1, (SCREEN_H - 60) // line_h)
    count = capacity if dense else max(1, min(capacity, rng.randrange(6, 14)))
    spec = ScreenSpec(
        theme=rng.choice(sorted(THEMES)),
        font=rng.choice(FONTS),
        size=size,
        rows=[],
        sidebar=rng.sample(
            [
                "Inbox",
                "Starred",
                "Drafts",
                "Projects",
                "Reports",
                "Settings",
                "Team",
                "Calendar",
                "Files",
                "Billing",
                "Help",
            ],
            k=6,
        ),
        title=f"{kind} - keystep synthetic",
        seed=rng.randrange(2**31),
    )
    for i in range(count):
        if rng.random() < 0.45:
            line, found = _fill(rng.choice(TEMPLATES[kind]), values)
            spec.rows.append(line)
            spec.planted_rows[i] = [(p.entity, p.value) for p in found]
        else:
            spec.rows.append(rng.choice(BENIGN))
    return spec


@lru_cache(maxsize=4096)
def _ink_box(font: ImageFont.FreeTypeFont, ch: str) -> tuple[int, int, int, int] | None:
    """The box of the pixels ``ch`` inks when drawn at (0, 0): its glyph box."""
    origin = int(font.size)
    scratch = Image.new("L", (origin * 3, origin * 3), 0)
    ImageDraw.Draw(scratch).text((origin, origin), ch, font=font, fill=255)
    box = scratch.getbbox()
    if box is None:
        return None
    return box[0] - origin, box[1] - origin, box[2] - origin, box[3] - origin


def render(spec: ScreenSpec) -> Screen:
    """Draw ``spec`` on a 1280x800 screen and record the glyph boxes of planted values."""
    theme = THEMES[spec.theme]
    image = Image.new("RGB", (SCREEN_W, SCREEN_H), theme["bg"])
    draw = ImageDraw.Draw(image)
    font = _font(spec.font, spec.size)
    small = _font(FONTS[0], 13)
    draw.rectangle((0, 0, SCREEN_W, 28), fill=theme["bar"])
    draw.text((12, 7), spec.title, font=small, fill=theme["fg"])
    side_w = 200
    draw.rectangle((0, 29, side_w, SCREEN_H), fill=theme["side"])
    for i, label in enumerate(spec.sidebar):
        draw.text((16, 48 + i * 28), label, font=small, fill=theme["side_fg"])
    line_h = int(spec.size * 1.6) + 2
    x0 = side_w + 24
    planted: list[PlantedOnScreen] = []
    text_pixels = 0
    for i, row in enumerate(spec.rows):
        y = 44 + i * line_h
        if y + line_h > SCREEN_H:
            break
        draw.text((x0, y), row, font=font, fill=theme["fg"])
        box = draw.textbbox((x0, y), row, font=font)
        text_pixels += int(max(0, box[2] - box[0]) * max(0, box[3] - box[1]))
        for entity, value in spec.planted_rows.get(i, []):
            at = row.find(value)
            if at < 0:
                continue
            glyphs = []
            for k, ch in enumerate(value):
                if ch.isspace():
                    continue
                ink = _ink_box(font, ch)
                if ink is None:
                    continue
                cx = round(x0 + font.getlength(row[: at + k]))
                glyphs.append(GlyphBox(cx + ink[0], y + ink[1], cx + ink[2], y + ink[3]))
            planted.append(PlantedOnScreen(entity, value, spec.size, tuple(glyphs)))
    return Screen(spec, np.asarray(image), tuple(planted), text_pixels)


def mutate(spec: ScreenSpec, rng: random.Random, values: Values, *, rows: int = 2) -> ScreenSpec:
    """The next frame of the same window: a few rows retyped (under 20% of the screen)."""
    new = ScreenSpec(
        spec.theme,
        spec.font,
        spec.size,
        list(spec.rows),
        spec.sidebar,
        spec.title,
        spec.seed,
        {k: list(v) for k, v in spec.planted_rows.items()},
    )
    kind = spec.title.split(" ")[0]
    for i in rng.sample(range(len(new.rows)), k=min(rows, len(new.rows))):
        line, found = _fill(rng.choice(TEMPLATES[kind]), values)
        new.rows[i] = line
        new.planted_rows[i] = [(p.entity, p.value) for p in found]
    return new


def screens(
    n: int,
    *,
    seed: int = 0,
    sizes: tuple[int, ...] = SIZES,
    names: tuple[str, ...] | None = None,
) -> Iterator[Screen]:
    """``n`` rendered screens: several fonts and sizes, light and dark, dense and sparse.
    Names come from ``names`` (the redactor's directory), by default ``directory(seed)``."""
    rng = random.Random(seed)
    values = Values(rng, directory(seed) if names is None else names)
    for _ in range(n):
        yield render(screen_spec(rng, values, sizes=sizes))
