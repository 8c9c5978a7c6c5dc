"""The step the gateway adds to uvicorn's SIGTERM handler (gateway/draining.py)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from gateway import draining
from gateway.draining import on_termination


async def test_a_signal_in_the_middle_of_a_request_does_not_carry_its_request_id() -> None:
    """A signal is handled wherever the main thread is, maybe inside a request's task with
    its request id bound: the ``stopping`` line and the callback must not carry it."""
    chained: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda sig, _frame: chained.append(sig))
    seen: list[dict[str, Any]] = []
    called = asyncio.Event()

    def callback() -> None:
        seen.append(structlog.contextvars.get_contextvars())
        called.set()

    undo = on_termination(callback)
    try:

        async def request() -> None:
            structlog.contextvars.bind_contextvars(request_id="the-request")
            os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs
            await asyncio.sleep(0)

        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            await asyncio.create_task(request())
            await asyncio.wait_for(called.wait(), 5)
    finally:
        undo()
        signal.signal(signal.SIGTERM, previous)
    assert chained == [signal.SIGTERM]  # uvicorn's own handler still runs first
    [line] = [entry for entry in logs if entry["event"] == "stopping"]
    assert "request_id" not in line
    assert seen == [{}]


async def test_a_signal_while_a_log_line_is_written_does_not_wait_on_its_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signal may land while the main thread writes a log line, holding the log
    file's lock (structlog's, not reentrant): a handler that wrote a line itself would
    wait on that lock for ever, and the gateway would never stop (nor log again)."""
    out = io.StringIO()
    writer = structlog.WriteLogger(out)
    monkeypatch.setattr(
        draining,
        "log",
        structlog.wrap_logger(writer, processors=[structlog.processors.JSONRenderer()]),
    )
    lock: threading.Lock = writer._lock
    waited: list[bool] = []

    def watch() -> None:  # frees the lock if the handler is still waiting on it
        time.sleep(2)
        if lock.locked():
            waited.append(True)
            lock.release()

    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    called = asyncio.Event()
    undo = on_termination(called.set)
    try:
        threading.Thread(target=watch, daemon=True).start()
        lock.acquire()  # as a line being written holds it
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs
        if not waited:
            lock.release()
        await asyncio.wait_for(called.wait(), 5)
    finally:
        undo()
        signal.signal(signal.SIGTERM, previous)
    assert waited == []
    assert '"stopping"' in out.getvalue()  # the line is written, from the loop
