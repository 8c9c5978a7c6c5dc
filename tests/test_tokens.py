"""Tokens: access tokens verify offline with the JWKS alone; the gateway refuses forged,
expired, mistyped and misplaced tokens with stable codes; session calls; key rotation."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.keyring import KeyRing, write_key
from shared.settings import Settings
from shared.tokens import QUEUE_AUDIENCE_SUFFIX, access_audience
from tests.helpers.api import ADMIN, RoomFactory, bearer, figures
from tests.helpers.servers import GatewayServer, in_process_workers
from tests.helpers.wait import wait_until


@dataclass(frozen=True)
class Admitted:
    room: str
    position_id: str
    queue_token: str
    access_token: str
    status: dict[str, Any]


async def admit_one(
    client: httpx.AsyncClient, settings: Settings, room: str, *, size: int = 1
) -> Admitted:
    """Join ``room`` and run the workers until this person is admitted."""
    r = await client.post(f"/v1/rooms/{room}/enqueue", json={"size": size})
    assert r.status_code == 201, r.text
    joined = r.json()

    async def admitted() -> dict[str, Any] | None:
        r = await client.get(f"/v1/rooms/{room}/status", headers=bearer(joined["token"]))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body if body["state"] == "admitted" else None

    async with in_process_workers(settings):
        status = await wait_until(admitted, seconds=30)
    assert isinstance(status["access_token"], str)
    return Admitted(room, joined["position_id"], joined["token"], status["access_token"], status)


async def fast_room(make_room: RoomFactory, **config: Any) -> str:
    return await make_room(release_rate=1000, max_active=10, **config)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def flip_char(part: str, at: int) -> str:
    """``part`` with one base64url character changed (not the last: its low bits are
    padding, so changing it may not change the bytes at all)."""
    assert 0 <= at < len(part) - 1
    new = "A" if part[at] != "A" else "B"
    return part[:at] + new + part[at + 1 :]


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["error"]["code"]
    return code


async def jwks_decode(
    client: httpx.AsyncClient, settings: Settings, token: str, room: str
) -> dict[str, Any]:
    """Verify ``token`` the way a protected site of ``room`` would, following the README:
    the JWKS over HTTP and PyJWT, with the room's audience."""
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    keyset = jwt.PyJWKSet.from_dict(r.json())
    kid = jwt.get_unverified_header(token)["kid"]
    claims: dict[str, Any] = jwt.decode(
        token,
        keyset[kid].key,
        algorithms=["RS256"],
        audience=access_audience(settings.audience, room),
        issuer=settings.issuer,
    )
    return claims


def sign_with_ring(keys_dir: Path, claims: dict[str, Any]) -> str:
    key = KeyRing(keys_dir).signer("rsa")
    return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid})


def access_claims(settings: Settings, room: str, sub: str, *, iat: int, exp: int) -> dict[str, Any]:
    return {
        "iss": settings.issuer,
        "aud": access_audience(settings.audience, room),
        "sub": sub,
        "room": room,
        "typ": "access",
        "iat": iat,
        "exp": exp,
        "jti": secrets.token_urlsafe(9),
    }


def queue_claims(
    settings: Settings, room: str, sub: str, *, inc: str, arrival: int, iat: int, exp: int
) -> dict[str, Any]:
    return {
        "iss": settings.issuer,
        "aud": settings.audience + QUEUE_AUDIENCE_SUFFIX,
        "sub": sub,
        "room": room,
        "inc": inc,
        "typ": "queue",
        "arr": arrival,
        "size": 1,
        "pri": 0,
        "bnd": "",
        "iat": iat,
        "exp": exp,
        "jti": secrets.token_urlsafe(9),
    }


async def verify(client: httpx.AsyncClient, token: str, room: str) -> httpx.Response:
    return await client.post("/v1/session/verify", json={"token": token, "room": room})


# --- offline verification ------------------------------------------------------------------


