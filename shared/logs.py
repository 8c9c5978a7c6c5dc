"""Logging, configured once per process: every line on stderr in one format.

waitroom's own code logs through structlog; uvicorn, redis, nats and asyncio log through the
standard library. Both go through the same processors (context variables such as the
request id, level, logger name, UTC timestamp) and the same renderer: JSON lines in
production, readable lines in a terminal. structlog's own calls skip the standard library
on the way out, which keeps a log line cheap on the request path.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import msgspec
import structlog
from structlog.typing import Processor


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's plain writer, with the name it was asked for (``add_logger_name``)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self.file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self.file, str(args[0]) if args else "waitroom")


def _shared_processors(json: bool) -> list[Processor]:
    """What every line gets, whichever library logged it."""
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        # the console renderer formats exceptions itself, and better
        processors.append(structlog.processors.format_exc_info)
    return processors


_ENCODER = msgspec.json.Encoder(enc_hook=repr)  # what JSON cannot hold is written as repr


def _dumps(event_dict: Any, **_ignored: Any) -> str:
    """JSON of a log line: msgspec writes it several times faster than ``json.dumps``."""
    return _ENCODER.encode(event_dict).decode()


def _renderer(json: bool, stream: TextIO) -> Processor:
    if json:
        return structlog.processors.JSONRenderer(serializer=_dumps)
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


def stdlib_handler(json: bool, stream: TextIO) -> logging.Handler:
    """A handler that renders standard-library records like structlog's own lines."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(json),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _renderer(json, stream),
            ],
        )
    )
    return handler


def configure(*, json: bool = True, level: str = "info", stream: TextIO | None = None) -> None:
    """Send structlog and standard-library logging to ``stream`` (stderr) in one format,
    dropping lines below ``level``. Call it after building the app (Litestar sets up
    logging of its own then); calling it again replaces the earlier setup."""
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[*_shared_processors(json), _renderer(json, out)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedWriteLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [stdlib_handler(json, out)]
    root.setLevel(numeric)
    # libraries that set up handlers of their own (Litestar does when an app is built,
    # uvicorn with a log_config) are sent through the root handler instead
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger) and logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
    logging.captureWarnings(True)
