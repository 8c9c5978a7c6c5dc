"""How a failed data-store call surfaces, decided in one place for every store class.

A server that cannot be reached (or is loading, or read-only mid-failover) becomes
``StoreUnavailable`` (503, retry); a script's ``WR <code>`` answer becomes its domain error
(shared/errors.py ``SCRIPT_ERRORS``); a Lua runtime error becomes ``ScriptError`` with its
positions in the Lua files' own lines. Methods get this with ``@store_call``; script calls
and pipelines go through ``mapped`` / ``store_error`` with the script that ran.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.errors import StoreUnavailable, from_script_error
from shared.scripts import LuaScript

STORE_DOWN = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

P = ParamSpec("P")
R = TypeVar("R")


def store_error(exc: BaseException, script: LuaScript | None = None) -> BaseException:
    """The error a caller sees for what the client raised (or a pipeline answered)."""
    if isinstance(exc, STORE_DOWN):
        return StoreUnavailable()
    if isinstance(exc, ResponseError):
        domain = from_script_error(str(exc))
        if domain is not None:
            return domain
        if script is not None:
            return script.explain(str(exc))
    return exc


@contextlib.contextmanager
def mapped(script: LuaScript | None = None) -> Iterator[None]:
    """Raise what ``store_error`` says instead of the client's own error."""
    try:
        yield
    except (RedisError, OSError) as exc:
        err = store_error(exc, script)
        if err is exc:
            raise
        raise err from exc


def store_call(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A store method whose client errors are ``mapped``."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with mapped():
            return await method(*args, **kwargs)

    return call
