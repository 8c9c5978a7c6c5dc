"""How good the wait estimate is: replay a room's arrivals, admissions and leaves, ask the
estimate (gateway/answers.py) what it would have told each person waiting, and compare
with the wait they really had.

A pattern is a list of ``(seconds, kind, place)`` with ``kind`` one of ``arrive``, ``admit``
and ``leave``: recorded from a real room's event stream (``pattern_of_events``) or made
by ``simulate_room``, a room with a capacity, a release rate, visits of random length and
people who give up. The replay keeps the room's decaying counters exactly as the Lua
scripts do (admit.lua, _lib.lua), so the estimate sees what it would see in production.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.answers import eta_range, eta_seconds
from shared.events import Admitted, Enqueued, Event, Expired, Left
from shared.line import RATE_TAU_MS
from shared.store import PersonView

Pattern = list[tuple[float, str, str]]


@dataclass(frozen=True)
class Estimate:
    place: str
    at: float
    low: int
    expected: int
    high: int


@dataclass
class Accuracy:
    """How the estimates did against the waits that happened."""

    estimates: int
    covered: int
    """Real wait within [low, high]."""
    relative_errors: list[float] = field(repr=False)
    """|expected - real| / real, for each estimate."""

    @property
    def coverage(self) -> float:
        return self.covered / self.estimates if self.estimates else 0.0

    @property
    def median_error(self) -> float:
        errors = sorted(self.relative_errors)
        return errors[len(errors) // 2] if errors else 0.0

    def line(self, name: str) -> str:
        return (
            f"{name}: {self.estimates} estimates, real wait inside the 10-90 % range "
            f"{self.coverage:.0%} of the time, median error of the estimate "
            f"{self.median_error:.0%}"
        )


def simulate_room(
    seed: int,
    *,
    seconds: float = 900.0,
    arrivals: Callable[[float], float] = lambda t: 2.0,
    capacity: int = 40,
    release_rate: float = 5.0,
    visit_seconds: float = 25.0,
    patience_seconds: float = 600.0,
    tick: float = 0.1,
) -> Pattern:
    """A room at work, tick by tick like the admission worker: people arrive (a Poisson
    process of rate ``arrivals(t)``) for ``seconds``, give up at random (mean patience
    ``patience_seconds``), are admitted from the head while units are free and the
    release-rate bucket allows, and visit for a lognormal time of mean ``visit_seconds``.
    The room runs on until its line is empty, so every wait has an end."""
    rng = random.Random(seed)
    line: list[str] = []
    ending: list[float] = []
    out: Pattern = []
    burst = max(1.0, release_rate / 4)
    tokens = burst
    made = 0
    t = 0.0
    sigma = 0.6
    mu = math.log(visit_seconds) - sigma**2 / 2
    while t < seconds or line:
        for _ in range(_poisson(rng, arrivals(t) * tick) if t < seconds else 0):
            made += 1
            line.append(f"p{made}")
            out.append((t, "arrive", line[-1]))
        give_up = tick / patience_seconds
        for place in [p for p in line if rng.random() < give_up]:
            line.remove(place)
            out.append((t, "leave", place))
        ending = [e for e in ending if e > t]
        tokens = min(burst, tokens + release_rate * tick)
        while line and tokens >= 1 and len(ending) < capacity:
            place = line.pop(0)
            tokens -= 1
            ending.append(t + rng.lognormvariate(mu, sigma))
            out.append((t, "admit", place))
        t = round(t + tick, 6)
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-mean)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def pattern_of_events(events: Iterable[Event]) -> Pattern:
    """A room's pattern from its event stream, in seconds from its first event."""
    out: Pattern = []
    first: float | None = None
    for e in events:
        if isinstance(e, Enqueued):
            kind = "arrive"
        elif isinstance(e, Admitted):
            kind = "admit"
        elif isinstance(e, Left | Expired) and e.from_state == "waiting":
            kind = "leave"
        else:
            continue
        first = e.ts if first is None else first
        out.append((round(e.ts - first, 4), kind, e.position_id))
    return out


class _Decaying:
    """The Lua scripts' exponentially decaying counts (admit.lua's rate, _lib.lua's
    count of people gone from the line)."""

    def __init__(self) -> None:
        self.value = 0.0
        self.ts = 0

    def count(self, now_ms: int) -> None:
        decay = math.exp(-max(0, now_ms - self.ts) / RATE_TAU_MS) if self.ts else 0.0
        self.value = self.value * decay + 1000 / RATE_TAU_MS
        self.ts = now_ms


def _view(
    place: str,
    rank: int,
    total: int,
    now_ms: int,
    since_ms: int,
    admits: _Decaying,
    gone: _Decaying,
    release_rate: float,
) -> PersonView:
    return PersonView(
        position_id=place, state="waiting", rank=rank, total=total, arrival=0, size=1,
        priority=0, admitted_at=0, claim_deadline=0, session_deadline=0, reason="",
        bind="", room_status="active", release_rate=release_rate, session_ttl=600,
        heartbeat_interval=10, target_url="https://site.example/", incarnation="i",
        rate=admits.value, rate_ts=admits.ts, rate_since=since_ms, event_seq=0, now=now_ms,
        created=False, gone_rate=gone.value, gone_rate_ts=gone.ts,
    )  # fmt: skip


def replay_estimates(
    pattern: Pattern, *, release_rate: float, every: float = 5.0, per_sample: int = 25
) -> tuple[list[Estimate], dict[str, float]]:
    """What the estimate told people waiting, every ``every`` seconds (up to
    ``per_sample`` of them, spread over the line), and when each person was admitted."""
    line: list[str] = []
    admits, gone = _Decaying(), _Decaying()
    admitted_at: dict[str, float] = {}
    estimates: list[Estimate] = []
    events = sorted(pattern, key=lambda e: e[0])
    start = events[0][0] if events else 0.0
    next_sample = start + every
    for at, kind, place in [*events, (math.inf, "end", "")]:
        while next_sample <= at and next_sample < events[-1][0]:
            now_ms = int(next_sample * 1000)
            step = max(1, len(line) // per_sample)
            for rank in range(0, len(line), step):
                v = _view(
                    line[rank], rank, len(line), now_ms, int(start * 1000), admits, gone,
                    release_rate,
                )  # fmt: skip
                band, eta = eta_range(v), eta_seconds(v)
                if band is not None and eta is not None:
                    estimates.append(Estimate(line[rank], next_sample, band[0], eta, band[1]))
            next_sample += every
        ms = int(at * 1000) if at != math.inf else 0
        if kind == "arrive":
            line.append(place)
        elif kind == "admit" and place in line:
            line.remove(place)
            admits.count(ms)
            admitted_at[place] = at
        elif kind == "leave" and place in line:
            line.remove(place)
            gone.count(ms)
    return estimates, admitted_at


def accuracy(estimates: list[Estimate], admitted_at: dict[str, float]) -> Accuracy:
    """Compare each estimate of someone who was admitted later with their real wait."""
    covered, errors = 0, []
    for e in estimates:
        if e.place not in admitted_at:
            continue  # gave up, or still waiting when the pattern ends: no real wait
        real = admitted_at[e.place] - e.at
        covered += e.low - 1 <= real <= e.high + 1  # the answer is in whole seconds
        errors.append(abs(e.expected - real) / max(real, 1.0))
    return Accuracy(len(errors), covered, errors)
