"""Secrets (API keys, tokens, private keys, keyword assignments) via detect-secrets plugins."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.ip_public import IPPublicDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import (
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    REGEX_BY_FILETYPE,
    KeywordDetector,
)
from detect_secrets.util.filetype import determine_file_type

from keystep.redact.password_token_detector import shannon_entropy
from keystep.redact.prefilter import Gate, gate
from keystep.redact.spans import SECRET, Span

# A value shorter than this was cut by a capture group ("ghp" of "ghp_..."): widen it to
# the whole token it sits in.
_SHORT: Final = 12
# The file name plugins are told; it decides which of the keyword plugin's patterns run.
_FILENAME: Final = "typed.txt"
_TOKEN_CHARS: Final = re.compile(r"[A-Za-z0-9_\-+/.~]")
_PRIVATE_KEY: Final = re.compile(
    r"-----BEGIN[A-Z ]*PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END[A-Z ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.S,
)


def private_key_spans(text: str) -> list[Span]:
    """PEM private key blocks; run on the whole text because a key can outgrow a window."""
    if "-----BEGIN" not in text:
        return []
    return [Span(m.start(), m.end(), SECRET) for m in _PRIVATE_KEY.finditer(text)]


def plugin_patterns(plugin: Any) -> list[re.Pattern[str]] | None:
    """The patterns whose matches are all a plugin's ``analyze_line`` can report on a
    typed line, or None when the plugin is not one whose code says so."""
    cls = type(plugin)
    if cls.analyze_line is BasePlugin.analyze_line and cls.analyze_string in (
        RegexBasedDetector.analyze_string,
        JwtTokenDetector.analyze_string,  # filters the matches of its denylist
    ):
        return list(plugin.denylist)
    if cls is KeywordDetector:
        by_type = REGEX_BY_FILETYPE.get(determine_file_type(_FILENAME))
        return list(by_type or QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)
    if (
        cls.analyze_line is HighEntropyStringsPlugin.analyze_line
        and cls.analyze_string is HighEntropyStringsPlugin.analyze_string
    ):
        return [plugin.regex]  # quoted strings only: analyze_line's eager search is off
    return None


def plugin_gate(plugin: Any) -> Gate | None:
    """What a line needs for the plugin to find a secret on it; None when unknown (the
    plugin then runs on every line)."""
    patterns = plugin_patterns(plugin)
    return gate(patterns) if patterns else None


class SecretsDetector:
    """Runs every detect-secrets plugin's ``analyze_line`` (not ``scan_line``, which flags
    prose) line by line, with our own entropy limits on the high-entropy plugins.

    A plugin runs on a line only when the line holds text that each match of one of its
    patterns contains (its gates): a plugin call costs about 2 µs even on a line it has
    nothing to say about, and 25 of them ran on every line with a keyword or a long token.
    """

    name = "secrets"

    BASE64_LIMIT: ClassVar = 4.5
    HEX_LIMIT: ClassVar = 3.0

    def __init__(self) -> None:
        plugins: list[Any] = []
        mapping: dict[str, Any] = get_mapping_from_secret_type_to_class()
        for cls in mapping.values():
            if cls is IPPublicDetector:
                continue  # addresses are personal data, handled by the Presidio detector
            if cls is Base64HighEntropyString:
                plugins.append(cls(limit=self.BASE64_LIMIT))
            elif cls is HexHighEntropyString:
                plugins.append(cls(limit=self.HEX_LIMIT))
            else:
                plugins.append(cls())
        self._plugins = tuple((plugin, plugin_gate(plugin)) for plugin in plugins)

    def detect(self, text: str) -> list[Span]:
        spans = private_key_spans(text)
        offset = 0
        for line in text.splitlines(keepends=True):
            # Each plugin's own gate (keystep.redact.prefilter) decides whether it runs.
            if len(line.strip()) >= 8:
                spans.extend(self._detect_line(line, offset))
            offset += len(line)
        return spans

    def _detect_line(self, line: str, offset: int) -> list[Span]:
        values: set[str] = set()
        for plugin, needs in self._plugins:
            if needs is not None and not needs.admits(line):
                continue
            for secret in plugin.analyze_line(filename=_FILENAME, line=line, line_number=1):
                value = secret.secret_value
                if value and value.strip():
                    values.add(value)
        spans = []
        for value in values:
            if len(value) >= 20 and shannon_entropy(value) < 2.5:
                continue  # "xxxxxxxxxxxxxxxxxxxxxxxx" placeholders
            start = line.find(value)
            while start >= 0:
                end = start + len(value)
                # A value cut short by a plugin's capture group ("ghp" of "ghp_...", a JWT
                # without its signature) is widened to the token it sits in.
                if len(value) < _SHORT:
                    while start > 0 and _TOKEN_CHARS.match(line[start - 1]):
                        start -= 1
                while end < len(line) and _TOKEN_CHARS.match(line[end]):
                    end += 1
                spans.append(Span(offset + start, offset + end, SECRET))
                start = line.find(value, end)
        return spans
