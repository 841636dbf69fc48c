"""order-poller end to end: every order's latest state exactly once, across a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from services.order_poller import OrderPoller, content_hash
from shared.bootstrap import build_parts
from shared.m2e.models import Order

from .harness import (
    ACCT_A,
    ACCT_A2,
    ACCT_B,
    CREDENTIALS,
    TOKEN_A,
    Run,
    WorkerProcess,
    eventually,
    order_topics,
    produce,
    read_all,
    sandbox_config,
    worker_settings,
    write_credentials,
)

ACCOUNTS = [("ebay", ACCT_A), ("amazon", ACCT_A2), ("ebay", ACCT_B)]


def tick(channel: str, account: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return f"{channel}:{account}", {"account_token": account, "channel": channel, **extra}


async def read_orders(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Everything committed to `orders` (read_committed, as a downstream consumer would)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500, max_records=10_000)
            if not batch:
                return out
            for records in batch.values():
                out += [json.loads(r.value) for r in records]
    finally:
        await consumer.stop()


def sandbox_orders(sandbox: Any) -> dict[str, str]:
    """token → content hash of every order the sandbox holds now, as the API returns it."""
    out = {}
    for _channel, account in ACCOUNTS:
        for raw in sandbox.sandbox.orders.orders(account):
            out[raw["token"]] = content_hash(Order.model_validate(raw).model_dump(mode="json"))
    return out


async def test_every_order_once_in_its_latest_state_across_a_sigkill(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox = await sandbox_server(
        sandbox_config(
            faults={"latency_ms": 20},
            orders={
                "seed": 3,
                "per_account": 1700,
                "new_per_minute": 600,
                "status_change_per_minute": 900,
            },
        )
    )
    ticks, orders_topic, cursors = await order_topics(bootstrap_servers)
    env = Run(bootstrap_servers, sandbox.base_url, ticks, write_credentials(tmp_path)).env(
        orders_topic=orders_topic,
        order_cursor_topic=cursors,
        order_transactional_id=f"it-poller-{uuid.uuid4().hex[:6]}",
        order_initial_lookback_days=31,  # the sandbox's history reaches back 30 days
        batch_linger_ms=100,
        kafka_session_timeout_ms=6000,
    )
    first = workers("order-poller", env, "first")
    await eventually(first.ready, timeout_s=60)
    for round_ in range(12):
        await produce(bootstrap_servers, ticks, [tick(c, a) for c, a in ACCOUNTS])
        await asyncio.sleep(0.4)
        if round_ == 4:
            await eventually(lambda: len(sandbox.requests("POST /order/find/")) > 20, timeout_s=30)
            first.signal(signal.SIGKILL)  # with pages in flight
            await first.wait()
            workers("order-poller", env, "second")
    frozen = sandbox.sandbox.clock()
    sandbox.sandbox.orders._clock = lambda: frozen  # no new orders or changes from here on
    expected = sandbox_orders(sandbox)
    await produce(bootstrap_servers, ticks, [tick(c, a) for c, a in ACCOUNTS])

    async def caught_up() -> bool:
        latest = {
            o["order"]["token"]: content_hash(o["order"])
            for o in await read_orders(bootstrap_servers, orders_topic)
        }
        return latest == expected

    try:
        await eventually(caught_up, timeout_s=60, every_s=2)
    except AssertionError:
        latest = {
            o["order"]["token"]: content_hash(o["order"])
            for o in await read_orders(bootstrap_servers, orders_topic)
        }
        missing = set(expected) - set(latest)
        differ = {t for t in expected if t in latest and latest[t] != expected[t]}
        extra = set(latest) - set(expected)
        raise AssertionError(
            f"missing {len(missing)} differ {len(differ)} extra {len(extra)} of {len(expected)}"
        ) from None
    published = await read_orders(bootstrap_servers, orders_topic)
    pairs = Counter((o["order"]["token"], content_hash(o["order"])) for o in published)
    assert len(expected) >= 5000
    assert [p for p, n in pairs.items() if n > 1] == []  # no (order, content) twice
    versions = Counter(token for token, _digest in pairs)
    assert sum(n > 1 for n in versions.values()) > 0, (
        "status changes were published as new versions"
    )
    assert {o["channel"] for o in published} == {"ebay", "amazon"}


async def frozen_poller(
    bootstrap: str,
    sandbox_server: Any,
    tmp: Path,
    per_account: int,
    lookback_days: float,
    **settings: Any,
) -> tuple[Any, str, str, Any]:
    """A started in-process poller over a sandbox whose orders do not change."""
    sandbox = await sandbox_server(
        sandbox_config(
            orders={
                "per_account": per_account,
                "new_per_minute": 0,
                "status_change_per_minute": 0,
            }
        )
    )
    ticks, orders_topic, cursors = await order_topics(bootstrap)
    service = OrderPoller(
        set(CREDENTIALS),
        bootstrap,
        orders_topic=orders_topic,
        cursor_topic=cursors,
        transactional_id=f"it-poller-{uuid.uuid4().hex[:6]}",
        initial_lookback=timedelta(days=lookback_days),
    )
    parts = build_parts(
        service, worker_settings(bootstrap, sandbox.base_url, ticks, tmp, **settings)
    )
    await parts.worker.start()
    return sandbox, ticks, orders_topic, parts


async def test_backfill_with_since_and_a_burst_of_ticks_costs_one_poll(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    # 400 orders over 30 days are 1.8 h apart, one of them exactly 3 days before the
    # sandbox's start: a lookback of 3.05 days ends between two orders, so what it reads
    # does not depend on the second the poll happens in.
    lookback = 3.05
    sandbox, ticks, orders_topic, parts = await frozen_poller(
        bootstrap_servers, sandbox_server, tmp_path, 400, lookback, batch_linger_ms=300
    )
    try:
        # A burst of 1,000 ticks for one account: one poll.
        await produce(bootstrap_servers, ticks, [tick("ebay", ACCT_A)] * 1000)
        results = await read_all(bootstrap_servers, f"{ticks}.results", 1000)
        assert len(results) == 1000
        recent = len(
            [
                o
                for o in sandbox.sandbox.orders.orders(ACCT_A)
                if o["sale_date"]
                >= (datetime.now(UTC) - timedelta(days=lookback)).strftime("%Y-%m-%dT%H:%M:%SZ")
            ]
        )
        finds = sandbox.requests("POST /order/find/")
        assert len(finds) == max(1, -(-recent // 100)), (
            len(finds),
            recent,
        )  # the pages of one poll
        first = await read_orders(bootstrap_servers, orders_topic)
        assert len(first) == recent  # only the initial lookback

        # Backfill: `since` reaches back past the lookback; only what was not published comes.
        since = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
        await produce(bootstrap_servers, ticks, [tick("ebay", ACCT_A, since=since)])
        await read_all(bootstrap_servers, f"{ticks}.results", 1001)
        everything = await read_orders(bootstrap_servers, orders_topic)
        assert len(everything) == 400
        assert len({o["order"]["token"] for o in everything}) == 400
    finally:
        await parts.worker.stop()


async def test_tick_command_discovers_the_accounts_or_takes_a_list(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    from services.order_poller.tick import tick

    sandbox = await sandbox_server(sandbox_config())
    ticks, _orders, _cursors = await order_topics(bootstrap_servers)
    settings = worker_settings(bootstrap_servers, sandbox.base_url, ticks, tmp_path)
    assert await tick(settings, None, topic=ticks) == 0  # accounts from GET /user/accounts/
    records = await read_all(bootstrap_servers, ticks, 3)
    assert sorted(r.key.decode() for r in records) == sorted(f"{c}:{a}" for c, a in ACCOUNTS)
    assert len(sandbox.requests("GET /user/accounts/")) == 2  # one per access token
    listed = worker_settings(
        bootstrap_servers, sandbox.base_url, ticks, tmp_path, tick_accounts=f"kaufland:{ACCT_B}"
    )
    await tick(listed, None, topic=ticks)
    records = await read_all(bootstrap_servers, ticks, 4)
    assert f"kaufland:{ACCT_B}" in {r.key.decode() for r in records}


async def test_a_worker_that_cannot_start_exits_non_zero_naming_the_setting(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    ticks, orders_topic, _cursors = await order_topics(bootstrap_servers)
    env = Run(bootstrap_servers, sandbox.base_url, ticks, write_credentials(tmp_path)).env(
        orders_topic=orders_topic,
        order_cursor_topic=f"it.{uuid.uuid4().hex[:8]}.no-such-cursors",
    )
    worker = WorkerProcess("order-poller", env, tmp_path, "nostart")
    assert await worker.wait(timeout_s=60) == 1
    assert "ORDER_CURSOR_TOPIC" in worker.log()


async def test_accounts_polled_at_once_share_the_transactional_producer(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, caplog: Any
) -> None:
    # With the limiter off, every account's poll runs concurrently; their transactions
    # must take turns on the one producer (found by bench/more_services.py).
    _sandbox, ticks, orders_topic, parts = await frozen_poller(
        bootstrap_servers, sandbox_server, tmp_path, 5000, 31, rate_limit_enabled=False
    )
    try:
        await produce(bootstrap_servers, ticks, [tick(c, a) for c, a in ACCOUNTS])
        results = [
            json.loads(r.value) for r in await read_all(bootstrap_servers, f"{ticks}.results", 3)
        ]
        assert [r["status"] for r in results] == ["ok"] * 3
        assert [r["attempts"] for r in results] == [1] * 3, results  # no batch failed
        # The cursor consumer may log a retried NotLeaderForPartition while the fresh
        # topic's leader settles; any other ERROR (ours, the producer's) is a failure.
        errors = [
            r
            for r in caplog.records
            if r.levelname == "ERROR" and not r.name.startswith("aiokafka.consumer")
        ]
        assert not errors, [r.getMessage() for r in errors]
        orders = await read_orders(bootstrap_servers, orders_topic)
        assert len({o["order"]["token"] for o in orders}) == 3 * 5000
    finally:
        await parts.worker.stop()


async def test_a_cursor_of_200k_orders_in_the_window_commits_and_reads_back(
    bootstrap_servers: str,
) -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    from services.order_poller import cursors as store
    from services.order_poller.models import Cursor
    from services.order_poller.transactions import Transactions
    from tests.services.order_poller.test_seen import orders as window

    _ticks, _orders, topic = await order_topics(bootstrap_servers)
    seen = store.Seen()
    legacy: dict[str, tuple[str, str]] = {}
    for token, digest, sale in window(200_000, 7):
        seen.update(token, digest, sale)
        legacy[token] = (digest, sale)
    key = f"ebay:{ACCT_A}"
    head = Cursor(channel="ebay", account_token=ACCT_A)
    transactions = Transactions(bootstrap_servers, f"it-cursor-{uuid.uuid4().hex[:6]}")
    await transactions.own([0])
    try:
        # As the cursor was written before: one record, ~91 bytes an order.
        inline = head.model_copy(update={"seen": legacy}).model_dump_json().encode()
        with pytest.raises(MessageSizeTooLargeError):
            await transactions.publish(0, [(topic, key.encode(), inline)])
        _written, records = store.records(topic, key, None, head, seen)
        await transactions.publish(0, records)
    finally:
        await transactions.close()
    [state] = (await store.load(bootstrap_servers, topic)).values()
    assert len(state.seen) == 200_000 and sum(state.cursor.days.values()) == len(records) - 1
    assert not any(state.seen.update(t, d, s) for t, d, s in window(200_000, 7))


async def test_a_poller_reads_the_cursor_parts_another_one_wrote(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox, ticks, orders_topic, parts = await frozen_poller(
        bootstrap_servers, sandbox_server, tmp_path, 400, 31
    )
    service = parts.worker.service
    service._part_entries = 7  # many parts per day
    try:
        await produce(bootstrap_servers, ticks, [tick("ebay", ACCT_A)])
        await read_all(bootstrap_servers, f"{ticks}.results", 1)
    finally:
        await parts.worker.stop()
    assert len(await read_orders(bootstrap_servers, orders_topic)) == 400
    [state] = service.cursors.values()
    assert sum(state.cursor.days.values()) > len(state.cursor.days)  # days in several parts
    again = OrderPoller(
        set(CREDENTIALS),
        bootstrap_servers,
        orders_topic=orders_topic,
        cursor_topic=service._cursor_topic,
        transactional_id=service.transactions.id_prefix,
        initial_lookback=timedelta(days=31),
        part_entries=7,
    )
    settings = parts.worker.settings
    second = build_parts(again, settings)
    await second.worker.start()
    try:
        await produce(bootstrap_servers, ticks, [tick("ebay", ACCT_A)])
        await read_all(bootstrap_servers, f"{ticks}.results", 2)
    finally:
        await second.worker.stop()
    assert len(await read_orders(bootstrap_servers, orders_topic)) == 400  # none again
    # 4 pages back 31 days, then 1: the second read its cursor and began 7 days before it.
    assert len(sandbox.requests("POST /order/find/")) == 4 + 1


async def test_an_account_with_200k_orders_in_the_window_polls_publishes_and_commits(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    from m2e_sandbox import SandboxConfig
    from services.order_poller import cursors as store

    sandbox = await sandbox_server(
        SandboxConfig.model_validate(
            {
                "users": [
                    {
                        "name": "big",
                        "access_token": TOKEN_A,
                        "accounts": [{"token": ACCT_A, "channel": "ebay"}],
                    }
                ],
                "rate_limit": {"requests": 1_000_000, "period_s": 60.0},
                "orders": {
                    "per_account": 200_000,
                    "history_days": 6.5,  # all inside the 7-day overlap window
                    "new_per_minute": 0,
                    "status_change_per_minute": 0,
                },
            }
        )
    )
    ticks, orders_topic, cursors = await order_topics(bootstrap_servers)
    service = OrderPoller(
        set(CREDENTIALS),
        bootstrap_servers,
        orders_topic=orders_topic,
        cursor_topic=cursors,
        transactional_id=f"it-poller-{uuid.uuid4().hex[:6]}",
        initial_lookback=timedelta(days=7),
    )
    settings = worker_settings(
        bootstrap_servers, sandbox.base_url, ticks, tmp_path, rate_limit_enabled=False
    )
    parts = build_parts(service, settings)
    await parts.worker.start()
    try:
        await produce(bootstrap_servers, ticks, [tick("ebay", ACCT_A)])
        [result] = await read_all(bootstrap_servers, f"{ticks}.results", 1, timeout_s=240)
    finally:
        await parts.worker.stop()
    outcome = json.loads(result.value)
    assert (outcome["status"], outcome["operation"]) == ("ok", "poll:200000"), outcome
    [state] = (await store.load(bootstrap_servers, cursors)).values()
    assert len(state.seen) == 200_000
    assert len(sandbox.requests("POST /order/find/")) == 2000  # 100 orders a page
