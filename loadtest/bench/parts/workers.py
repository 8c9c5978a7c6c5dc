"""placeholder"""

from loadtest.bench.context import Bench


async def run(b: Bench, parts: set[str]) -> None:
    b.say("not yet")
