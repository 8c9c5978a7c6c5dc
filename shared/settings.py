"""Settings for every part of waitroom, read from the environment once, in ``main``.

Each part takes a ``Settings`` and never looks at ``os.environ`` itself, so tests build
their own settings and several apps with different settings can live in one process.

Every setting is declared once, below, as a field that names its variable, its parser, a
one-line help and the parts that read it (see shared/env_settings.py). ``from_env``, each
part's ``--help`` and the README's configuration table come from these declarations:
after adding or changing one, run ``python -m shared.settings --readme``.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import Field, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from shared.env_settings import (
    EnvSettings,
    Network,
    SettingsError,
    Var,
    boolean,
    choice,
    group,
    host_names,
    integer,
    networks,
    number,
    path,
    pattern,
    rate,
    setting,
    setting_made,
    shown_default,
    text,
    url,
    url_list,
    variables,
)

__all__ = ["DemoSettings", "Part", "RateLimits", "Settings", "SettingsError"]


class Part(StrEnum):
    """The parts of waitroom that read settings: each one's ``--help`` lists its own."""

    GATEWAY = "gateway"
    ADMISSION = "admission worker"
    HEARTBEAT = "heartbeat worker"
    UP = "waitroom up"
    KEYS = "waitroom keys"
    RECOVER = "waitroom recover"
    DIGEST = "waitroom digest"
    PROBE = "waitroom probe"
    AUDIT = "waitroom audit"
    DEMO = "demo site"


GATEWAY = (Part.GATEWAY,)
WORKERS = (Part.ADMISSION, Part.HEARTBEAT)
SERVERS = (Part.GATEWAY, *WORKERS)
COMMANDS = (Part.UP, Part.KEYS, Part.RECOVER, Part.DIGEST, Part.PROBE, Part.AUDIT)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


MIN_KEY_LENGTH = 24


def long_key(raw: str) -> str:
    """A shared secret: at least ``MIN_KEY_LENGTH`` characters."""
    if len(raw) < MIN_KEY_LENGTH:
        raise ValueError(
            f"needs at least {MIN_KEY_LENGTH} characters; make one with `openssl rand -base64 32`"
        )
    return raw


def _host_and_process() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class RateLimits:
    """Per-client request limits, in the notation of the ``limits`` library."""

    enabled: bool = setting(
        "WAITROOM_RATE_LIMITS", True, boolean, "per-client limits, shared by all gateways", GATEWAY
    )
    enqueue: str = setting(
        "WAITROOM_LIMIT_ENQUEUE", "10/minute", rate, "joins per client address", GATEWAY
    )
    status: str = setting(
        "WAITROOM_LIMIT_STATUS", "60/minute", rate, "status calls per queue token", GATEWAY
    )
    heartbeat: str = setting(
        "WAITROOM_LIMIT_HEARTBEAT", "30/minute", rate, "heartbeats per queue token", GATEWAY
    )
    session: str = setting(
        "WAITROOM_LIMIT_SESSION", "100/minute", rate, "session calls per access token", GATEWAY
    )
    admin_failures: str = setting(
        "WAITROOM_LIMIT_ADMIN_FAILURES",
        "10/minute",
        rate,
        "failed admin-key attempts per address; past it, 429 whatever key is tried",
        GATEWAY,
    )


