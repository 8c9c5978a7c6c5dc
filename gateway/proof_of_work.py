"""A proof-of-work gate a room can switch on (``pow_difficulty`` > 0): a bot deterrent that
needs no third-party service.

Before joining, a client fetches a challenge: a short-lived, signed statement "this room,
this client, this difficulty, until then", with a random id. It then finds a nonce such
that ``sha256(challenge + ":" + nonce)`` starts with ``difficulty`` zero bits — about
``2**difficulty`` hashes, a second or two for a browser at the default, far more for a
farm of scripted joins — and sends both with its join. The gateway checks the signature,
the expiry, the client, the room and the hash without any store call; the challenge id is
spent atomically with the join (enqueue.lua), so a solution is used once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import msgspec

from shared.errors import PowInvalid, PowRequired

CHALLENGE_TTL = 120
"""Seconds a challenge may be solved and used in."""
MAX_DIFFICULTY = 32


class _Statement(msgspec.Struct, array_like=True):
    room: str
    client: str
    difficulty: int
    expires: int
    id: str


_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(_Statement)


@dataclass(frozen=True)
class Challenge:
    challenge: str
    difficulty: int
    expires_at: int


@dataclass(frozen=True)
class Spent:
    """A checked solution: its id is spent with the join, until it would expire anyway."""

    id: str
    expires_at: int


class ProofOfWork:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(f"waitroom proof of work\n{secret}".encode()).digest()

    def challenge(self, room: str, client: str, difficulty: int) -> Challenge:
        """A challenge for this room and client (its address key and User-Agent hash)."""
        expires = int(time.time()) + CHALLENGE_TTL
        statement = _Statement(room, client, difficulty, expires, secrets.token_urlsafe(12))
        body = _b64(_encode.encode(statement))
        return Challenge(f"{body}.{self._sign(body)}", difficulty, expires)

    def check(
        self, room: str, client: str, difficulty: int, challenge: str | None, nonce: str | None
    ) -> Spent | None:
        """None when the room asks for no work; else the solution to spend, or an error:
        ``pow_required`` without one, ``pow_invalid`` for a forged, stale, foreign, too easy
        or wrong one."""
        if difficulty <= 0:
            return None
        if not challenge or nonce is None:
            raise PowRequired()
        body, _, signature = challenge.partition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            raise PowInvalid("The challenge was not issued here.")
        try:
            statement = _decode.decode(_unb64(body))
        except (msgspec.DecodeError, ValueError):
            raise PowInvalid() from None
        if statement.expires < time.time():
            raise PowInvalid("The challenge has expired; fetch a new one.")
        if statement.room != room or statement.client != client:
            raise PowInvalid("The challenge was issued for another room or client.")
        if statement.difficulty < difficulty:
            raise PowInvalid("The room asks for more work now; fetch a new challenge.")
        if len(nonce) > 64 or leading_zero_bits(solution_hash(challenge, nonce)) < difficulty:
            raise PowInvalid("The nonce does not solve the challenge.")
        return Spent(statement.id, statement.expires)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), "sha256").digest()[:18])


def solution_hash(challenge: str, nonce: str) -> bytes:
    return hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def solve(challenge: str, difficulty: int) -> str:
    """What a script does instead of the page's Web Worker (tests, CLI clients)."""
    nonce = 0
    while leading_zero_bits(solution_hash(challenge, str(nonce))) < difficulty:
        nonce += 1
    return str(nonce)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
