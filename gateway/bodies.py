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
from litestar.exceptions import SerializationException, ValidationException


class StrictJsonRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        field = self.route_handler.parsed_data_field
        if field is None:
            return await super().json()
        raw = await self.body() or b"null"
        try:
            return msgspec.json.decode(raw, type=field.annotation)
        except msgspec.ValidationError as exc:
            problem = exc
        except msgspec.DecodeError as exc:
            raise SerializationException(str(exc)) from exc
        try:  # the first problem found may hide that the body is not JSON at all
            msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise SerializationException(str(exc)) from exc
        raise ValidationException(extra=[{"message": str(problem), "key": "body"}])
