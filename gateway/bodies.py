"""JSON bodies decoded strictly into the type a route declares.

Litestar decodes a body to plain JSON values and then converts them leniently (``"10"``
becomes ``10``). The API's contract is the OpenAPI document, which says ``integer``, so a
route's ``data`` is decoded here, straight from the bytes, with msgspec in strict mode:
what the document does not allow is refused with ``invalid_body``; what is not JSON at all
with ``malformed_json``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from shared.errors import InvalidBody, MalformedJson


class StrictJsonRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        field = self.route_handler.parsed_data_field
        if field is None:
            return await super().json()
        return decode_strict(await self.body() or b"null", field.annotation)


def decode_strict(raw: bytes, annotation: Any) -> Any:
    """``raw`` decoded as ``annotation``, strictly; 400 ``malformed_json`` for what is not
    JSON, 400 ``invalid_body`` for JSON the type does not allow (the first problem)."""
    try:
        return msgspec.json.decode(raw, type=annotation)
    except msgspec.ValidationError:
        pass  # maybe only a whole number written as 10.0; see below
    except msgspec.DecodeError as exc:
        raise MalformedJson() from exc
    try:
        plain = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:  # a type error found first hid a syntax error
        raise MalformedJson() from exc
    try:
        return msgspec.convert(_whole_numbers(plain), annotation, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidBody(f"body: {exc}") from exc


def _whole_numbers(value: Any) -> Any:
    """JSON has one kind of number: ``10.0`` is the integer 10 to JSON Schema, so it is to
    us; ``10.5`` and ``"10"`` are still not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value
