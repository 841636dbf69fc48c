"""Paced load through variant-sync with the limiter on: items per request when the budget
throttles a moderate load, and latency from produce to API call when it does not.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/paced.py

moderate: 400 distinct SKUs/s for 20 s, linger 100 ms, budget 2 requests/s (20 per 10 s). Unthrottled
  the worker would send 10 requests/s of 40 items; the budget allows 2, so the most a
  request can carry is 400 / 2 = 200 items. Target: ≥ 90 % of that.
latency:  200 updates/s for 20 s, linger 1,000 ms, budget 20 requests/s (never reached).
  Each SKU's produce time (just before `send`) against the time the API call carrying it
  arrived at the sink. Target: p99 ≤ linger + 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BOOTSTRAP, credentials, make_topic, percentile, verdict

from services.variant_sync import VariantSync
from shared.bootstrap import build_parts
from shared.config import load_settings


async def paced_run(
    per_second: int, seconds: float, linger_ms: int, budget: int
) -> tuple[list[int], list[float]]:
    """Produce `per_second` distinct-SKU updates for `seconds`; returns the sizes of the
    requests and the produce→call latency of every item, in seconds."""
    account = str(uuid.UUID(int=1))
    produced: dict[str, float] = {}
    latencies: list[float] = []
    sizes: list[int] = []

    def sink(request: httpx.Request) -> httpx.Response:
        now = time.time()
        items = json.loads(request.content)["variants"]
        sizes.append(len(items))
        latencies.extend(now - produced[i["sku"]] for i in items if i["sku"] in produced)
        return httpx.Response(200, json={"updated": len(items)})

    with tempfile.TemporaryDirectory() as tmp:
        topic = await make_topic("variant-updates")
        settings = load_settings(
            kafka_bootstrap_servers=BOOTSTRAP,
            m2e_base_url="https://sink.local/api/v1/api",
            m2e_credentials_file=credentials(Path(tmp), [account]),
            kafka_input_topic=topic,
            kafka_group_id=f"bench-{uuid.uuid4().hex[:8]}",
            rate_limit_requests=budget * 10,  # per 10 s: the jitter margin is 1 % of it
            rate_limit_period_s=10.0,
            batch_linger_ms=linger_ms,
            log_level="WARNING",
        )
        parts = build_parts(VariantSync({account}), settings, transport=httpx.MockTransport(sink))
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0)
        await producer.start()
        await parts.worker.start()
        try:
            while not parts.worker.ready:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # assignment settles before the clock starts
            tick, sent, started = 0.01, 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds:
                due = int(elapsed * per_second)
                for i in range(sent, due):
                    sku = f"PACE-{i:07d}"
                    produced[sku] = time.time()
                    value = json.dumps({"account_token": account, "sku": sku, "price": 1.5})
                    await producer.send(topic, value.encode(), key=sku.encode())
                sent = max(sent, due)
                await asyncio.sleep(tick)
            await producer.flush()
            deadline = time.monotonic() + linger_ms / 1000 + 10
            while len(latencies) < sent and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()
            await parts.worker.stop()
            await parts.client.aclose()
    return sizes, latencies


async def moderate(per_second: int = 400, seconds: float = 20.0, budget: int = 2) -> dict[str, Any]:
    sizes, _ = await paced_run(per_second, seconds, linger_ms=100, budget=budget)
    allowed = min(500, per_second / budget)
    steady = sizes[2:-2] or sizes  # the first and last requests see a partial second
    per = sum(steady) / max(1, len(steady))
    return {
        "per_second": per_second,
        "budget": budget,
        "allowed": allowed,
        "items_per_request": per,
        "share": per / allowed,
        "requests": len(sizes),
        "requests_per_s": len(sizes) / seconds,
        "sizes": sizes,
    }


async def latency(
    per_second: int = 200, seconds: float = 20.0, linger_ms: int = 1000
) -> dict[str, Any]:
    _, latencies = await paced_run(per_second, seconds, linger_ms=linger_ms, budget=20)
    return {
        "per_second": per_second,
        "linger_ms": linger_ms,
        "items": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=0.0) * 1000,
        "latencies_ms": [x * 1000 for x in latencies],
    }


def moderate_met(m: dict[str, Any]) -> bool:
    return bool(m["share"] >= 0.9)


def latency_met(lat: dict[str, Any]) -> bool:
    return bool(lat["p99_ms"] <= lat["linger_ms"] + 100)


async def main() -> None:
    m = await moderate()
    print(
        f"moderate  {m['per_second']} items/s, budget {m['budget']} req/s: {m['items_per_request']:.1f} "
        f"items/request of {m['allowed']:.0f} allowed = {m['share']:.1%} (target ≥ 90 %: "
        f"{verdict(moderate_met(m))}); {m['requests_per_s']:.2f} requests/s"
    )
    lat = await latency()
    print(
        f"latency   produce→API, linger {lat['linger_ms']} ms: p50 {lat['p50_ms']:.0f} ms, "
        f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms over {lat['items']:,} items "
        f"(target p99 ≤ {lat['linger_ms'] + 100} ms: {verdict(latency_met(lat))})"
    )


if __name__ == "__main__":
    asyncio.run(main())
