"""Redis clients for waitroom: a blocking pool, so a burst of requests waits briefly for a
connection instead of failing; short timeouts, so a dead server is noticed quickly; and a
retry on a broken connection, so the first call after the server restarts succeeds.

A gateway's per-request scripts, and a worker's short scripts and per-tick reads, go over
one pipelined connection of their own instead (shared/store/lane.py), which keeps the same
promises.

Only connection errors are retried, not timeouts: a script that timed out may have run.
(redis-py's ``Retry`` retries timeouts too unless told which errors it retries.)
Every state-changing script is safe to repeat after a broken connection (the place id,
fence or state it checks makes a second run a no-op or a clean error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def connect(
    url: str, *, tls_ca: Path | None = None, max_connections: int = 128, wait: float = 5.0
) -> Redis:
    """A client for ``url``: credentials ride in it (``redis://user:password@host``);
    ``rediss://`` is TLS, checked against ``tls_ca`` (else the system's CAs)."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries=2,
            supported_errors=(RedisConnectionError,),
        ),
        retry_on_error=[RedisConnectionError],
        **tls_options(url, tls_ca),
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it


def tls_options(url: str, tls_ca: Path | None) -> dict[str, Any]:
    """Connection options for a TLS (``rediss://``) URL with a CA of its own."""
    if tls_ca is None or not url.startswith("rediss://"):
        return {}
    return {"ssl_ca_certs": str(tls_ca)}
