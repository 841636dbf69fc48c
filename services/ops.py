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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.registry import for_topic
from shared.config import WorkerSettings
from shared.topics import read_topic

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


async def read_range(
    settings: WorkerSettings,
    topic: str,
    last: int | None = None,
    follow: bool = False,
    on_record: Callable[[ConsumerRecord[Any, Any]], None] | None = None,
) -> list[ConsumerRecord[Any, Any]]:
    """Records of `topic` up to its end now (the `last` N per partition), or on and on (`follow`)."""
    out: list[ConsumerRecord[Any, Any]] = []
    add = on_record if on_record is not None else out.append
    async for record in read_topic(
        settings.kafka_bootstrap_servers,
        topic,
        settings.kafka_security(),
        last=last,
        follow=follow,
    ):
        add(record)
    return out


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
    """The key a topic's contract asks for, read off the value (None: the topic has no rule)."""
    spec = for_topic(topic)
    return spec.key(value) if spec is not None else None


def samples(topic: str, n: int, account: str) -> list[tuple[str, Any]]:
    """N realistic events for one of the input topics."""
    spec = for_topic(topic)
    if spec is None:
        raise ValueError(f"no samples for topic {topic!r}: use --file")
    return spec.samples(n, account)


Record = tuple[
    str, bytes | None, bytes | None, list[tuple[str, bytes]]
]  # topic, key, value, headers


async def produce(
    settings: WorkerSettings, topic: str, events: Sequence[tuple[str | None, Any]]
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
