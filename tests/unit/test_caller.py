"""Who is asking: the client address behind trusted proxies, and the bearer token."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from litestar import Request

from gateway.caller import bearer_token, client_ip
from shared.errors import MissingToken
from shared.settings import Settings

pytestmark = pytest.mark.unit


def request(peer: str, headers: dict[str, str] | None = None, query: bytes = b"") -> Any:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (peer, 5000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "root_path": "",
    }
    return Request(scope=scope)  # type: ignore[arg-type]


TRUSTING = Settings(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    r = request("203.0.113.5", {"X-Forwarded-For": "198.51.100.1"})
    assert client_ip(r, Settings()) == "203.0.113.5"


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    chain = {"X-Forwarded-For": "198.51.100.1, 10.0.0.7"}
    assert client_ip(request("10.0.0.2", chain), TRUSTING) == "198.51.100.1"
    assert client_ip(request("203.0.113.5", chain), TRUSTING) == "203.0.113.5"


def test_bearer_from_the_header_or_the_named_query_parameter() -> None:
    assert bearer_token(request("1.2.3.4", {"Authorization": "Bearer abc"})) == "abc"
    assert bearer_token(request("1.2.3.4", query=b"token=xyz"), query_name="token") == "xyz"
    for bad in ({"Authorization": "Basic abc"}, {"Authorization": "Bearer "}, {}):
        with pytest.raises(MissingToken):
            bearer_token(request("1.2.3.4", bad))
