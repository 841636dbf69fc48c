"""One rate budget per access token, shared through Redis by every process."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.limiter import (
    FailoverLimiter,
    LocalLimiter,
    RateFeedback,
    RatePolicy,
    bucket_id,
)
from shared.redis_limiter import RedisLimiter

from .harness import (
    ACCT_A,
    TOKEN_A,
    Run,
    create_topics,
    eventually,
    free_port,
    new_run,
    order_topics,
    produce,
    sandbox_config,
    update,
    wait_ready,
    write_credentials,
)


def windows(times: list[float], period: float) -> list[int]:
    """Requests per fixed window, the way the sandbox counts them (a window opens at the
    first request after the previous one closed)."""
    counts: list[int] = []
    start = None
    for t in sorted(times):
        if start is None or t >= start + period:
            start = t
            counts.append(0)
        counts[-1] += 1
    return counts


async def test_two_processes_share_one_budget_without_429s(
    bootstrap_servers: str, redis_url: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    limit, period = 20, 2.0
    sandbox = await sandbox_server(sandbox_config(requests=limit, period_s=period))
    skus = [f"R{i:04d}" for i in range(2000)]
    await sandbox.seed_variants(TOKEN_A, skus, per_product=50)
    run = await new_run(bootstrap_servers, sandbox, tmp_path, "variant-updates")
    topic = run.topic
    prefix = f"it-rl-{uuid.uuid4().hex[:6]}"
    await produce(bootstrap_servers, topic, [update(ACCT_A, s, quantity=1) for s in skus])
    env = run.env(
        rate_limit_enabled="true",
        rate_limit_requests=limit,
        rate_limit_period_s=period,
        redis_url=redis_url,
        batch_max_items=5,
        rate_limit_redis_prefix=prefix,
    )
    first, second = workers("variant-sync", env, "one"), workers("variant-sync", env, "two")
    await wait_ready(first, second, any_=True)
    # Backlog: 2000 items at 5 per request need 400 requests, far more than the run allows.
    await asyncio.sleep(4 * period + 1)
    started = sandbox.sandbox.clock()
    await asyncio.sleep(6 * period)
    log = [r for r in sandbox.requests("PATCH /catalog/product/variant/") if r["t"] >= started]
    both_sent = (
        first.metric("m2e_sync_api_requests_total") > 0
        and second.metric("m2e_sync_api_requests_total") > 0
    )
    assert both_sent, "both processes took part"
    assert [r for r in log if r["status"] == 429] == []
    counts = windows([r["t"] for r in log], period)
    assert max(counts) <= limit, counts
    steady = counts[1:-1]
    assert steady and min(steady) >= 0.95 * limit, counts


async def test_a_429_seen_by_one_process_pauses_the_others(redis_url: str) -> None:
    prefix = f"it-rl-{uuid.uuid4().hex[:6]}"
    policy = RatePolicy(1000, 1.0)
    bucket = bucket_id("shared-token")
    one = RedisLimiter(aioredis.from_url(redis_url), policy, prefix=prefix)
    other = RedisLimiter(aioredis.from_url(redis_url), policy, prefix=prefix)
    try:
        assert await other.ready_in(bucket) == 0.0
        await one.feedback(
            bucket,
            RateFeedback(limit=1000, remaining=0, throttled=True, retry_at=time.time() + 1.5),
        )
        wait = await other.ready_in(bucket)
        assert 1.0 < wait <= 1.6
        started = time.monotonic()
        await other.acquire(bucket)
        assert time.monotonic() - started >= 1.0
        # A lower limit from the server lowers everyone's rate.
        await one.feedback(bucket, RateFeedback(limit=10, remaining=9))
        await other.acquire(bucket)
        assert 0.05 < await other.ready_in(bucket) <= 1.0 / 10 * 1.02 + 0.01
        keys = [k.decode() async for k in one._redis.scan_iter(f"{prefix}:*")]
        assert keys and all("shared-token" not in k for k in keys)
    finally:
        await one.close()
        await other.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Any:
    """A redis-server of this test's own, so it can be stopped and started again."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def stop() -> None:
        for proc in procs:
            proc.terminate()
            proc.wait()
        procs.clear()

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    stop()


async def test_redis_outage_degrades_then_shared_mode_resumes(private_redis: Any) -> None:
    url, start, stop = private_redis
    changes: list[bool] = []
    client = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    await eventually(lambda: _ping(client), timeout_s=10, every_s=0.1)
    policy = RatePolicy(100, 1.0)
    limiter = FailoverLimiter(
        RedisLimiter(client, policy, prefix="it"),
        LocalLimiter(policy, share=1 / 3),
        changes.append,
        retry_s=0.5,
    )
    await limiter.acquire("acct")
    assert not limiter.degraded
    assert await client.exists("it:acct:tat")

    stop()
    for _ in range(5):  # work goes on without Redis
        await limiter.acquire("acct")
    assert limiter.degraded and changes == [True]

    start()
    await eventually(lambda: _acquire_shared(limiter), timeout_s=10, every_s=0.2)
    assert changes == [True, False]
    await limiter.close()


