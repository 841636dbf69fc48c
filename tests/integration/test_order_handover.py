"""order-poller replicas: a poll's cursor is always the latest committed one, whoever polled
last, and a process whose producer was fenced stops instead of polling on."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from m2e_sandbox import SandboxConfig
from services.order_poller import content_hash
from shared.m2e.models import Order

from .harness import Run, order_topics, produce, wait_ready
from .test_order_poller import read_orders, tick

TOKEN = "it-handover-token"
# Eight channel accounts on one access token: their ticks spread over the 4 tick partitions.
ACCOUNTS = [
    (("ebay", "amazon")[i % 2], f"7a1c2d3e-0{i:03d}-4a5b-8c9d-00000000{i:04d}") for i in range(8)
]


def config(**orders: Any) -> SandboxConfig:
    return SandboxConfig.model_validate(
        {
            "users": [
                {
                    "name": "handover",
                    "access_token": TOKEN,
                    "accounts": [{"token": a, "channel": c} for c, a in ACCOUNTS],
                }
            ],
            "rate_limit": {"requests": 1_000_000, "period_s": 60.0},
            "orders": orders,
        }
    )


async def setup(bootstrap: str, sandbox_server: Any, tmp: Path, **orders: Any) -> Any:
    sandbox = await sandbox_server(config(**orders))
    ticks, orders_topic, cursors = await order_topics(bootstrap)
    creds = tmp / "handover-credentials.yaml"
    creds.write_text("".join(f"{a}: {TOKEN}\n" for _c, a in ACCOUNTS))
    env = Run(bootstrap, sandbox.base_url, ticks, creds).env(
        orders_topic=orders_topic,
        order_cursor_topic=cursors,
        order_transactional_id=f"it-handover-{uuid.uuid4().hex[:6]}",
        order_initial_lookback_days=31,
        batch_linger_ms=100,
        kafka_session_timeout_ms=6000,
        shutdown_grace_s=10,
    )
    return sandbox, ticks, orders_topic, env


def sandbox_state(sandbox: Any) -> dict[str, str]:
    return {
        raw["token"]: content_hash(Order.model_validate(raw).model_dump(mode="json"))
        for _c, account in ACCOUNTS
        for raw in sandbox.sandbox.orders.orders(account)
    }


async def settle_and_check(
    bootstrap: str, sandbox: Any, ticks: str, orders_topic: str, changes: bool = True
) -> None:
    """Freeze the sandbox, tick once more, and wait until `orders` holds every order's latest
    state; then no (order, content) may be there twice."""
    frozen = sandbox.sandbox.clock()
    sandbox.sandbox.orders._clock = lambda: frozen
    expected = sandbox_state(sandbox)
    latest: dict[str, str] = {}
    for _ in range(60):
        await produce(bootstrap, ticks, [tick(c, a) for c, a in ACCOUNTS])
        await asyncio.sleep(1.0)
        published = await read_orders(bootstrap, orders_topic)
        latest = {o["order"]["token"]: content_hash(o["order"]) for o in published}
        if latest == expected:
            break
    else:
        missing = set(expected) - set(latest)
        differ = {t for t in expected if t in latest and latest[t] != expected[t]}
        raise AssertionError(f"missing {len(missing)}, differ {len(differ)} of {len(expected)}")
    pairs = Counter((o["order"]["token"], content_hash(o["order"])) for o in published)
    twice = [p for p, n in pairs.items() if n > 1]
    assert twice == [], f"{len(twice)} (order, content) published more than once"
    if changes:
        versions = Counter(t for t, _ in pairs).values()
        assert sum(n > 1 for n in versions) > 0, "status changes were published as new versions"


async def test_replicas_stopped_killed_and_restarted_publish_every_order_once(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox, ticks, orders_topic, env = await setup(
        bootstrap_servers,
        sandbox_server,
        tmp_path,
        seed=7,
        per_account=300,
        new_per_minute=240,
        status_change_per_minute=480,
    )
    one, two = workers("order-poller", env, "one"), workers("order-poller", env, "two")
    await wait_ready(one, two)
    three = None
    for round_ in range(14):
        await produce(bootstrap_servers, ticks, [tick(c, a) for c, a in ACCOUNTS])
        await asyncio.sleep(1.0)
        if round_ == 3:  # a hand-over: one's partitions go to two
            one.signal(signal.SIGTERM)
            assert await one.wait() == 0
        if round_ == 5:
            three = workers("order-poller", env, "three")
        if round_ == 9:  # killed mid-run and rescheduled under a new name
            two.signal(signal.SIGKILL)
            await two.wait()
            workers("order-poller", env, "two-again")
    assert three is not None and three.proc.poll() is None
    await settle_and_check(bootstrap_servers, sandbox, ticks, orders_topic)


async def test_a_fenced_poller_exits_and_nothing_is_lost(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox, ticks, orders_topic, env = await setup(
        bootstrap_servers,
        sandbox_server,
        tmp_path,
        seed=11,
        per_account=100,
        new_per_minute=120,
        status_change_per_minute=0,
    )
    first = workers("order-poller", env, "first")
    await wait_ready(first)
    await produce(bootstrap_servers, ticks, [tick(c, a) for c, a in ACCOUNTS])
    await asyncio.sleep(3.0)
    # A second process with the same transactional ids (a zombie's successor, a copy of the
    # deployment under another group): the first is fenced at its next transaction.
    prefix = env["ORDER_TRANSACTIONAL_ID"]
    fencers = [
        AIOKafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=f"{prefix}.{p}")
        for p in range(4)
    ]
    for producer in fencers:
        await producer.start()
    try:
        await asyncio.sleep(1.0)
        await produce(bootstrap_servers, ticks, [tick(c, a) for c, a in ACCOUNTS])
        assert await first.wait(timeout_s=60) == 1
        assert "fenced" in first.log()
    finally:
        for producer in fencers:
            await producer.stop()
    again = workers("order-poller", env, "again")
    await wait_ready(again)
    await settle_and_check(bootstrap_servers, sandbox, ticks, orders_topic, changes=False)
