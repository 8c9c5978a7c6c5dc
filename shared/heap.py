"""What a long-running process tells the garbage collector once it has started."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Put what start-up made (modules, the app, its routes and schemas: about 90,000
    objects in a gateway) out of the collector's reach. They live as long as the process,
    and each full collection scanned them all again while every request waited. Called
    when the process is ready to serve; only the first call freezes (a process that runs
    more than one app, as the tests do, freezes what it held then, once)."""
    if gc.get_freeze_count():
        return
    gc.collect()
    gc.freeze()
