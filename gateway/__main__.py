"""python -m gateway: serves the waitroom HTTP API with uvicorn.

Environment: WAITROOM_REDIS_URL, WAITROOM_NATS_URL, WAITROOM_KEYS_DIR (RSA keys shared by
every gateway; made when absent), WAITROOM_ADMIN_KEY, WAITROOM_HOST (127.0.0.1),
WAITROOM_PORT (8000), WAITROOM_TRUSTED_PROXIES (CIDRs whose X-Forwarded-For is believed),
WAITROOM_PUBLIC_URL, WAITROOM_RATE_LIMITS (true), WAITROOM_TOKEN_BINDING (false),
WAITROOM_QUEUE_TOKEN_ALG (RS256|ES256), WAITROOM_LOG_JSON, WAITROOM_LOG_LEVEL.
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
