"""The event loop the long-running processes use: uvloop where it is installed (the
gateway gets it from uvicorn; the workers and `waitroom recover` ask for it here), else
asyncio's own. Their cost per tick and per event is mostly the loop's own work."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it can be imported."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(main)
    return uvloop.run(main)