async def test_access_token_verifies_with_the_jwks_alone(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    person = await admit_one(client, settings, await fast_room(make_room))
    header = jwt.get_unverified_header(person.access_token)
    assert header["alg"] == "RS256"
    assert isinstance(header["kid"], str)

    claims = await jwks_decode(client, settings, person.access_token, person.room)
    now = time.time()
    assert claims["sub"] == person.position_id
    assert claims["room"] == person.room
    assert claims["typ"] == "access"
    assert claims["iss"] == settings.issuer
    assert claims["aud"] == f"{settings.audience}:{person.room}"
    assert isinstance(claims["jti"], str)
    assert claims["jti"]
    assert claims["iat"] <= now + 1
    assert claims["exp"] > now
    assert claims["exp"] > claims["iat"]
    assert claims["exp"] >= person.status["claim_deadline"]  # lives at least to the deadline

    jwks = (await client.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWK.from_dict(next(k for k in jwks["keys"] if k["kid"] == header["kid"]))
    assert "d" not in next(k for k in jwks["keys"] if k["kid"] == header["kid"])  # public only
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            person.access_token,
            key.key,
            algorithms=["RS256"],
            audience="some-other-site",
            issuer=settings.issuer,
        )
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(
            person.access_token,
            key.key,
            algorithms=["RS256"],
            audience=access_audience(settings.audience, person.room),
            issuer="not-waitroom",
        )
    # another room's site, following the same recipe, refuses this room's access: the
    # audience names the room, so the check every JWT library makes is enough
    for audience in (access_audience(settings.audience, "other-room"), settings.audience):
        with pytest.raises(jwt.InvalidAudienceError):
            jwt.decode(
                person.access_token,
                key.key,
                algorithms=["RS256"],
                audience=audience,
                issuer=settings.issuer,
            )
    # the queue token is for the waiting room only: a protected site refuses it
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            person.queue_token,
            key.key,
            algorithms=["RS256"],
            audience=access_audience(settings.audience, person.room),
            issuer=settings.issuer,
        )


# --- POST /v1/session/verify ---------------------------------------------------------------


async def test_session_verify_accepts_the_good_token_and_refuses_the_rest(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    person = await admit_one(client, settings, await fast_room(make_room))
    good = person.access_token

    r = await verify(client, good, person.room)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] is True
    assert body["room"] == person.room
    assert body["sub"] == person.position_id
    assert body["exp"] == jwt.decode(good, options={"verify_signature": False})["exp"]
    # the room is not optional: a site must say which room it guards
    r = await client.post("/v1/session/verify", json={"token": good})
    assert r.status_code == 400, r.text
    assert error_code(r) == "invalid_body"

    head, payload, signature = good.split(".")
    for bad in (
        f"{head}.{payload}.{flip_char(signature, len(signature) // 2)}",
        f"{head}.{payload}.{flip_char(signature, 0)}",
        f"{head}.{flip_char(payload, len(payload) // 2)}.{signature}",
        f"{head}.{payload}.",
    ):
        r = await verify(client, bad, person.room)
        assert r.status_code == 401, (bad, r.text)
        assert error_code(r) == "token_invalid"

    # a payload rewritten to live longer, with the original signature
    claims = json.loads(unb64(payload))
    claims["exp"] += 86_400
    longer = f"{head}.{b64(json.dumps(claims).encode())}.{signature}"
    r = await verify(client, longer, person.room)
    assert r.status_code == 401, r.text
    assert error_code(r) == "token_invalid"

    # the token is good, but for another room
    r = await verify(client, good, "other-room")
    assert r.status_code == 403, r.text
    assert error_code(r) == "wrong_room"

    # a queue token is not an access token
    r = await verify(client, person.queue_token, person.room)
    assert r.status_code == 401, r.text
    assert error_code(r) == "wrong_token_type"

    # a token claiming another room, signed by our key for this room's audience, is
    # refused too: the audience and the room it names must agree
    forged = sign_with_ring(
        settings.keys_dir,
        {
            **access_claims(settings, person.room, person.position_id, iat=0, exp=0),
            "room": "other-room",
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
        },
    )
    for room in (person.room, "other-room"):
        r = await verify(client, forged, room)
        assert r.status_code in (401, 403), r.text

    # the good token is still good after all that
    r = await verify(client, good, person.room)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True


