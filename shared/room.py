"""The room model: every operator-set field, its default and its bounds.

Each field is checked on its own here (msgspec bounds, URL shapes); rules across fields
(a new room needs a target_url, heartbeat_timeout > heartbeat_interval, max_party_size <=
max_active, auto_release needs target_latency_ms, closes_at after opens_at) are checked by
room_put.lua on the merged config, in the step that writes it.

The scripts see a config in its stored form (``to_stored``): times as epoch milliseconds
(0 for none), so Lua compares numbers; the page's texts (``STRUCTURED_FIELDS``) as
canonical JSON text (sorted keys), so a replayed room holds exactly the text the original
did; ``from_stored`` turns it back. The lanes go to the scripts as a table and are held in
the hash as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
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

ANY_LANE = "any"
"""What a person joins with to take whichever lane has room (never a lane's own name)."""
LANE_PATTERN = r"^[a-z0-9_-]{1,32}$"
LaneName = Annotated[str, msgspec.Meta(pattern=LANE_PATTERN)]
Lanes = Annotated[dict[LaneName, PositiveInt], msgspec.Meta(max_length=16)]
AdmissionPolicy = Literal["strict", "best_fit"]
QueueingMethod = Literal["fifo", "random", "passthrough", "reject"]
Skips = Annotated[int, msgspec.Meta(ge=0, le=1000)]
Moment = Annotated[datetime, msgspec.Meta(tz=True)]
"""An RFC 3339 time with its offset (``2030-05-01T09:00:00Z``)."""
TIME_FIELDS = ("opens_at", "closes_at")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST_YEAR, LATEST_YEAR = 2000, 2999


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
    reports it, between 0 and ``release_rate`` (see admission_worker/pace.py). Only
    reports signed with WAITROOM_SITE_KEY count; with no key set none do, and the pace
    climbs to ``release_rate``."""
    target_latency_ms: LatencyMs = 0
    """The site's 95th-percentile response time the pace aims to keep (0: none set;
    ``auto_release`` needs one)."""
    texts: PageTexts = msgspec.field(default_factory=dict)
    """Per-language overrides of the page's texts (``{"de": {"admitted_heading": ...}}``);
    a language without a catalog of its own may be given here too."""
    lanes: Lanes = msgspec.field(default_factory=dict)
    """Units per lane (``{"counter": 8, "table": 24}``): each lane is its own capacity,
    ``max_active`` stays the room's total. Empty: one line, no lanes."""
    admission_policy: AdmissionPolicy = "strict"
    """``strict``: a party that does not fit waits at the head of its lane; ``best_fit``:
    smaller parties behind it may go, but nobody is passed over more than ``max_skips``
    times."""
    max_skips: Skips = 3
    queueing_method: QueueingMethod = "fifo"
    """``fifo``: the line in order; ``random``: a lottery among the highest priority at
    each admission; ``passthrough``: straight in while there is room, a line only when
    full; ``reject``: straight in while there is room, turned away (409 room_full) when
    full."""
    opens_at: Moment | None = None
    """Before this, joins go into a pre-queue, shuffled into the line when it opens."""
    closes_at: Moment | None = None
    """From this on nobody new joins (409 room_closed)."""


def check_moment(name: str, moment: object) -> None:
    """A time field within the years a room can mean (its stored form stays positive)."""
    if isinstance(moment, datetime) and not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise msgspec.ValidationError(
            f"{name} must be a time between the years {EARLIEST_YEAR} and {LATEST_YEAR}"
        )


def epoch_ms(moment: datetime | None) -> int:
    """A time as the scripts keep it: whole epoch milliseconds (exact: no float on the
    way), 0 for none."""
    return 0 if moment is None else (moment - EPOCH) // timedelta(milliseconds=1)


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
    lanes: Lanes | msgspec.UnsetType = msgspec.UNSET
    admission_policy: AdmissionPolicy | msgspec.UnsetType = msgspec.UNSET
    max_skips: Skips | msgspec.UnsetType = msgspec.UNSET
    queueing_method: QueueingMethod | msgspec.UnsetType = msgspec.UNSET
    opens_at: Moment | msgspec.UnsetType | None = msgspec.UNSET
    closes_at: Moment | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.target_url, str) and not _absolute_http(self.target_url):
            raise msgspec.ValidationError(
                "target_url must be an absolute http(s) URL without a fragment or control "
                "characters"
            )
        if isinstance(self.logo_url, str) and self.logo_url and not _absolute_http(self.logo_url):
            raise msgspec.ValidationError("logo_url must be an absolute http(s) URL or empty")
        if isinstance(self.lanes, dict) and ANY_LANE in self.lanes:
            raise msgspec.ValidationError(f"{ANY_LANE!r} is not a lane name: it means any lane")
        for name in TIME_FIELDS:
            check_moment(name, getattr(self, name))

    def given(self) -> dict[str, Any]:
        return {
            f: getattr(self, f)
            for f in self.__struct_fields__
            if getattr(self, f) is not msgspec.UNSET
        }


CONFIG_FIELDS = RoomConfig.__struct_fields__

STRUCTURED_FIELDS = frozenset({"texts"})
"""Fields held as canonical JSON text, in the store and on the event log."""


def _canonical(value: Any) -> str:
    return msgspec.json.encode(value, order="sorted").decode()


def to_stored(name: str, value: Any) -> Any:
    """A field's value as the scripts see it: times as epoch milliseconds, 0 for none;
    structured fields as canonical JSON text."""
    if name in TIME_FIELDS:
        return epoch_ms(value)
    if name in STRUCTURED_FIELDS:
        return _canonical(value)
    return value


def _default(field: msgspec.structs.FieldInfo) -> Any:
    if field.required:
        return None
    if field.default_factory is not msgspec.NODEFAULT:
        return to_stored(field.name, field.default_factory())
    return to_stored(field.name, field.default)


FIELD_DEFAULTS: dict[str, Any] = {
    field.name: _default(field) for field in msgspec.structs.fields(RoomConfig)
}
"""Every config field and its stored default, None for a field a new room must be given
(what room_put.lua merges an update onto)."""


def checked_update(update: RoomUpdate) -> dict[str, Any]:
    """The fields an update gives, each within its bounds (an update built in Python has
    not been through msgspec's checks yet), in their stored form."""
    try:
        given = msgspec.convert(msgspec.to_builtins(update), RoomUpdate).given()
    except msgspec.ValidationError as exc:
        raise InvalidBody(str(exc)) from None
    return {name: to_stored(name, value) for name, value in given.items()}


def moment_of(ms: int) -> datetime | None:
    """A stored time (epoch milliseconds, 0 for none) as a time."""
    return EPOCH + timedelta(milliseconds=ms) if ms > 0 else None


def from_stored(flat: Mapping[str, Any]) -> RoomConfig:
    """The config as the scripts hold it: the room's ``cfg`` hash (every value a string,
    the lanes and texts as JSON) or a config a script answered. Only the bounds of each
    field apply: rules across fields are checked when a config is written."""
    values = {name: flat[name] for name in CONFIG_FIELDS if name in flat}
    for name in ("lanes", *STRUCTURED_FIELDS):
        if isinstance(values.get(name), str | bytes):
            values[name] = msgspec.json.decode(values[name])
    for name in TIME_FIELDS:
        if name in values:
            values[name] = moment_of(int(float(values[name])))
    return msgspec.convert(values, RoomConfig, strict=False)
