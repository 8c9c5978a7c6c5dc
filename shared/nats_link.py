"""A NATS connection that may come and go: connects with backoff, logs every state change,
declares the event stream, and drains on close. Callers ask for JetStream and get None
while NATS is away, and carry on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared import nats_client
from shared.events import stream_subjects
from shared.js_publish import BatchPublisher
from shared.settings import Settings

log = structlog.get_logger("nats")


@dataclass(frozen=True)
class StreamLimits:
    """Retention limits waitroom sets on the stream; 0 leaves the stream's own as it is
    (an operator may set them with the nats CLI: they are never reset here)."""

    max_age: int = 0
    max_bytes: int = 0


async def ensure_stream(
    js: JetStreamContext,
    name: str,
    duplicate_window: int,
    replicas: int = 1,
    limits: StreamLimits | None = None,
) -> None:
    """Declare the stream, or bring what waitroom owns of its config up to date (its
    subjects, the duplicate window, limits given here); everything else an operator set
    is kept. Idempotent."""
    limits = limits or StreamLimits()
    try:
        config = (await js.stream_info(name)).config
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=stream_subjects(),
                storage=StorageType.FILE,
                duplicate_window=float(duplicate_window),
                num_replicas=replicas,
                max_age=float(limits.max_age) if limits.max_age else None,
                max_bytes=limits.max_bytes or None,
            )
        )
        return
    subjects = sorted(set(config.subjects or []) | set(stream_subjects()))
    max_age = float(limits.max_age) if limits.max_age else config.max_age
    max_bytes = limits.max_bytes or config.max_bytes
    if (
        subjects == sorted(config.subjects or [])
        and float(config.duplicate_window or 0) == float(duplicate_window)
        and max_age == config.max_age
        and max_bytes == config.max_bytes
    ):
        return
    await js.update_stream(
        dataclasses.replace(
            config,
            subjects=subjects,
            duplicate_window=float(duplicate_window),
            max_age=max_age,
            max_bytes=max_bytes,
        )
    )


def connect_options(tls_ca: Path | None, creds: Path | None) -> dict[str, Any]:
    """TLS and credentials for ``nats.connect``. A token or user and password ride in the
    server URLs (``tls://user:password@host:4222``); ``tls://`` URLs are TLS, checked
    against ``tls_ca`` (else the system's CAs); ``creds`` is a user credentials file."""
    options: dict[str, Any] = {}
    if tls_ca is not None:
        options["tls"] = ssl.create_default_context(cafile=str(tls_ca))
    if creds is not None:
        options["user_credentials"] = str(creds)
    return options


class NatsLink:
    def __init__(
        self,
        url: str,
        *,
        stream: str,
        duplicate_window: int,
        name: str,
        replicas: int = 1,
        limits: StreamLimits | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """``options``: TLS and credentials for nats.connect (see connect_options)."""
        self.options = options or {}
        self.url = url
        self.servers = [u.strip() for u in url.split(",") if u.strip()]
        self.stream = stream
        self.duplicate_window = duplicate_window
        self.replicas = replicas
        self.limits = limits or StreamLimits()
        self.name = name
        self.generation = 0
        """Rises on every (re)connection: what was read from the stream may be stale."""
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self._publisher: BatchPublisher | None = None
        self._publisher_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, name: str) -> NatsLink:
        return cls(
            settings.nats_url,
            stream=settings.stream_name,
            duplicate_window=settings.stream_duplicate_window,
            replicas=settings.stream_replicas,
            limits=StreamLimits(settings.stream_max_age, settings.stream_max_bytes),
            name=f"{name}-{settings.instance}",
            options=connect_options(settings.nats_tls_ca, settings.nats_creds),
        )

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def start(self) -> None:
        """Begin connecting in the background (returns at once)."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect_loop(), name="nats-connect")

    async def _connect_loop(self) -> None:
        delay = 0.1
        while not self._closed:
            nc: Client | None = None
            try:
                nc = await nats_client.connect(
                    servers=self.servers,
                    name=self.name,
                    **self.options,
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
                js = nc.jetstream()
                await ensure_stream(
                    js, self.stream, self.duplicate_window, self.replicas, self.limits
                )
            except Exception as exc:
                log.warning("nats_connect_failed", url=self.url, error=repr(exc), retry_in=delay)
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            self.nc, self.js = nc, js
            self.generation += 1
            log.info("nats_connected", url=self.url)
            return

    async def jetstream(self) -> JetStreamContext | None:
        if self.js is None or not self.connected:
            self.start()
            return None
        return self.js

    async def publisher(self) -> BatchPublisher | None:
        """The connection's batch publisher (shared/js_publish.py), or None while NATS is
        away."""
        nc = self.nc
        if nc is None or not self.connected:
            self.start()
            return None
        async with self._publisher_lock:
            if self._publisher is None or self._publisher.nc is not nc:
                self._publisher = await BatchPublisher(nc).start()
            return self._publisher

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats_error", error=repr(exc))

    async def _on_disconnected(self) -> None:
        log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("nats_reconnected")
        self.generation += 1
        if self.js is not None:
            try:
                await ensure_stream(
                    self.js, self.stream, self.duplicate_window, self.replicas, self.limits
                )
            except Exception as exc:
                log.warning("nats_stream_declare_failed", error=repr(exc))

    async def _on_closed(self) -> None:
        log.info("nats_closed")

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self.nc is not None and not self.nc.is_closed:
            # not wait_for: on its timeout it waits for the drain to take the cancellation,
            # and a drain that swallows it (see shared/tasks.py) held a gateway's shutdown
            drain = asyncio.ensure_future(self.nc.drain())
            await asyncio.wait([drain], timeout=5)
            if drain.done() and not drain.cancelled() and drain.exception() is None:
                return
            error = repr(drain.exception()) if drain.done() and not drain.cancelled() else "timeout"
            log.warning("nats_drain_failed", error=error)
            closing = asyncio.ensure_future(self.nc.close())
            await asyncio.wait([closing], timeout=5)
            for task in (drain, closing):
                task.cancel()
