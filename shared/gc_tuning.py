"""Garbage-collector thresholds for a worker that holds many messages at once.

A worker holds up to `MAX_PENDING_ITEMS` messages (each a handful of small objects) and,
while it reads past a hot account's backlog, allocates and frees hundreds of thousands
more. With CPython's default thresholds (700, 10, 10) the collector then walked the whole
heap about once a second, 100-300 ms each time (bench/many_merchants.py, 1,000 accounts and
a 500,000-message backlog): every account's batches waited behind those pauses. Messages
are short-lived and our objects rarely form cycles, so collecting less often costs little
memory: a young collection every 50,000 net allocations instead of 700, and a full one
ten times less often. What the process built at start-up (modules, settings, the app) is
frozen: no collection walks it again.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    """Call once the process's long-lived objects are built."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
