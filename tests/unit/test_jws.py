"""Our own JWS signing (shared/jws.py): every token it makes is one PyJWT verifies, with
the header a verifier looks at, and a changed byte makes it fail; and where the token
service signs (the loop, or RSA in its threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from shared.jws import JwsSigner
from shared.keyring import (
    KeyKind,
    KeyRing,
    LoadedKey,
    PrivateKey,
    ensure_keys,
    write_private,
)
from shared.tokens import TokenService

pytestmark = pytest.mark.unit
PEM, PKCS8 = Encoding.PEM, PrivateFormat.PKCS8


def claims() -> dict[str, object]:
    """Claims good for the next five minutes (made when a test runs, not at import)."""
    now = int(time.time())
    return {
        "iss": "waitroom",
        "aud": "site/queue",
        "sub": "p-1",
        "room": "sale",
        "arr": 7,
        "bnd": "",
        "iat": now,
        "exp": now + 300,
        "jti": "ünïcode-too",
    }


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    ensure_keys(tmp_path, ("rsa", "ec"))
    return KeyRing(tmp_path)


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ec", "ES256")])
def test_pyjwt_verifies_what_we_sign(ring: KeyRing, kind: str, alg: str) -> None:
    key = ring.signer(kind)  # type: ignore[arg-type]
    signed = claims()
    token = JwsSigner().sign(signed, key)
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": key.kid, "typ": "JWT"}
    public = key.private.public_key()
    assert jwt.decode(token, public, algorithms=[alg], audience="site/queue") == signed
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    with pytest.raises(jwt.PyJWTError):
        jwt.decode(forged, public, algorithms=[alg], audience="site/queue")


@pytest.mark.parametrize(
    "wrong",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),  # ES256 is P-256 only
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
)
def test_a_key_file_of_the_wrong_kind_is_never_used(
    tmp_path: Path, wrong: Callable[[], PrivateKey]
) -> None:
    """An ``ec-`` file holding another curve, or an RSA key, would sign tokens whose header
    says ES256 and that no one verifies; the ring passes it over (as PyJWT refused it)."""
    ensure_keys(tmp_path, ("rsa", "ec"))
    usable = KeyRing(tmp_path).signer("ec").kid
    newer = tmp_path / f"ec-{int(time.time()) - 1}-wrong.pem"
    write_private(newer, wrong().private_bytes(PEM, PKCS8, NoEncryption()))
    ring = KeyRing(tmp_path)
    assert ring.get(newer.stem) is None
    assert ring.signer("ec").kid == usable


class _WhereSigned(KeyRing):
    """The real key ring, noting on which thread each signing key was asked for."""

    threads: list[str]

    def signer(self, kind: KeyKind, now: float | None = None) -> LoadedKey:
        self.threads.append(threading.current_thread().name)
        return super().signer(kind, now)


@pytest.mark.parametrize("threads", [0, 2])
async def test_rsa_tokens_are_signed_on_the_loop_unless_threads_are_given(
    tmp_path: Path, threads: int
) -> None:
    ensure_keys(tmp_path, ("rsa", "ec"))
    ring = _WhereSigned(tmp_path)
    ring.threads = []
    service = TokenService(ring, issuer="i", audience="site", sign_threads=threads)
    try:
        token = await service.sign_access(
            "sale", "p-1", iat=int(time.time()), exp=int(time.time()) + 60
        )
        assert service.verify_access(token, "sale").sub == "p-1"
        es = TokenService(
            ring, issuer="i", audience="site", queue_alg="ES256", sign_threads=threads
        )
        await es.sign_queue("sale", "p-2", incarnation="x", arrival=1, size=1, priority=0, bind="")
        es.close()
    finally:
        service.close()
    rsa_thread, ec_thread = ring.threads
    assert ec_thread == threading.current_thread().name  # ECDSA: always here
    assert (rsa_thread == threading.current_thread().name) == (threads == 0)
