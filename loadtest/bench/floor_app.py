"""The floor: the least a server has to do for each operation, served the same way as the
gateway (a Litestar app in one uvicorn process, uvicorn's defaults: uvloop and httptools,
no access log). Every figure of the benchmark is a ratio to one of these routes:

- ``GET /floor/bare``: a bare route answering a small JSON object.
- ``POST /floor/{room}/join?alg=RS256|ES256``: one Lua call (arrival number, person hash,
  line and liveness sorted sets), one JetStream publish awaited for its ack, one token
  signed (RS256 or ES256) and answered.
- ``GET /floor/{room}/status``: the Bearer token verified (a cache of verified tokens, as
  the gateway keeps), one Lua call (rank, line length, person).
- ``POST /floor/{room}/heartbeat``: the same, the Lua call also marking the person seen.
- ``GET /floor/{room}/events?token=``: a Server-Sent Event stream; each message on the NATS
  subject ``floorpush.<room>`` reads every open stream's rank in one pipeline and pushes one
  ``position`` event to each.

python -m loadtest.bench.floor_app --redis-url URL --nats-url URL --port N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import msgspec
import nats
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Litestar, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.response import ServerSentEvent, ServerSentEventMessage
from nats.js import JetStreamContext
from redis.asyncio import Redis

JOIN_LUA = """
local arrival = redis.call('HINCRBY', KEYS[1], 'arrival', 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], arrival, ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
return {arrival, redis.call('ZRANK', KEYS[3], ARGV[1]), redis.call('ZCARD', KEYS[3])}
"""
STATUS_LUA = """
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[4], 'XX', ARGV[3], ARGV[1])
end
local rank = redis.call('ZRANK', KEYS[3], ARGV[1])
if not rank then
  return {-1, 0, false}
