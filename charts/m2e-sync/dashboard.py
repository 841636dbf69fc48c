"""Generates files/dashboard.json (Grafana): `python charts/m2e-sync/dashboard.py`.

First the worst accounts now (a table of every account that is not ok, from
`m2e_sync_account_state`: 4 unauthorized, 3 parked, 2 failing, 1 throttled), then per
service and per account: throughput, items per request, rate-budget use, limiter
wait, 429s, API latency, results by outcome, DLQ, pending items, lag, cursor age.
"""

from __future__ import annotations

import json
from pathlib import Path

PANELS = [
    (
        "Messages consumed /s",
        "sum by (service) (rate(m2e_sync_messages_consumed_total[$__rate_interval]))",
        "ops",
    ),
    (
        "Results by outcome /s",
        "sum by (service, outcome) (rate(m2e_sync_items_total[$__rate_interval]))",
        "ops",
    ),
    (
        "Items per request",
        "sum by (service, operation) (rate(m2e_sync_batch_size_sum[$__rate_interval])) / "
        "sum by (service, operation) (rate(m2e_sync_batch_size_count[$__rate_interval]))",
        "none",
    ),
    (
        "API requests /s by account (rate-budget use)",
        'sum by (account) (rate(m2e_sync_api_requests_total{status!="0"}[$__rate_interval]))',
        "reqps",
    ),
    (
        "API requests by endpoint and status",
        "sum by (endpoint, status) (rate(m2e_sync_api_requests_total[$__rate_interval]))",
        "reqps",
    ),
    (
        "429s /s by account",
        "sum by (service, account) (rate(m2e_sync_api_throttled_total[$__rate_interval]))",
        "reqps",
    ),
    (
        "401s by account",
        "sum by (service, account) (increase(m2e_sync_api_auth_failures_total[1h]))",
        "none",
    ),
    (
        "API latency p50 / p99",
        "histogram_quantile(0.99, sum by (le, endpoint) (rate(m2e_sync_api_latency_seconds_bucket[$__rate_interval])))",
        "s",
    ),
    (
        "Limiter wait p99 by account",
        "histogram_quantile(0.99, sum by (le, account) (rate(m2e_sync_limiter_wait_seconds_bucket[$__rate_interval])))",
        "s",
    ),
    ("Accounts by state", "sum by (state) (m2e_sync_accounts)", "none"),
    ("Limiter degraded (Redis down)", "max by (service) (m2e_sync_limiter_degraded)", "none"),
    ("Pending (unsettled) messages — lag", "sum by (service) (m2e_sync_pending_items)", "none"),
    ("Oldest pending item age", "max by (service) (m2e_sync_oldest_pending_age_seconds)", "s"),
    ("Fetching paused (backpressure)", "max by (service) (m2e_sync_partitions_paused)", "none"),
    (
        "Accounts parked (messages in <input>.retry)",
        "max by (service) (m2e_sync_accounts_parked)",
        "none",
    ),
    (
        "DLQ records /s by reason",
        "sum by (service, reason) (rate(m2e_sync_dlq_records_total[$__rate_interval]))",
        "ops",
    ),
    ("Commits /s", "sum by (service) (rate(m2e_sync_commits_total[$__rate_interval]))", "ops"),
    (
        "Orders published /s",
        "sum by (account, channel) (rate(m2e_sync_orders_published_total[$__rate_interval]))",
        "ops",
    ),
    ("Order cursor age", "max by (account, channel) (m2e_sync_poll_cursor_age_seconds)", "s"),
    (
        "Since last successful batch",
        "time() - max by (service) (m2e_sync_last_success_timestamp_seconds)",
        "s",
    ),
]


WORST_ACCOUNTS = {
    "id": 100,
    "type": "table",
    "title": "Worst accounts now (m2e-sync status)",
    "datasource": {"type": "prometheus", "uid": "${datasource}"},
    "gridPos": {"h": 8, "w": 24, "x": 0, "y": 0},
    "fieldConfig": {"defaults": {"unit": "none"}, "overrides": []},
    "options": {"sortBy": [{"displayName": "Value", "desc": True}]},
    "targets": [
        {
            "refId": "A",
            "expr": "sort_desc(max by (account, service, state) (m2e_sync_account_state))",
            "instant": True,
            "format": "table",
        }
    ],
}


def build() -> dict[str, object]:
    panels: list[dict[str, object]] = [WORST_ACCOUNTS]
    for i, (title, expr, unit) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 + 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": "A", "expr": expr, "legendFormat": "__auto"}],
            }
        )
    return {
        "title": "m2e-sync",
        "uid": "m2e-sync",
        "schemaVersion": 39,
        "version": 1,
        "tags": ["m2e-sync"],
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    path = Path(__file__).with_name("files") / "dashboard.json"
    path.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {path}")
