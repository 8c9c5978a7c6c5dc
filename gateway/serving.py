"""How a gateway process is served: the uvicorn options every gateway uses, in one place
(``python -m gateway`` and the tests' servers alike)."""

from __future__ import annotations

from typing import Any

from gateway.slow_clients import header_deadline_protocol
from shared.settings import Settings

KEEP_ALIVE_SECONDS = 5


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        # a request head must arrive in time (uvicorn would wait for ever)
        "http": header_deadline_protocol(settings.header_timeout, settings.max_body_bytes),
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        # only WAITROOM_TRUSTED_PROXIES decides whose X-Forwarded-* is believed (uvicorn
        # would trust loopback peers by default, and rewrite the client address itself)
        "proxy_headers": False,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "backlog": 4096,
    }
