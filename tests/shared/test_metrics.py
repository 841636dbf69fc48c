"""Metric cardinality with many merchants: what one account costs, and the aggregate mode
(METRICS_PER_ACCOUNT=false) that keeps a worker of 1,000 accounts under 3,000 samples."""

from __future__ import annotations

from prometheus_client import generate_latest

from shared.bootstrap import build_client
from shared.config import load_settings
from shared.limiter import UnlimitedLimiter
from shared.m2e.client import CallStats, Credentials
from shared.metrics import Metrics
from shared.worker.accounts import SEVERITY

ENDPOINT = "PATCH /catalog/product/variant/"


def samples(metrics: Metrics) -> int:
    lines = generate_latest(metrics.registry).decode().splitlines()
    return sum(1 for line in lines if line and not line.startswith("#"))


def scrape_after_traffic(per_account: bool, accounts: int) -> tuple[int, str]:
    """A worker's /metrics after every account made a request, waited for the budget and
    settled items: what a scrape carries."""
    settings = load_settings(m2e_access_tokens="{}", metrics_per_account=per_account)
    metrics = Metrics("variant-sync", per_account=per_account)
    metrics.watch_accounts(list, SEVERITY)
    client = build_client(settings, Credentials({}), UnlimitedLimiter(), metrics)
    observe = client._observer
    assert observe is not None
    for i in range(accounts):
        account = f"6f1c2d3e-{i:04d}-4a5b-8c9d-000000000000"
        observe(account, CallStats(ENDPOINT, 200, 0.05, 0.2))
        label = metrics.account(account)
        metrics.items.labels("variant-sync", label, "update", "ok").inc(10)
    return samples(metrics), generate_latest(metrics.registry).decode()


def test_one_account_costs_a_bounded_number_of_series_and_no_created_series() -> None:
    one, text = scrape_after_traffic(True, 1)  # the first also makes the per-endpoint ones
    two, _ = scrape_after_traffic(True, 2)
    ten, _ = scrape_after_traffic(True, 10)
    per_account = two - one
    assert ten - one == 9 * per_account
    assert per_account == 18  # the README says so: 16 of them the limiter-wait histogram
    assert "_created" not in text


def test_the_aggregate_mode_keeps_a_thousand_accounts_under_3000_samples() -> None:
    aggregate, text = scrape_after_traffic(False, 1000)
    assert aggregate < 3000, aggregate
    assert 'account="_all"' in text and "6f1c2d3e-0999" not in text
    per_account, _ = scrape_after_traffic(True, 1000)
    assert per_account > 10 * aggregate
