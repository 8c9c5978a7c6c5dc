"""Scale-down: what a gateway does the moment it is told to stop.

uvicorn handles SIGTERM/SIGINT itself: it stops accepting connections, lets the requests
in hand finish (for up to ``timeout_graceful_shutdown``) and only then runs the app's
lifespan shutdown. Event streams never finish by themselves, so they would be held open
until that deadline and then cut. ``on_termination`` adds a step to uvicorn's own signal
handler (installed before the app starts): the hub tells every stream to reconnect and
closes it at once, so the browsers move to another pod within moments.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger("gateway")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_termination(callback: Callable[[], Any]) -> Callable[[], None]:
    """Run ``callback`` in this event loop when SIGTERM or SIGINT arrives, after the
    handler already installed for it (uvicorn's, which begins its graceful shutdown).
    Chains only onto a Python handler: without one (not served by uvicorn, or not in the
    main thread) it does nothing. Answers a function that takes the step away again."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    chained = {sig: handler for sig, handler in previous.items() if callable(handler)}

    def handle(sig: int, frame: FrameType | None) -> None:
        chained[signal.Signals(sig)](sig, frame)
        # A signal is handled between any two steps of the main thread: maybe while it
        # writes a log line, holding the log file's lock (structlog's, not reentrant), so
        # a line written here would wait on it for ever; maybe in the middle of a
        # request's task, whose context (its request id) is not this step's. So nothing
        # is done here but handing the step to the loop, in a context of its own.
        loop.call_soon_threadsafe(stopping, signal.Signals(sig), context=contextvars.Context())

    def stopping(sig: signal.Signals) -> None:
        log.info("stopping", signal=sig.name)
        callback()

    for sig in chained:
        signal.signal(sig, handle)

    def undo() -> None:
        for sig, handler in chained.items():
            if signal.getsignal(sig) is handle:
                signal.signal(sig, handler)

    return undo
