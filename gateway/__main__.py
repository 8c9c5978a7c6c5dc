"""python -m gateway: serves the waitroom HTTP API, the room page and the event streams
with uvicorn.

Environment: WAITROOM_REDIS_URL; WAITROOM_NATS_URL (one URL or a comma-separated list);
WAITROOM_KEYS_DIR (the signing keys every gateway shares; made when absent);
WAITROOM_ADMIN_KEY (unset: the admin API refuses everyone); WAITROOM_HOST (127.0.0.1);
WAITROOM_PORT (8000); WAITROOM_TRUSTED_PROXIES (CIDRs whose X-Forwarded-For is believed);
WAITROOM_PUBLIC_URL (base of redirect URLs; default: the request's own);
WAITROOM_ISSUER, WAITROOM_AUDIENCE; WAITROOM_QUEUE_TOKEN_TTL (300 s);
WAITROOM_QUEUE_TOKEN_ALG (RS256|ES256); WAITROOM_TOKEN_BINDING (false);
WAITROOM_IP_HASH_SALT; WAITROOM_RATE_LIMITS (true) and WAITROOM_LIMIT_ENQUEUE / _STATUS /
_HEARTBEAT / _SESSION; WAITROOM_MAX_BODY_BYTES (16384); WAITROOM_OUTBOX_MAX (100000:
readiness fails past it); WAITROOM_STREAM, WAITROOM_STREAM_REPLICAS,
WAITROOM_DUPLICATE_WINDOW; WAITROOM_INSTANCE; WAITROOM_LOG_JSON (true);
WAITROOM_LOG_LEVEL (info). SIGTERM stops it gracefully (requests and streams finish, NATS
drains) and it exits 0.
"""

from __future__ import annotations

import os
import signal
import sys

import uvicorn

from gateway.app import create_app
from shared.logs import configure
from shared.settings import Settings


def main(argv: list[str]) -> None:
    if "--help" in argv or "-h" in argv:
        sys.stdout.write((__doc__ or "").strip() + "\n")
        return
    settings = Settings.from_env(os.environ)
    configure(json=settings.log_json, level=settings.log_level)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler that was there before it; with these, the process then exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
