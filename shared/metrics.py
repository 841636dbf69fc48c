"""Prometheus metrics of a worker, prefix `m2e_sync_` (docs/design.md, Observability).

Built on an injected `CollectorRegistry`, so tests read them in isolation. Labels carry
the service, the account token (a UUID, not a secret) and the endpoint — never an
access token. Per-account series cost ~25 samples per account (most of them the limiter
wait histogram); with `per_account=False` (METRICS_PER_ACCOUNT=false, for deployments of
hundreds of merchants) every account label reads `_all` and /accounts is the per-account
view. No `_created` series: they double every counter and histogram and no panel reads
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "m2e_sync"
ALL_ACCOUNTS = "_all"

disable_created_metrics()  # type: ignore[no-untyped-call]

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 200, 300, 400, 450, 490, 499, 500)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(
        self, service: str, registry: CollectorRegistry | None = None, per_account: bool = True
    ) -> None:
        self.service = service
        self.per_account = per_account
        self.registry = registry if registry is not None else CollectorRegistry()
        r, p = self.registry, PREFIX
        self.consumed = Counter(
            f"{p}_messages_consumed", "Input messages consumed", ["service", "topic"], registry=r
        )
        self.invalid = Counter(
            f"{p}_messages_invalid",
            "Input messages that failed decoding or validation",
            ["service", "reason"],
            registry=r,
        )
        self.items = Counter(
            f"{p}_items",
            "Input messages settled, by outcome",
            ["service", "account", "operation", "outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            f"{p}_batch_size",
            "Items per flushed batch",
            ["service", "operation"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            f"{p}_api_requests",
            "M2E API requests by endpoint and HTTP status (0: no response)",
            ["service", "account", "endpoint", "status"],
            registry=r,
        )
        self.api_latency = Histogram(
            f"{p}_api_latency_seconds",
            "M2E API request latency",
            ["service", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.limiter_wait = Histogram(
            f"{p}_limiter_wait_seconds",
            "Time waited for a rate-limit token",
            ["service", "account"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.throttled = Counter(
            f"{p}_api_throttled", "429 answers from the M2E API", ["service", "account"], registry=r
        )
        self.auth_failures = Counter(
            f"{p}_api_auth_failures",
            "401 answers: the account is paused",
            ["service", "account"],
            registry=r,
        )
        self.parked = Counter(
            f"{p}_messages_parked",
            "Messages moved to the retry topic while their account was blocked",
            ["service", "account"],
            registry=r,
        )
        self.accounts_parked = Gauge(
            f"{p}_accounts_parked",
            "Accounts blocked long enough that their messages go to the retry topic",
            ["service"],
            registry=r,
        )
        self.pending = Gauge(
            f"{p}_pending_items",
            "Items buffered or in flight, not yet settled",
            ["service"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            f"{p}_oldest_pending_age_seconds",
            "Age of the oldest buffered item",
            ["service"],
            registry=r,
        )
        self.commits = Counter(
            f"{p}_commits", "Offset commits sent to Kafka", ["service"], registry=r
        )
        self.dlq = Counter(
            f"{p}_dlq_records", "Records written to the DLQ", ["service", "reason"], registry=r
        )
        self.paused = Gauge(
            f"{p}_partitions_paused",
            "1 while fetching is paused for backpressure",
            ["service"],
            registry=r,
        )
        self.budget_learned = Gauge(
            f"{p}_rate_budget_learned",
            "The budget learned from the server's answers, per access token's bucket "
            "(a hash of the token): requests per window, and the window in seconds",
            ["service", "bucket", "quantity"],
            registry=r,
        )
        self.limiter_degraded = Gauge(
            f"{p}_limiter_degraded",
            "1 while Redis is unreachable and the limiter runs in-process",
            ["service"],
            registry=r,
        )
        self.last_success = Gauge(
            f"{p}_last_success_timestamp_seconds",
            "When a batch last succeeded",
            ["service"],
            registry=r,
        )
        self.credential_reloads = Counter(
            f"{p}_credential_reloads",
            "Reads of a changed M2E_CREDENTIALS_FILE: ok, or refused (the last good kept)",
            ["service", "result"],
            registry=r,
        )
        self.accounts_configured = Gauge(
            f"{p}_accounts_configured", "Accounts with an access token", ["service"], registry=r
        )
        self.orders_published = Counter(
            f"{p}_orders_published",
            "New or changed orders published",
            ["service", "account", "channel"],
            registry=r,
        )
        self.cursor_age = Gauge(
            f"{p}_poll_cursor_age_seconds",
            "Age of the order poll cursor",
            ["service", "account", "channel"],
            registry=r,
        )
        for gauge in (
            self.pending,
            self.oldest_pending,
            self.paused,
            self.limiter_degraded,
            self.accounts_parked,
        ):
            gauge.labels(service).set(0)

    def learned_budget(self, bucket: str, limit: int, period_s: float) -> None:
        label = bucket if self.per_account else ALL_ACCOUNTS
        self.budget_learned.labels(self.service, label, "requests").set(limit)
        self.budget_learned.labels(self.service, label, "period_seconds").set(period_s)

    def account(self, account: str) -> str:
        """The `account` label value: the account token, or `_all` when per-account series
        are switched off."""
        return account if self.per_account else ALL_ACCOUNTS

    def watch_accounts(
        self, rows: Callable[[], list[dict[str, Any]]], states: dict[str, int]
    ) -> None:
        """Serve the per-account view as metrics, read at each scrape: how many accounts are
        in each state, and one `account_state` series per account that is not ok (its
        value: how bad, `states`), so a healthy deployment of 1,000 merchants adds none."""
        self.registry.register(_AccountsCollector(self.service, rows, states))


class _AccountsCollector(Collector):
    def __init__(
        self, service: str, rows: Callable[[], list[dict[str, Any]]], states: dict[str, int]
    ) -> None:
        self._service, self._rows, self._states = service, rows, states

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families([])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families(self._rows())

    def _families(self, rows: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
        by_state = GaugeMetricFamily(
            f"{PREFIX}_accounts", "Accounts per state (/accounts)", labels=["service", "state"]
        )
        for state in self._states:
            n = sum(1 for r in rows if r["state"] == state)
            by_state.add_metric([self._service, state], n)
        unhealthy = GaugeMetricFamily(
            f"{PREFIX}_account_state",
            "Accounts that are not ok: 1 throttled, 2 failing, 3 parked, 4 unauthorized",
            labels=["service", "account", "state"],
        )
        for r in rows:
            if self._states.get(r["state"], 0) > 0:
                unhealthy.add_metric(
                    [self._service, r["account"], r["state"]], self._states[r["state"]]
                )
        yield by_state
        yield unhealthy
