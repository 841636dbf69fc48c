"""The per-account view (`/accounts`, `m2e-sync status`, the `account_state` metric) and
what a reload of the credentials does to a running worker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from services.variant_sync import VariantSync
from shared.m2e.client import CallStats, Credentials, M2EClient, TransientFailure, Unauthorized
from shared.m2e.credentials import Change
from shared.service import OK, ItemOutcome
from shared.worker.accounts import SEVERITY, AccountBook

from .helpers import ACCT, TP, HandClock, NullPublisher, rec, worker

BLOCKED = "6f1c2d3e-0009-4a5b-8c9d-000000000009"


class Blocking(VariantSync):
    """variant-sync whose sends for BLOCKED raise `failure` while it is set."""

    def __init__(self, failure: Exception | None) -> None:
        super().__init__({ACCT, BLOCKED})
        self.failure = failure
        self.sent: list[str] = []

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Any]
    ) -> list[ItemOutcome]:
        if account_token == BLOCKED and self.failure is not None:
            raise self.failure
        self.sent.append(account_token)
        return [OK] * len(payloads)


async def step(w: Any, now: float) -> None:
    for bucket in list(w.coalescer):
        await w.scheduler._consider(bucket, now)
    await asyncio.gather(*w.scheduler.flushes)


def setup(failure: Exception | None, **settings: Any) -> tuple[Any, Blocking, HandClock]:
    service, clock = Blocking(failure), HandClock()
    credentials = Credentials({ACCT: "token-1", BLOCKED: "token-2"})
    w = worker(
        service=service,
        clock=clock,
        credentials=credentials,
        batch_max_items=10,
        batch_linger_ms=0,
        **settings,
    )
    return w, service, clock


def rows(w: Any) -> dict[str, dict[str, Any]]:
    return {r["account"]: r for r in w.accounts.rows()}


async def test_a_401_account_is_unauthorized_with_its_backlog_and_the_others_ok() -> None:
    w, _, clock = setup(Unauthorized(BLOCKED), auth_backoff_s=60, account_park_after_s=600)
    await w.poller.ingest(
        {TP: [rec(0, BLOCKED, "X1", 1.0), rec(1, BLOCKED, "X2", 1.0), rec(2, ACCT, "H1", 1.0)]}
    )
    await step(w, clock())
    clock.now += 12
    view = rows(w)
    assert view[BLOCKED]["state"] == "unauthorized"
    assert view[BLOCKED]["pending_messages"] == 2 and view[BLOCKED]["oldest_pending_s"] == 12
    assert view[ACCT]["state"] == "ok" and view[ACCT]["pending_messages"] == 0
    assert [r["account"] for r in w.accounts.rows()] == [BLOCKED, ACCT]  # worst first


async def test_a_failing_account_turns_parked_and_its_parked_messages_are_counted() -> None:
    w, _, clock = setup(TransientFailure("HTTP 503", 5), account_park_after_s=10)
    await w.poller.ingest({TP: [rec(0, BLOCKED, "X1", 1.0), rec(1, BLOCKED, "X2", 1.0)]})
    await step(w, clock())
    assert rows(w)[BLOCKED]["state"] == "failing"
    clock.now += 11
    w.scheduler._not_before.clear()
    await step(w, clock())
    view = rows(w)[BLOCKED]
    assert view["state"] == "parked"
    assert (view["pending_messages"], view["parked_messages"]) == (0, 2)


async def test_requests_say_throttled_last_success_last_error_and_budget() -> None:
    clock, wall = HandClock(), HandClock()
    wall.now = 1_800_000_000.0
    book = AccountBook(window_s=60, clock=clock, wall=wall)
    for status in (200, 200, 503, 429):
        book.observe(ACCT, CallStats("PATCH /catalog/product/variant/", status, 0.01, 0.0))
    book.observe(ACCT, CallStats("PATCH /catalog/product/variant/", 422, 0.01, 0.0))
    w, _, _ = setup(None, rate_limit_requests=10)
    w.accounts._book = book
    view = rows(w)[ACCT]
    assert view["state"] == "throttled"
    assert view["last_success"] == "2027-01-15T08:00:00+00:00"
    assert view["last_error"] == "Throttled"  # a 422 is about items, not the account
    assert (view["requests_in_window"], view["budget_used"]) == (5, 0.5)
    clock.now += 61  # the window passed
    view = rows(w)[ACCT]
    assert (view["state"], view["requests_in_window"]) == ("ok", 0)


async def test_a_new_token_retries_a_401_paused_account_at_once() -> None:
    w, service, clock = setup(Unauthorized(BLOCKED), auth_backoff_s=600, account_park_after_s=900)
    await w.poller.ingest({TP: [rec(0, BLOCKED, "X1", 1.0)]})
    await step(w, clock())
    clock.now += 1
    await step(w, clock())
    assert service.sent == []  # paused for AUTH_BACKOFF_S
    service.failure = None
    w.client.credentials.replace({ACCT: "token-1", BLOCKED: "token-3"})
    w.credentials_changed(Change(rotated=frozenset({BLOCKED})))
    await step(w, clock())
    assert service.sent == [BLOCKED] and rows(w)[BLOCKED]["state"] == "ok"


async def test_a_removed_accounts_pending_messages_go_to_the_dlq_as_unknown_account() -> None:
    credentials = Credentials({ACCT: "token-1"})
    publisher = NullPublisher()
    w = worker(
        service=VariantSync(credentials),
        credentials=credentials,
        publisher=publisher,
        batch_max_items=10,
        batch_linger_ms=0,
    )
    w.client._http = httpx.AsyncClient(
        base_url="http://x", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={}))
    )
    await w.poller.ingest({TP: [rec(0, ACCT, "H1", 1.0)]})
    credentials.replace({})  # the file no longer names it
    await step(w, w.clock())
    [result] = [json.loads(r.value) for r in publisher.published if r.topic.endswith(".results")]
    assert result["status"] == "failed" and result["error"]["code"] == "UnknownAccount"
    [dead] = [r for r in publisher.published if r.topic.endswith(".dlq")]
    assert dict(dead.headers)["error.class"] == b"UnknownAccount"
    assert w.partitions.trackers[TP].committable() == 1
    await w.poller.ingest({TP: [rec(1, ACCT, "H2", 1.0)]})  # a new one is refused at decode
    assert w.partitions.trackers[TP].committable() == 2


async def test_metrics_name_only_the_accounts_that_are_not_ok() -> None:
    w, _, clock = setup(Unauthorized(BLOCKED), account_park_after_s=600)
    w.metrics.watch_accounts(w.accounts.rows, SEVERITY)
    await w.poller.ingest({TP: [rec(0, BLOCKED, "X1", 1.0), rec(1, ACCT, "H1", 1.0)]})
    await step(w, clock())
    registry = w.metrics.registry
    by_state = {
        s: registry.get_sample_value("m2e_sync_accounts", {"service": "variant-sync", "state": s})
        for s in ("ok", "unauthorized")
    }
    assert by_state == {"ok": 1, "unauthorized": 1}
    labels = {"service": "variant-sync", "account": BLOCKED, "state": "unauthorized"}
    assert registry.get_sample_value("m2e_sync_account_state", labels) == 4
    healthy = {"service": "variant-sync", "account": ACCT, "state": "ok"}
    assert registry.get_sample_value("m2e_sync_account_state", healthy) is None


async def test_waiting_for_the_budget_is_throttled_only_with_messages_waiting() -> None:
    w, _, clock = setup(None)
    w.scheduler._ready_at[ACCT] = clock.now + 5  # its budget has no token for 5 s
    assert rows(w)[ACCT]["state"] == "ok"  # nothing waits for it
    await w.poller.ingest({TP: [rec(0, ACCT, "H1", 1.0)]})
    assert rows(w)[ACCT]["state"] == "throttled"
