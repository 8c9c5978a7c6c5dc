"""What the scripts answer, decoded: pure types and functions, no I/O."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from shared.line import observed_rate
from shared.site_latency import LatencyReport, recent, report_decoder, site_p95

State = Literal["waiting", "admitted", "active", "completed", "expired", "left"]


class PersonView(msgspec.Struct, frozen=True):
    """What a script answers about one person and the room around them."""

    position_id: str
    state: State
    rank: int
    total: int
    arrival: int
    size: int
    priority: int
    admitted_at: int
    claim_deadline: int
    session_deadline: int
    reason: str
    bind: str
    room_status: str
    release_rate: float
    session_ttl: int
    heartbeat_interval: int
    target_url: str
    incarnation: str
    """The room's incarnation: new each time a room of this name is created."""
    rate: float
    rate_ts: int
    rate_since: int
    event_seq: int
    now: int
    created: bool
    gone_rate: float = 0.0
    """A decaying count of people who left the line or went silent (see observed_rate)."""
    gone_rate_ts: int = 0
    pace: float = -1.0
    """The release rate the site's latency allows now (auto_release), -1 when it is not
    followed (the room releases at release_rate)."""
    admission_policy: str = "strict"
    queueing_method: str = "fifo"
    lane: str = ""
    """The lane joined (a name or ``any``); empty in a room without lanes."""
    prequeue: bool = False
    """Waiting in the pre-queue: the line opens at ``opens_at`` (epoch ms)."""
    opens_at: int = 0

    @property
    def position(self) -> int | None:
        return self.rank + 1 if self.state == "waiting" and self.rank >= 0 else None

    @property
    def ahead(self) -> int | None:
        return self.rank if self.state == "waiting" and self.rank >= 0 else None

    def observed_rate(self) -> float:
        return observed_rate(self.rate, self.rate_ts, self.rate_since, self.now)

    def observed_gone_rate(self) -> float:
        """People per second leaving the line before their turn, lately."""
        return observed_rate(self.gone_rate, self.gone_rate_ts, self.rate_since, self.now)


class AdmitResult(msgspec.Struct, frozen=True):
    admitted: list[str] | dict[str, Any]
    used_units: int
    status: str
    opening: bool = False
    """A pre-queue is due to open: nobody was admitted, open_line goes first."""

    @property
    def position_ids(self) -> list[str]:
        # cjson encodes an empty Lua table as {}
        return self.admitted if isinstance(self.admitted, list) else []


class RoomFigures(msgspec.Struct, frozen=True):
    config: dict[str, str]
    stats: dict[str, str] | list[Any]
    waiting: int
    admitted: int
    active: int
    outbox: int
    now: int
    latency: list[str] | dict[str, Any] = msgspec.field(default_factory=list)
    """The latency reports of the site (JSON each; cjson writes an empty list as {})."""
    outbox_oldest: int = 0
    prequeue: int = 0
    invites: int = 0

    @property
    def outbox_age(self) -> float:
        """Seconds the oldest undelivered event has waited (0 when none): what a loss of
        the data store now would take with it (``waitroom_room_outbox_age_seconds``)."""
        return max(0, self.now - self.outbox_oldest) / 1000 if self.outbox_oldest else 0.0

    def stat(self, name: str) -> int:
        stats = self.stats if isinstance(self.stats, dict) else {}
        return int(float(stats.get(name, "0")))

    def lanes_used(self) -> dict[str, int]:
        """Units seated in each lane now (lanes with none left out)."""
        stats = self.stats if isinstance(self.stats, dict) else {}
        prefix = "lane_used:"
        return {
            name.removeprefix(prefix): int(value)
            for name, value in sorted(stats.items())
            if name.startswith(prefix) and int(value) != 0
        }

    def admit_rate(self) -> float:
        stats = self.stats if isinstance(self.stats, dict) else {}
        return observed_rate(
            float(stats.get("rate", "0")),
            int(stats.get("rate_ts", "0")),
            int(stats.get("rate_since", "0")),
            self.now,
        )

    def pace(self) -> float:
        """The release rate in force: the pace the site's latency allows when the room
        follows it (auto_release), else release_rate."""
        stats = self.stats if isinstance(self.stats, dict) else {}
        rate = float(self.config.get("release_rate", "0"))
        if self.config.get("auto_release") == "true" and "pace" in stats:
            return min(rate, float(stats["pace"]))
        return rate

    def site_p95_ms(self) -> float | None:
        reports = [report_decoder.decode(r) for r in self.latency if isinstance(r, str)]
        return site_p95(recent(reports, self.now))


