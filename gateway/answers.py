"""Turning a person's state into the answer they see: position, wait estimate, links.

Pure functions of a ``PersonView``: no I/O, so they are tested without servers. The wait
estimate is checked against recorded and simulated rooms (tests/unit/test_wait_estimates.py:
the range holds the real wait at least 8 times out of 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlencode

from gateway.schemas import PlaceResponse
from shared.line import RATE_TAU_MS
from shared.store import PersonView

MIN_RATE = 0.01
WINDOW_SECONDS = RATE_TAU_MS / 1000
"""About how many seconds of admissions and leaves the observed rates stand for."""
Z_80 = 1.2816
"""The 90th percentile of a standard normal: the range holds 80 % of outcomes."""
DRIFT = 0.1
"""Relative error a pace observed over the last half minute carries into the future
(rooms speed up and slow down: visits end unevenly, operators change the rate)."""
TURNS_VARIANCE = 0.5
"""Admissions come more evenly than a Poisson process would bring them (the release-rate
bucket paces them, many visits end independently): half its variance, measured against
simulated rooms (tests/unit/test_wait_estimates.py)."""
POLICY_SPREAD = {"best_fit": 0.3, "lanes": 0.35}
"""Extra relative spread where the order is not first come, first served: with best_fit
smaller parties further back may go first (and this one may be passed over); with lanes
the room's pace is not this lane's."""


@dataclass(frozen=True)
class WaitFacts:
    """What a wait estimate is made from, all of it carried by the person's view."""

    position: int
    waiting: int
    admit_rate: float
    """Places admitted per second from now on: observed, at most the pace the site allows."""
    admit_seen: float
    """Admissions the observed rate rests on (0: only the configured rate to go on)."""
    gone_rate: float
    """People per second leaving the line before their turn, lately."""
    gone_seen: float
    order: str
    """How the line is served: ``fifo``, ``best_fit``, ``lanes`` or ``lottery``."""


def wait_facts(view: PersonView) -> WaitFacts | None:
    """The facts of a waiting person's wait; None when nobody can honestly say (the room
    is paused, in maintenance, or lets nobody in while its site is too slow)."""
    if view.state != "waiting" or view.room_status != "active":
        return None
    observed = view.observed_rate()
    rate = observed if observed >= MIN_RATE else view.release_rate
    seen = observed * WINDOW_SECONDS if observed >= MIN_RATE else 0.0
    if view.pace >= 0:
        rate = min(rate, view.pace)
    if rate < MIN_RATE:
        return None
    gone = view.observed_gone_rate()
    order = "fifo"
    if view.queueing_method == "random":
        order = "lottery"
    elif view.lane:
        order = "lanes"
    elif view.admission_policy == "best_fit":
        order = "best_fit"
    return WaitFacts(
        position=view.position or 1,
        waiting=max(view.total, view.position or 1),
        admit_rate=rate,
        admit_seen=seen,
        gone_rate=gone,
        gone_seen=gone * WINDOW_SECONDS,
        order=order,
    )


def expected_wait(f: WaitFacts) -> float:
    """Seconds until the person's turn. The people ahead go at the admission rate and,
    besides, each leaves at the line's per-person leave rate h, so the count ahead falls
    as da/dt = -rate - h*a: it reaches 0 after ln(1 + h*a/rate)/h, then one more
    admission is theirs. Under a lottery every admission is theirs with chance 1/waiting."""
    if f.order == "lottery":
        return f.waiting / f.admit_rate
    ahead = f.position - 1
    h = f.gone_rate / f.waiting
    if h * ahead < 1e-6 * f.admit_rate:
        return f.position / f.admit_rate
    return math.log1p(h * ahead / f.admit_rate) / h + 1 / f.admit_rate


def wait_range(f: WaitFacts) -> tuple[float, float, float]:
    """The 10th percentile, the estimate and the 90th percentile of the wait, in seconds.

    The spread (relative, in log terms) adds up what is not known: the turns of chance in
    the admissions still to come (about 1/sqrt(n) for n of them), how well the observed rate
    stands for the real one (1/sqrt(admissions seen)), how much the pace drifts
    (``DRIFT``), how far the leave rate moves the estimate and how well it is known, and
    the policy. Under a lottery the wait is exponential: its own quantiles. The weights
    are calibrated on recorded and simulated rooms (tests/unit/test_wait_estimates.py)."""
    mean = expected_wait(f)
    if f.order == "lottery":
        return -math.log(0.9) * mean, mean, -math.log(0.1) * mean
    turns = max(1.0, f.admit_rate * mean)
    unsure = 1 / math.sqrt(f.admit_seen + 1) if f.admit_seen > 0 else 0.5
    leaves = (f.position / f.admit_rate - mean) / mean / math.sqrt(f.gone_seen + 1)
    spread = math.sqrt(
        TURNS_VARIANCE / turns
        + unsure**2
        + DRIFT**2
        + leaves**2
        + POLICY_SPREAD.get(f.order, 0.0) ** 2
    )
    return mean * math.exp(-Z_80 * spread), mean, mean * math.exp(Z_80 * spread)


def eta_seconds(view: PersonView) -> int | None:
    """Seconds until this person is likely admitted, from the rates actually observed
    (the configured release rate stands in before any admission). 0 out of the line;
    null while nobody can say (paused, maintenance, waiting for the line to open, or the
    site allows no admissions)."""
    if view.state != "waiting":
        return 0
    if view.prequeue:
        return None
    facts = wait_facts(view)
    return None if facts is None else math.ceil(expected_wait(facts))


def eta_range(view: PersonView) -> list[int] | None:
    """The range the wait will fall in 8 times out of 10 (10th to 90th percentile): wide
    while the evidence is thin, wider where the order is not first come, first served."""
    facts = wait_facts(view)
    if facts is None:
        return None
    low, _, high = wait_range(facts)
    return [max(0, math.floor(low)), math.ceil(high)]


def go_url(base_url: str, room: str, token: str) -> str:
    """The link that claims an admission (``/rooms/{room}/go?token=<queue token>``)."""
    return f"{base_url}/rooms/{room}/go?{urlencode({'token': token})}"


def target_location(target_url: str, access_token: str) -> str:
    """The protected site's address with the access token added to its query."""
    separator = "&" if "?" in target_url else "?"
    return f"{target_url}{separator}{urlencode({'waitroom_token': access_token})}"


def access_expiry(view: PersonView) -> int:
    """An access token lives until the claim deadline plus a session, or the session end."""
    if view.state == "active":
        return view.session_deadline // 1000
    return view.claim_deadline // 1000 + view.session_ttl


def place_answer(
    view: PersonView,
    *,
    queue_token: str | None = None,
    access_token: str | None = None,
    redirect_url: str | None = None,
) -> PlaceResponse:
    """Where a person stands, as the API answers it. ``queue_token`` is a new or refreshed
    token handed back; ``access_token`` and ``redirect_url`` only where the caller may have
    them."""
    out = PlaceResponse(
        position_id=view.position_id,
        state=view.state,
        position=view.position,
        ahead=view.ahead,
        total=view.total,
        eta_seconds=eta_seconds(view),
        eta_range=eta_range(view),
        heartbeat_interval=view.heartbeat_interval,
        room_status=view.room_status,
        token=queue_token,
        reason=view.reason or None,
        access_token=access_token,
        lane=view.lane or None,
        opens_at=view.opens_at / 1000 if view.prequeue else None,
    )
    if view.state == "admitted":
        out.claim_deadline = view.claim_deadline / 1000
        out.redirect_url = redirect_url
    return out
