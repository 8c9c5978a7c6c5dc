"""``/metrics`` on a port of its own (WAITROOM_METRICS_PORT), without a token: a small
asyncio server in the process's own loop, so a scrape reads the same registry (and the
same store client) as the rest of the process and never blocks it.

It answers ``GET /metrics`` (and ``HEAD``) with Prometheus text, anything else with 404,
one request per connection. Keep the port off the load balancer: only Prometheus should
reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger("metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEAD_LIMIT = 16 * 1024
READ_TIMEOUT = 10.0

Render = Callable[[], Awaitable[bytes]]


def _answer(status: str, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    lines = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return lines.encode() + (b"" if head else body)


NOT_FOUND = b'{"error": {"code": "not_found", "message": "No such resource."}}'


class MetricsServer:
    """Serves ``render()`` at ``/metrics`` on ``host:port``."""

    def __init__(self, render: Render, host: str, port: int) -> None:
        self.render = render
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port)
        log.info("metrics_port_open", host=self.host, port=self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, path = _request_line(head)
            if method in ("GET", "HEAD") and path == "/metrics":
                body = await self.render()
                answer = _answer("200 OK", body, CONTENT_TYPE, head=method == "HEAD")
            else:
                answer = _answer("404 Not Found", NOT_FOUND, "application/json")
            writer.write(answer)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except Exception as exc:  # a failed render: the scrape fails, the process goes on
            log.warning("metrics_render_failed", error=repr(exc))
            with contextlib.suppress(OSError):
                writer.write(_answer("500 Internal Server Error", b"", "text/plain"))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _request_line(head: bytes) -> tuple[str, str]:
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = first.split(" ")
    if len(parts) != 3:
        return "", ""
    method, target, _ = parts
    return method, target.split("?", 1)[0]


@contextlib.asynccontextmanager
async def metrics_port(render: Render, host: str, port: int) -> AsyncIterator[None]:
    """Serve ``/metrics`` on ``port`` while the block runs (nothing when port is 0)."""
    if not port:
        yield
        return
    server = MetricsServer(render, host, port)
    try:
        await server.start()
    except OSError as exc:
        # several server processes of one gateway (WAITROOM_WORKERS) share the settings:
        # the first binds the port, the others go on without it
        log.warning("metrics_port_unavailable", port=port, error=repr(exc))
        yield
        return
    try:
        yield
    finally:
        await server.close()