@dataclass(frozen=True)
class Settings(EnvSettings):
    """The settings of the gateway, the workers and the ``waitroom`` command."""

    redis_url: str = setting(
        "WAITROOM_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        url("redis", "rediss", "unix"),
        "the data store (Valkey, Redis or DragonFly); unset, `waitroom up` starts one",
        (*SERVERS, Part.UP, Part.RECOVER, Part.DIGEST, Part.PROBE),
        secret=True,
    )
    nats_url: str = setting(
        "WAITROOM_NATS_URL",
        "nats://127.0.0.1:4222",
        url_list("nats", "tls", "ws", "wss"),
        "NATS, one URL or a comma-separated list for a cluster; unset, `waitroom up` starts one",
        (*SERVERS, Part.UP, Part.RECOVER, Part.AUDIT),
        secret=True,
    )
    redis_tls_ca: Path | None = setting(
        "WAITROOM_REDIS_TLS_CA",
        None,
        path,
        "CA file that signed the data store's certificate (with a rediss:// URL); "
        "credentials go in the URL (rediss://user:password@host:6380/0)",
        (*SERVERS, Part.RECOVER, Part.DIGEST, Part.PROBE),
        shown="the system's CAs",
    )
    nats_tls_ca: Path | None = setting(
        "WAITROOM_NATS_TLS_CA",
        None,
        path,
        "CA file that signed the NATS servers' certificates (tls:// URLs); a token or "
        "user:password go in the URL (tls://user:password@host:4222)",
        (*SERVERS, Part.RECOVER, Part.AUDIT),
        shown="the system's CAs",
    )
    nats_creds: Path | None = setting(
        "WAITROOM_NATS_CREDS",
        None,
        path,
        "a NATS user credentials file (JWT and NKey seed), for decentralised auth",
        (*SERVERS, Part.RECOVER, Part.AUDIT),
        shown="none",
    )
    keys_dir: Path = setting(
        "WAITROOM_KEYS_DIR",
        Path(".waitroom/keys"),
        path,
        "the token signing keys every gateway shares (made when absent); the admission "
        "worker reads them to check the access tokens the site sends over NATS",
        (Part.GATEWAY, Part.ADMISSION, Part.KEYS),
    )
    admin_key: str = setting(
        "WAITROOM_ADMIN_KEY",
        "",
        text,
        "the operators' Bearer keys, comma-separated while rotating, each 24+ characters",
        (Part.GATEWAY, Part.UP),
        secret=True,
        shown="none, so the admin API refuses everyone (`waitroom up` makes one)",
    )
    site_key: str = setting(
        "WAITROOM_SITE_KEY",
        "",
        long_key,
        "the key the protected site's WaitroomGuard signs its latency reports with, "
        "24+ characters; the gateways keep only reports signed with it",
        (Part.GATEWAY, Part.UP, Part.DEMO),
        secret=True,
        shown="none, so no latency report counts (`waitroom up` makes one)",
    )
    host: str = setting(
        "WAITROOM_HOST",
        "127.0.0.1",
        text,
        "address to listen on (workers: for WAITROOM_METRICS_PORT)",
        SERVERS,
    )
    port: int = setting("WAITROOM_PORT", 8000, integer(1, 65_535), "port to listen on", GATEWAY)
    trusted_proxies: tuple[Network, ...] = setting(
        "WAITROOM_TRUSTED_PROXIES",
        (),
        networks,
        "comma-separated CIDRs of the proxies whose X-Forwarded-For is believed",
        GATEWAY,
        shown="none",
    )
    public_url: str = setting(
        "WAITROOM_PUBLIC_URL",
        "",
        url("http", "https"),
        "base of the URLs people are sent to (redirect_url)",
        (Part.GATEWAY, Part.UP),
        shown="the request's own",
    )
    issuer: str = setting(
        "WAITROOM_ISSUER", "waitroom", text, "`iss` of every token", (Part.GATEWAY, Part.ADMISSION)
    )
    audience: str = setting(
        "WAITROOM_AUDIENCE",
        "waitroom-protected-site",
        text,
        "`aud` of access tokens is this and the room (`<aud>:<room>`); queue tokens `<aud>/queue`",
        (Part.GATEWAY, Part.ADMISSION),
    )
    queue_token_ttl: int = setting(
        "WAITROOM_QUEUE_TOKEN_TTL",
        300,
        integer(30),
        "seconds a queue token lasts (re-signed on a heartbeat once half is gone)",
        (Part.GATEWAY, Part.HEARTBEAT),
    )
    queue_token_alg: str = setting(
        "WAITROOM_QUEUE_TOKEN_ALG",
        "RS256",
        choice("RS256", "ES256"),
        "RS256 or ES256 (signs queue tokens ~7x faster); access tokens stay RS256",
        GATEWAY,
    )
    token_binding: bool = setting(
        "WAITROOM_TOKEN_BINDING",
        False,
        boolean,
        "bind queue tokens to a hash of client address and User-Agent",
        GATEWAY,
    )
    ip_hash_salt: str = setting(
        "WAITROOM_IP_HASH_SALT",
        "",
        text,
        "salt of the client-address hashes and of retry place ids",
        GATEWAY,
        secret=True,
        shown="a random salt made once beside the signing keys",
    )
    max_body_bytes: int = setting(
        "WAITROOM_MAX_BODY_BYTES",
        16_384,
        integer(256),
        "largest request body; larger ones get 413",
        GATEWAY,
    )
    allowed_hosts: tuple[str, ...] = setting(
        "WAITROOM_ALLOWED_HOSTS",
        (),
        host_names,
        "Host headers redirect links may be built from when WAITROOM_PUBLIC_URL is unset",
        GATEWAY,
        shown="loopback names only",
    )
    ipv6_prefix: int = setting(
        "WAITROOM_IPV6_PREFIX",
        64,
        integer(32, 128),
        "per-address limits count an IPv6 client by its network of this many bits",
        GATEWAY,
    )
    streams_per_place: int = setting(
        "WAITROOM_STREAMS_PER_PLACE",
        4,
        integer(1),
        "event streams one place may hold open on a gateway; one more gets 429",
        GATEWAY,
    )
    streams_per_address: int = setting(
        "WAITROOM_STREAMS_PER_ADDRESS",
        64,
        integer(1),
        "event streams one client address may hold open on a gateway; one more gets 429",
        GATEWAY,
    )
    metrics_token: str = setting(
        "WAITROOM_METRICS_TOKEN",
        "",
        text,
        "Bearer token /metrics asks for",
        GATEWAY,
        secret=True,
        shown="none: /metrics answers only on WAITROOM_METRICS_PORT, or 404",
    )
    metrics_port: int = setting(
        "WAITROOM_METRICS_PORT",
        0,
        integer(0, 65_535),
        "a port of its own that serves /metrics without a token (keep it off the load balancer)",
        SERVERS,
        shown="0: none",
    )
    header_timeout: float = setting(
        "WAITROOM_HEADER_TIMEOUT",
        10.0,
        number(0.1),
        "seconds a request's line and headers may take to arrive; then 408 and closed",
        GATEWAY,
    )
    body_timeout: float = setting(
        "WAITROOM_BODY_TIMEOUT",
        10.0,
        number(0.1),
        "seconds a request body may take to arrive; then 408",
        GATEWAY,
    )
    max_connections: int = setting(
        "WAITROOM_MAX_CONNECTIONS",
        20_000,
        integer(16),
        "open connections (event streams included) per gateway process; more get 503",
        GATEWAY,
    )
    rate_limits: RateLimits = group(RateLimits)
    stream_name: str = setting(
        "WAITROOM_STREAM",
        "WAITROOM",
        pattern(r"[A-Za-z0-9_-]{1,64}", "a JetStream stream name (letters, digits, - and _)"),
        "the JetStream stream of room events",
        (*SERVERS, Part.RECOVER, Part.AUDIT),
    )
    stream_duplicate_window: int = setting(
        "WAITROOM_DUPLICATE_WINDOW",
        7_200,
        integer(1),
        "seconds the stream remembers event ids (longer than any NATS outage you expect)",
        SERVERS,
    )
    stream_replicas: int = setting(
        "WAITROOM_STREAM_REPLICAS",
        1,
        integer(1),
        "replicas of the stream (3 on a 3-node NATS cluster)",
        SERVERS,
    )
    stream_max_age: int = setting(
        "WAITROOM_STREAM_MAX_AGE",
        0,
        integer(0),
        "seconds the stream keeps events (0: leave the stream's own limit as it is); keep "
        "it above twice WAITROOM_SNAPSHOT_SECONDS",
        SERVERS,
    )
    stream_max_bytes: int = setting(
        "WAITROOM_STREAM_MAX_BYTES",
        0,
        integer(0),
        "bytes the stream may hold (0: leave the stream's own limit as it is)",
        SERVERS,
    )
    outbox_max: int = setting(
        "WAITROOM_OUTBOX_MAX",
        100_000,
        integer(1),
        "undelivered events per room before new joins get 503 events_backlog and the relay "
        "warns (people already waiting carry on; nothing is dropped)",
        SERVERS,
    )
    outbox_age_alert: float = setting(
        "WAITROOM_OUTBOX_AGE_ALERT",
        30.0,
        number(0.1),
        "seconds the oldest undelivered event may wait before the relay warns (the loss "
        "window if the data store dies now)",
        WORKERS,
    )
    snapshot_events: int = setting(
        "WAITROOM_SNAPSHOT_EVENTS",
        10_000,
        integer(1),
        "events of a room between two snapshots of it on the stream (a room holding more "
        "than twice as many people waits for half as many events as it holds people: a "
        "snapshot holds the store for a time that grows with the room)",
        WORKERS,
    )
    snapshot_seconds: int = setting(
        "WAITROOM_SNAPSHOT_SECONDS",
        300,
        integer(1),
        "seconds between two snapshots of a room that changed meanwhile",
        WORKERS,
    )
    admission_tick_ms: int = setting(
        "WAITROOM_ADMISSION_TICK_MS",
        100,
        integer(5),
        "milliseconds between admission ticks; the relay runs at half of it",
        WORKERS,
    )
    heartbeat_tick_ms: int = setting(
        "WAITROOM_HEARTBEAT_TICK_MS",
        500,
        integer(5),
        "milliseconds between expiry ticks",
        (Part.HEARTBEAT,),
    )
    lease_ms: int = setting(
        "WAITROOM_LEASE_MS",
        3_000,
        integer(100),
        "milliseconds a room's lease lasts: a dead replica's rooms move on after this",
        WORKERS,
    )
    ended_retention: int = setting(
        "WAITROOM_ENDED_RETENTION",
        3_600,
        integer(1),
        "seconds an ended place still answers status (at least twice the queue token TTL)",
        (Part.HEARTBEAT,),
    )
    relay_enabled: bool = setting(
        "WAITROOM_RELAY", True, boolean, "run the outbox relay (room events to NATS)", WORKERS
    )
    instance: str = setting_made(
        "WAITROOM_INSTANCE",
        _host_and_process,
        text,
        "this replica's name, which its liveness mark is kept under (use the pod name)",
        (*SERVERS, Part.PROBE),
        shown="host name and process id",
    )
    log_json: bool = setting(
        "WAITROOM_LOG_JSON", True, boolean, "JSON log lines; false: for a terminal", SERVERS
    )
    workers: int = setting(
        "WAITROOM_WORKERS",
        1,
        integer(1, 64),
        "server processes one gateway runs on its port (one per core the pod has)",
        GATEWAY,
    )
    lines_in_memory: bool = setting(
        "WAITROOM_LINES_IN_MEMORY",
        True,
        boolean,
        "answer people waiting from this gateway's copy of the line, kept by the room's "
        "events, status calls and heartbeats before the web framework (false: every answer "
        "from the data store)",
        GATEWAY,
    )
    sign_threads: int = setting(
        "WAITROOM_SIGN_THREADS",
        0,
        integer(0, 64),
        "threads that make RSA signatures (RS256 queue tokens, access tokens) beside the "
        "event loop; 0: on the loop, the least CPU per signature; more: a gateway of one "
        "process with cores to spare uses them, at about a third more CPU per signature",
        GATEWAY,
    )
    fast_joins: bool = setting(
        "WAITROOM_FAST_JOINS",
        True,
        boolean,
        "answer joins (POST /v1/rooms/{room}/enqueue) before the web framework, with the "
        "same answers and errors (false: through the framework, as every other call)",
        GATEWAY,
    )
    access_log: str = setting(
        "WAITROOM_ACCESS_LOG",
        "errors",
        choice("all", "errors", "off"),
        "a summary line per request: all, errors (4xx, 5xx and requests slower than 1 s) "
        "or off; every request is counted in the metrics either way",
        GATEWAY,
    )
    log_level: str = setting(
        "WAITROOM_LOG_LEVEL",
        "info",
        choice(*LOG_LEVELS),
        "debug, info, warning, error or critical (the waitroom command: warning unless set)",
        (*SERVERS, *COMMANDS),
    )


