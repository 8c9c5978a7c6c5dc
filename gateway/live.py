"""Live updates for the people a gateway pod is streaming to (Server-Sent Events).

Each pod serves only its own clients. For every room one of its clients waits in, it
subscribes to the room's event subjects on NATS (core subscription: it sees each event the
relay publishes) and keeps a small feed:

- an event about one of its own people (admitted, expired, left, ...) is answered at once
  with that person's fresh state;
- any other event (someone ahead left or was admitted) asks for a refresh of everyone's
  position, at most every ``NUDGE_GAP`` seconds;
- every ``IDLE_REFRESH`` seconds everyone is refreshed anyway, and queue tokens past half
  their life are re-signed;
- every ``TOUCH_EVERY`` seconds a refresh also marks everyone seen: an open stream is a
  sign of life, so a background tab whose timers the browser slows keeps its place.

While NATS is away only the periodic refresh runs: updates come, only later.

When the gateway is told to stop (SIGTERM, see gateway/draining.py) every open stream gets
a short ``retry:`` hint and a ``reconnect`` event and is closed: the browser reconnects at
once, to another pod (this one no longer accepts connections), and misses nothing, since a
stream opens with the person's current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import structlog
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import HTTPResponseBodyEvent, Receive, Send

from gateway.caller import Caller
from gateway.line_book import LineBook
from gateway.metrics import GatewayMetrics
from gateway.people import Followed, People
from gateway.schemas import PlaceResponse
from shared.errors import StoreUnavailable, TooManyStreams
from shared.events import SUBJECT_PREFIX
from shared.nats_link import NatsLink
from shared.store import PersonView, RoomStore
from shared.tasks import cancel_and_wait
from shared.tokens import QueueClaims

log = structlog.get_logger("live")

IDLE_REFRESH = 2.0
TOUCH_EVERY = 2.0
NUDGE_GAP = 0.25
KEEPALIVE_SECONDS = 15.0
RETRY_MS = 3000
RECONNECT_RETRY_MS = 250
"""The retry hint a stream closed by a stopping gateway ends with."""
RECONNECT_FRAME = b'retry: %d\nevent: reconnect\ndata: {"reason":"shutdown"}\n\n' % (
    RECONNECT_RETRY_MS
)
KEEPALIVE_FRAME = b": keepalive\n\n"
UNSTARTED_GRACE = 30.0
PERSONAL = frozenset({"admitted", "activated", "completed", "expired", "left"})
FINAL_STATES = frozenset({"active", "completed", "expired", "left"})
"""Nothing more to wait for: the stream says so and closes."""


@dataclass(frozen=True)
class StreamLimits:
    """Streams one gateway process holds open at once: per place, and per client address
    (an address is a /64 for IPv6, see caller.py). One more gets 429 too_many_streams."""

    per_place: int = 4
    per_address: int = 32


MAX_PENDING = 64
"""Frames held for a stalled client; past it the oldest go (the newest state wins)."""


class Told(NamedTuple):
    """What a stream remembers of the last answer it told (all events_for compares): a
    tuple, a third of the dict it was, on every open stream."""

    state: str | None
    room_status: str | None
    position: int | None
    ahead: int | None
    total: int | None
    eta_seconds: int | None
    eta_range: list[int] | None

    @classmethod
    def of(cls, answer: PlaceResponse) -> Told:
        return cls(
            answer.state,
            answer.room_status,
            answer.position,
            answer.ahead,
            answer.total,
            answer.eta_seconds,
            answer.eta_range,
        )


NOTHING_TOLD = Told(None, None, None, None, None, None, None)


@dataclass(eq=False, slots=True)
class Watcher:
    """One open event stream: whose it is, what it was told last, and the frames waiting
    to be written (kept lean: a gateway holds thousands of these)."""

    room: str
    claims: QueueClaims
    token: str
    base_url: str
    address: str = ""
    pending: list[bytes] = field(default_factory=list)
    last: Told = NOTHING_TOLD
    event_seq: int = 0
    final: bool = False
    """The place has ended (or its admission was claimed): the stream closes."""
    closing: bool = False
    """The gateway is stopping: the stream says ``reconnect`` and closes."""
    started: bool = False
    spoke: bool = False
    """Something was written since the hub's last keep-alive tick."""
    opened_at: float = field(default_factory=time.monotonic)
    writer: asyncio.Task[Any] | None = None
    """The task writing the stream, while it waits for news or for the client to go."""
    woken: bool = False
    """``wake()`` has interrupted the writer's wait (the cancellation it takes back)."""

    @property
    def position_id(self) -> str:
        return self.claims.sub

    def push(self, event: str, data: dict[str, Any]) -> None:
        """Add one event, written as a Server-Sent Events frame, and wake the writer."""
        frame = b"event: %b\nid: %d\ndata: %b\n\n" % (
            event.encode(),
            self.event_seq,
            msgspec.json.encode(data),
        )
        self.pending.append(frame)
        if len(self.pending) > MAX_PENDING:  # a stalled client: keep the newest
            del self.pending[0]
        self.wake()

    def wake(self) -> None:
        """Interrupt the writer's wait (see LiveHub.write), if it waits."""
        if self.writer is not None and not self.woken:
            self.woken = True
            self.writer.cancel()


