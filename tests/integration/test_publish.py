"""Results published through the producer's own batching: thousands of small flushes a
second (1,000 merchants trickling) share the partition's open batch instead of queueing
a batch each behind the one request per partition in flight — which timed out and made
the worker publish them twice."""

from __future__ import annotations

import asyncio
from collections import Counter

from shared.results import SMALL_SLOT, OutRecord, Publisher

from .harness import create_topics, read_all


async def test_thousands_of_small_publishes_land_once_without_timing_out(
    bootstrap_servers: str,
) -> None:
    topic = await create_topics(bootstrap_servers, "publish", partitions=1)
    # 3,000 one-record publishes at once; a batch each drained ~150 a second here, so a
    # 3 s timeout failed most of them.
    publisher = Publisher.create(bootstrap_servers, request_timeout_ms=3000)
    await publisher.start()
    try:
        records = [OutRecord(topic, f"k{i}".encode(), f"v{i}".encode()) for i in range(3000)]
        await asyncio.gather(*(publisher.publish([r]) for r in records))
        big = [OutRecord(topic, b"big", f"b{i}".encode()) for i in range(SMALL_SLOT * 3)]
        await publisher.publish(big)  # a big slot still goes in batches of its own
    finally:
        await publisher.stop()
    got = await read_all(bootstrap_servers, topic, 3000 + len(big))
    counts = Counter(r.value for r in got)
    assert len(counts) == 3000 + len(big) and set(counts.values()) == {1}
    assert [r.value for r in got if r.key == b"big"] == [r.value for r in big]  # in order
