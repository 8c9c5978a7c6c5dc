"""Signed invites: ``<id>.<mac>``.

The id names the invite in the room's store, where its priority, uses, expiry and
revocation live and where the join script counts its uses atomically. The mac (HMAC-SHA256
over the room and the id, with a key derived from the deployment's secret salt) binds the
invite to its room and lets a gateway refuse a forged or mistyped one without asking the
store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from shared.errors import InviteInvalid

INVITE_ID = re.compile(r"^[A-Za-z0-9_-]{12}$")
_MAC_CHARS = 22  # 132 bits of the mac, base64url


class InviteSigner:
    def __init__(self, salt: str) -> None:
        self._key = hmac.new(salt.encode(), b"waitroom invites", hashlib.sha256).digest()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(9)

    def _mac(self, room: str, invite_id: str) -> str:
        digest = hmac.new(self._key, f"{room}\n{invite_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:_MAC_CHARS]

    def sign(self, room: str, invite_id: str) -> str:
        return f"{invite_id}.{self._mac(room, invite_id)}"

    def check(self, room: str, invite: str) -> str:
        """The id of a well-signed invite of this room; ``invite_invalid`` otherwise."""
        invite_id, _, mac = invite.partition(".")
        if not INVITE_ID.match(invite_id) or not hmac.compare_digest(
            mac.encode(), self._mac(room, invite_id).encode()
        ):
            raise InviteInvalid()
        return invite_id
