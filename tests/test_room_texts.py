"""The room fields of the page and the pace: kept, merged and checked by the store; the page
in the visitor's language with the room's own texts; both survive a replay."""

from __future__ import annotations

import html
import json
import re

import httpx

from shared.events import PaceChanged, RoomUpdated
from shared.settings import Settings
from shared.store import RoomStore
from tests.helpers.api import ADMIN, assert_error, create_room, figures, fresh_room_id
from tests.helpers.servers import in_process_workers, room_events
from tests.helpers.wait import wait_until

RESTAURANT = {
    "en": {"admitted_heading": "Your table is ready", "go_button": "Check in"},
    "de": {"admitted_heading": "Ihr Tisch ist bereit"},
    "it": {"admitted_heading": "Il vostro tavolo è pronto"},
}


def page_texts(body: str) -> dict[str, str]:
    """The catalog the page hands its script (data-texts)."""
    found = re.search(r'data-texts="([^"]*)"', body)
    assert found is not None
    texts: dict[str, str] = json.loads(html.unescape(found[1]))
    return texts


async def test_auto_release_needs_a_target_and_both_are_kept_across_updates(
    client: httpx.AsyncClient,
) -> None:
    room = fresh_room_id("pace")
    r = await client.put(
        f"/v1/admin/rooms/{room}",
        headers=ADMIN,
        json={"target_url": "http://127.0.0.1:9/t", "auto_release": True},
    )
    assert assert_error(r, 400, "invalid_body")["message"].startswith("auto_release needs")
    await create_room(client, room, auto_release=True, target_latency_ms=250, release_rate=4)
    r = await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"title": "Sale"})
    assert r.status_code == 200, r.text
    config = r.json()["config"]
    assert config["auto_release"] is True  # kept as "true" in the hash, a boolean again here
    assert config["target_latency_ms"] == 250
    got = (await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).json()
    assert got["config"]["auto_release"] is True
    assert got["figures"]["pace"] == 4.0  # nothing decided yet: the release rate
    assert got["figures"]["site_p95_ms"] is None
    r = await client.put(
        f"/v1/admin/rooms/{room}", headers=ADMIN, json={"target_latency_ms": 0}
    )  # would leave auto_release without a target
    assert_error(r, 400, "invalid_body")
    r = await client.put(
        f"/v1/admin/rooms/{room}",
        headers=ADMIN,
        json={"auto_release": False, "target_latency_ms": 0},
    )
    assert r.status_code == 200, r.text
    assert r.json()["config"]["auto_release"] is False
    bad = await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"target_latency_ms": -1})
    assert_error(bad, 400, "invalid_body")


async def test_room_texts_are_checked_and_kept(client: httpx.AsyncClient) -> None:
    room = fresh_room_id("texts")
    await create_room(client, room, texts=RESTAURANT)
    got = (await client.get(f"/v1/admin/rooms/{room}", headers=ADMIN)).json()
    assert got["config"]["texts"] == RESTAURANT
    r = await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"max_active": 5})
    assert r.json()["config"]["texts"] == RESTAURANT  # untouched by another field's update
    for texts, code in (
        ({"en": {"admited_heading": "typo"}}, "invalid_body"),  # no such message
        ({"english": {"go_button": "x"}}, "invalid_body"),  # not a language tag
        ({"en": {"go_button": "x" * 3000}}, "invalid_body"),  # too long
        ({"en": "Check in"}, "invalid_body"),
    ):
        r = await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"texts": texts})
        error = assert_error(r, 400, code)
        assert "texts" in error["message"]
    r = await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"texts": {}})
    assert r.json()["config"]["texts"] == {}


