"""Signing and verifying queue and access tokens (the keys: shared/keyring.py).

Signatures are made on the event loop. An RSA signature takes about a millisecond, and
``cryptography`` releases the GIL meanwhile, so ``sign_threads`` can make them in a thread
pool instead: the loop goes on and a spare core does the work, but each signature then
costs about a third more CPU (the hand-over and the GIL taken back), so the pool pays only
for a process with cores to spare. ECDSA signatures (ES256 queue tokens, ~40 µs) cost less
than the hand-over and are always made on the loop. Verified tokens are cached until they
expire, so a repeat heartbeat skips the RSA verify.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import msgspec
import structlog

from shared.errors import (
    TokenBindingMismatch,
    TokenExpired,
    TokenInvalid,
    WrongRoom,
    WrongTokenType,
)
from shared.jws import JwsSigner
from shared.keyring import KeyKind, KeyRing

log = structlog.get_logger("tokens")


QUEUE_AUDIENCE_SUFFIX = "/queue"


def access_audience(audience: str, room: str) -> str:
    """The ``aud`` of a room's access tokens: the configured audience and the room, so a
    site that checks ``aud`` (as every JWT library does when told the audience) cannot
    take one room's access for another's. Room ids hold no ``:``."""
    return f"{audience}:{room}"


class QueueClaims(msgspec.Struct, frozen=True, gc=False):
    """A queue token's claims. Kept for every token verified or signed (``_VerifiedCache``,
    100,000 by default), so not tracked by the garbage collector (``gc=False``: it holds
    text and numbers only): tracked, they made each full collection of a gateway under
    joins scan them all, pauses of 70-216 ms that every request waited out."""

    sub: str
    room: str
    incarnation: str
    """The room's incarnation the place belongs to: a room deleted and made again under the
    same name refuses tokens of the earlier one."""
    arrival: int
    size: int
    priority: int
    bind: str
    iat: int
    exp: int


class AccessClaims(msgspec.Struct, frozen=True, gc=False):
    """An access token's claims (cached as ``QueueClaims`` are, and so untracked too)."""

    sub: str
    room: str
    iat: int
    exp: int


def _queue_claims_of(raw: dict[str, Any]) -> QueueClaims:
    return QueueClaims(
        sub=str(raw["sub"]),
        room=str(raw["room"]),
        incarnation=str(raw.get("inc", "")),
        arrival=int(raw["arr"]),
        size=int(raw.get("size", 1)),
        priority=int(raw.get("pri", 0)),
        bind=str(raw.get("bnd", "")),
        iat=int(raw["iat"]),
        exp=int(raw["exp"]),
    )


def _claimed_room(token: str) -> str:
    """The room a token says it is for, before its signature is checked: only to pick the
    audience to check it against; the signature then proves it."""
    try:
        room = jwt.decode(token, options={"verify_signature": False}).get("room")
    except jwt.PyJWTError:
        raise TokenInvalid() from None
    return room if isinstance(room, str) else ""


def client_binding(ip: str, user_agent: str) -> str:
    return hashlib.sha256(f"{ip}\n{user_agent}".encode()).hexdigest()[:16]


