"""Settings for every part of waitroom, read from the environment once, in ``main``.

Each part takes a ``Settings`` and never looks at ``os.environ`` itself, so tests build
their own settings and several apps with different settings can live in one process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self


class SettingsError(ValueError):
    """An environment variable holds a value waitroom cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SettingsError(f"WAITROOM_TRUSTED_PROXIES holds {part!r}, not a CIDR") from None
    return tuple(nets)


@dataclass(frozen=True)
class RateLimits:
    """Per-client request limits, in the notation of the ``limits`` library."""

    enabled: bool = True
    enqueue: str = "10/minute"
    status: str = "60/minute"
    heartbeat: str = "30/minute"
    session: str = "100/minute"
    admin_failures: str = "10/minute"
    """Failed admin-key attempts per address; past it, 429 whatever key is tried."""


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    nats_url: str = "nats://127.0.0.1:4222"
    keys_dir: Path = Path(".waitroom/keys")
    admin_key: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    public_url: str = ""
    issuer: str = "waitroom"
    audience: str = "waitroom-protected-site"
    queue_token_ttl: int = 300
    queue_token_alg: str = "RS256"  # noqa: S105 (an algorithm name, not a secret)
    token_binding: bool = False
    ip_hash_salt: str = "waitroom"
    max_body_bytes: int = 16_384
    rate_limits: RateLimits = field(default_factory=RateLimits)
    stream_name: str = "WAITROOM"
    stream_duplicate_window: int = 7_200
    stream_replicas: int = 1
    outbox_max: int = 100_000
    admission_tick_ms: int = 100
    heartbeat_tick_ms: int = 500
    lease_ms: int = 3_000
    ended_retention: int = 3_600
    relay_enabled: bool = True
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    log_json: bool = True
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Build settings from an environment mapping (``os.environ`` in ``main``).

        A variable set to the empty string counts as unset."""
        env = {k: v for k, v in environ.items() if k.startswith("WAITROOM_") and v != ""}
        base = cls()
        alg = env.get("WAITROOM_QUEUE_TOKEN_ALG", base.queue_token_alg)
        if alg not in ("RS256", "ES256"):
            raise SettingsError("WAITROOM_QUEUE_TOKEN_ALG must be RS256 or ES256")
        limits = RateLimits(
            enabled=_bool(env, "WAITROOM_RATE_LIMITS", True),
            enqueue=env.get("WAITROOM_LIMIT_ENQUEUE", RateLimits.enqueue),
            status=env.get("WAITROOM_LIMIT_STATUS", RateLimits.status),
            heartbeat=env.get("WAITROOM_LIMIT_HEARTBEAT", RateLimits.heartbeat),
            session=env.get("WAITROOM_LIMIT_SESSION", RateLimits.session),
            admin_failures=env.get("WAITROOM_LIMIT_ADMIN_FAILURES", RateLimits.admin_failures),
        )
        return cls(
            redis_url=env.get("WAITROOM_REDIS_URL", base.redis_url),
            nats_url=env.get("WAITROOM_NATS_URL", base.nats_url),
            keys_dir=Path(env.get("WAITROOM_KEYS_DIR", str(base.keys_dir))),
            admin_key=env.get("WAITROOM_ADMIN_KEY", ""),
            host=env.get("WAITROOM_HOST", base.host),
            port=_int(env, "WAITROOM_PORT", base.port),
            trusted_proxies=_networks(env.get("WAITROOM_TRUSTED_PROXIES", "")),
            public_url=env.get("WAITROOM_PUBLIC_URL", "").rstrip("/"),
            issuer=env.get("WAITROOM_ISSUER", base.issuer),
            audience=env.get("WAITROOM_AUDIENCE", base.audience),
            queue_token_ttl=_int(env, "WAITROOM_QUEUE_TOKEN_TTL", base.queue_token_ttl, 30),
            queue_token_alg=alg,
            token_binding=_bool(env, "WAITROOM_TOKEN_BINDING", False),
            ip_hash_salt=env.get("WAITROOM_IP_HASH_SALT", base.ip_hash_salt),
            max_body_bytes=_int(env, "WAITROOM_MAX_BODY_BYTES", base.max_body_bytes, 256),
            rate_limits=limits,
            stream_name=env.get("WAITROOM_STREAM", base.stream_name),
            stream_duplicate_window=_int(
                env, "WAITROOM_DUPLICATE_WINDOW", base.stream_duplicate_window, 1
            ),
            stream_replicas=_int(env, "WAITROOM_STREAM_REPLICAS", base.stream_replicas, 1),
            outbox_max=_int(env, "WAITROOM_OUTBOX_MAX", base.outbox_max, 1),
            admission_tick_ms=_int(env, "WAITROOM_ADMISSION_TICK_MS", base.admission_tick_ms, 5),
            heartbeat_tick_ms=_int(env, "WAITROOM_HEARTBEAT_TICK_MS", base.heartbeat_tick_ms, 5),
            lease_ms=_int(env, "WAITROOM_LEASE_MS", base.lease_ms, 100),
            ended_retention=_int(env, "WAITROOM_ENDED_RETENTION", base.ended_retention, 1),
            relay_enabled=_bool(env, "WAITROOM_RELAY", True),
            instance=env.get("WAITROOM_INSTANCE", "") or base.instance,
            log_json=_bool(env, "WAITROOM_LOG_JSON", True),
            log_level=env.get("WAITROOM_LOG_LEVEL", base.log_level).lower(),
        )

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and ``waitroom up`` use it)."""
        return replace(self, **changes)  # type: ignore[arg-type]
