"""Scaling out and in during a run: nothing lost, no commit ahead of delivery."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from .harness import (
    ACCT_A,
    TOKEN_A,
    committed,
    end_offsets,
    eventually,
    new_run,
    produce,
    read_all,
    sandbox_config,
    update,
    wait_all_committed,
    wait_ready,
)


async def test_third_worker_joins_and_leaves_mid_run(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config(faults={"latency_ms": 60}))
    skus = [f"B{i:05d}" for i in range(6000)]
    await sandbox.seed_variants(TOKEN_A, skus, per_product=100)
    run = await new_run(bootstrap_servers, sandbox, tmp_path, "variant-updates", partitions=6)
    topic, group = run.topic, run.group
    env = run.env(
        batch_max_items=100,
        revoke_flush_deadline_s=5,
    )
    prices = {sku: float(i + 1) for i, sku in enumerate(skus)}
    w1, w2 = workers("variant-sync", env, "one"), workers("variant-sync", env, "two")
    await wait_ready(w1, w2)

    samples: list[tuple[dict[int, int], dict[str, float]]] = []

    async def sample() -> None:
        offsets = await committed(bootstrap_servers, group, topic)
        catalog = sandbox.sandbox.users[TOKEN_A].catalog
        delivered = {v["sku"]: v["price"] for p in catalog.products.values() for v in p["variants"]}
        samples.append((offsets, delivered))

    third = None
    for chunk in range(6):
        batch = skus[chunk * 1000 : (chunk + 1) * 1000]
        await produce(bootstrap_servers, topic, [update(ACCT_A, s, price=prices[s]) for s in batch])
        if chunk == 1:
            third = workers("variant-sync", env, "three")
        if chunk == 4 and third is not None:
            third.signal(signal.SIGTERM)
        for _ in range(4):
            await asyncio.sleep(0.25)
            await sample()

    assert third is not None and await third.wait(timeout_s=30) == 0
    assert third.metric("m2e_sync_api_requests_total") == 0  # gone: metrics no longer served
    await eventually(
        lambda: all(sandbox.variant(TOKEN_A, s)["price"] == prices[s] for s in skus),  # type: ignore[index]
        timeout_s=120,
    )
    await wait_all_committed(bootstrap_servers, group, topic, timeout_s=30)
    ends = await end_offsets(bootstrap_servers, topic)
    await sample()

    # Every sampled commit covers only messages the sandbox held at that moment.
    records = await read_all(bootstrap_servers, topic, sum(ends.values()))
    by_partition: dict[int, list[str]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(r.partition, []).append(json.loads(r.value)["sku"])
    checked = 0
    for offsets, delivered in samples:
        for partition, upto in offsets.items():
            for sku in by_partition[partition][:upto]:
                assert delivered.get(sku) == prices[sku], (partition, upto, sku)
                checked += 1
    assert checked > 6000
    # The group really rebalanced: the third member owned partitions, the first two gave some up.
    assigned = [line for line in third.log().splitlines() if "partitions assigned: [" in line]
    revoked = [
        line for line in (w1.log() + w2.log()).splitlines() if "partitions revoked: [" in line
    ]
    assert any(f"'{topic}[" in line for line in assigned)
    assert any(f"'{topic}[" in line for line in revoked)


async def test_replicas_own_each_input_partition_with_its_retry_partition(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    """Order across the retry topic is decided by one process per partition pair: however
    the group is split, partition p of the input and of `<input>.retry` go to one replica."""
    from services.variant_sync import VariantSync
    from shared.bootstrap import build_parts

    from .harness import CREDENTIALS, worker_settings

    sandbox = await sandbox_server(sandbox_config())
    run = await new_run(bootstrap_servers, sandbox, tmp_path, "variant-updates", partitions=6)
    settings = worker_settings(bootstrap_servers, sandbox.base_url, run.topic, tmp_path)
    replicas = [build_parts(VariantSync(set(CREDENTIALS)), settings).worker for _ in range(3)]
    for w in replicas:
        await w.start()
    try:

        def split() -> list[set[Any]] | None:
            owned = [w.consumer.assignment() if w.consumer else set() for w in replicas]
            return owned if sum(len(o) for o in owned) == 12 and all(owned) else None

        owned = await eventually(split, timeout_s=60)
        for tps in owned:
            inputs = {tp.partition for tp in tps if tp.topic == run.topic}
            retries = {tp.partition for tp in tps if tp.topic == f"{run.topic}.retry"}
            assert inputs == retries and inputs
    finally:
        for w in replicas:
            await w.stop()
