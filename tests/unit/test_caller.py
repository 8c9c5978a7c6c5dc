"""Who is asking: the client address behind trusted proxies, and the bearer token."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from litestar import Request

from gateway.caller import address_key, bearer_token, client_ip
from shared.errors import InvalidForwardedFor, MissingToken

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


TRUSTING = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    r = request("203.0.113.5", {"X-Forwarded-For": "198.51.100.1"})
    assert client_ip(r, ()) == "203.0.113.5"


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    chain = {"X-Forwarded-For": "198.51.100.1, 10.0.0.7"}
    assert client_ip(request("10.0.0.2", chain), TRUSTING) == "198.51.100.1"
    assert client_ip(request("203.0.113.5", chain), TRUSTING) == "203.0.113.5"


def test_the_walk_stops_at_the_first_untrusted_hop_and_never_reads_further_left() -> None:
    # the client wrote the two leftmost entries itself; our proxy appended its real address
    chain = {"X-Forwarded-For": "10.9.9.9, 192.0.2.66, 198.51.100.1"}
    assert client_ip(request("10.0.0.2", chain), TRUSTING) == "198.51.100.1"
    # junk left of the client's real address is never read
    junk_left = {"X-Forwarded-For": "not-an-ip, 198.51.100.1"}
    assert client_ip(request("10.0.0.2", junk_left), TRUSTING) == "198.51.100.1"


@pytest.mark.parametrize(
    "chain",
    ["198.51.100.1, junk", "unknown", "198.51.100.1, 10.0.0.7, _hidden", "1.2.3.4:80"],
)
def test_junk_where_an_address_is_needed_is_refused(chain: str) -> None:
    with pytest.raises(InvalidForwardedFor):
        client_ip(request("10.0.0.2", {"X-Forwarded-For": chain}), TRUSTING)


def test_an_all_trusted_chain_gives_the_hop_the_nearest_proxy_saw() -> None:
    # a client inside the trusted network writing trusted-looking entries to rotate its
    # identity: only the entry our own proxy appended counts
    for fake in ("10.1.1.1", "10.2.2.2", "10.3.3.3"):
        chain = {"X-Forwarded-For": f"{fake}, 10.0.0.99"}
        assert client_ip(request("10.0.0.2", chain), TRUSTING) == "10.0.0.99"


def test_ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    a = address_key("2001:db8:1:2:aaaa::1", 64)
    b = address_key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64)
    c = address_key("2001:db8:1:3::1", 64)
    assert a == b == "2001:db8:1:2::/64"
    assert a != c
    assert address_key("2001:db8:1:2:aaaa::1", 48) == address_key("2001:db8:1:3::1", 48)
    assert address_key("::ffff:198.51.100.7", 64) == "198.51.100.7"
    assert address_key("198.51.100.7", 64) == "198.51.100.7"
    r = request("10.0.0.2", {"X-Forwarded-For": "::ffff:198.51.100.7"})
    assert client_ip(r, TRUSTING) == "198.51.100.7"


def test_bearer_from_the_header_or_the_named_query_parameter() -> None:
    assert bearer_token(request("1.2.3.4", {"Authorization": "Bearer abc"})) == "abc"
    assert bearer_token(request("1.2.3.4", query=b"token=xyz"), query_name="token") == "xyz"
    for bad in ({"Authorization": "Basic abc"}, {"Authorization": "Bearer "}, {}):
        with pytest.raises(MissingToken):
            bearer_token(request("1.2.3.4", bad))