async def _ping(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (OSError, aioredis.ConnectionError):
        return False


async def _acquire_shared(limiter: FailoverLimiter) -> bool:
    await limiter.acquire("acct")
    return not limiter.degraded


async def _invoice_load(bootstrap: str, sandbox: Any) -> tuple[str, str]:
    import base64

    orders = [o["order_id"] for o in sandbox.sandbox.orders.orders(ACCT_A)[:200]]
    topic = await create_topics(bootstrap, "invoice-uploads")
    run = uuid.uuid4().hex[:6]  # the Redis ledger outlives a test
    pdf = base64.b64encode(b"%PDF-1.7\n%%EOF\n").decode()
    await produce(
        bootstrap,
        topic,
        [
            (
                o,
                {
                    "account_token": ACCT_A,
                    "order_id": o,
                    "invoice_number": f"I-{run}-{o}",
                    "invoice_pdf_base64": pdf,
                },
            )
            for o in orders
        ],
    )
    return "invoice-upload", topic


async def _poll_load(bootstrap: str, sandbox: Any) -> tuple[str, str]:
    ticks, orders, cursors = await order_topics(bootstrap)
    _POLL_TOPICS[ticks] = (orders, cursors)
    return "order-poller", ticks


async def _keep_ticking(bootstrap: str, topic: str, stop: asyncio.Event) -> None:
    """Ticks keep coming (those that arrive during a poll collapse into the next one)."""
    key = f"ebay:{ACCT_A}"
    while not stop.is_set():
        await produce(
            bootstrap,
            topic,
            [(key, {"account_token": ACCT_A, "channel": "ebay", "since": "2026-01-01T00:00:00Z"})],
        )
        await asyncio.sleep(0.2)


_POLL_TOPICS: dict[str, tuple[str, str]] = {}


@pytest.mark.parametrize(
    "load", [_invoice_load, _poll_load], ids=["invoice-upload", "order-poller"]
)
async def test_other_services_share_the_accounts_budget_with_variant_sync(
    load: Any,
    bootstrap_servers: str,
    redis_url: str,
    sandbox_server: Any,
    tmp_path: Path,
    workers: Any,
) -> None:
    limit, period = 12, 2.0
    sandbox = await sandbox_server(
        sandbox_config(requests=limit, period_s=period, orders={"per_account": 300})
    )
    skus = [f"SB{i:04d}" for i in range(2000)]
    await sandbox.seed_variants(TOKEN_A, skus, per_product=50)
    service, topic = await load(bootstrap_servers, sandbox)
    variants = await create_topics(bootstrap_servers, "variant-updates")
    await produce(bootstrap_servers, variants, [update(ACCT_A, s, quantity=3) for s in skus])
    prefix = f"it-rl-{uuid.uuid4().hex[:6]}"
    shared = dict(
        redis_url=redis_url,
        rate_limit_requests=limit,
        rate_limit_period_s=period,
        rate_limit_redis_prefix=prefix,
        rate_limit_enabled="true",
        batch_max_items=5,
    )
    if topic in _POLL_TOPICS:
        orders, cursors = _POLL_TOPICS[topic]
        shared |= {
            "orders_topic": orders,
            "order_cursor_topic": cursors,
            "batch_max_items": 1,
            "order_transactional_id": f"it-poller-{uuid.uuid4().hex[:6]}",
        }
    creds = write_credentials(tmp_path)
    other = workers(
        service,
        Run(bootstrap_servers, sandbox.base_url, topic, creds).env(
            **shared,
        ),
        "other",
    )
    shared["batch_max_items"] = 5
    variant = workers(
        "variant-sync",
        Run(bootstrap_servers, sandbox.base_url, variants, creds).env(
            **shared,
        ),
        "variants",
    )
    await wait_ready(other, variant)
    stop = asyncio.Event()
    feeder = (
        asyncio.create_task(_keep_ticking(bootstrap_servers, topic, stop))
        if topic in _POLL_TOPICS
        else None
    )
    await asyncio.sleep(2 * period)
    started = sandbox.sandbox.clock()
    await asyncio.sleep(5 * period)
    stop.set()
    if feeder is not None:
        await feeder
    log = [r for r in sandbox.requests() if r["t"] >= started and r["user"] == "a"]
    routes = Counter(r["route"] for r in log)
    assert routes["PATCH /catalog/product/variant/"] > 0
    assert (
        sum(n for route, n in routes.items() if route != "PATCH /catalog/product/variant/") > 0
    ), routes
    assert [r for r in log if r["status"] == 429] == []
    counts = windows([r["t"] for r in log], period)
    assert max(counts) <= limit, counts
