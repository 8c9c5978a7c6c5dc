"""Which calls the gateway may answer from memory, before the framework: a status call,
or a heartbeat that surely has no body (a body goes the full way, which checks it)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.fast_answers import _hot_call

pytestmark = pytest.mark.unit


def scope(method: str, path: str, headers: dict[str, str], http_version: str = "1.1") -> Any:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "http_version": http_version,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


def test_status_and_bodiless_heartbeats_are_hot_calls() -> None:
    assert _hot_call(scope("GET", "/v1/rooms/sale/status", {})) == ("sale", False)
    assert _hot_call(scope("POST", "/v1/rooms/sale/heartbeat", {})) == ("sale", True)
    zero = {"content-length": "0"}
    assert _hot_call(scope("POST", "/v1/rooms/sale/heartbeat", zero, "2")) == ("sale", True)


@pytest.mark.parametrize(
    ("method", "path", "headers", "version"),
    [
        ("POST", "/v1/rooms/sale/heartbeat", {"content-length": "2"}, "1.1"),
        ("POST", "/v1/rooms/sale/heartbeat", {"transfer-encoding": "chunked"}, "1.1"),
        # HTTP/2 and 3 may send a body without content-length
        ("POST", "/v1/rooms/sale/heartbeat", {}, "2"),
        ("POST", "/v1/rooms/sale/heartbeat", {}, "3"),
        ("POST", "/v1/rooms/sale/status", {}, "1.1"),
        ("GET", "/v1/rooms/sale/heartbeat", {}, "1.1"),
        ("GET", "/v1/rooms/sale/events", {}, "1.1"),
        ("GET", "/v1/rooms/a.b/status", {}, "1.1"),
        ("GET", "/v1/admin/rooms/sale/status", {}, "1.1"),
    ],
)
def test_other_calls_go_the_full_way(
    method: str, path: str, headers: dict[str, str], version: str
) -> None:
    assert _hot_call(scope(method, path, headers, version)) is None
