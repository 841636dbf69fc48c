"""The workers `m2e-sync run NAME` can start."""

from __future__ import annotations

from collections.abc import Callable

from shared.config import WorkerSettings
from shared.service import Service


def _variant_sync(settings: WorkerSettings) -> Service:
    from services.variant_sync import VariantSync

    return VariantSync(set(settings.credentials()))


def _product_sync(settings: WorkerSettings) -> Service:
    from services.product_sync import ProductSync, load_defaults

    return ProductSync(
        set(settings.credentials()),
        load_defaults(settings.product_defaults_file),
        settings.product_max_variants,
    )


def _invoice_upload(settings: WorkerSettings) -> Service:
    from services.invoice_upload import (
        FetchPolicy,
        InvoiceUpload,
        MemoryLedger,
        RedisLedger,
        SafeFetcher,
    )

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
        ledger = RedisLedger(Redis.from_url(settings.redis_url, password=password), ttl)
    return InvoiceUpload(
        set(settings.credentials()), SafeFetcher(policy), ledger, settings.invoice_concurrency
    )


def _order_poller(settings: WorkerSettings) -> Service:
    import socket
    from datetime import timedelta

    from services.order_poller import OrderPoller

    instance = settings.kafka_group_instance_id or socket.gethostname()
    return OrderPoller(
        set(settings.credentials()),
        settings.kafka_bootstrap_servers,
        orders_topic=settings.orders_topic,
        cursor_topic=settings.order_cursor_topic,
        transactional_id=settings.order_transactional_id or f"m2e-sync.order-poller.{instance}",
        overlap=timedelta(days=settings.order_overlap_days),
        initial_lookback=timedelta(days=settings.order_initial_lookback_days),
        kafka=settings.kafka_security(),
    )


SERVICES: dict[str, Callable[[WorkerSettings], Service]] = {
    "order-poller": _order_poller,
    "invoice-upload": _invoice_upload,
    "product-sync": _product_sync,
    "variant-sync": _variant_sync,
}
