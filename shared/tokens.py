"""Signing and verifying queue and access tokens.

Keys live as PEM files in ``WAITROOM_KEYS_DIR``, shared by every gateway:
``rsa-<active_from>-<id>.pem`` (access tokens, and queue tokens under RS256) and
``ec-<active_from>-<id>.pem`` (queue tokens under ES256). The file name is the ``kid``.
Every key found is trusted for verification and published in the JWKS (RSA only); the
newest key whose ``active_from`` (epoch seconds) has passed signs. So a rotation adds a key
that is published at once but signs only later, and the old key goes when its tokens have
expired.

Keys are parsed once; the folder is looked at again every ``RESCAN_SECONDS`` and whenever a
kid we do not know turns up (at most once a second), so a key added by rotation or by
another pod is published and used without a restart. Signing runs in a
small thread pool: ``cryptography`` releases the GIL, so the event loop stays responsive.
Verified tokens are cached until they expire, so a repeat heartbeat skips the RSA verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from shared.errors import (
    TokenBindingMismatch,
    TokenExpired,
    TokenInvalid,
    WrongRoom,
    WrongTokenType,
)

log = structlog.get_logger("tokens")

KeyKind = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
QUEUE_AUDIENCE_SUFFIX = "/queue"


def access_audience(audience: str, room: str) -> str:
    """The ``aud`` of a room's access tokens: the configured audience and the room, so a
    site that checks ``aud`` (as every JWT library does when told the audience) cannot
    take one room's access for another's. Room ids hold no ``:``."""
    return f"{audience}:{room}"


KID_PATTERN = re.compile(r"^(rsa|ec)-\d{10}-[A-Za-z0-9]+$")


def _key_file_name(kind: KeyKind, active_from: int) -> str:
    return f"{kind}-{active_from:010d}-{secrets.token_hex(4)}.pem"


def _new_private_key(kind: KeyKind) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _private_pem(kind: KeyKind) -> bytes:
    return _new_private_key(kind).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_folder(keys_dir: Path) -> None:
    """The keys folder, made readable by its owner only (0700)."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        keys_dir.chmod(0o700)
    except OSError as exc:  # a mounted secret the process may read but not change
        log.warning("keys_folder_mode_unchanged", path=str(keys_dir), error=str(exc))


def _write_private(path: Path, data: bytes) -> None:
    """Write a new file that is never readable by others, not even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_private(path: Path, data: bytes) -> None:
    """Write (or replace) a file readable by its owner only (0600 from the start)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    _write_private(tmp, data)
    os.replace(tmp, path)


def write_key(keys_dir: Path, kind: KeyKind, active_from: int | None = None) -> Path:
    """Generate a key and write it under ``keys_dir``; returns its path."""
    private_folder(keys_dir)
    path = keys_dir / _key_file_name(kind, int(time.time()) if active_from is None else active_from)
    tmp = path.with_suffix(".tmp")
    _write_private(tmp, _private_pem(kind))
    os.replace(tmp, path)
    return path


def ensure_keys(keys_dir: Path, kinds: tuple[KeyKind, ...] = ("rsa",)) -> None:
    """Make sure a key of each kind exists; safe when several processes start at once.

    The first key of a kind is made under a fixed name with O_EXCL, so racing processes
    end up with exactly one.
    """
    private_folder(keys_dir)
    for kind in kinds:
        if any(keys_dir.glob(f"{kind}-*.pem")):
            continue
        first = keys_dir / f"{kind}-0000000000-first.pem"
        tmp = keys_dir / f".{kind}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        _write_private(tmp, _private_pem(kind))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, first)
        tmp.unlink()


SALT_FILE = "ip-hash-salt"


def deployment_salt(keys_dir: Path) -> str:
    """A secret every gateway of this deployment shares, for hashing client addresses and
    deriving retry place ids, when no ``WAITROOM_IP_HASH_SALT`` is set: kept beside the
    signing keys (made once, 0600). Where that folder cannot be written (a mounted secret),
    it is derived from the oldest signing key, which every gateway reads alike."""
    path = keys_dir / SALT_FILE
    if not path.exists():
        tmp = keys_dir / f".{SALT_FILE}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            _write_private(tmp, secrets.token_urlsafe(32).encode())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            tmp.unlink()
        except OSError:
            oldest = min(keys_dir.glob("rsa-*.pem"))
            return hmac.new(oldest.read_bytes(), b"waitroom ip-hash salt", "sha256").hexdigest()
    return path.read_text().strip()


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    kind: KeyKind
    active_from: int
    private: PrivateKey


