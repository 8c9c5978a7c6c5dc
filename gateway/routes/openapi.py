"""Small corrections to the OpenAPI document Litestar builds from the handlers."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import Operation, RequestBody, Schema
from litestar.typing import FieldDefinition


class OptionalBody(Operation):
    """The operation of a route whose body may be left out: Litestar marks every request
    body required and offers ``null`` for an optional one; the document says what the
    route takes instead (no body, or the typed object)."""

    def to_schema(self) -> dict[str, Any]:
        body = self.request_body
        if isinstance(body, RequestBody):
            body.required = False
            for media in (body.content or {}).values():
                schema = media.schema
                choices = getattr(schema, "one_of", None)
                if choices:
                    kept = [c for c in choices if getattr(c, "type", None) != "null"]
                    if len(kept) == 1:
                        media.schema = kept[0]
        return super().to_schema()


class ClosedStructs(StructSchemaPlugin):
    """Request bodies that refuse unknown fields say so (``additionalProperties: false``),
    so clients and fuzzers know an extra field is an error, not ignored."""

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
