"""A line built from a snapshot in chunks (gateway/line_book.py ``build_line``) is the
line built in one go, whatever the chunk and the line's length."""

from __future__ import annotations

import pytest

from gateway import line_book
from gateway.line_book import build_line
from shared.store.views import LineSnapshot


def snapshot(line: list[str] | dict[str, object]) -> LineSnapshot:
    return LineSnapshot(
        event_seq=1,
        incarnation="i",
        status="active",
        release_rate=1.0,
        heartbeat_interval=10,
        rate=0.0,
        rate_ts=0,
        rate_since=0,
        now=0,
        line=line,
    )


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 20_000])
@pytest.mark.parametrize("people", [0, 1, 2, 5, 13])
def test_a_line_built_in_chunks_is_the_whole_line(
    monkeypatch: pytest.MonkeyPatch, chunk: int, people: int
) -> None:
    flat: list[str] = []
    for n in range(people):
        flat += [f"p{n}", str(917_000_000_000_000 + 10 * n)]
    monkeypatch.setattr(line_book, "BUILD_CHUNK", chunk)
    places, scores = build_line(snapshot(flat))
    assert places == {f"p{n}": 917_000_000_000_000.0 + 10 * n for n in range(people)}
    assert list(scores) == sorted(places.values())


def test_an_empty_line_as_cjson_writes_it_is_no_one() -> None:
    places, scores = build_line(snapshot({}))
    assert places == {}
    assert len(scores) == 0