class PaceInputs(msgspec.Struct, frozen=True):
    auto_release: bool
    target_latency_ms: int
    release_rate: float
    pace: float | None
    """The pace in force, None when none was set (the room releases at release_rate)."""
    reports: list[LatencyReport]
    """The site's latency reports of the last WINDOW_MS."""


ReplayMode = Literal["strict", "accept_gap", "reapply"]


class ReplayStop(msgspec.Struct, frozen=True):
    """Why a strict replay of a room stopped: ``gap`` (the stream has no events between
    ``after`` and ``next``), ``unknown_place``, ``unknown_type`` or ``diverged`` (a pre-queue
    opened otherwise than the stream recorded; at event ``id``)."""

    kind: str
    id: str = ""
    after: int = 0
    next: int = 0
    seq: int = 0
    type: str = ""


class Gap(msgspec.Struct, frozen=True):
    after: int
    next: int


class ReplayResult(msgspec.Struct, frozen=True):
    applied: int
    skipped: int
    conflicts: int
    orphans: int
    gaps: list[Gap] | dict[str, Any]
    stop: ReplayStop | None = None

    @property
    def gap_list(self) -> list[Gap]:
        # cjson encodes an empty Lua table as {}
        return self.gaps if isinstance(self.gaps, list) else []


replay_decoder = msgspec.json.Decoder(ReplayResult)


class PutResult(msgspec.Struct, frozen=True):
    created: bool
    config: dict[str, Any]
    """The merged config in its stored form (times as epoch ms, structured fields as JSON
    text: see shared/room.py from_stored)."""
    seq: int = 0
    """The seq of the room_updated event the change made."""
    version: int = 0
    inc: str = ""


class InviteRecord(msgspec.Struct, frozen=True):
    """An invite as the store keeps it; ``expires_at`` in epoch ms, 0 for never."""

    priority: int
    uses: int
    used: int
    expires_at: int
    revoked: bool


person_decoder = msgspec.json.Decoder(PersonView)
admit_decoder = msgspec.json.Decoder(AdmitResult)
figures_decoder = msgspec.json.Decoder(RoomFigures)
put_decoder = msgspec.json.Decoder(PutResult)
invite_decoder = msgspec.json.Decoder(InviteRecord)


def digest_of(raw: str) -> str:
    """A room's state digest from the room_digest script's answer: sha256 of a canonical
    JSON (sorted keys, people sorted by id) so any two stores holding the same room state
    give the same digest."""
    data = msgspec.json.decode(raw)
    flat_ips = data.get("ips") or []
    data["ips"] = sorted(zip(flat_ips[::2], flat_ips[1::2], strict=True))
    data["people"] = sorted(data.get("people") or [])
    data["invites"] = sorted(data.get("invites") or [])
    for name in ("line", "prequeue", "admitted", "active"):
        if not isinstance(data.get(name), list):
            data[name] = []  # cjson writes an empty list as {}
    canonical = msgspec.json.encode(data, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


class LineSnapshot(msgspec.Struct, frozen=True):
    """A room's whole line and what goes with it (line_snapshot.lua), for a gateway that
    answers people from memory: the line is ``[position_id, score, ...]`` in order."""

    event_seq: int
    incarnation: str
    status: str
    release_rate: float
    heartbeat_interval: int
    rate: float
    rate_ts: int
    rate_since: int
    now: int
    line: list[str] | dict[str, Any]
    gone_rate: float = 0.0
    gone_rate_ts: int = 0
    auto_release: bool = False
    pace: float = -1.0
    """The pace set for a room following its site, -1 while none is (see PersonView)."""


line_snapshot_decoder = msgspec.json.Decoder(LineSnapshot)
