"""The page's languages: the catalogs agree with English, Accept-Language picks one, a
room's own texts go over the catalog."""

from __future__ import annotations

import re

import pytest

from gateway.i18n import CATALOG_LANGUAGES, PLACEHOLDER, catalogs, fill, preferred_languages

pytestmark = pytest.mark.unit

SCRIPT_KEYS = re.compile(r"""\bt\("([a-z_]+)\"""")
TEMPLATE_KEYS = re.compile(r"\bt\.([a-z_]+)")


def test_every_catalog_has_every_english_key_and_the_same_places() -> None:
    english = catalogs().reference
    for language in CATALOG_LANGUAGES:
        catalog = catalogs().by_language[language]
        assert set(catalog) == set(english), language
        for key, text in catalog.items():
            assert text.strip(), (language, key)
            places = set(PLACEHOLDER.findall(text))
            assert places == set(PLACEHOLDER.findall(english[key])), (language, key)


def test_the_page_and_its_script_ask_only_for_keys_the_catalog_has() -> None:
    from gateway.assets import STATIC_DIR, TEMPLATES_DIR

    script = (STATIC_DIR / "room.js").read_text()
    template = (TEMPLATES_DIR / "room.html").read_text()
    used = set(SCRIPT_KEYS.findall(script)) | set(TEMPLATE_KEYS.findall(template))
    assert used, "the pattern found no keys: the test itself is broken"
    assert used <= catalogs().keys, used - catalogs().keys


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("de-AT", "de"),
        ("it, fr;q=0.5", "fr"),
        ("ja;q=0.2, es;q=0.9", "es"),
        ("es;q=0, fr;q=0.1", "fr"),  # q=0: not wanted at all
        ("pt-BR, *;q=0.1", "en"),
        ("zz, , ;;, fr;q=abc, ja", "ja"),  # malformed parts are skipped
        ("FR-ca", "fr"),
    ],
)
def test_accept_language_picks_the_most_wanted_language_we_have(
    header: str | None, language: str
) -> None:
    assert catalogs().negotiate(header) == language


def test_equal_weights_keep_their_order() -> None:
    assert preferred_languages("fr, de, ja;q=0.5") == ["fr", "de", "ja"]


def test_a_room_may_add_a_language_and_override_texts() -> None:
    room = {"it": {"admitted_heading": "Il tuo tavolo è pronto"}, "de": {"go_button": "Einchecken"}}
    italian = catalogs().for_request("it-IT, en;q=0.5", room)
    assert italian.language == "it"
    assert italian["admitted_heading"] == "Il tuo tavolo è pronto"
    assert italian["go_button"] == catalogs().reference["go_button"]  # English beneath
    german = catalogs().for_request("de", room)
    assert german["go_button"] == "Einchecken"
    assert german["admitted_heading"] == catalogs().by_language["de"]["admitted_heading"]
    assert catalogs().for_request("fr", room)["go_button"] == "Aller sur le site"


def test_unknown_room_text_keys_are_named() -> None:
    assert catalogs().unknown_keys({"en": {"go_buton": "x", "go_button": "y"}}) == ["en.go_buton"]


def test_places_are_filled_by_name_and_others_left_alone() -> None:
    assert fill("{count} people, {nobody}", count=3) == "3 people, {nobody}"
    de = catalogs().texts("de")
    assert de("ahead_other", count=4) == "4 Personen sind vor Ihnen"
