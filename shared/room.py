"""The room model: every operator-set field, its default and its bounds.

Each field is checked on its own here (msgspec bounds, URL shapes); rules across fields
(a new room needs a target_url, heartbeat_timeout > heartbeat_interval, max_party_size <=
max_active, auto_release needs target_latency_ms) are checked by room_put.lua on the merged
config, in the step that writes it.

A room's config is kept as a flat hash of strings. Structured fields (``STRUCTURED_FIELDS``)
travel to the store, the event log and back as canonical JSON text (sorted keys), so a
replayed room holds exactly the text the original did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from shared.errors import InvalidBody

RoomStatus = Literal["active", "paused", "maintenance"]

PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
CountInt = Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
Seconds = Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)]
Rate = Annotated[float, msgspec.Meta(gt=0, le=1_000_000)]
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]
Text = Annotated[str, msgspec.Meta(max_length=2048)]
Color = Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$")]
PowBits = Annotated[int, msgspec.Meta(ge=0, le=32)]
LatencyMs = Annotated[int, msgspec.Meta(ge=0, le=600_000)]
LanguageTag = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
TextKey = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
PageTexts = Annotated[
    dict[LanguageTag, Annotated[dict[TextKey, Text], msgspec.Meta(max_length=100)]],
    msgspec.Meta(max_length=20),
]
"""Texts of the waiting-room page per language: ``{"en": {"admitted_heading": "..."}}``.
Keys are the message keys of the page's catalogs (gateway/i18n)."""

DEFAULT_MAX_ACTIVE = 100
DEFAULT_PARTY_SIZE = 10
MaybeUrl = Annotated[str, msgspec.Meta(max_length=2048)]


class RoomConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an operator sets with ``PUT /v1/admin/rooms/{room}``.

    ``max_queue_size`` and ``max_positions_per_ip`` of 0 mean no limit. ``session_ttl`` is
    how long a visit lasts after its last sign of life (activation or session heartbeat).
    ``title``, ``message``, ``brand_color`` and ``logo_url`` brand the waiting-room page.
    """

    target_url: Url
    max_active: PositiveInt = DEFAULT_MAX_ACTIVE
    max_party_size: PositiveInt = DEFAULT_PARTY_SIZE
    """The largest ``size`` one place may take; at most ``max_active`` (a room created with
    less than 10 units gets ``max_active``)."""
    max_session: Seconds = 3600
    """A visit ends this long after it began, whatever its session heartbeats say."""
    pow_difficulty: PowBits = 0
    """Leading zero bits a join's proof of work must reach (0: no proof asked)."""
    release_rate: Rate = 10.0
    max_queue_size: CountInt = 0
    session_ttl: Seconds = 600
    claim_window: Seconds = 60
    heartbeat_interval: Seconds = 10
    heartbeat_timeout: Seconds = 60
    max_positions_per_ip: CountInt = 1
    status: RoomStatus = "active"
    title: Text = ""
    message: Text = ""
    brand_color: Color = "#1f5f99"
    logo_url: MaybeUrl = ""
    auto_release: bool = False
    """The admission pace follows the protected site's latency, as its WaitroomGuard
    reports it, between 0 and ``release_rate`` (see admission_worker/pace.py)."""
    target_latency_ms: LatencyMs = 0
    """The site's 95th-percentile response time the pace aims to keep (0: none set;
    ``auto_release`` needs one)."""
    texts: PageTexts = msgspec.field(default_factory=dict)
    """Per-language overrides of the page's texts (``{"de": {"admitted_heading": ...}}``);
    a language without a catalog of its own may be given here too."""


def _absolute_http(url: str) -> bool:
    """An absolute http(s) URL that can go into a Location header as it is: no control
    characters or spaces (no header splitting), no fragment (the access token is added to
    the query, and a fragment would swallow it)."""
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and "#" not in url


class RoomUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A partial update: only the fields given change."""

    target_url: Url | msgspec.UnsetType = msgspec.UNSET
    max_active: PositiveInt | msgspec.UnsetType = msgspec.UNSET
    max_party_size: PositiveInt | msgspec.UnsetType = msgspec.UNSET
    max_session: Seconds | msgspec.UnsetType = msgspec.UNSET
    pow_difficulty: PowBits | msgspec.UnsetType = msgspec.UNSET
    release_rate: Rate | msgspec.UnsetType = msgspec.UNSET
    max_queue_size: CountInt | msgspec.UnsetType = msgspec.UNSET
    session_ttl: Seconds | msgspec.UnsetType = msgspec.UNSET
    claim_window: Seconds | msgspec.UnsetType = msgspec.UNSET
    heartbeat_interval: Seconds | msgspec.UnsetType = msgspec.UNSET
    heartbeat_timeout: Seconds | msgspec.UnsetType = msgspec.UNSET
    max_positions_per_ip: CountInt | msgspec.UnsetType = msgspec.UNSET
    status: RoomStatus | msgspec.UnsetType = msgspec.UNSET
    title: Text | msgspec.UnsetType = msgspec.UNSET
    message: Text | msgspec.UnsetType = msgspec.UNSET
    brand_color: Color | msgspec.UnsetType = msgspec.UNSET
    logo_url: MaybeUrl | msgspec.UnsetType = msgspec.UNSET
    auto_release: bool | msgspec.UnsetType = msgspec.UNSET
    target_latency_ms: LatencyMs | msgspec.UnsetType = msgspec.UNSET
    texts: PageTexts | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.target_url, str) and not _absolute_http(self.target_url):
            raise msgspec.ValidationError(
                "target_url must be an absolute http(s) URL without a fragment or control "
                "characters"
            )
        if isinstance(self.logo_url, str) and self.logo_url and not _absolute_http(self.logo_url):
            raise msgspec.ValidationError("logo_url must be an absolute http(s) URL or empty")

    def given(self) -> dict[str, Any]:
        return {
            f: getattr(self, f)
            for f in self.__struct_fields__
            if getattr(self, f) is not msgspec.UNSET
        }


CONFIG_FIELDS = RoomConfig.__struct_fields__

STRUCTURED_FIELDS = frozenset({"texts"})
"""Fields whose value is an object or a list: stored and logged as canonical JSON text."""


def _canonical(value: Any) -> str:
    return msgspec.json.encode(value, order="sorted").decode()


def _default(field: msgspec.structs.FieldInfo) -> Any:
    if field.required:
        return None
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return field.default


FIELD_DEFAULTS: dict[str, Any] = {
    field.name: _canonical(_default(field)) if field.name in STRUCTURED_FIELDS else _default(field)
    for field in msgspec.structs.fields(RoomConfig)
}
"""Every config field and its default as stored, None for a field a new room must be given
(what room_put.lua merges an update onto)."""


def stored_form(values: dict[str, Any]) -> dict[str, Any]:
    """Config values as the store keeps them: structured ones as canonical JSON text."""
    return {
        name: _canonical(value) if name in STRUCTURED_FIELDS else value
        for name, value in values.items()
    }


def checked_update(update: RoomUpdate) -> dict[str, Any]:
    """The fields an update gives, each within its bounds (an update built in Python has
    not been through msgspec's checks yet)."""
    try:
        return msgspec.convert(msgspec.to_builtins(update), RoomUpdate).given()
    except msgspec.ValidationError as exc:
        raise InvalidBody(str(exc)) from None


def from_stored(flat: Mapping[str, Any]) -> RoomConfig:
    """The config as stored in the room's ``cfg`` hash (every value a string) or as a
    script answers it. Only the bounds of each field apply: rules across fields are
    checked when a config is written."""
    values: dict[str, Any] = {}
    for name in CONFIG_FIELDS:
        if name not in flat:
            continue
        value = flat[name]
        if name in STRUCTURED_FIELDS and isinstance(value, str):
            value = msgspec.json.decode(value)
        values[name] = value
    return msgspec.convert(values, RoomConfig, strict=False)