class _VerifiedCache:
    """Tokens already verified, until they expire; bounded, oldest first out.

    Kept by a 128-bit BLAKE2b digest of the token rather than the token: a queue token is
    about 700 characters, so a full cache (100,000 by default: everyone waiting who asks
    this gateway, and every open event stream) would hold some 70 MB of token text. A
    digest costs about 1 us a lookup, and another token meeting an entry's digest would
    take 2^128 tries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, token: str, now: float) -> Any | None:
        key = self.key(token)
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] <= now:
            self._data.pop(key, None)
            return None
        return hit[1]

    def put(self, token: str, exp: float, value: Any) -> None:
        self._data[self.key(token)] = (exp, value)
        if len(self._data) > self.size:
            self._data.popitem(last=False)


class TokenService:
    """Issues and checks tokens. One per process; call ``close`` to stop its threads."""

    def __init__(
        self,
        ring: KeyRing,
        *,
        issuer: str,
        audience: str,
        queue_ttl: int = 300,
        queue_alg: str = "RS256",
        sign_threads: int = 0,
        cache_size: int = 100_000,
    ) -> None:
        self.ring = ring
        self.issuer = issuer
        self.audience = audience
        self.queue_audience = audience + QUEUE_AUDIENCE_SUFFIX
        self.queue_ttl = queue_ttl
        self.queue_alg = queue_alg
        self._pool = (
            ThreadPoolExecutor(max_workers=sign_threads, thread_name_prefix="sign")
            if sign_threads
            else None
        )
        self._jws = JwsSigner()
        self._verified = _VerifiedCache(cache_size)
        self._access_cache: OrderedDict[tuple[str, int], str] = OrderedDict()
        self.signed = {"queue": 0, "access": 0}
        """Tokens actually signed (cache hits not counted), for the metrics."""

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # signing --------------------------------------------------------------------------
    def _sign(self, claims: dict[str, Any], kind: KeyKind) -> str:
        return self._jws.sign(claims, self.ring.signer(kind))

    async def _signed(self, claims: dict[str, Any], kind: KeyKind) -> str:
        """The token, signed here on the loop, or (RSA, with ``sign_threads``) in the pool."""
        if kind == "ec" or self._pool is None:
            return self._sign(claims, kind)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._sign, claims, kind)

    def queue_claims(
        self,
        room: str,
        position_id: str,
        *,
        incarnation: str,
        arrival: int,
        size: int,
        priority: int,
        bind: str,
    ) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": self.queue_audience,
            "sub": position_id,
            "room": room,
            "inc": incarnation,
            "typ": "queue",
            "arr": arrival,
            "size": size,
            "pri": priority,
            "bnd": bind,
            "iat": now,
            "exp": now + self.queue_ttl,
            "jti": secrets.token_urlsafe(9),
        }

    def sign_queue_sync(self, claims: dict[str, Any]) -> str:
        return self._sign(claims, self._queue_kind)

    @property
    def _queue_kind(self) -> KeyKind:
        return "ec" if self.queue_alg == "ES256" else "rsa"

    async def sign_queue(
        self,
        room: str,
        position_id: str,
        *,
        incarnation: str,
        arrival: int,
        size: int,
        priority: int,
        bind: str,
    ) -> str:
        claims = self.queue_claims(
            room,
            position_id,
            incarnation=incarnation,
            arrival=arrival,
            size=size,
            priority=priority,
            bind=bind,
        )
        self.signed["queue"] += 1  # counted on the loop's thread, not in the pool
        token = await self._signed(claims, self._queue_kind)
        # we made it, so we know it is good: its first check here skips the RSA verify
        self._verified.put(token, claims["exp"], _queue_claims_of(claims))
        return token

    def access_claims(self, room: str, position_id: str, *, iat: int, exp: int) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "aud": access_audience(self.audience, room),
            "sub": position_id,
            "room": room,
            "typ": "access",
            "iat": iat,
            "exp": exp,
            "jti": f"{position_id}.{exp}",
        }

    async def sign_access(self, room: str, position_id: str, *, iat: int, exp: int) -> str:
        """An access token; the same inputs give the same token, so it is cached here."""
        cache_key = (f"{room}/{position_id}", exp)
        hit = self._access_cache.get(cache_key)
        if hit is not None:
            return hit
        claims = self.access_claims(room, position_id, iat=iat, exp=exp)
        token = await self._signed(claims, "rsa")
        self.signed["access"] += 1
        self._access_cache[cache_key] = token
        if len(self._access_cache) > 50_000:
            self._access_cache.popitem(last=False)
        return token

    # verifying ------------------------------------------------------------------------
    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid() from None
        kid = header.get("kid")
        key = self.ring.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenInvalid("The token was signed by a key this service does not know.")
        alg = "RS256" if key.kind == "rsa" else "ES256"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.private.public_key(),
                algorithms=[alg],
                audience=audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.InvalidAudienceError:
            raise WrongTokenType() from None
        except jwt.PyJWTError:
            raise TokenInvalid() from None
        return claims

    def verify_queue(self, token: str, room: str, binding: str | None = None) -> QueueClaims:
        """Check a queue token for ``room``; ``binding`` when token binding is on."""
        now = time.time()
        claims = self._verified.get(token, now)
        if not isinstance(claims, QueueClaims):
            raw = self._decode(token, self.queue_audience)
            if raw.get("typ") != "queue":
                raise WrongTokenType()
            try:
                claims = _queue_claims_of(raw)
            except (KeyError, TypeError, ValueError):
                raise TokenInvalid() from None
            self._verified.put(token, claims.exp, claims)
        if claims.room != room:
            raise WrongRoom()
        if binding is not None and claims.bind and claims.bind != binding:
            raise TokenBindingMismatch()
        return claims

    def verify_access(self, token: str, room: str | None = None) -> AccessClaims:
        """Check an access token; with ``room``, that it is that room's (else 403). Without,
        the room it names is checked against its audience, and the caller acts on it."""
        now = time.time()
        claims = self._verified.get(token, now)
        if not isinstance(claims, AccessClaims):
            raw = self._decode(token, access_audience(self.audience, _claimed_room(token)))
            if raw.get("typ") != "access":
                raise WrongTokenType()
            try:
                claims = AccessClaims(
                    sub=str(raw["sub"]),
                    room=str(raw["room"]),
                    iat=int(raw["iat"]),
                    exp=int(raw["exp"]),
                )
            except (KeyError, TypeError, ValueError):
                raise TokenInvalid() from None
            self._verified.put(token, claims.exp, claims)
        if room is not None and claims.room != room:
            raise WrongRoom()
        return claims

    def needs_refresh(self, claims: QueueClaims) -> bool:
        """Re-sign a queue token only when less than half its life is left."""
        return claims.exp - time.time() < (claims.exp - claims.iat) / 2