async def test_the_page_speaks_the_visitors_language_with_the_rooms_texts(
    client: httpx.AsyncClient,
) -> None:
    room = fresh_room_id("lang")
    await create_room(client, room, status="paused", texts=RESTAURANT)
    cases = {
        "de-DE,de;q=0.9,en;q=0.5": ("de", "Ihr Platz in der Warteschlange", "Ihr Tisch ist bereit"),
        "fr-CH, fr;q=0.9": ("fr", "votre place dans la file", "C\u2019est votre tour !"),
        "es": ("es", "su lugar en la fila", "¡Es su turno!"),
        "ja": ("ja", "あなたの順番", "あなたの番です\uff01"),
        "it-IT": ("it", "your place in line", "Il vostro tavolo è pronto"),  # room texts only
        "": ("en", "your place in line", "Your table is ready"),
    }
    for accept, (lang, label, heading) in cases.items():
        r = await client.get(f"/rooms/{room}", headers={"Accept-Language": accept})
        assert r.status_code == 200
        assert f'<html lang="{lang}">' in r.text, accept
        assert r.headers["content-language"] == lang
        assert "Accept-Language" in r.headers["vary"]
        assert label in html.unescape(r.text), accept
        assert f'id="admitted-heading">{html.escape(heading)}<' in r.text, accept
        texts = page_texts(r.text)
        assert texts["admitted_heading"] == heading  # the script speaks the same language
        assert texts["go_button"] == ("Check in" if lang == "en" else texts["go_button"])


async def test_the_message_pages_speak_it_too(client: httpx.AsyncClient) -> None:
    room = fresh_room_id("lang")
    await create_room(client, room)
    r = await client.get(
        f"/rooms/{room}/go?token=nope",
        headers={"Accept": "text/html", "Accept-Language": "fr"},
    )
    assert r.status_code == 401
    assert "Ce lien ne fonctionne pas" in html.unescape(r.text)
    assert "Retour à la salle d\u2019attente" in html.unescape(r.text)
    r = await client.get("/rooms/no-such-room-here", headers={"Accept-Language": "ja"})
    assert r.status_code == 404
    assert "この待合室は見つかりません" in r.text


async def test_texts_auto_release_and_pace_come_back_from_the_stream_as_they_were(
    client: httpx.AsyncClient, settings: Settings, store: RoomStore
) -> None:
    """The room's events replayed into another room of the same store make the same room:
    structured fields travel as canonical JSON, booleans as booleans, the pace as a
    ``pace_changed`` event."""
    room = fresh_room_id("replay")
    await create_room(
        client, room, texts=RESTAURANT, auto_release=True, target_latency_ms=300, release_rate=6
    )
    await client.put(f"/v1/admin/rooms/{room}", headers=ADMIN, json={"message": "Hello"})
    async with in_process_workers(settings):  # the pace controller starts; the relay delivers

        async def paced() -> list[PaceChanged]:
            events = await room_events(settings.nats_url, room, settle=0.3)
            return [e for e in events if isinstance(e, PaceChanged)]

        changes = await wait_until(paced, seconds=15)
    assert changes[0].pace == 6.0
    assert changes[0].auto_release is True
    assert changes[0].site_p95_ms is None  # no site has reported yet
    assert (await figures(client, room))["pace"] == 6.0
    events = await room_events(settings.nats_url, room)
    updated = [e for e in events if isinstance(e, RoomUpdated)]
    assert json.loads(updated[-1].config["texts"]) == RESTAURANT
    assert updated[-1].config["auto_release"] is True

    copy = fresh_room_id("replay")
    raw = [json.dumps(_as_json(e)).encode() for e in events]
    replayed = (await store.replay({copy: raw}))[copy]
    assert (replayed.applied, replayed.stop) == (len(events), None)
    assert await store.digest(copy) == await store.digest(room)
    config, _ = await store.get_config(copy) or (None, 0)
    assert config is not None
    assert config.texts == RESTAURANT
    assert config.auto_release is True
    assert (await store.figures(copy)).pace() == 6.0


def _as_json(event: object) -> dict[str, object]:
    import msgspec

    data: dict[str, object] = msgspec.to_builtins(event)
    return data
