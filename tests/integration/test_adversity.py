"""The worker core under adversity, against the real broker and the sandbox: each test is
named after the scenario it reproduces."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from services.variant_sync import VariantSync
from shared.bootstrap import build_parts

from .harness import (
    ACCT_A,
    ACCT_A2,
    ACCT_B,
    CREDENTIALS,
    TOKEN_A,
    TOKEN_B,
    create_topics,
    eventually,
    in_order,
    produce,
    read_all,
    record_applied,
    sandbox_config,
    update,
    wait_all_committed,
    worker_settings,
)


async def test_a_partition_whose_tail_is_a_transaction_marker_releases_its_items(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    """An upstream producer with transactions (Kafka Streams, Connect exactly-once): the
    partition ends with a commit marker, then aborted data and an abort marker. The end
    offset at assignment is past the last record the consumer will ever see."""
    sandbox = await sandbox_server(sandbox_config())
    skus = [f"TX{i}" for i in range(5)]
    await sandbox.seed_variants(TOKEN_A, skus)
    topic = await create_topics(bootstrap_servers, "variant-updates", partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, transactional_id=f"it-tx-{uuid.uuid4().hex[:6]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for key, value in [update(ACCT_A, s, price=9.25) for s in skus]:
                await producer.send(topic, json.dumps(value).encode(), key=key.encode())
        await producer.begin_transaction()
        await producer.send(
            topic, json.dumps(update(ACCT_A, "TX0", price=1.0)[1]).encode(), key=b"TX0"
        )
        await producer.abort_transaction()
    finally:
        await producer.stop()

    settings = worker_settings(bootstrap_servers, sandbox.base_url, topic, tmp_path)
    parts = build_parts(VariantSync(set(CREDENTIALS)), settings)
    await parts.worker.start()
    try:
        results = await read_all(bootstrap_servers, f"{topic}.results", 5, timeout_s=20)
        assert len(results) == 5, "items stayed held behind the transaction marker"
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic, timeout_s=20)
    finally:
        await parts.worker.stop()
    assert all(sandbox.variant(TOKEN_A, s)["price"] == 9.25 for s in skus)  # type: ignore[index]


async def test_a_misbehaving_gateway_never_loses_an_update_nor_fakes_an_ok(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    """HTML 502s, 200s whose body is a gateway's page or cut short, garbage rate-limit
    headers: half the requests. Every update still lands, each result is an honest ok,
    nothing goes to the DLQ as poison."""
    faults = {
        "html_error_rate": 0.15,
        "malformed_body_rate": 0.15,
        "truncated_body_rate": 0.1,
        "bad_ratelimit_headers_rate": 0.1,
        "seed": 5,
    }
    sandbox = await sandbox_server(sandbox_config(faults=faults))
    skus = [f"MB{i:03d}" for i in range(200)]
    await sandbox.seed_variants(TOKEN_A, skus)
    topic = await create_topics(bootstrap_servers, "variant-updates")
    await produce(
        bootstrap_servers,
        topic,
        [update(ACCT_A, s, price=float(i + 1)) for i, s in enumerate(skus)],
    )
    settings = worker_settings(
        bootstrap_servers,
        sandbox.base_url,
        topic,
        tmp_path,
        batch_max_items=20,
        m2e_retry_attempts=10,
        m2e_retry_base_s=0.01,
        m2e_retry_cap_s=0.05,
        failure_backoff_cap_s=0.5,
    )
    parts = build_parts(VariantSync(set(CREDENTIALS)), settings)
    await parts.worker.start()
    try:
        results = await read_all(bootstrap_servers, f"{topic}.results", len(skus), timeout_s=60)
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic, timeout_s=30)
    finally:
        await parts.worker.stop()
    assert sorted(json.loads(r.value)["status"] for r in results) == ["ok"] * len(skus)
    assert await read_all(bootstrap_servers, f"{topic}.dlq", 1, timeout_s=2) == []
    for i, sku in enumerate(skus):
        assert sandbox.variant(TOKEN_A, sku)["price"] == float(i + 1)  # type: ignore[index]
    codes = {code for r in sandbox.requests() for code in [r["status"]]}
    assert {502, 200} <= codes  # the faults did happen
    malformed = parts.metrics.api_requests.labels(
        "variant-sync", ACCT_A, "PATCH /catalog/product/variant/", "malformed"
    )._value.get()
    assert malformed > 0


async def test_one_blocked_account_never_stalls_the_others(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """One merchant's token is revoked (401) for several park intervals while two healthy
    accounts stream 50,000 updates over the same partitions. The healthy accounts' lag
    returns to ~0 within linger + a few seconds of their last message and fetching never
    pauses; once the token works again, the blocked account's updates land in per-SKU
    order, nothing lost, with no operator action."""
    sandbox = await sandbox_server(sandbox_config())
    healthy_skus = [f"H{i:04d}" for i in range(2000)]  # per healthy account: 1,000 each
    blocked_skus = [f"X{i:03d}" for i in range(200)]
    await sandbox.seed_variants(TOKEN_A, healthy_skus)
    await sandbox.seed_variants(TOKEN_B, blocked_skus)
    applied = record_applied(monkeypatch, "X")  # the blocked account's, as M2E applied them
    admin = httpx.AsyncClient(base_url=sandbox.base_url.split("/api/")[0])
    access = "/_sandbox/users/b/access"
    assert (await admin.put(access, json={"revoked": True})).is_success

    topic = await create_topics(bootstrap_servers, "variant-updates")
    park_after = 1.0
    settings = worker_settings(
        bootstrap_servers,
        sandbox.base_url,
        topic,
        tmp_path,
        rate_limit_enabled=False,
        batch_linger_ms=200,
        account_park_after_s=park_after,
        auth_backoff_s=0.2,
    )
    parts = build_parts(VariantSync(set(CREDENTIALS)), settings)
    worker = parts.worker
    paused: list[float] = []

    async def watch_fetching() -> None:
        while True:
            if worker.partitions.fetching_paused:
                paused.append(time.monotonic())
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_fetching())
    await worker.start()
    rounds, sent_blocked = 25, 0
    try:
        for r in range(rounds):  # ~5 s of streaming: several park intervals
            batch = [
                update(acct, sku, price=float(r + 1))
                for acct, skus in ((ACCT_A, healthy_skus[:1000]), (ACCT_A2, healthy_skus[1000:]))
                for sku in skus
            ]
            if r % 3 == 0:  # the blocked account's updates come now and then
                batch += [update(ACCT_B, s, price=float(r + 1)) for s in blocked_skus]
                sent_blocked += len(blocked_skus)
            await produce(bootstrap_servers, topic, batch)
            await asyncio.sleep(0.2)
        last_sent = time.monotonic()
        # Every message of the main topic is settled or parked, and committed.
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic, timeout_s=30)
        lag_gone = time.monotonic() - last_sent
        assert lag_gone < settings.batch_linger_ms / 1000 + park_after + 5, lag_gone
        assert not paused, "fetching paused for the healthy accounts"
        for sku in healthy_skus:
            assert sandbox.variant(TOKEN_A, sku)["price"] == float(rounds)  # type: ignore[index]
        assert applied == []  # still blocked: nothing of it reached M2E
        await asyncio.sleep(3 * park_after)  # several park intervals more, still 401
        assert applied == []

        assert (await admin.put(access, json={"revoked": False})).is_success
        last = {s: float(r + 1) for r in range(rounds) if r % 3 == 0 for s in blocked_skus}

        async def landed() -> bool:
            return all(sandbox.variant(TOKEN_B, s)["price"] == p for s, p in last.items())  # type: ignore[index]

        await eventually(landed, timeout_s=30)
        await wait_all_committed(
            bootstrap_servers, settings.kafka_group_id, f"{topic}.retry", timeout_s=30
        )
    finally:
        watcher.cancel()
        await admin.aclose()
        await worker.stop()
    assert in_order(applied), "a newer update was overtaken by an older one"
    # One final result per message, the blocked account's after a `deferred` one.
    total = rounds * len(healthy_skus) + sent_blocked
    results = [
        json.loads(r.value)
        for r in await read_all(
            bootstrap_servers, f"{topic}.results", total + sent_blocked, timeout_s=30
        )
    ]
    final = [
        (r["source"]["partition"], r["source"]["offset"])
        for r in results
        if r["status"] in ("ok", "superseded")
    ]
    assert len(final) == len(set(final)) == total  # one final result each, all on the input
    assert {r["source"]["topic"] for r in results} == {topic}
    deferred = [
        (r["source"]["partition"], r["source"]["offset"], r["account_token"])
        for r in results
        if r["status"] == "deferred"
    ]
    assert 0 < len(deferred) <= sent_blocked and {a for *_, a in deferred} == {ACCT_B}
    assert {(p, o) for p, o, _ in deferred} <= set(final)
    assert parts.metrics.parked.labels("variant-sync", ACCT_B)._value.get() >= len(deferred)


async def test_after_a_restart_no_message_overtakes_one_waiting_in_the_retry_topic(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A worker parks a blocked account's updates and stops; the token works again; newer
    updates of the same SKUs arrive; a new worker starts. It does not know the account
    ever failed, so the retry records are due at once, read alongside the newer ones: the
    newer ones must still land last."""
    sandbox = await sandbox_server(sandbox_config())
    skus = [f"R{i:03d}" for i in range(100)]
    await sandbox.seed_variants(TOKEN_B, skus)
    applied = record_applied(monkeypatch, "R")
    sandbox.sandbox.revoked.add("b")
    topic = await create_topics(bootstrap_servers, "variant-updates")
    settings = worker_settings(
        bootstrap_servers,
        sandbox.base_url,
        topic,
        tmp_path,
        rate_limit_enabled=False,
        batch_linger_ms=100,
        account_park_after_s=0.5,
        auth_backoff_s=0.1,
    )
    await produce(bootstrap_servers, topic, [update(ACCT_B, s, price=1.0) for s in skus])
    first = build_parts(VariantSync(set(CREDENTIALS)), settings)
    await first.worker.start()
    try:
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic, timeout_s=30)
    finally:
        await first.worker.stop()
    assert applied == []
    sandbox.sandbox.revoked.discard("b")
    await produce(bootstrap_servers, topic, [update(ACCT_B, s, price=2.0) for s in skus])
    second = build_parts(VariantSync(set(CREDENTIALS)), settings)
    await second.worker.start()
    try:
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic, timeout_s=30)
        await wait_all_committed(
            bootstrap_servers, settings.kafka_group_id, f"{topic}.retry", timeout_s=30
        )
    finally:
        await second.worker.stop()
    for sku in skus:
        assert sandbox.variant(TOKEN_B, sku)["price"] == 2.0, sku  # type: ignore[index]
    assert in_order(applied), "a newer update was overtaken by an older one"
