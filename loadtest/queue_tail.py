"""What a queue's law allows for the joins' tail target (p99 within 3x p50 at 80 % load).

One server answering in arrival order, at a given load (arrival rate over service rate),
simulated: the p50 and p99 of the time from arrival to answer, in service times, for
arrivals evenly paced or random (Poisson), and service times constant or random
(exponential). With random arrivals at 80 % no server meets 3x, not even one whose every
answer takes the same time: the line that forms now and then is the tail. A gateway
sharing two cores with its store, its load generator and its workers is nearer the
random cases than the paced ones, its floor app too; this is what the bench's
``p99/p50`` columns are to be read against.

python -m loadtest.queue_tail [--load 0.8] [--requests 400000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

Draw = Callable[[random.Random], float]

ARRIVALS: dict[str, Callable[[float], Draw]] = {
    "paced": lambda load: lambda _rng: 1.0 / load,
    "random": lambda load: lambda rng: rng.expovariate(load),
}
SERVICES: dict[str, Draw] = {
    "constant": lambda _rng: 1.0,
    "random": lambda rng: rng.expovariate(1.0),
}


@dataclass(frozen=True)
class Tail:
    arrivals: str
    service: str
    p50: float
    p99: float

    @property
    def ratio(self) -> float:
        return self.p99 / self.p50


def simulate(arrivals: str, service: str, load: float, requests: int, seed: int) -> Tail:
    """p50 and p99 of the time in the system (waiting and served), in mean service times."""
    if not 0 < load < 1:
        raise ValueError("load is the arrival rate over the service rate, between 0 and 1")
    rng = random.Random(seed)
    gap, serve = ARRIVALS[arrivals](load), SERVICES[service]
    arrived = free_at = 0.0
    times = []
    for _ in range(requests):
        arrived += gap(rng)
        free_at = max(arrived, free_at) + serve(rng)
        times.append(free_at - arrived)
    times.sort()
    return Tail(arrivals, service, times[requests // 2], times[int(requests * 0.99)])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=float, default=0.8, help="arrival over service rate")
    parser.add_argument("--requests", type=int, default=400_000, help="requests simulated")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"one server at {args.load:.0%} load; times in mean service times")
    print(f"{'arrivals':<8} {'service':<9} {'p50':>6} {'p99':>6} {'p99/p50':>8}")
    for arrivals in ARRIVALS:
        for service in SERVICES:
            tail = simulate(arrivals, service, args.load, args.requests, args.seed)
            print(
                f"{arrivals:<8} {service:<9} {tail.p50:>6.2f} {tail.p99:>6.2f} {tail.ratio:>8.2f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
