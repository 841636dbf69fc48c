"""order-poller: `order-poll-ticks` → paged `POST /order/find/` → `orders`.

Ticks for one (channel, account) that arrive while a poll runs or waits collapse into one
poll (the earliest `since` wins). A poll re-reads from `cursor − overlap` (7 days by
default), so status changes of recent orders are seen; with no cursor yet it reads back
`ORDER_INITIAL_LOOKBACK_DAYS`; a tick's `since` forces a backfill from then. Pages are
sorted by `sale_date` and follow `_result` (offset, limit) until the total; each page
takes one token of the account's rate budget.

Exactly once on the Kafka side: the new or changed orders (by content hash) and the new
cursor are published in one Kafka transaction; consumers of `orders` reading with
`isolation_level=read_committed` see each (order, content) once. The transactional id
belongs to the tick partition (services.order_poller.transactions), so a partition's new
owner fences its previous one; only then it reads the cursors back from their compacted
topic, to its high watermark: a poll always starts from the latest committed cursor,
whichever replica polled last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Container, Mapping, Set
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from services.order_poller import cursors
from services.order_poller.models import TOPIC, Cursor, OrderRecord, TickEvent
from services.order_poller.seen import PART_ENTRIES, Seen
from services.order_poller.transactions import Record, Transactions
from shared.coalescer import MergeRule, Payload
from shared.m2e.client import M2EClient
from shared.metrics import Metrics
from shared.service import (
    PARTITIONS,
    Decoded,
    Headers,
    InvalidMessage,
    ItemOutcome,
    Service,
    check_account,
    check_key,
    describe,
)
from shared.topics import UnknownTopic, partitions_of

log = logging.getLogger("m2e_sync.order_poller")
OPERATION = "poll"
PAGE = 100


def merge_ticks(older: Payload, newer: Payload) -> tuple[Payload, bool]:
    """Ticks collapse: one poll serves them all; the earliest backfill `since` wins."""
    since = [s for s in (older.get("since"), newer.get("since")) if s]
    return {**newer, "since": min(since) if since else None}, False


def content_hash(order: Mapping[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(order, sort_keys=True).encode(), digest_size=12).hexdigest()


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OrderPoller(Service):
    name = "order-poller"
    budget_priority = 2
    input_topic = TOPIC
    key_field = "poll"  # results name the poll: "channel:account_token"
    merge_rules: Mapping[str, MergeRule] = {OPERATION: merge_ticks}

    def __init__(
        self,
        known_accounts: Container[str],
        bootstrap_servers: str,
        *,
        orders_topic: str,
        cursor_topic: str,
        transactional_id: str,
        overlap: timedelta = timedelta(days=7),
        initial_lookback: timedelta = timedelta(days=30),
        kafka: Mapping[str, Any] | None = None,
        metrics: Metrics | None = None,
        part_entries: int = PART_ENTRIES,
    ) -> None:
        self._accounts = known_accounts
        self._bootstrap = bootstrap_servers
        self._orders_topic = orders_topic
        self._cursor_topic = cursor_topic
        self._overlap = overlap
        self._lookback = initial_lookback
        self._kafka = dict(kafka or {})
        self.metrics = metrics
        self.transactions = Transactions(bootstrap_servers, transactional_id, kafka)
        self._part_entries = part_entries
        # The cursors of the accounts of owned tick partitions, and which partition each
        # account's ticks came from (its cursor is forgotten when that partition goes).
        self.cursors: dict[str, cursors.State] = {}
        self._partition_of: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        try:  # a topic created a moment ago may need a moment
            await partitions_of(self._bootstrap, self._cursor_topic, self._kafka, wait_s=10.0)
        except UnknownTopic:
            raise RuntimeError(
                f"ORDER_CURSOR_TOPIC: the topic {self._cursor_topic} does not exist"
            ) from None

    def use_metrics(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def stop(self) -> None:
        await self.transactions.close()

    async def assigned(self, partitions: Set[int]) -> None:
        await self.transactions.own(partitions)  # fences their previous owners first
        loaded = await cursors.load(self._bootstrap, self._cursor_topic, self._kafka)
        for key, state in loaded.items():
            self.cursors.setdefault(key, state)  # a cached one is newer: polled here since
        log.info("tick partitions %s owned: %d cursors read", sorted(partitions), len(self.cursors))

    async def revoked(self, partitions: Set[int]) -> None:
        await self.transactions.release(partitions)
        gone = [key for key, p in self._partition_of.items() if p in partitions]
        for key in gone:
            self.cursors.pop(key, None)
            del self._partition_of[key]

    # ------------------------------------------------------------------ decode
    def decode(self, key: bytes | None, value: bytes | None, headers: Headers) -> Decoded:
        raw_key = key.decode("utf-8", "replace") if key is not None else None
        if value is None:
            raise InvalidMessage("a tick cannot be a tombstone", "EmptyValue", None, raw_key)
        try:
            tick = TickEvent.model_validate_json(value)
        except ValidationError as exc:
            raise InvalidMessage(describe(exc), "ValidationError", None, raw_key) from None
        account = str(tick.account_token)
        poll_key = f"{tick.channel}:{account}"
        check_account(self._accounts, account, poll_key)
        # Strictly the poll key: the transactional producer owning a tick partition is what
        # keeps a poll exactly-once, so one poll must never arrive on two partitions.
        check_key(raw_key, poll_key, "channel:account_token", account, by_account=False)
        since = _iso(tick.since) if tick.since is not None else None
        return Decoded(
            account, OPERATION, poll_key, {"channel": tick.channel, "since": since}, tick.event_id
        )

    # ------------------------------------------------------------------ send
    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Payload]
    ) -> list[ItemOutcome]:
        outcomes = []
        for payload, partition in zip(payloads, PARTITIONS.get(), strict=True):
            published = await self.poll(
                client, account_token, payload["channel"], payload.get("since"), partition
            )
            outcomes.append(ItemOutcome("ok", 200, operation=f"poll:{published}"))
        return outcomes

    async def poll(
        self,
        client: M2EClient,
        account: str,
        channel: str,
        since: str | None,
        partition: int = 0,
    ) -> int:
        """One poll of one (channel, account), whose ticks come from tick `partition`;
        returns how many orders were published."""
        key = f"{channel}:{account}"
        state = self.cursors.get(key)
        before = state.cursor if state is not None else None
        seen = state.seen.copy() if state is not None else Seen()  # kept if the publish fails
        now = datetime.now(UTC)
        if since is not None:
            start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        elif before is not None and before.cursor is not None:
            start = before.cursor - self._overlap
        else:
            start = now - self._lookback
        body: dict[str, Any] = {
            "filters": {"sale_date_from": _iso(start)},
            "sort": {"field": "sale_date", "direction": "asc"},
        }
        changed: list[dict[str, Any]] = []
        latest = before.cursor if before is not None else None
        offset = 0
        while True:
            page = await client.find_orders(
                account, channel, {**body, "_result": {"offset": offset, "limit": PAGE}}
            )
            for order in page.list:
                raw = order.model_dump(mode="json")
                if seen.update(order.token, content_hash(raw), raw["sale_date"]):
                    changed.append(raw)
                if latest is None or order.sale_date > latest:
                    latest = order.sale_date
            offset += len(page.list)
            if not page.list or offset >= page.total:
                break
        seen.expire(_iso((latest or now) - self._overlap)[:10])  # older days: out of the window
        cursor, state_records = cursors.records(
            self._cursor_topic,
            key,
            before,
            Cursor(channel=channel, account_token=account, cursor=latest, polled_at=now),
            seen,
            self._part_entries,
        )
        records: list[Record] = [
            (
                self._orders_topic,
                order["token"].encode(),
                OrderRecord(account_token=account, channel=channel, order=order, fetched_at=now)
                .model_dump_json()
                .encode(),
            )
            for order in changed
        ]
        await self.transactions.publish(partition, records + state_records)
        seen.touched.clear()
        self.cursors[key] = cursors.State(cursor, seen)
        self._partition_of[key] = partition
        if self.metrics is not None:
            self.metrics.orders_published.labels(
                self.name, self.metrics.account(account), channel
            ).inc(len(changed))
            if latest is not None:
                self.metrics.cursor_age.labels(
                    self.name, self.metrics.account(account), channel
                ).set(time.time() - latest.timestamp())
        return len(changed)
