"""Compact JWS signing for our own tokens (RS256 and ES256), the few steps it takes.

PyJWT's ``encode`` is generic: it checks the key and the algorithm, builds and serialises a
header, JSON-encodes the claims with the standard library and re-encodes the ECDSA
signature, on every call. For a join that is a fifth of the gateway's own work besides the
signature. Here the header segment is made once per key, the claims are encoded with
msgspec, and the key signs the bytes. The tokens are ordinary JWS (RFC 7515 compact form,
``typ: JWT``): PyJWT and every other library verifies them as before.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from shared.keyring import LoadedKey

ALGORITHM = {"rsa": "RS256", "ec": "ES256"}
_encode = msgspec.json.Encoder().encode
_RS256 = (padding.PKCS1v15(), hashes.SHA256())
_ES256 = ec.ECDSA(hashes.SHA256())


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class JwsSigner:
    """Signs claims with a loaded key; the header segment of each key is kept."""

    def __init__(self) -> None:
        self._heads: dict[str, bytes] = {}

    def _head(self, key: LoadedKey) -> bytes:
        head = self._heads.get(key.kid)
        if head is None:
            header = {"alg": ALGORITHM[key.kind], "kid": key.kid, "typ": "JWT"}
            head = self._heads[key.kid] = b64url(_encode(header))
        return head

    def sign(self, claims: dict[str, Any], key: LoadedKey) -> str:
        signing_input = self._head(key) + b"." + b64url(_encode(claims))
        private = key.private
        if isinstance(private, rsa.RSAPrivateKey):
            signature = private.sign(signing_input, *_RS256)
        else:
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            r, s = decode_dss_signature(private.sign(signing_input, _ES256))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # P-256 (keyring.py)
        return (signing_input + b"." + b64url(signature)).decode("ascii")
