"""python -m gateway: serves the waitroom HTTP API, the room page and the event streams
with uvicorn.

SIGTERM stops it gracefully (requests and streams finish, NATS drains) and it exits 0.
Every log line, uvicorn's included, goes to stderr in one format.
"""

from __future__ import annotations

import os
import signal
import sys

import uvicorn
from litestar import Litestar

from gateway.app import create_app
from gateway.serving import uvicorn_options
from shared.logs import configure
from shared.settings import Part, Settings, help_page


def main(argv: list[str]) -> None:
    if "--help" in argv or "-h" in argv:
        sys.stdout.write(help_page(__doc__ or "", Part.GATEWAY))
        return
    settings = Settings.from_env_or_exit(os.environ, "python -m gateway")
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler that was there before it; with these, the process then exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    if settings.workers > 1:
        # several server processes on one port, each building its app as below; uvicorn
        # supervises them (a dead one is replaced) and stops them all on SIGTERM
        configure(json=settings.log_json, level=settings.log_level)
        uvicorn.run(
            "gateway.__main__:app_of_this_process",
            factory=True,
            workers=settings.workers,
            log_config=None,
            log_level=settings.log_level,
            **uvicorn_options(settings),
        )
        return
    app = create_app(settings)
    configure(json=settings.log_json, level=settings.log_level)  # after Litestar's own
    uvicorn.run(
        app,
        log_config=None,  # its records go to the root handler shared.logs installed
        log_level=settings.log_level,
        **uvicorn_options(settings),
    )


def app_of_this_process() -> Litestar:
    """The app of one of several server processes (WAITROOM_WORKERS): each is a process of
    its own, so it reads the settings from its environment here, once, like main does."""
    settings = Settings.from_env_or_exit(os.environ, "python -m gateway")
    uvicorn_options(settings)  # this process's own deadlines (see gateway/serving.py)
    app = create_app(settings)
    configure(json=settings.log_json, level=settings.log_level)
    return app


if __name__ == "__main__":
    main(sys.argv[1:])