class _Head(msgspec.Struct):
    type: str
    position_id: str | None = None


_head = msgspec.json.Decoder(_Head)


class RoomFeed:
    def __init__(self, hub: LiveHub, room: str) -> None:
        self.hub = hub
        self.room = room
        self.watchers: dict[str, list[Watcher]] = {}
        """Streams by place (a list: a place holds one stream, rarely a few)."""
        self.nudged = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.subscription: Any = None
        self.touched = 0.0

    def add(self, w: Watcher) -> None:
        self.watchers.setdefault(w.position_id, []).append(w)

    def remove(self, w: Watcher) -> bool:
        """Forget a stream; False if it was not held."""
        group = self.watchers.get(w.position_id)
        if group is None or w not in group:
            return False
        group.remove(w)
        if not group:
            del self.watchers[w.position_id]
        return True

    def everyone(self) -> list[Watcher]:
        return [w for group in self.watchers.values() for w in group]

    async def start(self) -> None:
        # a fresh context: the feed outlives the request that started it, so its log lines
        # must not carry that request's id
        self.task = asyncio.create_task(
            self._run(), name=f"feed-{self.room}", context=contextvars.Context()
        )
        await self._subscribe()

    async def _subscribe(self) -> None:
        nc = self.hub.nats.nc
        if nc is None or not nc.is_connected or self.subscription is not None:
            return
        try:
            self.subscription = await nc.subscribe(
                f"{SUBJECT_PREFIX}.{self.room}.>", cb=self._on_event
            )
        except Exception as exc:
            log.warning("live_subscribe_failed", room=self.room, error=repr(exc))

    async def stop(self) -> None:
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()
        task = self.task
        if task is None:
            return
        own = task is asyncio.current_task()  # its last stream never started
        if own:  # it ends at its next await
            self.task = None
            task.cancel()
        else:
            await cancel_and_wait(task)

    async def _on_event(self, msg: Any) -> None:
        try:
            head = _head.decode(msg.data)
        except msgspec.DecodeError:
            return
        if head.type in PERSONAL and head.position_id in self.watchers:
            await self.refresh(list(self.watchers[head.position_id]))
        self.nudged.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.nudged.wait(), timeout=IDLE_REFRESH)
            now = asyncio.get_running_loop().time()
            touch = now - self.touched >= TOUCH_EVERY  # an open stream is a sign of life
            if touch:
                self.touched = now
            self.nudged.clear()
            if self.subscription is None:
                await self._subscribe()
            await self.hub.drop_unstarted(self)
            try:
                await self.refresh(self.everyone(), touch=touch, from_memory=True)
            except Exception as exc:
                log.warning("live_refresh_failed", room=self.room, error=repr(exc))
            await asyncio.sleep(NUDGE_GAP)

    async def refresh(
        self, watchers: list[Watcher], *, touch: bool = False, from_memory: bool = False
    ) -> None:
        """Push everyone's fresh state. ``from_memory``: people waiting are answered from
        the gateway's copy of the line (the periodic refresh); an event about one person
        always asks the store, which has already made that change."""
        if not watchers:
            return
        views: dict[str, PersonView] = {}
        lines = self.hub.lines if from_memory else None
        if lines is not None:
            for w in watchers:
                view = lines.view(self.room, w.claims)
                if view is not None:
                    views[w.position_id] = view
            if touch and views:
                lines.seen(self.room, list(views))
        rest = sorted({w.position_id for w in watchers} - views.keys())
        with contextlib.suppress(StoreUnavailable):  # the next refresh tries again
            views.update(await self.hub.store.statuses(self.room, rest, touch=touch))
        for w in watchers:
            view = views.get(w.position_id)
            if view is not None:
                await self.hub.send_state(w, view)


