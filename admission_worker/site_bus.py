"""Visits the protected site ends over NATS: ``waitroom-site.<room>.completed`` and
``waitroom-site.<room>.failed``, JSON ``{"token": "<access token>"}``.

Either frees the visit's units at once, as ``POST /v1/session/complete`` does (a failed
checkout is over too). The admission workers subscribe in one queue group, so each message
is handled by one replica. A message is believed only for what its access token proves:
the token is checked against the keys in ``WAITROOM_KEYS_DIR`` (the gateways' own) and
must be an access token of the room the subject names. Forged, expired, queue-typed or
another room's tokens, and messages that are not that JSON, free nothing: they are logged
and counted (``waitroom_site_messages{outcome="rejected"}``).

Core NATS delivers at most once: a message sent while no worker listens, or while the data
store is away, is lost, and that visit ends when its session does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter

from shared.errors import WaitroomError
from shared.metric_names import BY_NAME
from shared.nats_client import subscriptions_on_server
from shared.nats_link import NatsLink
from shared.store import RoomStore
from shared.tokens import TokenService

log = structlog.get_logger("site_bus")

SUBJECT_PREFIX = "waitroom-site"
KINDS = ("completed", "failed")
QUEUE_GROUP = "waitroom-site-workers"
MAX_MESSAGE_BYTES = 16_384
MESSAGES = BY_NAME["waitroom_site_messages"]


class SiteMessage(msgspec.Struct, forbid_unknown_fields=False):
    token: str


_decoder = msgspec.json.Decoder(SiteMessage)


def subject(room: str, kind: str) -> str:
    return f"{SUBJECT_PREFIX}.{room}.{kind}"


class SiteBus:
    def __init__(
        self,
        store: RoomStore,
        tokens: TokenService,
        link: NatsLink,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.link = link
        self.registry = registry or CollectorRegistry()
        self.messages = Counter(
            MESSAGES.name,
            MESSAGES.help,
            MESSAGES.labels,
            registry=self.registry,
        )
        self._subscriptions: list[Any] = []
        self.listening = asyncio.Event()
        """Set once the subscriptions are on the server: a report sent from then on is
        heard."""

    def count(self, kind: str, outcome: str) -> None:
        self.messages.labels(kind=kind, outcome=outcome).inc()

    def counted(self, outcome: str) -> float:
        """Messages with this outcome so far, of either kind (for tests and logs)."""
        return sum(
            sample.value
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe once NATS is there (nats-py subscribes again after a reconnect) and
        listen until ``stop``."""
        while not stop.is_set() and not self._subscriptions:
            nc = self.link.nc
            if nc is not None and nc.is_connected:
                self._subscriptions = [
                    await nc.subscribe(
                        subject("*", kind), queue=QUEUE_GROUP, cb=self._handler(kind)
                    )
                    for kind in KINDS
                ]
                try:
                    await subscriptions_on_server(nc)
                except Exception as exc:  # NATS gone meanwhile: nats-py subscribes again
                    log.warning("site_bus_unconfirmed", error=repr(exc))
                self.listening.set()
                log.info("site_bus_listening", subjects=f"{SUBJECT_PREFIX}.*.{{completed,failed}}")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)
        await stop.wait()
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subscriptions.clear()

    def _handler(self, kind: str) -> Any:
        async def handle(msg: Any) -> None:
            await self.handle(msg.subject, kind, msg.data)

        return handle

    async def handle(self, subject_name: str, kind: str, data: bytes) -> str:
        """Act on one message; answers its outcome: ended (the visit is over, its units
        free), over (it had ended another way before), rejected (nothing it says can be
        believed) or failed (the data store is away)."""
        room = subject_name.split(".")[1] if subject_name.count(".") == 2 else ""
        outcome, reason, sub = "rejected", "", ""
        try:
            if len(data) > MAX_MESSAGE_BYTES:
                raise ValueError("message too large")
            token = _decoder.decode(data).token
            claims = self.tokens.verify_access(token, room)
            sub = claims.sub
            view = await self.store.complete(room, claims.sub)
            outcome = "ended" if view.state == "completed" else "over"
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            reason = f"not_json: {exc}"[:120]
        except WaitroomError as exc:
            reason = exc.code
            if exc.status >= 500:
                outcome = "failed"  # the store is away: the visit ends with its session
            elif exc.code in ("position_not_found", "room_not_found"):
                outcome = "over"
        self.count(kind, outcome)
        if outcome == "rejected":
            log.warning("site_message_rejected", subject=subject_name, reason=reason)
        elif outcome == "failed":
            log.warning("site_message_failed", subject=subject_name, reason=reason)
        else:
            log.info("site_message", room=room, kind=kind, position_id=sub, outcome=outcome)
        return outcome