@dataclass(frozen=True)
class DemoSettings(EnvSettings):
    """The demo protected site's settings (``waitroom up`` sets them)."""

    host: str = setting(
        "WAITROOM_DEMO_HOST", "127.0.0.1", text, "address to listen on", (Part.DEMO,)
    )
    port: int = setting(
        "WAITROOM_DEMO_PORT", 8001, integer(1, 65_535), "port to listen on", (Part.DEMO,)
    )
    gateway_url: str = setting(
        "WAITROOM_GATEWAY_URL",
        "http://127.0.0.1:8000",
        url("http", "https"),
        "the gateway whose room guards the site",
        (Part.DEMO,),
    )
    room: str = setting("WAITROOM_DEMO_ROOM", "demo", text, "the room guarding it", (Part.DEMO,))
    ms_per_visit: float = setting(
        "WAITROOM_DEMO_MS_PER_VISIT",
        0.0,
        number(0.0),
        "load mode: each page takes this many ms per visit active on the site (0: off)",
        (Part.DEMO,),
    )


SETTINGS_CLASSES: tuple[type[EnvSettings], ...] = (Settings, DemoSettings)


def declared() -> Iterator[tuple[Var[Any], Field[Any]]]:
    for cls in SETTINGS_CLASSES:
        yield from variables(cls)