class LiveHub:
    """The event streams open on this gateway, grouped by room."""

    def __init__(
        self,
        people: People,
        store: RoomStore,
        nats: NatsLink,
        metrics: GatewayMetrics,
        lines: LineBook | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        self.people = people
        self.store = store
        self.nats = nats
        self.metrics = metrics
        self.lines = lines
        self.limits = limits or StreamLimits()
        self.feeds: dict[str, RoomFeed] = {}
        self.by_address: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self.draining = False
        self.writing: set[Watcher] = set()
        """Streams whose response has started (what drain() tells to reconnect)."""
        self._keepalive: asyncio.Task[None] | None = None

    async def open(self, room: str, start: Followed, caller: Caller, last_id: str) -> Watcher:
        """A new stream from where the person stands; a ``Last-Event-ID`` equal to the
        current one skips the unchanged opening state. Past the limits: 429."""
        watcher = Watcher(  # one copy of the texts many streams share (sys.intern)
            room=sys.intern(room),
            claims=start.claims,
            token=start.token,
            base_url=sys.intern(caller.base_url),
            address=sys.intern(caller.address_key),
        )
        await self.send_state(watcher, start.view)
        if last_id == str(start.view.event_seq):
            watcher.pending.clear()  # the client has this state already
        if not watcher.final:  # an ended place is told so once; nothing to follow
            await self.watch(watcher)
        return watcher

    async def write(self, watcher: Watcher, send: Send, receive: Receive) -> None:
        """Write the stream until the place ends or the client goes: the frames as they
        come, and the hub's keep-alive comments. Kept lean, since a gateway holds
        thousands: the request's own task, no timer, no second task. Between writes it
        waits in ``receive()`` for the client to go; news interrupts that wait the way
        ``asyncio.timeout`` does, by cancelling the task and taking the cancellation
        back (``Task.uncancel``), so a real cancellation still ends the stream."""
        watcher.started = True
        self.metrics.sse_open.inc()
        self.writing.add(watcher)
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(
                self._keep_alive(), name="sse-keepalive", context=contextvars.Context()
            )
        if self.draining:
            close_for_reconnect(watcher)
        task = asyncio.current_task()
        assert task is not None
        try:
            await send(_body(b": waitroom\nretry: %d\n\n" % RETRY_MS))
            while True:
                while watcher.pending:  # frames may come while a write waits
                    frames = b"".join(watcher.pending)
                    watcher.pending.clear()
                    watcher.spoke = True
                    await send(_body(frames))
                if watcher.final or watcher.closing:
                    break
                if await _client_gone(watcher, task, receive):
                    break
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.writer = None
            self.writing.discard(watcher)
            self.metrics.sse_open.dec()
            await self.unwatch(watcher)

    async def _keep_alive(self) -> None:
        """One tick for every stream: each that wrote nothing since the last tick gets a
        keep-alive comment, so no stream is quiet for more than ``KEEPALIVE_SECONDS``."""
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS / 2)
            for watcher in self.writing:
                if not watcher.spoke and not watcher.pending:  # (a stalled client: no pile)
                    watcher.pending.append(KEEPALIVE_FRAME)
                    watcher.wake()
                watcher.spoke = False

    def drain(self) -> int:
        """The gateway is stopping: tell every open stream to reconnect (elsewhere) and
        close it; streams that start from now on are told so at once. Answers how many."""
        self.draining = True
        for watcher in list(self.writing):
            close_for_reconnect(watcher)
        log.info("streams_told_to_reconnect", streams=len(self.writing))
        return len(self.writing)

    async def drop_unstarted(self, feed: RoomFeed) -> None:
        """Forget streams whose response never started (the client went before it did)."""
        now = time.monotonic()
        for w in feed.everyone():
            if not w.started and now - w.opened_at > UNSTARTED_GRACE:
                await self.unwatch(w)

    async def watch(self, w: Watcher) -> None:
        async with self._lock:
            feed = self.feeds.get(w.room)
            held = len(feed.watchers.get(w.position_id, ())) if feed is not None else 0
            if held >= self.limits.per_place or (
                w.address and self.by_address[w.address] >= self.limits.per_address
            ):
                raise TooManyStreams()
            if feed is None:
                feed = self.feeds[w.room] = RoomFeed(self, w.room)
                await feed.start()
            feed.add(w)
            if w.address:
                self.by_address[w.address] += 1

    async def unwatch(self, w: Watcher) -> None:
        async with self._lock:
            feed = self.feeds.get(w.room)
            if feed is None:
                return
            if not feed.remove(w):
                return
            if w.address:
                self.by_address[w.address] -= 1
                if self.by_address[w.address] <= 0:
                    del self.by_address[w.address]
            if not feed.watchers:
                del self.feeds[w.room]
                await feed.stop()

    async def close(self) -> None:
        if self._keepalive is not None:
            await cancel_and_wait(self._keepalive)
            self._keepalive = None
        for feed in list(self.feeds.values()):
            await feed.stop()
        self.feeds.clear()

    async def send_state(self, w: Watcher, view: PersonView) -> None:
        """Push what changed for this person since the last push."""
        token, w.claims = await self.people.kept_token(w.room, w.token, w.claims, view)
        if token != w.token:
            w.token = token
            w.push("token", {"token": token})
        answer = await self.people.answer(w.room, view, linked=w, go_token=w.token)
        w.event_seq = max(w.event_seq, view.event_seq)
        for event, data in events_for(answer, w.last):
            w.push(event, data)
        w.last = Told.of(answer)
        w.final = view.state in FINAL_STATES
        if w.final:
            w.wake()


