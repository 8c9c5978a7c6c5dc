"""Redis clients for waitroom: a blocking pool, so a burst of requests waits briefly for a
connection instead of failing, and short timeouts, so a dead server is noticed quickly."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def connect(url: str, *, max_connections: int = 128, wait: float = 5.0) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it
