"""product-sync's resident memory while distinct SKUs flow through it: the catalog view in
Redis against the view in the process.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/view_memory.py [--skus 500000]

A real `m2e-sync run product-sync` process, the sandbox with no effective budget, every
message a new SKU (SAP Anywhere and M2E products, as bench/product_upserts.py makes them).
RSS from /proc/<pid>/status when a fifth of the SKUs have been committed and at the end:
with `REDIS_URL` the worker keeps nothing per SKU, so RSS stays flat; without it the view
grows until its cap (200,000 SKUs per catalog).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BOOTSTRAP, REDIS_URL, produce
from memory import rss_mb
from product_upserts import event

from tests.integration.harness import (
    ACCT_A,
    TOKEN_A,
    SandboxServer,
    WorkerProcess,
    create_topics,
    eventually,
    sandbox_config,
    wait_all_committed,
)


def messages(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        sku = f"{tag}-{i:07d}"
        body = event(rng, ACCT_A, sku, i)  # M2E and SAP Anywhere products, a few deletes
        out.append((sku.encode(), json.dumps(body).encode()))
    return out


async def flow(skus: int, redis: bool) -> dict[str, Any]:
    sandbox = SandboxServer(sandbox_config(requests=1_000_000, period_s=1.0))
    await sandbox.start()
    tmp = Path(tempfile.mkdtemp(prefix="m2e-bench-view-"))
    creds = tmp / "credentials.yaml"
    creds.write_text(f"{ACCT_A}: {TOKEN_A}\n")
    topic = await create_topics(BOOTSTRAP, "product-upserts")
    group = f"bench-view-{uuid.uuid4().hex[:6]}"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "KAFKA_INPUT_TOPIC": topic,
        "KAFKA_GROUP_ID": group,
        "M2E_BASE_URL": sandbox.base_url,
        "M2E_CREDENTIALS_FILE": str(creds),
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        **({"REDIS_URL": REDIS_URL} if redis else {}),
    }
    worker = WorkerProcess("product-sync", env, tmp, "product-sync")
    samples: list[tuple[float, float]] = []
    try:
        await eventually(worker.ready, timeout_s=60)
        tag = uuid.uuid4().hex[:6]
        fifth = skus // 5
        await produce(topic, messages(fifth, f"A{tag}"))
        await wait_all_committed(BOOTSTRAP, group, topic, timeout_s=600)
        samples.append((fifth, rss_mb(worker.proc.pid)))
        await produce(topic, messages(skus - fifth, f"B{tag}"))
        await wait_all_committed(BOOTSTRAP, group, topic, timeout_s=1800)
        samples.append((skus, rss_mb(worker.proc.pid)))
        return {"redis": redis, "skus": skus, "samples": samples}
    finally:
        worker.signal(15)
        await worker.wait(60)
        await sandbox.close()


def report(r: dict[str, Any]) -> str:
    (n1, m1), (n2, m2) = r["samples"]
    where = "Redis" if r["redis"] else "the process"
    return (
        f"view in {where}: RSS {m1:.0f} MB after {n1:,} SKUs, {m2:.0f} MB after {n2:,} "
        f"({m2 - m1:+.0f} MB)"
    )


async def run(skus: int) -> list[dict[str, Any]]:
    return [await flow(skus, redis=True), await flow(skus, redis=False)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=500_000)
    for row in asyncio.run(run(parser.parse_args().skus)):
        print(report(row))