class EventStream(ASGIStreamingResponse):
    """The response of an event stream: Litestar's streaming response runs a task group
    per stream to notice a disconnect; this one writes from the watcher directly."""

    def __init__(self, hub: LiveHub, watcher: Watcher, headers: dict[str, str]) -> None:
        super().__init__(
            iterator=(), media_type="text/event-stream", headers=headers, status_code=200
        )
        self.hub = hub
        self.watcher = watcher

    async def send_body(self, send: Send, receive: Receive) -> None:
        await self.hub.write(self.watcher, send, receive)


def close_for_reconnect(watcher: Watcher) -> None:
    """Queue the ``reconnect`` frame (after whatever is pending) and end the stream."""
    if watcher.closing:
        return
    watcher.closing = True
    watcher.pending.append(RECONNECT_FRAME)
    watcher.wake()


def _body(data: bytes) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": data, "more_body": True}


async def _client_gone(watcher: Watcher, task: asyncio.Task[Any], receive: Receive) -> bool:
    """Wait until the client goes (True) or ``watcher.wake()`` interrupts (False)."""
    watcher.woken = False
    watcher.writer = task
    try:
        message = await receive()
    except asyncio.CancelledError:
        if not watcher.woken or task.uncancel() > 0:
            raise  # a cancellation of the stream itself (not only the wake-up)
        return False
    finally:
        watcher.writer = None
    if message["type"] == "http.disconnect":
        return True
    watcher.woken = False
    return False


def events_for(answer: PlaceResponse, last: Told) -> list[tuple[str, dict[str, Any]]]:
    """The stream events that tell a client about ``answer``, given what it was told last."""
    out: list[tuple[str, dict[str, Any]]] = []
    if answer.room_status != last.room_status:
        out.append(("room", {"status": answer.room_status}))
    if answer.state == last.state and answer.state != "waiting":
        return out
    if answer.state == "waiting":
        now = {
            "state": "waiting",
            "position": answer.position,
            "ahead": answer.ahead,
            "total": answer.total,
            "eta_seconds": answer.eta_seconds,
            "eta_range": answer.eta_range,
        }
        if Told.of(answer) != last._replace(room_status=answer.room_status):
            out.append(("position", now))
    elif answer.state == "admitted":
        out.append(
            (
                "admitted",
                {
                    "state": "admitted",
                    "redirect_url": answer.redirect_url,
                    "access_token": answer.access_token,
                    "claim_deadline": answer.claim_deadline,
                },
            )
        )
    elif answer.state == "expired":
        out.append(("expired", {"state": "expired", "reason": answer.reason}))
    else:
        out.append(("state", {"state": answer.state, "reason": answer.reason}))
    return out
