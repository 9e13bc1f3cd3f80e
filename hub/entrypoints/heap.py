"""Keep the objects a process builds at start-up out of Python's full garbage collections.

A started gateway holds ~115,000 long-lived objects (modules, compiled schemas' wrappers, the
routing rules, SQLAlchemy's and aiohttp's machinery). Under load the collector's oldest generation
runs every few seconds and walks all of them: 43-97 ms with the event loop stopped, every request in
flight waiting (docs/performance.md). Frozen, they are skipped: the collections that remain walk
only what was made since. Only the long-running commands call this, once they are up.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect the start-up garbage, then freeze what is left; returns how many objects were frozen.

    Frozen objects are still freed when their last reference goes (a reloaded routing table is); only
    a reference cycle among them would now outlive its use, and start-up builds none that matter."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
