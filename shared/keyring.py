"""The signing keys: PEM files in ``WAITROOM_KEYS_DIR``, shared by every gateway.

``rsa-<active_from>-<id>.pem`` (access tokens, and queue tokens under RS256) and
``ec-<active_from>-<id>.pem`` (queue tokens under ES256). The file name is the ``kid``.
Every key found is trusted for verification and published in the JWKS (RSA only); the
newest key whose ``active_from`` (epoch seconds) has passed signs. So a rotation adds a key
that is published at once but signs only later, and the old key goes when its tokens have
expired.

Keys are parsed once; the folder is looked at again every ``RESCAN_SECONDS`` and whenever a
kid we do not know turns up (at most once a second), so a key added by rotation or by
another pod is published and used without a restart. Files here are written ``0600`` in a
``0700`` folder from the start.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

log = structlog.get_logger("keys")

KeyKind = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
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


SIGNS: dict[KeyKind, str] = {"rsa": "an RSA key (RS256)", "ec": "a P-256 key (ES256)"}


def _fits(private: object, kind: KeyKind) -> TypeGuard[PrivateKey]:
    """Whether a key file holds the kind of key its name says: a token's header names the
    algorithm by the kind, so another key would sign tokens no one can verify."""
    if kind == "rsa":
        return isinstance(private, rsa.RSAPrivateKey)
    return isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(
        private.curve, ec.SECP256R1
    )


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
            kind: KeyKind = "rsa" if kind_s == "rsa" else "ec"
            if not _fits(private, kind):
                log.warning("key_unfit", path=str(path), expected=SIGNS[kind])
                continue
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
