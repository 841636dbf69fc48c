"""invoice-upload: invoices to M2E, one PDF per call, SSRF-safe and idempotent."""

from __future__ import annotations

from services.invoice_upload import samples
from services.invoice_upload.fetch import FetchPolicy, FetchRefused, SafeFetcher
from services.invoice_upload.models import InvoiceEvent, key_of
from services.invoice_upload.service import InvoiceUpload, MemoryLedger, RedisLedger
from services.invoice_upload.settings import InvoiceUploadSettings
from services.spec import ServiceSpec


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
    if settings.redis_url is not None:
        from redis.asyncio import Redis

        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        redis = Redis.from_url(
            settings.redis_url, password=password, socket_timeout=2.0, socket_connect_timeout=2.0
        )  # a Redis that stops answering fails the upload's check, not the worker
        ledger = RedisLedger(redis, ttl)
    return InvoiceUpload(
        set(settings.credentials()), SafeFetcher(policy), ledger, settings.invoice_concurrency
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
