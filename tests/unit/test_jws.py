"""Our own JWS signing (shared/jws.py): every token it makes is one PyJWT verifies, with
the header a verifier looks at, and a changed byte makes it fail; and where the token
service signs (the loop, or RSA in its threads)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from shared.jws import JwsSigner
from shared.keyring import KeyKind, KeyRing, LoadedKey, ensure_keys
from shared.tokens import TokenService

pytestmark = pytest.mark.unit

CLAIMS = {
    "iss": "waitroom",
    "aud": "site/queue",
    "sub": "p-1",
    "room": "sale",
    "arr": 7,
    "bnd": "",
    "iat": int(time.time()),
    "exp": int(time.time()) + 300,
    "jti": "ünïcode-too",
}


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    ensure_keys(tmp_path, ("rsa", "ec"))
    return KeyRing(tmp_path)


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ec", "ES256")])
def test_pyjwt_verifies_what_we_sign(ring: KeyRing, kind: str, alg: str) -> None:
    key = ring.signer(kind)  # type: ignore[arg-type]
    token = JwsSigner().sign(CLAIMS, key)
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": key.kid, "typ": "JWT"}
    public = key.private.public_key()
    assert jwt.decode(token, public, algorithms=[alg], audience="site/queue") == CLAIMS
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    with pytest.raises(jwt.PyJWTError):
        jwt.decode(forged, public, algorithms=[alg], audience="site/queue")


def test_an_ec_key_of_another_curve_signs_with_its_own_length() -> None:
    key = LoadedKey("ec-384", "ec", 0, ec.generate_private_key(ec.SECP384R1()))
    token = JwsSigner().sign(CLAIMS, key)
    assert len(jwt.utils.base64url_decode(token.rsplit(".", 1)[1])) == 96


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
