"""A proof-of-work gate a room can switch on (``pow_difficulty`` > 0): a bot deterrent that
needs no third-party service.

Before joining, a client fetches a challenge: a short-lived, signed statement "this room,
this client, this difficulty, until then", with a random id. It then finds a nonce such
that ``sha256(challenge + ":" + nonce)`` starts with ``difficulty`` zero bits — about
``2**difficulty`` hashes, a second or two for a browser at 20 bits, far more for a farm of
scripted joins — and sends both with its join. The gateway checks the signature, the
expiry, the client, the room and the hash without any store call; the join script then
checks the room still asks for no more than that difficulty and spends the challenge id
in the same atomic step, so a solution is used once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import msgspec

from shared.errors import PowInvalid

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
class Solved:
    """A checked solution, for the join to spend: its id (used once, remembered until the
    challenge would have expired) and the difficulty it was solved at."""

    id: str
    difficulty: int
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

    def check(self, room: str, client: str, challenge: str, nonce: str) -> Solved:
        """The solution, or ``pow_invalid`` for a forged, stale, foreign or wrong one."""
        if not challenge.isascii():  # ours are base64url; compare_digest takes no other
            raise PowInvalid("The challenge was not issued here.")
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
        if leading_zero_bits(solution_hash(challenge, nonce)) < statement.difficulty:
            raise PowInvalid("The nonce does not solve the challenge.")
        return Solved(statement.id, statement.difficulty, statement.expires)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), "sha256").digest()[:18])


def solution_hash(challenge: str, nonce: str) -> bytes:
    """SHA-256 of ``challenge:nonce`` in UTF-8 (a lone surrogate, which a str may hold and
    UTF-8 may not, is hashed as its code unit rather than raising)."""
    return hashlib.sha256(f"{challenge}:{nonce}".encode("utf-8", "surrogatepass")).digest()


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