class KeyRing:
    """The keys in one folder, parsed once; new files are picked up as they appear."""

    RESCAN_SECONDS = 30.0

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._keys: dict[str, LoadedKey] = {}
        self._last_scan = 0.0
        self.reload()

    def reload(self) -> None:
        keys: dict[str, LoadedKey] = {}
        for path in sorted(self.keys_dir.glob("*.pem")):
            kid = path.stem
            kind_s, _, rest = kid.partition("-")
            if kind_s not in ("rsa", "ec"):
                continue
            known = self._keys.get(kid)
            if known is not None:
                keys[kid] = known
                continue
            try:
                private = serialization.load_pem_private_key(path.read_bytes(), password=None)
                active_from = int(rest.split("-", 1)[0])
            except (ValueError, OSError) as exc:
                log.warning("key_unreadable", path=str(path), error=str(exc))
                continue
            if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                continue
            kind: KeyKind = "rsa" if kind_s == "rsa" else "ec"
            keys[kid] = LoadedKey(kid, kind, active_from, private)
        self._keys = keys
        self._last_scan = time.monotonic()

    def loaded(self) -> list[LoadedKey]:
        return sorted(self._keys.values(), key=lambda k: k.kid)

    def get(self, kid: str) -> LoadedKey | None:
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._last_scan > 1.0:
            self.reload()
            key = self._keys.get(kid)
        return key

    def _fresh(self) -> None:
        if time.monotonic() - self._last_scan > self.RESCAN_SECONDS:
            self.reload()

    def signer(self, kind: KeyKind, now: float | None = None) -> LoadedKey:
        """The newest key of a kind that is already active."""
        self._fresh()
        at = time.time() if now is None else now
        usable = [k for k in self._keys.values() if k.kind == kind and k.active_from <= at]
        if not usable:
            self.reload()
            usable = [k for k in self._keys.values() if k.kind == kind and k.active_from <= at]
        if not usable:
            raise RuntimeError(f"no active {kind} key in {self.keys_dir}")
        return max(usable, key=lambda k: (k.active_from, k.kid))

    def jwks(self) -> dict[str, Any]:
        """Every RSA key, public part only, for offline verification by protected sites."""
        self._fresh()
        out = []
        for key in sorted(self._keys.values(), key=lambda k: k.kid):
            if key.kind != "rsa":
                continue
            public = key.private.public_key()
            assert isinstance(public, rsa.RSAPublicKey)
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
            jwk.update({"kid": key.kid, "use": "sig", "alg": "RS256"})
            out.append(jwk)
        return {"keys": out}


@dataclass(frozen=True)
class QueueClaims:
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


@dataclass(frozen=True)
class AccessClaims:
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
    """Tokens already verified, until they expire; bounded, oldest first out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, token: str, now: float) -> Any | None:
        hit = self._data.get(token)
        if hit is None:
            return None
        if hit[0] <= now:
            self._data.pop(token, None)
            return None
        return hit[1]

    def put(self, token: str, exp: float, value: Any) -> None:
        self._data[token] = (exp, value)
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
        sign_threads: int = 2,
        cache_size: int = 100_000,
    ) -> None:
        self.ring = ring
        self.issuer = issuer
        self.audience = audience
        self.queue_audience = audience + QUEUE_AUDIENCE_SUFFIX
        self.queue_ttl = queue_ttl
        self.queue_alg = queue_alg
        self._pool = ThreadPoolExecutor(max_workers=sign_threads, thread_name_prefix="sign")
        self._verified = _VerifiedCache(cache_size)
        self._access_cache: OrderedDict[tuple[str, int], str] = OrderedDict()
        self.signed = {"queue": 0, "access": 0}
        """Tokens actually signed (cache hits not counted), for the metrics."""

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # signing --------------------------------------------------------------------------
    def _sign(self, claims: dict[str, Any], kind: KeyKind) -> str:
        key = self.ring.signer(kind)
        alg = "RS256" if kind == "rsa" else "ES256"
        return jwt.encode(claims, key.private, algorithm=alg, headers={"kid": key.kid})

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
        return self._sign(claims, "ec" if self.queue_alg == "ES256" else "rsa")

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
        loop = asyncio.get_running_loop()
        token = await loop.run_in_executor(self._pool, self.sign_queue_sync, claims)
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
        loop = asyncio.get_running_loop()
        token = await loop.run_in_executor(self._pool, self._sign, claims, "rsa")
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
