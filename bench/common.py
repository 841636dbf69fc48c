"""What the benchmarks share: topics, a bare-consumer baseline, a fast sink, a timed run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.bootstrap import build_parts
from shared.config import load_settings
from shared.service import Service

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


class Sink:
    """The fastest possible M2E: answers 200 at once, counts requests and items per route."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.routes: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        route = f"{request.method} {request.url.path.split('/api/v1/api', 1)[-1]}"
        self.routes[route] += 1
        if route == "POST /catalog/product/find/":
            return httpx.Response(200, json={"list": [], "total": 0})
        items = body if isinstance(body, list) else next(iter(body.values()), [])
        self.sizes.append(len(items))
        key = {"POST": "created", "DELETE": "deleted"}.get(request.method, "updated")
        return httpx.Response(200, json={key: len(items)})


async def make_topic(base: str, partitions: int = 4) -> str:
    name = f"bench.{uuid.uuid4().hex[:8]}.{base}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, partitions, 1) for n in (name, name + ".results", name + ".dlq")]
        )
    finally:
        await admin.close()
    return name


async def produce(topic: str, messages: Any) -> int:
    """Publish (key, value-bytes) pairs; returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    futures: list[Any] = []
    n = 0
    try:
        for key, value in messages:
            futures.append(await producer.send(topic, value, key=key))
            n += 1
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


async def baseline(topic: str, n: int) -> float:
    """msg/s of a bare aiokafka consumer reading the topic: the ceiling on this machine."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=32 << 20,
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - started)


async def committed_total(group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset > 0)


async def run_worker(
    service: Service,
    topic: str,
    n: int,
    creds: Path,
    *,
    limited: bool,
    seconds: float | None = None,
    rate: int = 20,
    transport: Callable[[httpx.Request], httpx.Response] | None = None,
) -> tuple[float, Sink]:
    """Run a worker until `n` offsets are committed (or for `seconds`).

    Returns the seconds from the first consumed message to the last commit, and the sink
    as it was before shutdown began (the drain is not backlog)."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        kafka_bootstrap_servers=BOOTSTRAP,
        m2e_base_url="https://sink.local/api/v1/api",
        m2e_credentials_file=creds,
        kafka_input_topic=topic,
        kafka_group_id=group,
        rate_limit_enabled=limited,
        rate_limit_requests=rate,
        rate_limit_period_s=1.0,
        commit_interval_ms=100,
        max_pending_items=100_000,
        log_level="WARNING",
    )
    sink = Sink()
    parts = build_parts(service, settings, transport=httpx.MockTransport(transport or sink))
    consumed = parts.metrics.consumed.labels(service.name, topic)
    await parts.worker.start()
    try:
        while consumed._value.get() == 0:  # the group join is not pipeline time
            await asyncio.sleep(0.005)
        started = time.perf_counter()
        if seconds is not None:
            await asyncio.sleep(seconds)
        else:
            while await committed_total(group, topic) < n:
                await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        snapshot = Sink()
        snapshot.sizes, snapshot.routes = list(sink.sizes), Counter(sink.routes)
    finally:
        await parts.worker.stop()
        await parts.client.aclose()
    return elapsed, snapshot


async def throughput(
    service: Service, base: str, events: list[tuple[bytes, bytes]], accounts: list[str]
) -> dict[str, Any]:
    """A service from consume to commit with the limiter off, against a bare consumer
    reading the same topic in the same run."""
    with tempfile.TemporaryDirectory() as tmp:
        creds = credentials(Path(tmp), accounts)
        topic = await make_topic(base)
        await produce(topic, events)
        ceiling = await baseline(topic, len(events))
        elapsed, sink = await run_worker(service, topic, len(events), creds, limited=False)
    return {
        "messages": len(events),
        "baseline_msg_s": ceiling,
        "msg_s": len(events) / elapsed,
        "seconds": elapsed,
        "requests": len(sink.sizes),
        "items_per_request": sum(sink.sizes) / max(1, len(sink.sizes)),
        "routes": dict(sink.routes),
    }


def metric_total(metric: Any) -> float:
    """The sum over a labelled prometheus_client metric's children."""
    return sum(child._value.get() for child in metric._metrics.values())


def credentials(tmp: Path, accounts: list[str]) -> Path:
    path = tmp / "creds.yaml"
    path.write_text("".join(f"{a}: token-{i % 2}\n" for i, a in enumerate(accounts)))
    return path


def worker_env(topic: str, sandbox_url: str, creds: Path, **settings: object) -> dict[str, str]:
    """The environment of an `m2e-sync run` process against the stack and a sandbox, with a
    group and rate-limit keys of its own run; `settings` (NAME=value) add or override."""
    run = uuid.uuid4().hex[:6]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "KAFKA_INPUT_TOPIC": topic,
        "KAFKA_GROUP_ID": f"bench-{run}",
        "M2E_BASE_URL": sandbox_url,
        "M2E_CREDENTIALS_FILE": str(creds),
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_REDIS_PREFIX": f"bench-rl-{run}",
        "LOG_LEVEL": "WARNING",
    }
    env.update({name: str(value) for name, value in settings.items()})
    return env


async def stop_workers(procs: list[Any]) -> None:
    """SIGTERM every worker process, then wait for each to drain and exit."""
    for p in procs:
        p.signal(15)
    for p in procs:
        await p.wait(60)


def meter_from_now(sandbox: Any, requests: int, period_s: float, mode: str = "fixed") -> None:
    """Start the sandbox's budget now, with a clean request log: whatever seeded it before
    went through the API unmetered and is not counted."""
    from m2e_sandbox.config import RateLimitConfig

    sandbox.sandbox.limiter.configure(
        RateLimitConfig(requests=requests, period_s=period_s, mode=mode)
    )
    sandbox.sandbox.limiter.reset()
    sandbox.sandbox.stats.log.clear()
