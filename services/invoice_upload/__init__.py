"""invoice-upload: invoices to M2E, one PDF per call, SSRF-safe and idempotent."""

from __future__ import annotations

from services.invoice_upload import samples
from services.invoice_upload.fetch import FetchPolicy, FetchRefused, SafeFetcher
from services.invoice_upload.models import InvoiceEvent, key_of
from services.invoice_upload.service import InvoiceUpload, MemoryLedger, RedisLedger
from services.invoice_upload.settings import InvoiceUploadSettings
from services.spec import ServiceSpec
from shared.budget import redis_client


def build(settings: InvoiceUploadSettings) -> InvoiceUpload:
    policy = FetchPolicy(
        allowed_hosts=frozenset(
            h.strip() for h in settings.invoice_url_allowlist.split(",") if h.strip()
        ),
        max_bytes=settings.invoice_max_bytes,
        total_timeout_s=settings.invoice_fetch_timeout_s,
        allow_loopback_http=settings.invoice_allow_loopback_http,
    )
    ttl = settings.invoice_ledger_ttl_days * 86400
    ledger: MemoryLedger | RedisLedger = MemoryLedger(ttl)
    redis = redis_client(settings, timeout_s=2.0)  # fails the upload's check, not the worker
    if redis is not None:
        ledger = RedisLedger(redis, ttl)
    return InvoiceUpload(
        settings.credentials(), SafeFetcher(policy), ledger, settings.invoice_concurrency
    )


SPEC = ServiceSpec.of(
    InvoiceUpload,
    event=InvoiceEvent,
    settings=InvoiceUploadSettings,
    build=build,
    key=key_of,
    samples=samples,
)

__all__ = [
    "SPEC",
    "FetchPolicy",
    "FetchRefused",
    "InvoiceUpload",
    "InvoiceUploadSettings",
    "MemoryLedger",
    "RedisLedger",
    "SafeFetcher",
    "build",
]
