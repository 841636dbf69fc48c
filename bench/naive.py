"""The naive baseline: one API call per message from a plain FastStream handler.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/naive.py [--messages 1500] [--budget 50]

What a first version (or an HTTP sink connector) does: a FastStream subscriber that
PATCHes each variant update as it arrives, throttled by aiolimiter to the same budget
(and retrying 429s), against the same sandbox. m2e-sync (variant-sync in-process) moves
the same messages under the same budget. Reported: API requests and wall time of each,
and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiolimiter import AsyncLimiter
from faststream.kafka import KafkaBroker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BOOTSTRAP, metric_total, produce

from m2e_sandbox.config import RateLimitConfig
from services.variant_sync import VariantSync
from shared.bootstrap import build_parts
from shared.config import load_settings
from tests.integration.harness import ACCT_A, TOKEN_A, SandboxServer, create_topics, sandbox_config


async def naive(sandbox: SandboxServer, topic: str, n: int, budget: int) -> tuple[float, int]:
    limiter = AsyncLimiter(budget, 1.0)
    http = httpx.AsyncClient(base_url=sandbox.base_url, headers={"access-token": TOKEN_A})
    broker = KafkaBroker(BOOTSTRAP, logger=None)
    done = asyncio.Event()
    state = {"handled": 0, "requests": 0, "first": 0.0}

    @broker.subscriber(
        topic, group_id=f"naive-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest"
    )
    async def handle(body: dict[str, Any]) -> None:
        state["first"] = state["first"] or time.perf_counter()
        item = {k: v for k, v in body.items() if k != "account_token"}
        while True:
            async with limiter:
                state["requests"] += 1
                response = await http.patch(
                    "/catalog/product/variant/",
                    params={"account_token": body["account_token"]},
                    json={"variants": [item]},
                )
            if response.status_code != 429:
                break
            await asyncio.sleep(0.2)
        state["handled"] += 1
        if state["handled"] >= n:
            done.set()

    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=n / budget * 3 + 60)
    finally:
        await broker.stop()
        await http.aclose()
    return time.perf_counter() - state["first"], int(state["requests"])


async def batched(sandbox: SandboxServer, topic: str, n: int, budget: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        creds = Path(tmp) / "creds.yaml"
        creds.write_text(f"{ACCT_A}: {TOKEN_A}\n")
        settings = load_settings(
            kafka_bootstrap_servers=BOOTSTRAP,
            m2e_base_url=sandbox.base_url,
            m2e_credentials_file=creds,
            kafka_input_topic=topic,
            kafka_group_id=f"bench-{uuid.uuid4().hex[:8]}",
            rate_limit_requests=budget,
            rate_limit_period_s=1.0,
            log_level="WARNING",
        )
        parts = build_parts(VariantSync({ACCT_A}), settings)
        items = parts.metrics.items
        before = len(sandbox.requests())
        await parts.worker.start()
        try:
            consumed = parts.metrics.consumed.labels("variant-sync", topic)
            while consumed._value.get() == 0:
                await asyncio.sleep(0.005)
            started = time.perf_counter()
            while metric_total(items) < n:
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
        finally:
            await parts.worker.stop()
            await parts.client.aclose()
        return elapsed, len(sandbox.requests()) - before


async def run(messages: int = 1500, budget: int = 50) -> dict[str, Any]:
    sandbox = SandboxServer(sandbox_config())
    await sandbox.start()
    try:
        skus = [f"NV-{i:05d}" for i in range(messages)]
        await sandbox.seed_variants(TOKEN_A, skus, per_product=100)
        sandbox.sandbox.limiter.configure(RateLimitConfig(requests=budget, period_s=1.0))
        events = [
            (s.encode(), json.dumps({"account_token": ACCT_A, "sku": s, "price": 2.5}).encode())
            for s in skus
        ]
        topic_a = await create_topics(BOOTSTRAP, "variant-updates")
        topic_b = await create_topics(BOOTSTRAP, "variant-updates")
        await produce(topic_a, events)
        await produce(topic_b, events)
        ours_s, ours_req = await batched(sandbox, topic_a, messages, budget)
        naive_s, naive_req = await naive(sandbox, topic_b, messages, budget)
        throttled = sandbox.sandbox.stats.requests["PATCH /catalog/product/variant/"].get("429", 0)
    finally:
        await sandbox.close()
    return {
        "messages": messages,
        "budget": budget,
        "naive_s": naive_s,
        "naive_requests": naive_req,
        "ours_s": ours_s,
        "ours_requests": ours_req,
        "requests_ratio": naive_req / max(1, ours_req),
        "time_ratio": naive_s / ours_s,
        "throttled": throttled,
    }


def report(r: dict[str, Any]) -> None:
    print(
        f"naive     {r['messages']:,} updates, budget {r['budget']} req/s: one call per message "
        f"{r['naive_requests']:,} requests in {r['naive_s']:.1f}s; m2e-sync {r['ours_requests']} "
        f"requests in {r['ours_s']:.1f}s → {r['requests_ratio']:.0f}× fewer requests, "
        f"{r['time_ratio']:.0f}× less time"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--budget", type=int, default=50)
    args = parser.parse_args()
    report(asyncio.run(run(args.messages, args.budget)))
