"""Token costs on this machine, as ratios to a baseline measured in the same run.

Baseline: one RS256 sign on the calling thread. Printed: RS256 verify, a cached verify,
ES256 sign, and signing throughput with the service's 2-thread pool.

python -m loadtest.bench_tokens [--n 400]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shared.keyring import KeyRing, ensure_keys
from shared.tokens import TokenService


def per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400, help="calls per measurement")
    n = parser.parse_args(argv).n
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp)
        ensure_keys(keys, ("rsa", "ec"))
        rs = TokenService(KeyRing(keys), issuer="bench", audience="site", sign_threads=2)
        es = TokenService(KeyRing(keys), issuer="bench", audience="site", queue_alg="ES256")
        claims = rs.queue_claims(
            "room", "position_id", incarnation="i", arrival=1, size=1, priority=0, bind=""
        )
        token = rs.sign_queue_sync(claims)
        baseline = per_call(lambda: rs.sign_queue_sync(claims), n)
        verify = per_call(lambda: rs._decode(token, rs.queue_audience), n)
        cached = per_call(lambda: rs.verify_queue(token, "room"), n)
        es_sign = per_call(lambda: es.sign_queue_sync(claims), n)

        async def pooled() -> float:
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    rs.sign_queue(
                        "room", f"p{i}", incarnation="i", arrival=i, size=1, priority=0, bind=""
                    )
                    for i in range(n)
                )
            )
            return (time.perf_counter() - started) / n

        pool = asyncio.run(pooled())
        rs.close()
        es.close()
    rows = [
        ("RS256 sign, calling thread (baseline)", baseline),
        ("RS256 verify", verify),
        ("RS256 verify, cached", cached),
        ("ES256 sign", es_sign),
        ("RS256 sign, 2-thread pool, per token", pool),
    ]
    sys.stdout.write(f"{'measurement':42} {'us/call':>10} {'x baseline':>11}\n")
    for name, seconds in rows:
        sys.stdout.write(f"{name:42} {seconds * 1e6:10.1f} {seconds / baseline:11.3f}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