end
return {rank, redis.call('ZCARD', KEYS[3]), redis.call('HGET', KEYS[2], ARGV[1])}
"""
STREAM = "FLOOR"
AUDIENCE = "floor/queue"
ISSUER = "floor"


def room_keys(room: str) -> list[str]:
    return [f"floor:{{{room}}}:{name}" for name in ("stats", "people", "line", "seen")]


class Tokens:
    """An RSA and an EC key made at start; verified tokens cached until they expire."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_public = self.rsa.public_key()
        self.ec_public = self.ec.public_key()
        self.verified: dict[str, tuple[dict[str, Any], float]] = {}

    def sign(self, room: str, position_id: str, arrival: int, alg: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": position_id,
            "room": room,
            "typ": "queue",
            "arr": arrival,
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(8),
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        kid, key = ("ec", self.ec) if alg == "ES256" else ("rsa", self.rsa)
        token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
        self.verified[token] = (claims, float(now + 300))
        return token

    def verify(self, token: str) -> dict[str, Any]:
        hit = self.verified.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            alg = "ES256" if kid == "ec" else "RS256"
            claims: dict[str, Any] = jwt.decode(
                token,
                self.ec_public if kid == "ec" else self.rsa_public,
                algorithms=[alg],
                audience=AUDIENCE,
                issuer=ISSUER,
            )
        except jwt.PyJWTError:
            raise NotAuthorizedException("bad token") from None
        self.verified[token] = (claims, float(claims["exp"]))
        return claims


@dataclass
class Streams:
    """Open event streams of one room, and the NATS subscription that pushes to them."""

    queues: dict[str, asyncio.Queue[bytes]] = field(default_factory=dict)
    subscription: Any = None
    seq: int = 0


@dataclass
class Floor:
    redis: Redis
    js: JetStreamContext
    nc: Any
    tokens: Tokens
    join: Any
    status: Any
    streams: dict[str, Streams] = field(default_factory=dict)

    async def push(self, room: str) -> None:
        held = self.streams.get(room)
        if held is None or not held.queues:
            return
        ids = list(held.queues)
        line = room_keys(room)[2]
        async with self.redis.pipeline(transaction=False) as pipe:
            for position_id in ids:
                pipe.zrank(line, position_id)
            pipe.zcard(line)
            answers = await pipe.execute()
        total = answers[-1]
        held.seq += 1
        for position_id, rank in zip(ids, answers, strict=False):
            data = msgspec.json.encode(
                {
                    "state": "waiting",
                    "position": (rank or 0) + 1,
                    "ahead": rank or 0,
                    "total": total,
                    "eta_seconds": None,
                    "eta_range": None,
                }
            )
            with contextlib.suppress(asyncio.QueueFull):
                held.queues[position_id].put_nowait(data)


def bearer(request: Request[Any, Any, Any]) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise NotAuthorizedException("no token")
    return value.strip()


@get("/floor/bare")
async def bare() -> dict[str, bool]:
    return {"ok": True}


@post("/floor/{room:str}/join", status_code=201)
async def join(room: str, state: State, alg: str = "RS256") -> dict[str, Any]:
    floor: Floor = state.floor
    position_id = secrets.token_urlsafe(12)
    now = int(time.time() * 1000)
    person = msgspec.json.encode({"state": "waiting", "size": 1, "joined": now})
    arrival, rank, total = await floor.join(keys=room_keys(room), args=[position_id, person, now])
    event = msgspec.json.encode(
        {"type": "enqueued", "room": room, "position_id": position_id, "arrival": arrival}
    )
    await floor.js.publish(
        f"floor.{room}.enqueued", event, headers={"Nats-Msg-Id": f"{room}:{arrival}"}
    )
    token = floor.tokens.sign(room, position_id, arrival, alg)  # inline: the least CPU
    return {"position_id": position_id, "position": rank + 1, "total": total, "token": token}


async def _status(room: str, request: Request[Any, Any, Any], touch: bool) -> dict[str, Any]:
    floor: Floor = request.app.state.floor
    claims = floor.tokens.verify(bearer(request))
    now = int(time.time() * 1000)
    rank, total, _person = await floor.status(
        keys=room_keys(room), args=[claims["sub"], "1" if touch else "0", now]
    )
    return {"position_id": claims["sub"], "position": rank + 1, "total": total}


@get("/floor/{room:str}/status")
async def status(room: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
    return await _status(room, request, touch=False)


@post("/floor/{room:str}/heartbeat", status_code=200)
async def heartbeat(room: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
    return await _status(room, request, touch=True)


@get("/floor/{room:str}/events")
async def events(room: str, token: str, state: State) -> ServerSentEvent:
    floor: Floor = state.floor
    claims = floor.tokens.verify(token)
    position_id = claims["sub"]
    held = floor.streams.setdefault(room, Streams())
    if held.subscription is None:

        async def nudged(_msg: Any) -> None:
            await floor.push(room)

        held.subscription = await floor.nc.subscribe(f"floorpush.{room}", cb=nudged)
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
    held.queues[position_id] = queue

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        try:
            yield ServerSentEventMessage(data=None, comment="floor", retry=3000)
            while True:
                data = await queue.get()
                yield ServerSentEventMessage(data=data.decode(), event="position", id=str(held.seq))
        finally:
            held.queues.pop(position_id, None)

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-cache"})


def create_floor_app(redis_url: str, nats_url: str) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = Redis.from_url(redis_url, max_connections=256)
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        with contextlib.suppress(Exception):
            await js.add_stream(name=STREAM, subjects=["floor.>"])
        app.state.floor = Floor(
            redis=redis,
            js=js,
            nc=nc,
            tokens=Tokens(),
            join=redis.register_script(JOIN_LUA),
            status=redis.register_script(STATUS_LUA),
        )
        try:
            yield
        finally:
            await nc.close()
            await redis.aclose()

    return Litestar(
        route_handlers=[bare, join, status, heartbeat, events], lifespan=[lifespan], debug=False
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_floor_app(args.redis_url, args.nats_url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