def _file_note(var: Var[Any]) -> str:
    return f"; or {var.name}_FILE, a file holding it" if var.secret else ""


ENVIRONMENT_HEADING = "environment (read once at start; an empty value counts as unset):"


def environment_help(part: Part, width: int = 79) -> str:
    """The variables ``part`` reads, with defaults and help: the end of its ``--help``."""
    lines = [ENVIRONMENT_HEADING]
    for var, f in declared():
        if part not in var.parts:
            continue
        lines.append(f"  {var.name}  (default: {shown_default(var, f)})")
        lines += textwrap.wrap(
            var.help + _file_note(var), width, initial_indent="      ", subsequent_indent="      "
        )
    return "\n".join(lines)


def help_page(doc: str, part: Part) -> str:
    """A ``--help`` text: what the part does (``doc``), then the variables it reads."""
    return f"{doc.strip()}\n\n{environment_help(part)}\n"


def _parts_label(parts: Iterable[str]) -> str:
    given = set(parts)
    names = [p.value for p in (Part.GATEWAY, Part.DEMO) if p in given]
    if set(WORKERS) <= given:
        names.insert(1 if Part.GATEWAY in given else 0, "workers")
    else:
        names += [p.value for p in WORKERS if p in given]
    commands = [p.value.removeprefix("waitroom ") for p in COMMANDS if p in given]
    if len(commands) == len(COMMANDS):
        names.append("every `waitroom` command")
    elif commands:
        names.append(f"`waitroom {'/'.join(commands)}`")
    return ", ".join(names)


