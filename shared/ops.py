"""Operator tools: look inside topics, and repair what went to a DLQ.

    m2e-sync tail TOPIC [--follow] [--last N]
    m2e-sync dlq replay TOPIC.dlq [--filter error.class=UnknownAccount] [--dry-run]

`dlq replay` re-publishes each matching DLQ record — original key, value and headers, the
DLQ's own `error.*`/`source.*` headers dropped — to the topic it came from
(`source.topic`), after the cause was fixed. It reads the DLQ from the beginning to its end
at the time of the call and says how many records it sent; the workers then process them
as new messages.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.config import WorkerSettings
from shared.topics import partitions_of

DLQ_HEADER_PREFIXES = ("error.", "source.")


@dataclass(frozen=True, slots=True)
class ReplayReport:
    read: int
    matched: int
    sent: int
    by_topic: dict[str, int]


def parse_filters(filters: list[str]) -> dict[str, str]:
    out = {}
    for item in filters:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(
                f"--filter {item!r}: expected HEADER=VALUE, e.g. error.class=UnknownAccount"
            )
        out[name] = value
    return out


async def _partitions(settings: WorkerSettings, topic: str) -> list[TopicPartition]:
    return await partitions_of(settings.kafka_bootstrap_servers, topic, settings.kafka_security())


async def read_range(
    settings: WorkerSettings,
    topic: str,
    last: int | None = None,
    follow: bool = False,
    on_record: Callable[[ConsumerRecord[Any, Any]], None] | None = None,
) -> list[ConsumerRecord[Any, Any]]:
    """Records of `topic` up to its end now (the `last` N per partition), or on and on (`follow`)."""
    tps = await _partitions(settings, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **settings.kafka_security(),
    )
    await consumer.start()
    out: list[ConsumerRecord[Any, Any]] = []
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - last) if last is not None else starts[tp])
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            done = all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True))
            if done and not follow:
                return out
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if on_record is not None:
                        on_record(record)
                    else:
                        out.append(record)
    finally:
        with suppress(asyncio.CancelledError):
            await consumer.stop()


def render(record: ConsumerRecord[Any, Any]) -> str:
    """One record, readable: where it is, its key and headers, its JSON pretty-printed."""
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    head = f"{record.topic}[{record.partition}]@{record.offset} key={key}"
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
    if headers:
        head += " headers=" + json.dumps(headers, ensure_ascii=False)
    if record.value is None:
        return head + "\n  (tombstone)"
    try:
        body = json.dumps(json.loads(record.value), indent=2, ensure_ascii=False)
    except ValueError:
        body = repr(record.value[:500])
    return head + "\n" + "\n".join("  " + line for line in body.splitlines())


async def tail(
    settings: WorkerSettings, topic: str, last: int, follow: bool, out: TextIO = sys.stdout
) -> int:
    if follow:
        await read_range(
            settings,
            topic,
            last,
            follow=True,
            on_record=lambda r: print(render(r), file=out, flush=True),
        )
        return 0
    records = await read_range(settings, topic, last)
    for record in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset)):
        print(render(record), file=out)
    print(f"({len(records)} records)", file=out)
    return 0


async def replay(
    settings: WorkerSettings, dlq_topic: str, filters: dict[str, str], dry_run: bool
) -> ReplayReport:
    records = await read_range(settings, dlq_topic)
    matched = []
    for record in records:
        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
        if "source.topic" in headers and all(headers.get(k) == v for k, v in filters.items()):
            matched.append((record, headers["source.topic"]))
    by_topic: dict[str, int] = {}
    for _record, target in matched:
        by_topic[target] = by_topic.get(target, 0) + 1
    if not dry_run and matched:
        await send_all(
            settings,
            [
                (
                    target,
                    record.key,
                    record.value,
                    [
                        (k, v)
                        for k, v in record.headers or ()
                        if not k.startswith(DLQ_HEADER_PREFIXES)
                    ],
                )
                for record, target in matched
            ],
        )
    return ReplayReport(
        read=len(records),
        matched=len(matched),
        sent=0 if dry_run else len(matched),
        by_topic=by_topic,
    )


def key_for(topic: str, value: dict[str, Any]) -> str | None:
    """The key a topic's contract asks for (DESIGN §3), read off the value."""
    base = topic.rsplit(".", 1)[-1] if topic.count(".") >= 2 else topic
    if base.endswith("product-upserts"):
        product = value.get("product") or {}
        return value.get("sku") or product.get("sku") or product.get("code")
    if base.endswith("variant-updates"):
        return value.get("sku")
    if base.endswith("invoice-uploads"):
        return value.get("order_id")
    if base.endswith("order-poll-ticks"):
        return f"{value.get('channel')}:{value.get('account_token')}"
    return None


def samples(topic: str, n: int, account: str) -> list[tuple[str, Any]]:
    """N realistic events for one of the input topics."""
    from shared import demo

    accounts = [(account, "", "ebay")]
    if topic.endswith("product-upserts"):
        events, _ = demo.sample_products(accounts, n)
        return events[:n]
    if topic.endswith("variant-updates"):
        _, variants = demo.sample_products(accounts, max(1, n // 4))
        return demo.sample_updates(variants, n)[:n]
    if topic.endswith("invoice-uploads"):
        return demo.sample_invoices(account, [f"EBAY-{account[:8]}-{i:06d}" for i in range(n)])[:n]
    if topic.endswith("order-poll-ticks"):
        return [(f"ebay:{account}", {"account_token": account, "channel": "ebay"})] * n
    raise ValueError(f"no samples for topic {topic!r}: use --file")


Record = tuple[
    str, bytes | None, bytes | None, list[tuple[str, bytes]]
]  # topic, key, value, headers


async def produce(
    settings: WorkerSettings, topic: str, events: list[tuple[str | None, Any]]
) -> int:
    records: list[Record] = []
    for key, value in events:
        key = key if key is not None else key_for(topic, value)
        records.append(
            (topic, key.encode() if key is not None else None, json.dumps(value).encode(), [])
        )
    await send_all(settings, records)
    return len(events)


async def send_all(settings: WorkerSettings, records: list[Record]) -> None:
    """Publish (topic, key, value, headers) records on an idempotent producer; return once acked."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        **settings.kafka_security(),
    )
    await producer.start()
    try:
        futures = [await producer.send(t, v, key=k, headers=h) for t, k, v, h in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def read_jsonl(text: str) -> list[tuple[str | None, Any]]:
    """JSON lines: each a value, or `{"key": …, "value": …}`."""
    events: list[tuple[str | None, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: not JSON: {exc}") from None
        if isinstance(item, dict) and set(item) == {"key", "value"}:
            events.append((item["key"], item["value"]))
        else:
            events.append((None, item))
    return events
