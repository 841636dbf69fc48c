"""One merchant with a backlog among others: its messages move aside to the retry topic and
drain at its budget's pace, spread over each window, while the others' updates land as
they come."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from .harness import (
    ACCT_A,
    ACCT_B,
    TOKEN_A,
    TOKEN_B,
    eventually,
    new_run,
    produce,
    sandbox_config,
    update,
    wait_ready,
)

ROUTE = "PATCH /catalog/product/variant/"


async def trickle(bootstrap: str, topic: str, skus: list[str], every_s: float) -> dict[str, float]:
    """One update of account B per SKU, `every_s` apart: when each was sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    sent: dict[str, float] = {}
    try:
        for sku in skus:
            key, value = update(ACCT_B, sku, price=7.0)
            await producer.send_and_wait(topic, json.dumps(value).encode(), key=key.encode())
            sent[sku] = time.monotonic()
            await asyncio.sleep(every_s)
    finally:
        await producer.stop()
    return sent


async def test_a_hot_accounts_backlog_drains_evenly_over_its_windows_and_holds_no_one_back(
    bootstrap_servers: str, redis_url: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    limit, period, batch = 10, 2.0, 50
    sandbox = await sandbox_server(sandbox_config(requests=limit, period_s=period))
    hot = [f"H{i:04d}" for i in range(1500)]  # 30 requests: three windows and more
    calm = [f"C{i:03d}" for i in range(25)]
    await sandbox.seed_variants(TOKEN_A, hot, per_product=50)
    await sandbox.seed_variants(TOKEN_B, calm)
    run = await new_run(bootstrap_servers, sandbox, tmp_path, "variant-updates")
    env = run.env(
        rate_limit_enabled="true",
        rate_limit_requests=limit,
        rate_limit_period_s=period,
        redis_url=redis_url,
        rate_limit_redis_prefix=f"it-hot-{uuid.uuid4().hex[:6]}",
        batch_max_items=batch,
        max_pending_items=200,  # the backlog alone would fill it many times over
        max_pending_per_account=batch,
    )
    worker = workers("variant-sync", env, "hot")
    await wait_ready(worker)
    await produce(bootstrap_servers, run.topic, [update(ACCT_A, s, price=3.0) for s in hot])
    applied: dict[str, float] = {}

    def calm_applied() -> bool:
        for sku in calm:
            if sku not in applied and (sandbox.variant(TOKEN_B, sku) or {}).get("price") == 7.0:
                applied[sku] = time.monotonic()
        return len(applied) == len(calm)

    watch = asyncio.create_task(eventually(calm_applied, timeout_s=60, every_s=0.05))
    sent = await trickle(bootstrap_servers, run.topic, calm, 0.25)
    await watch
    waited = sorted(applied[s] - sent[s] for s in calm)
    assert waited[-1] < 2.0, waited  # linger 0.2 s: never stuck behind the backlog

    def hot_applied() -> bool:
        return all((sandbox.variant(TOKEN_A, s) or {}).get("price") == 3.0 for s in hot)

    await eventually(hot_applied, timeout_s=60)
    log = [r for r in sandbox.requests(ROUTE) if r["user"] == "a"]
    assert [r for r in log if r["status"] != 200] == []  # no 429
    assert sorted(r["items"] for r in log)[len(log) // 2] == batch  # full batches
    assert worker.metric("m2e_sync_messages_parked_total") >= len(hot) - 2 * 200
    # Each full window's requests are spread over it, not sent in its first instants.
    by_window: dict[float, list[float]] = defaultdict(list)
    for r in log:
        by_window[r["window"]].append(r["t"])
    full = [sorted(ts) for ts in by_window.values() if len(ts) == limit]
    assert full, {w: len(ts) for w, ts in by_window.items()}
    assert all(ts[-1] - ts[0] >= 0.6 * period for ts in full), [ts[-1] - ts[0] for ts in full]
