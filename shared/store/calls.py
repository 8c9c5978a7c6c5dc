"""How a failed data-store call surfaces, decided in one place for every store class.

A server that cannot be reached (or is loading, or read-only mid-failover) becomes
``StoreUnavailable`` (503, retry); a script's ``WR <code>`` answer becomes its domain error
(shared/errors.py ``SCRIPT_ERRORS``); a Lua runtime error becomes ``ScriptError`` with its
positions in the Lua files' own lines. Methods get this with ``@store_call``; script calls
and pipelines go through ``mapped`` / ``store_error`` with the script that ran.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
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


class mapped:
    """Raise what ``store_error`` says instead of the client's own error. (A class, not
    a generator: every store call passes through it, and a generator's context manager
    cost a join 2 % of the gateway's time, py-spy.)"""

    __slots__ = ("script",)

    def __init__(self, script: LuaScript | None = None) -> None:
        self.script = script

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, RedisError | OSError):
            err = store_error(exc, self.script)
            if err is not exc:
                raise err from exc


def store_call(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A store method whose client errors are ``mapped``."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with mapped():
            return await method(*args, **kwargs)

    return call
