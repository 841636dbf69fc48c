"""invoice-upload: `invoice-uploads` → `POST /order/invoice/`, one PDF per call.

Checked before any quota is spent: the fields, exactly one of inline PDF or URL, valid
base64, the PDF magic bytes, the size limit, and the URL's scheme, host allowlist and
address literal. A URL is fetched at send time by `SafeFetcher` (fetch.py); what it
refuses goes to the DLQ with the reason, like any invalid message.

Idempotent: an (account, order_id, invoice_number) that was uploaded is remembered
(`UploadLedger`: Redis with a TTL, shared by every replica; in memory without Redis), and a
redelivery is not uploaded again: its result says `duplicate-skipped`. The mark is written
right after the upload succeeds, so a crash between the two can cause one duplicate upload.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections.abc import Container, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from services.invoice_upload.fetch import FetchRefused, SafeFetcher
from services.invoice_upload.models import TOPIC, InvoiceEvent
from shared.coalescer import MergeRule, Payload, last_write_wins
from shared.m2e.client import BatchRejected, M2EClient
from shared.results import ErrorInfo
from shared.service import (
    Decoded,
    Headers,
    InvalidMessage,
    ItemOutcome,
    Service,
    check_account,
    check_key,
    describe,
)

OPERATION = "invoice.upload"
PDF_MAGIC = b"%PDF-"
API_FIELDS = (
    "order_id",
    "invoice_number",
    "total_amount",
    "total_vat_amount",
    "shipping_id",
    "transaction_id",
)


class UploadLedger(Protocol):
    async def seen(self, key: str) -> bool: ...

    async def mark(self, key: str) -> None: ...


class MemoryLedger:
    """One process only: what it uploaded, for `ttl_s`."""

    def __init__(self, ttl_s: float = 30 * 86400) -> None:
        self._ttl = ttl_s
        self._marks: dict[str, float] = {}

    async def seen(self, key: str) -> bool:
        at = self._marks.get(key)
        return at is not None and time.time() - at < self._ttl

    async def mark(self, key: str) -> None:
        self._marks[key] = time.time()


class RedisLedger:
    """Shared by every replica: `SET key 1 EX ttl`."""

    def __init__(
        self, redis: Any, ttl_s: int = 30 * 86400, prefix: str = "m2e-sync:invoice"
    ) -> None:
        self._redis = redis
        self._ttl = ttl_s
        self._prefix = prefix

    async def seen(self, key: str) -> bool:
        return bool(await self._redis.exists(f"{self._prefix}:{key}"))

    async def mark(self, key: str) -> None:
        await self._redis.set(f"{self._prefix}:{key}", "1", ex=self._ttl)


def ledger_key(account: str, order_id: str, invoice_number: str) -> str:
    raw = f"{account}\x00{order_id}\x00{invoice_number}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _failed(status: int | None, code: str, message: str, dead_letter: bool = False) -> ItemOutcome:
    return ItemOutcome(
        "failed", status, ErrorInfo(code=code, message=message), dead_letter=dead_letter
    )


class InvoiceUpload(Service):
    name = "invoice-upload"
    budget_priority = 3
    input_topic = TOPIC
    key_field = "order_id"
    merge_rules: Mapping[str, MergeRule] = {OPERATION: last_write_wins}

    def __init__(
        self,
        known_accounts: Container[str],
        fetcher: SafeFetcher,
        ledger: UploadLedger,
        concurrency: int = 4,
    ) -> None:
        self._accounts = known_accounts
        self._fetcher = fetcher
        self._ledger = ledger
        self._concurrency = concurrency

    def decode(self, key: bytes | None, value: bytes | None, headers: Headers) -> Decoded:
        order_key = key.decode("utf-8", "replace") if key is not None else None
        if value is None:
            raise InvalidMessage(
                "an invoice upload cannot be a tombstone", "EmptyValue", None, order_key
            )
        try:
            event = InvoiceEvent.model_validate_json(value)
        except ValidationError as exc:
            raise InvalidMessage(describe(exc), "ValidationError", None, order_key) from None
        account = str(event.account_token)
        check_account(self._accounts, account, event.order_id)
        check_key(order_key, event.order_id, "the order_id", account)
        payload: dict[str, Any] = {
            k: getattr(event, k) for k in API_FIELDS if getattr(event, k) is not None
        }
        if event.invoice_pdf_base64 is not None:
            self._check_pdf(
                self._b64(event.invoice_pdf_base64, account, event.order_id),
                account,
                event.order_id,
            )
            payload["invoice_data"] = event.invoice_pdf_base64
        else:
            assert event.invoice_url is not None
            try:
                self._fetcher.check_url(event.invoice_url)
            except FetchRefused as exc:
                raise InvalidMessage(
                    f"invoice_url: {exc.reason}", exc.code, account, event.order_id
                ) from None
            payload["invoice_url"] = event.invoice_url
        return Decoded(
            account,
            OPERATION,
            f"{event.order_id}\x00{event.invoice_number}",
            payload,
            event.event_id,
        )

    def _b64(self, data: str, account: str, order_id: str) -> bytes:
        # Check the size before decoding: 4 base64 characters carry 3 bytes.
        if len(data) * 3 // 4 > self._fetcher.policy.max_bytes:
            raise InvalidMessage(
                f"invoice_pdf_base64: larger than {self._fetcher.policy.max_bytes} bytes",
                "TooLarge",
                account,
                order_id,
            )
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMessage(
                "invoice_pdf_base64: not valid base64", "NotBase64", account, order_id
            ) from None

    def _check_pdf(self, pdf: bytes, account: str, order_id: str) -> None:
        if len(pdf) > self._fetcher.policy.max_bytes:
            raise InvalidMessage(
                f"invoice: {len(pdf)} bytes; at most {self._fetcher.policy.max_bytes}",
                "TooLarge",
                account,
                order_id,
            )
        if not pdf.startswith(PDF_MAGIC):
            raise InvalidMessage(
                "invoice: not a PDF (no %PDF- header)", "NotPdf", account, order_id
            )

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Payload]
    ) -> list[ItemOutcome]:
        gate = asyncio.Semaphore(self._concurrency)

        async def one(payload: Payload) -> ItemOutcome:
            async with gate:
                return await self._upload(client, account_token, payload)

        return list(await asyncio.gather(*(one(p) for p in payloads)))

    async def _upload(self, client: M2EClient, account: str, payload: Payload) -> ItemOutcome:
        key = ledger_key(account, payload["order_id"], payload["invoice_number"])
        if await self._ledger.seen(key):
            return ItemOutcome("duplicate-skipped", None, operation="upload")
        body = {k: v for k, v in payload.items() if k != "invoice_url"}
        if "invoice_url" in payload:
            try:
                pdf = await self._fetcher.fetch(payload["invoice_url"])
            except FetchRefused as exc:
                return _failed(None, exc.code, f"invoice_url: {exc.reason}", dead_letter=True)
            if not pdf.startswith(PDF_MAGIC):
                return _failed(
                    None, "NotPdf", "invoice_url: the document is not a PDF", dead_letter=True
                )
            body["invoice_data"] = base64.b64encode(pdf).decode()
        try:
            await client.upload_invoice(account, body)
        except BatchRejected as exc:
            message = exc.errors[-1].message if exc.errors else str(exc)
            return _failed(exc.status, "not_found" if exc.status == 404 else "rejected", message)
        await self._ledger.mark(key)
        return ItemOutcome("ok", 200, operation="upload")
