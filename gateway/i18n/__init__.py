"""The waiting-room page in the visitor's language.

Message catalogs are plain JSON files shipped with the package (``catalogs/<lang>.json``,
one flat object of message key -> text, ``{name}`` marking a value filled in). English is
the reference: every catalog holds the same keys (a unit test checks), and a text missing
from a room's language falls back to English. A room may override any text per language
with its ``texts`` field (``{"de": {"admitted_heading": "Ihr Tisch ist bereit"}}``), and
may add a language that has no catalog: its visitors get the room's texts over English.

The language is chosen from ``Accept-Language`` (RFC 9110 quality values; ``de-AT`` finds
``de``). The server renders the page's own texts from the chosen catalog; the page's script
gets the same texts in a data attribute, so both speak one language.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

DEFAULT_LANGUAGE = "en"
CATALOG_LANGUAGES = ("en", "de", "fr", "es", "ja")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_LANGUAGE_RANGE = re.compile(r"^(\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)$")

Catalog = dict[str, str]


def load_catalog(language: str) -> Catalog:
    """One catalog from the package data."""
    path = resources.files("gateway.i18n") / "catalogs" / f"{language}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"catalog {language}.json must be one object of strings")
    return data


@functools.cache
def catalogs() -> Catalogs:
    """Every shipped catalog, read once per process (on first use, not at import)."""
    return Catalogs({language: load_catalog(language) for language in CATALOG_LANGUAGES})


def preferred_languages(accept_language: str | None) -> list[str]:
    """The language ranges of an ``Accept-Language`` header, most wanted first (equal
    weights keep their order; ``q=0`` means not wanted; anything malformed is skipped)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")[:32]):
        tag, *params = (p.strip() for p in part.split(";"))
        if not _LANGUAGE_RANGE.match(tag):
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if 0 < weight <= 1:
            ranked.append((-weight, index, tag.lower()))
    return [tag for _, _, tag in sorted(ranked)]


def fill(text: str, **values: object) -> str:
    """A text with its ``{name}`` places filled (unknown names are left as they are)."""
    return PLACEHOLDER.sub(lambda m: str(values.get(m[1], m[0])), text)


@dataclass(frozen=True)
class PageTexts:
    """The texts of one page view: a language and every message in it."""

    language: str
    messages: Catalog

    def __call__(self, key: str, **values: object) -> str:
        return fill(self.messages.get(key, key), **values)

    def __getitem__(self, key: str) -> str:
        return self.messages.get(key, key)


class Catalogs:
    def __init__(self, by_language: Mapping[str, Catalog]) -> None:
        self.by_language = dict(by_language)
        self.reference = self.by_language[DEFAULT_LANGUAGE]

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.reference)

    def negotiate(self, accept_language: str | None, extra: Iterable[str] = ()) -> str:
        """The language to answer in: the most wanted one we have a catalog or room texts
        for (a region falls back to its language), else English."""
        available = set(self.by_language) | {e.lower() for e in extra}
        for tag in preferred_languages(accept_language):
            if tag == "*":
                return DEFAULT_LANGUAGE
            for candidate in (tag, tag.split("-", 1)[0]):
                if candidate in available:
                    return candidate
        return DEFAULT_LANGUAGE

    def texts(
        self, language: str, overrides: Mapping[str, Mapping[str, str]] | None = None
    ) -> PageTexts:
        """English, under the language's catalog, under the room's texts for it."""
        merged = dict(self.reference)
        merged.update(self.by_language.get(language, {}))
        room = {k.lower(): v for k, v in (overrides or {}).items()}
        merged.update({k: v for k, v in room.get(language, {}).items() if k in self.reference})
        return PageTexts(language, merged)

    def for_request(
        self, accept_language: str | None, overrides: Mapping[str, Mapping[str, str]] | None
    ) -> PageTexts:
        return self.texts(self.negotiate(accept_language, (overrides or {}).keys()), overrides)

    def unknown_keys(self, overrides: Mapping[str, Mapping[str, str]]) -> list[str]:
        """Keys of a room's ``texts`` that name no message (a typo would go unseen)."""
        return sorted(
            f"{lang}.{key}"
            for lang, given in overrides.items()
            for key in given
            if key not in self.reference
        )
