"""Wiring: build a worker's parts from its settings, and the FastStream app around them.

    app = create_app(VariantSync(settings), settings)     # AsgiFastStream
    run(service, settings)                                 # serve it with uvicorn

FastStream gives the process its lifecycle (start after the broker connects, drain on
shutdown), the HTTP port with `/metrics`, `/healthz`, `/readyz`, and the AsyncAPI
document of the worker's topics (`/asyncapi`). The consume loop itself is ours
(shared.worker): FastStream's batch subscriber can neither linger across polls nor
commit per partition only what is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from faststream.specification import AsyncAPI
from prometheus_client import CollectorRegistry, make_asgi_app

from shared import gc_tuning
from shared.budget import build_limiter, redis_client
from shared.catalog import CatalogView, MemoryView, RedisView
from shared.config import WorkerSettings
from shared.limiter import Limiter
from shared.logs import setup_logging
from shared.m2e.client import CallStats, Credentials, M2EClient, RetryPolicy
from shared.metrics import Metrics
from shared.probes import probes
from shared.reload import CredentialsReloader
from shared.results import Publisher, keyed_result
from shared.service import Service
from shared.worker import Worker
from shared.worker.accounts import SEVERITY, AccountBook

log = logging.getLogger("m2e_sync.bootstrap")


def catalog_view(settings: WorkerSettings) -> CatalogView:
    """The shared view of the catalog (shared.catalog): in Redis when there is one."""
    redis = redis_client(settings, timeout_s=2.0)
    if redis is None:
        return MemoryView()
    return RedisView(redis, settings.catalog_view_ttl_s)


def build_client(
    settings: WorkerSettings,
    credentials: Credentials,
    limiter: Limiter,
    metrics: Metrics,
    transport: httpx.AsyncBaseTransport | None = None,
    book: AccountBook | None = None,
) -> M2EClient:
    service = metrics.service

    def observe(account: str, stats: CallStats) -> None:
        if book is not None:
            book.observe(account, stats)
        metrics.api_requests.labels(
            service, metrics.account(account), stats.endpoint, str(stats.status)
        ).inc()
        metrics.api_latency.labels(service, stats.endpoint).observe(stats.seconds)
        metrics.limiter_wait.labels(service, metrics.account(account)).observe(stats.limiter_wait_s)
        if stats.status == 429:
            metrics.throttled.labels(service, metrics.account(account)).inc()

    return M2EClient(
        settings.m2e_base_url,
        credentials,
        limiter,
        retry=RetryPolicy(
            settings.m2e_retry_attempts, settings.m2e_retry_base_s, settings.m2e_retry_cap_s
        ),
        timeout=httpx.Timeout(settings.m2e_timeout_s, connect=min(5.0, settings.m2e_timeout_s)),
        transport=transport,
        observer=observe,
    )


def faststream_security(settings: WorkerSettings) -> BaseSecurity | None:
    kw = settings.kafka_security()
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = kw.get("ssl_context")
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context)
    kinds = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    kind = kinds[kw["sasl_mechanism"]]
    return kind(
        kw["sasl_plain_username"],
        kw["sasl_plain_password"],
        ssl_context=ssl_context,
        use_ssl=protocol == "SASL_SSL",
    )


@dataclass(slots=True)
class Parts:
    worker: Worker
    metrics: Metrics
    limiter: Limiter
    client: M2EClient
    reloader: CredentialsReloader


def build_parts(
    service: Service,
    settings: WorkerSettings,
    *,
    registry: CollectorRegistry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Parts:
    credentials = settings.credentials()
    metrics = Metrics(service.name, registry, settings.metrics_per_account)
    service.use_metrics(metrics)
    limiter = build_limiter(settings, metrics, service.budget_priority)
    book = AccountBook(settings.budget_period_s)
    client = build_client(settings, credentials, limiter, metrics, transport, book)
    publisher = Publisher.create(
        settings.kafka_bootstrap_servers,
        client_id=f"m2e-sync.{service.name}",
        **settings.kafka_security(),
    )
    worker = Worker(service, settings, client, publisher, metrics, book=book)
    metrics.watch_accounts(worker.accounts.rows, SEVERITY)
    reloader = CredentialsReloader(
        settings, credentials, metrics, service.name, [worker.credentials_changed]
    )
    return Parts(worker, metrics, limiter, client, reloader)


def create_app(
    service: Service,
    settings: WorkerSettings,
    parts: Parts | None = None,
    on_start_failure: Callable[[BaseException], None] | None = None,
) -> AsgiFastStream:
    parts = parts or build_parts(service, settings)
    worker = parts.worker
    app_log = logging.getLogger("m2e_sync.faststream")
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        logger=app_log,
        security=faststream_security(settings),
        client_id=f"m2e-sync.{service.name}.app",
    )
    # Declared for the AsyncAPI document: what this worker writes.
    broker.publisher(
        worker.results_topic,
        title=f"{worker.results_topic}:publish",
        description="One result per input message.",
        schema=keyed_result(service.key_field),
    )
    broker.publisher(
        worker.dlq_topic,
        title=f"{worker.dlq_topic}:publish",
        description="Original bytes of messages that could not be processed; "
        "headers error.class, error.message, source.topic/partition/offset.",
    )
    broker.publisher(
        worker.parker.retry_topic,
        title=f"{worker.parker.retry_topic}:publish",
        description="Original bytes of a blocked account's messages, waiting (read back by "
        "this worker); headers retry.account, retry.reason, retry.not-before-ms, "
        "retry.origin-offset, retry.count.",
    )

    reloading: list[asyncio.Task[None]] = []

    async def start() -> None:
        if parts.reloader.enabled:
            reloading.append(asyncio.create_task(parts.reloader.run(), name="reload"))
        try:
            await worker.start()
        except Exception as exc:
            # FastStream would log this and go on serving a worker that never consumes;
            # the process must exit instead, so Kubernetes restarts it and says why.
            log.exception("%s failed to start", service.name)
            if on_start_failure is None:
                raise
            on_start_failure(exc)

    async def stop() -> None:
        for task in reloading:
            task.cancel()
        await worker.stop()
        await parts.client.aclose()
        await parts.limiter.close()

    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/metrics", make_asgi_app(parts.metrics.registry)),
            *probes(worker),
        ],
        asyncapi_path="/asyncapi",
        specification=AsyncAPI(
            broker,
            title=f"m2e-sync {service.name}",
            version="0.1.0",
            description=f"Consumes `{worker.input_topic}` (schema: schemas/topics/{service.input_topic}.schema.json) "
            "with its own consume loop; publishes one result per input message and dead letters.",
        ),
        logger=app_log,
        after_startup=[start],
        on_shutdown=[stop],
    )


async def serve(service: Service, settings: WorkerSettings) -> int:
    """Serve until SIGTERM/SIGINT (exit code 0), or a failed start or a fatal error (exit
    code 1)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # A SIGTERM that ends in a clean drain is a normal exit (code 0): do not let
            # uvicorn re-raise it once shutdown is complete.
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    failed: list[BaseException] = []

    def start_failed(exc: BaseException) -> None:
        failed.append(exc)
        server.should_exit = True

    app_parts = build_parts(service, settings)
    app = create_app(service, settings, app_parts, on_start_failure=start_failed)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
    )
    server = Server(config)

    async def watchdog() -> None:
        # FastStream retries an unreachable broker without end; a pod that never starts
        # must exit and say why rather than sit unready.
        await asyncio.sleep(settings.startup_timeout_s)
        if not app_parts.worker.started and not server.should_exit:
            log.error(
                "%s did not start within STARTUP_TIMEOUT_S=%gs: is KAFKA_BOOTSTRAP_SERVERS=%s "
                "reachable?",
                service.name,
                settings.startup_timeout_s,
                settings.kafka_bootstrap_servers,
            )
            start_failed(TimeoutError("startup"))

    async def fatal() -> None:
        # A fatal error (shared.service.Fatal): stop gracefully — what is done is
        # committed — and exit non-zero so Kubernetes restarts the pod.
        signals = app_parts.worker.signals
        await signals.stop.wait()
        failed.append(RuntimeError(signals.fatal))
        server.should_exit = True

    guards = [asyncio.create_task(watchdog()), asyncio.create_task(fatal())]
    gc_tuning.tune()
    try:
        await server.serve()
    finally:
        for guard in guards:
            guard.cancel()
    return 1 if failed else 0


def run(service: Service, settings: WorkerSettings) -> int:
    setup_logging(settings.log_level, secrets=settings.secrets())
    log.info(
        "starting %s",
        service.name,
        extra={
            "topic": settings.kafka_input_topic or service.input_topic,
            "m2e_base_url": settings.m2e_base_url,
            "redis": bool(settings.redis_url),
            "batch_max_items": settings.batch_max_items,
            "batch_linger_ms": settings.batch_linger_ms,
        },
    )
    return asyncio.run(serve(service, settings))
