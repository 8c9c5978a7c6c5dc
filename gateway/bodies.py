"""Reading JSON bodies with clear errors: malformed JSON and wrong fields are told apart."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from shared.errors import InvalidBody, MalformedJson

T = TypeVar("T")


async def read_body(
    request: Request[Any, Any, Any], type_: type[T], *, optional: bool = False
) -> T | None:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return None
        raise InvalidBody("A JSON body is required.")
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise MalformedJson() from None
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidBody(str(exc)) from None
