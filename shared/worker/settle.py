"""Settling: one result per input message (and a dead letter where one is due), published,
then the messages marked done in their partition trackers so commits can move past them.

A result is rendered once per item and spliced per message (`ResultTemplate`); a
superseded message's result is published with the item that replaced it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from shared.coalescer import Pending, Source
from shared.results import (
    ErrorInfo,
    OutRecord,
    Publisher,
    ResultTemplate,
    SourceRef,
    dlq_headers,
    keyed_result,
)
from shared.service import ItemOutcome
from shared.topics import dlq_topic, results_topic
from shared.worker.context import Context

log = logging.getLogger("m2e_sync.worker")


class Settler:
    def __init__(self, ctx: Context, input_topic: str, publisher: Publisher) -> None:
        self.input_topic = input_topic
        self.results_topic = results_topic(input_topic)
        self.dlq_topic = dlq_topic(input_topic)
        self._key_field = ctx.service.key_field
        self._result = keyed_result(self._key_field)
        self._publisher = publisher
        self._ctx = ctx

    def invalid(
        self,
        rec: ConsumerRecord[Any, Any],
        error_class: str,
        reason: str,
        account: str | None,
        key: str | None,
    ) -> list[OutRecord]:
        """The dead letter and `failed` result of a message that could not be decoded."""
        self._ctx.metrics.invalid.labels(self._ctx.label, error_class).inc()
        self._ctx.metrics.dlq.labels(self._ctx.label, error_class).inc()
        headers = dlq_headers(
            error_class, reason, rec.topic, rec.partition, rec.offset, list(rec.headers or ())
        )
        named: dict[str, Any] = {self._key_field: key if key is not None else _text(rec.key)}
        result = self._result(
            status="failed",
            account_token=account,
            operation="decode",
            error=ErrorInfo(code=error_class, message=reason),
            source=SourceRef(topic=rec.topic, partition=rec.partition, offset=rec.offset),
            **named,
        )
        return [
            OutRecord(self.dlq_topic, rec.key, rec.value, headers, rec.partition),
            OutRecord(
                self.results_topic,
                rec.key,
                result.model_dump_json(exclude_none=True).encode(),
                (),
                rec.partition,
            ),
        ]

    def results(
        self, account: str, operation: str, batch: list[Pending], outcomes: list[ItemOutcome]
    ) -> tuple[list[OutRecord], list[Source]]:
        """A result for every message behind a sent batch, and the sources they settle."""
        batch_id = uuid.uuid4().hex[:16]
        topic = self.results_topic
        records: list[OutRecord] = []
        sources: list[Source] = []
        items = self._ctx.metrics.items
        placeholder = SourceRef(topic=topic, partition=0, offset=0)  # replaced per message
        for pending, outcome in zip(batch, outcomes, strict=True):
            op = outcome.operation or operation
            for status, group in (
                (outcome.status, pending.sources),
                ("superseded", pending.superseded),
            ):
                if not group:
                    continue
                items.labels(self._ctx.label, self._ctx.metrics.account(account), op, status).inc(
                    len(group)
                )
                settled = status != "superseded"
                # The entity's key: the payload's own field where it has one (an invoice is
                # coalesced per order and invoice number, but its result names the order).
                named: dict[str, Any] = {
                    self._key_field: pending.payload.get(self._key_field, pending.key)
                }
                result = self._result(
                    status=status,
                    account_token=account,
                    operation=op,
                    http_status=outcome.http_status if settled else None,
                    error=outcome.error if settled else None,
                    source=placeholder,
                    batch_id=batch_id,
                    attempts=pending.attempts,
                    **named,
                )
                template = ResultTemplate(result, topic=self.input_topic)
                for src in group:
                    value = template.render(src.partition, src.input_offset, src.event_id)
                    records.append(OutRecord(topic, src.key, value, (), src.partition))
                    sources.append(src)
                    if settled and outcome.dead_letter and outcome.error is not None:
                        records.append(self._dead_letter(src, outcome.error))
        return records, sources

    def _dead_letter(self, src: Source, error: ErrorInfo) -> OutRecord:
        self._ctx.metrics.dlq.labels(self._ctx.label, error.code).inc()
        headers = dlq_headers(
            error.code,
            error.message,
            self.input_topic,
            src.partition,
            src.input_offset,
            src.headers,
        )
        return OutRecord(self.dlq_topic, src.key, src.value, headers, src.partition)

    async def settle(self, records: list[OutRecord], sources: list[Source]) -> None:
        """Publish, then mark the sources done. Publishing is retried until it succeeds."""
        delay = 0.5
        while True:
            try:
                await self._publisher.publish(records)
                break
            except KafkaError as exc:
                log.warning("publishing %d records failed, retrying: %s", len(records), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for src in sources:
            src.tracker.done(src.offset)
        self._ctx.signals.progress.set()

    def succeeded(self) -> None:
        self._ctx.metrics.last_success.labels(self._ctx.label).set(time.time())


def _text(key: bytes | None) -> str | None:
    if key is None:
        return None
    return key.decode("utf-8", "replace")