async def test_session_verify_refuses_expired_unknown_key_and_alg_none(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    person = await admit_one(client, settings, await fast_room(make_room))
    now = int(time.time())
    real_kid = jwt.get_unverified_header(person.access_token)["kid"]

    # signed with the real key, everything right but the time
    expired = sign_with_ring(
        settings.keys_dir,
        access_claims(settings, person.room, person.position_id, iat=now - 3600, exp=now - 60),
    )
    assert jwt.get_unverified_header(expired)["kid"] == real_kid
    r = await verify(client, expired, person.room)
    assert r.status_code == 401, r.text
    assert error_code(r) == "token_expired"
    # the same claims with a future exp pass, so it was the time that was refused
    fresh = sign_with_ring(
        settings.keys_dir,
        access_claims(settings, person.room, person.position_id, iat=now, exp=now + 600),
    )
    r = await verify(client, fresh, person.room)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True

    # a key nobody published, with a plausible kid
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown = jwt.encode(
        access_claims(settings, person.room, person.position_id, iat=now, exp=now + 600),
        stranger,
        algorithm="RS256",
        headers={"kid": "rsa-0000000000-nope"},
    )
    r = await verify(client, unknown, person.room)
    assert r.status_code == 401, r.text
    assert error_code(r) == "token_invalid"
    # the stranger's key under the real kid fails the signature check
    impostor = jwt.encode(
        access_claims(settings, person.room, person.position_id, iat=now, exp=now + 600),
        stranger,
        algorithm="RS256",
        headers={"kid": real_kid},
    )
    r = await verify(client, impostor, person.room)
    assert r.status_code == 401, r.text
    assert error_code(r) == "token_invalid"

    # alg none, with and without the real kid
    claims = access_claims(settings, person.room, person.position_id, iat=now, exp=now + 600)
    for header in ({"alg": "none", "typ": "JWT", "kid": real_kid}, {"alg": "none"}):
        unsigned = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
        r = await verify(client, unsigned, person.room)
        assert r.status_code == 401, (header, r.text)
        assert error_code(r) == "token_invalid"
    # and HS256 keyed with the public key (the classic confusion attack)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    public_n = next(k for k in jwks["keys"] if k["kid"] == real_kid)["n"]
    hs = jwt.encode(claims, public_n, algorithm="HS256", headers={"kid": real_kid})
    r = await verify(client, hs, person.room)
    assert r.status_code == 401, r.text
    assert error_code(r) == "token_invalid"


# --- queue tokens ----------------------------------------------------------------------------


async def test_queue_token_checks_on_status(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    person = await admit_one(client, settings, await fast_room(make_room))
    other_room = await make_room(status="paused")
    r = await client.post(f"/v1/rooms/{other_room}/enqueue")
    assert r.status_code == 201, r.text
    other = r.json()

    # a queue token of another room
    r = await client.get(f"/v1/rooms/{person.room}/status", headers=bearer(other["token"]))
    assert r.status_code == 403, r.text
    assert error_code(r) == "wrong_room"
    r = await client.get(f"/v1/rooms/{other_room}/status", headers=bearer(person.queue_token))
    assert r.status_code == 403, r.text
    assert error_code(r) == "wrong_room"

    # an access token where a queue token belongs
    for method, path in (
        ("GET", f"/v1/rooms/{person.room}/status"),
        ("POST", f"/v1/rooms/{person.room}/heartbeat"),
        ("POST", f"/v1/rooms/{person.room}/leave"),
    ):
        r = await client.request(method, path, headers=bearer(person.access_token))
        assert r.status_code == 401, (path, r.text)
        assert error_code(r) == "wrong_token_type"

    # an expired queue token, signed with the real key
    now = int(time.time())
    issued = jwt.decode(person.queue_token, options={"verify_signature": False})
    arrival, inc = int(issued["arr"]), str(issued["inc"])
    stale = sign_with_ring(
        settings.keys_dir,
        queue_claims(
            settings,
            person.room,
            person.position_id,
            inc=inc,
            arrival=arrival,
            iat=now - 900,
            exp=now - 5,
        ),
    )
    r = await client.get(f"/v1/rooms/{person.room}/status", headers=bearer(stale))
    assert r.status_code == 401, r.text
    assert error_code(r) == "token_expired"
    # the same claims, still in date, are accepted: only the expiry was wrong
    current = sign_with_ring(
        settings.keys_dir,
        queue_claims(
            settings,
            person.room,
            person.position_id,
            inc=inc,
            arrival=arrival,
            iat=now,
            exp=now + 60,
        ),
    )
    r = await client.get(f"/v1/rooms/{person.room}/status", headers=bearer(current))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "admitted"

    # nothing above moved the person
    r = await client.get(f"/v1/rooms/{person.room}/status", headers=bearer(person.queue_token))
    assert r.json()["state"] == "admitted"
    assert (await figures(client, other_room))["waiting"] == 1


# --- session heartbeat and complete ------------------------------------------------------------


async def test_complete_frees_units_at_once_and_twice_is_harmless(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    person = await admit_one(client, settings, await fast_room(make_room), size=3)
    before = await figures(client, person.room)
    assert before["used_units"] == 3
    assert before["admitted"] == 1

    r = await client.post("/v1/session/complete", headers=bearer(person.access_token))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "completed"
    assert r.json()["active"] is False
    after = await figures(client, person.room)
    assert after["used_units"] == before["used_units"] - 3
    assert after["admitted"] == 0
    assert after["completed_total"] == before["completed_total"] + 1

    again = await client.post("/v1/session/complete", headers=bearer(person.access_token))
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "completed"
    unmoved = await figures(client, person.room)
    for pace in (unmoved, after):  # the observed pace decays as time passes; the rest stays
        pace.pop("admit_rate")
    assert unmoved == after

    r = await verify(client, person.access_token, person.room)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    assert r.json()["state"] == "completed"


async def test_session_heartbeat_claims_and_refreshes_the_access_token(
    client: httpx.AsyncClient, make_room: RoomFactory, settings: Settings
) -> None:
    person = await admit_one(client, settings, await fast_room(make_room, session_ttl=900))
    before = await figures(client, person.room)
    assert (before["admitted"], before["active"]) == (1, 0)

    r = await client.post("/v1/session/heartbeat", headers=bearer(person.access_token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "active"
    assert body["active"] is True
    assert body["room"] == person.room
    assert body["sub"] == person.position_id
    assert body["session_deadline"] > time.time()
    refreshed = body["access_token"]
    assert isinstance(refreshed, str)
    assert refreshed != person.access_token

    after = await figures(client, person.room)
    assert (after["admitted"], after["active"]) == (0, 1)
    assert after["used_units"] == before["used_units"]

    claims = await jwks_decode(client, settings, refreshed, person.room)
    assert claims["sub"] == person.position_id
    assert claims["room"] == person.room
    assert claims["typ"] == "access"
    assert claims["exp"] >= int(body["session_deadline"])
    r = await verify(client, refreshed, person.room)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True
    assert r.json()["state"] == "active"

    # a second heartbeat keeps the session going
    r = await client.post("/v1/session/heartbeat", headers=bearer(refreshed))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    assert r.json()["session_deadline"] >= body["session_deadline"]


# --- key rotation --------------------------------------------------------------------------------


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


async def jwks_kids(client: httpx.AsyncClient) -> set[str]:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    return {str(k["kid"]) for k in r.json()["keys"]}


async def test_key_rotation_publishes_first_signs_later_and_old_tokens_stay_good(
    settings: Settings, tmp_path: Path
) -> None:
    keys_dir = tmp_path / "keys"
    rotating = settings.with_changes(keys_dir=keys_dir)
    async with (
        GatewayServer(rotating) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30) as client,
    ):
        ring = gw.app.state.services.tokens.ring
        room = "t-" + secrets.token_hex(5)
        config = {
            "target_url": "http://127.0.0.1:9/target",
            "release_rate": 1000,
            "max_active": 10,
            "max_positions_per_ip": 0,
        }
        r = await client.put(f"/v1/admin/rooms/{room}", json=config, headers=ADMIN)
        assert r.status_code == 201, r.text

        first = await admit_one(client, rotating, room)
        old_kid = kid_of(first.access_token)
        assert kid_of(first.queue_token) == old_kid
        assert await jwks_kids(client) == {old_kid}

        # a key that becomes active in an hour: published now, not used to sign yet
        future = write_key(keys_dir, "rsa", active_from=int(time.time()) + 3600)
        ring.reload()
        assert await jwks_kids(client) == {old_kid, future.stem}
        r = await client.post(f"/v1/rooms/{room}/enqueue")
        assert r.status_code == 201, r.text
        assert kid_of(r.json()["token"]) == old_kid
        second = await admit_one(client, rotating, room)
        assert kid_of(second.access_token) == old_kid

        # a key active since a moment ago: it signs from now on
        current = write_key(keys_dir, "rsa", active_from=int(time.time()) - 1)
        ring.reload()
        assert await jwks_kids(client) == {old_kid, future.stem, current.stem}
        third = await admit_one(client, rotating, room)
        assert kid_of(third.queue_token) == current.stem
        assert kid_of(third.access_token) == current.stem
        assert (await jwks_decode(client, rotating, third.access_token, third.room))["sub"] == (
            third.position_id
        )

        # tokens signed by the old key still verify, offline and through a gateway that
        # has never seen them (a pod that signs a token remembers it as good)
        assert (await jwks_decode(client, rotating, first.access_token, first.room))["sub"] == (
            first.position_id
        )
        async with (
            GatewayServer(rotating) as fresh,
            httpx.AsyncClient(base_url=fresh.url, timeout=30) as other,
        ):
            for person in (first, second):
                r = await verify(other, person.access_token, room)
                assert r.status_code == 200, r.text
                assert r.json()["active"] is True
                r = await other.get(f"/v1/rooms/{room}/status", headers=bearer(person.queue_token))
                assert r.status_code == 200, r.text
                assert r.json()["state"] == "admitted"
        r = await verify(client, third.access_token, room)
        assert r.status_code == 200, r.text
        assert r.json()["active"] is True


async def test_a_key_added_by_another_pod_is_picked_up_without_a_restart(
    settings: Settings, tmp_path: Path
) -> None:
    keys_dir = tmp_path / "keys"
    async with (
        GatewayServer(settings.with_changes(keys_dir=keys_dir)) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30) as client,
    ):
        old_kids = await jwks_kids(client)
        added = write_key(keys_dir, "rsa", active_from=int(time.time()) - 1)
        now = int(time.time())
        token = sign_with_ring(
            keys_dir, access_claims(settings, "t-nowhere", "nobody", iat=now, exp=now + 600)
        )
        assert kid_of(token) == added.stem

        async def accepted() -> bool:  # the gateway looks at the folder again, at most 1/s
            r = await verify(client, token, "t-nowhere")
            assert r.status_code in (200, 401), r.text
            if r.status_code == 401:
                assert error_code(r) == "token_invalid"
            return r.status_code == 200

        await wait_until(accepted)
        r = await verify(client, token, "t-nowhere")
        assert r.json()["active"] is False  # a real signature, but no such visit
        assert await jwks_kids(client) == {*old_kids, added.stem}


async def test_bound_queue_tokens_work_only_for_the_client_they_were_issued_to(
    settings: Settings,
) -> None:
    bound = settings.with_changes(token_binding=True)
    async with GatewayServer(bound) as gw, httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
        room = "bind-" + secrets.token_hex(4)
        r = await c.put(
            f"/v1/admin/rooms/{room}",
            headers=ADMIN,
            json={"target_url": "http://127.0.0.1:9/t", "status": "paused"},
        )
        assert r.status_code == 201
        mine = {"User-Agent": "browser-one"}
        me = (await c.post(f"/v1/rooms/{room}/enqueue", headers=mine)).json()
        ok = await c.get(f"/v1/rooms/{room}/status", headers=bearer(me["token"]) | mine)
        assert ok.status_code == 200
        stolen = await c.get(
            f"/v1/rooms/{room}/status",
            headers=bearer(me["token"]) | {"User-Agent": "somebody-else"},
        )
        assert stolen.status_code == 403
        assert stolen.json()["error"]["code"] == "token_binding_mismatch"


async def test_es256_queue_tokens_with_rs256_access_tokens(
    settings: Settings, tmp_path: Path
) -> None:
    es = settings.with_changes(queue_token_alg="ES256", keys_dir=tmp_path)
    async with (
        GatewayServer(es) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as c,
        in_process_workers(es),
    ):
        room = "es-" + secrets.token_hex(4)
        r = await c.put(
            f"/v1/admin/rooms/{room}",
            headers=ADMIN,
            json={"target_url": "http://127.0.0.1:9/t", "release_rate": 50},
        )
        assert r.status_code == 201
        me = (await c.post(f"/v1/rooms/{room}/enqueue")).json()
        assert jwt.get_unverified_header(me["token"])["alg"] == "ES256"

        async def admitted() -> dict[str, Any] | None:
            s: dict[str, Any] = (
                await c.get(f"/v1/rooms/{room}/status", headers=bearer(me["token"]))
            ).json()
            return s if s["state"] == "admitted" else None

        status = await wait_until(admitted)
        assert jwt.get_unverified_header(status["access_token"])["alg"] == "RS256"
        jwks = (await c.get("/.well-known/jwks.json")).json()["keys"]
        assert {k["kty"] for k in jwks} == {"RSA"}  # the queue-token key is never published