README_BEGIN = (
    "<!-- settings:begin (generated from shared/settings.py by "
    "`python -m shared.settings --readme`; edit there) -->"
)
README_END = "<!-- settings:end -->"


def readme_block() -> str:
    """The README's configuration table, markers included."""
    rows = [
        README_BEGIN,
        "| variable | default | read by | meaning |",
        "|---|---|---|---|",
    ]
    secrets = []
    for var, f in declared():
        default = shown_default(var, f)
        literal = var.shown is None and f.default not in ("", ())
        shown = f"`{default}`" if literal else default
        meaning = var.help.replace("|", "\\|")
        rows.append(f"| `{var.name}` | {shown} | {_parts_label(var.parts)} | {meaning} |")
        if var.secret:
            secrets.append(f"`{var.name}_FILE`")
    rows += [
        "",
        "Secrets may come from files instead (Compose and Kubernetes mount secrets as files): "
        f"{', '.join(secrets)} name a file holding the value (surrounding whitespace is "
        "dropped). Setting both a variable and its `_FILE` is an error.",
        README_END,
    ]
    return "\n".join(rows)


def with_readme_block(readme: str) -> str:
    """``readme`` with its configuration block replaced by the one the code generates."""
    start = readme.index(README_BEGIN.split(" (")[0])
    end = readme.index(README_END, start) + len(README_END)
    return readme[:start] + readme_block() + readme[end:]


def main(argv: list[str]) -> int:
    """``python -m shared.settings --markdown`` prints the README's table;
    ``--readme [PATH]`` writes it into the README (default: the checkout's)."""
    if argv[:1] == ["--markdown"]:
        sys.stdout.write(readme_block() + "\n")
        return 0
    if argv[:1] == ["--readme"]:
        target = Path(argv[1]) if len(argv) > 1 else Path(__file__).parents[1] / "README.md"
        target.write_text(with_readme_block(target.read_text()))
        return 0
    sys.stdout.write((main.__doc__ or "") + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
