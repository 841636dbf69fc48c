"""The per-account view: which merchants are unhealthy right now, and why (`GET /accounts`).

    book = AccountBook(window_s=60)        # the M2E client's observer feeds it
    view = AccountsView(book, ...)          # the worker builds it from its parts
    view.rows()                             # worst first

States, worst first: `unauthorized` (the last send answered 401 and none worked since),
`parked` (failing for ACCOUNT_PARK_AFTER_S: its messages wait in the retry topic),
`failing` (sends fail: 5xx, timeouts, malformed answers), `throttled` (a 429 in the
current window, or messages waiting for the budget now), `ok`. Nothing here costs anything per
message: requests are counted as they are made, the rest is read when asked.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.clock import Clock
from shared.coalescer import Bucket
from shared.m2e.client import CallStats

STATES = ("unauthorized", "parked", "failing", "throttled", "ok")  # worst first
SEVERITY = {state: len(STATES) - 1 - i for i, state in enumerate(STATES)}  # ok 0 … 4


@dataclass(slots=True)
class AccountRecord:
    requests: deque[float] = field(default_factory=deque)  # monotonic times in the window
    last_success: float | None = None  # wall time
    last_error: str | None = None
    last_throttled: float | None = None  # monotonic


def error_class(status: int | str) -> str:
    """A request's failure as a class name an operator can search for."""
    if status == 0:
        return "ConnectionError"
    if status == "malformed":
        return "MalformedResponse"
    if status == 401:
        return "Unauthorized"
    if status == 429:
        return "Throttled"
    return f"HTTP{status}"


class AccountBook:
    """What each account's requests did, as the M2E client saw them."""

    def __init__(self, window_s: float, clock: Clock = time.monotonic, wall: Clock = time.time):
        self.window_s = window_s
        self._clock = clock
        self._wall = wall
        self._records: dict[str, AccountRecord] = {}

    def observe(self, account: str, stats: CallStats) -> None:
        record = self._records.get(account)
        if record is None:
            record = self._records[account] = AccountRecord()
        now = self._clock()
        record.requests.append(now)
        self._trim(record, now)
        status = stats.status
        if isinstance(status, int) and 200 <= status < 300:
            record.last_success = self._wall()
            return
        if status == 429:
            record.last_throttled = now
        if not (isinstance(status, int) and 400 <= status < 500 and status not in (401, 429)):
            record.last_error = error_class(status)  # a 4xx about items is not the account's

    def _trim(self, record: AccountRecord, now: float) -> None:
        while record.requests and record.requests[0] <= now - self.window_s:
            record.requests.popleft()

    def record(self, account: str) -> AccountRecord:
        record = self._records.get(account) or AccountRecord()
        self._trim(record, self._clock())
        return record

    def throttled(self, account: str) -> bool:
        last = self.record(account).last_throttled
        return last is not None and self._clock() - last < self.window_s


@dataclass(frozen=True, slots=True)
class Backlog:
    """An account's unsettled messages in this worker."""

    pending: int = 0
    oldest_s: float = 0.0  # age of the oldest, seconds
    parked: int = 0  # waiting in the retry topic


def backlogs(
    buckets: Iterable[Bucket], parked: Iterable[Counter[str]], now: float
) -> dict[str, Backlog]:
    """Per account: messages buffered (not in flight), the oldest one's age, and messages
    waiting in the retry topic."""
    pending: Counter[str] = Counter()
    oldest: dict[str, float] = {}
    for bucket in buckets:
        account = bucket.key.account_token
        for item in (*bucket.items.values(), *bucket.waiting.values()):
            pending[account] += len(item.sources)
            oldest[account] = min(oldest.get(account, now), item.since)
    waiting: Counter[str] = Counter()
    for counts in parked:
        waiting.update(counts)
    return {
        a: Backlog(pending[a], now - oldest.get(a, now), max(0, waiting[a]))
        for a in set(pending) | {a for a, n in waiting.items() if n > 0}
    }


def _iso(wall: float | None) -> str | None:
    return None if wall is None else datetime.fromtimestamp(wall, UTC).isoformat()


class AccountsView:
    def __init__(
        self,
        service: str,
        book: AccountBook,
        accounts: Collection[str],
        state_of: Callable[[str], str | None],
        backlogs: Callable[[], dict[str, Backlog]],
        waiting: Callable[[str], bool],
        budget: int,
    ) -> None:
        self._service = service
        self._book = book
        self._accounts = accounts
        self._state_of = state_of  # unauthorized / parked / failing from the health record
        self._backlogs = backlogs
        self._waiting = waiting  # waiting for the budget now
        self._budget = budget

    def state(self, account: str, backlog: Backlog) -> str:
        state = self._state_of(account)
        if state is not None:
            return state
        if self._book.throttled(account) or (backlog.pending and self._waiting(account)):
            return "throttled"
        return "ok"

    def rows(self) -> list[dict[str, Any]]:
        backlogs = self._backlogs()
        names = set(backlogs) | set(self._accounts)
        rows = []
        for account in names:
            record = self._book.record(account)
            backlog = backlogs.get(account, Backlog())
            used = len(record.requests)
            rows.append(
                {
                    "account": account,
                    "service": self._service,
                    "state": self.state(account, backlog),
                    "configured": account in self._accounts,
                    "pending_messages": backlog.pending,
                    "parked_messages": backlog.parked,
                    "oldest_pending_s": round(backlog.oldest_s, 3),
                    "last_success": _iso(record.last_success),
                    "last_error": record.last_error,
                    "requests_in_window": used,
                    "budget_used": round(used / self._budget, 4) if self._budget else None,
                }
            )
        return sort_worst_first(rows)


def sort_worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        rows,
        key=lambda r: (-SEVERITY.get(r["state"], 0), -r["oldest_pending_s"], r["account"]),
    )
