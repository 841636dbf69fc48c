"""The window-aware budget: what the server's headers say is spent at once, shared through
Redis by every process on a token, against fixed and sliding windows, with no 429."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.limiter import UNSENT, RateFeedback, RatePolicy
from shared.m2e.client import Credentials, M2EClient
from shared.redis_limiter import Learned, RedisLimiter

from .harness import ACCT_A, TOKEN_A, sandbox_config

ROUTE = "POST /catalog/product/find/"


def limiter(
    redis_url: str,
    prefix: str,
    requests: int,
    period_s: float | None,
    *,
    priority: int = 1,
    **kw: Any,
) -> Any:
    policy = RatePolicy(requests, period_s, jitter_s=0.05, priority=priority)
    return RedisLimiter(aioredis.from_url(redis_url), policy, prefix=prefix, **kw)


def account_client(sandbox: Any, limiter: RedisLimiter, **kw: Any) -> M2EClient:
    """A client of the sandbox for account A, whose token is the limiter's bucket."""
    return M2EClient(sandbox.base_url, Credentials({ACCT_A: TOKEN_A}), limiter, **kw)


async def call_n(sandbox: Any, limiter: RedisLimiter, n: int) -> None:
    """`n` requests on account A's token, all wanting to go at once (a backlog)."""
    client = account_client(sandbox, limiter)
    try:
        await asyncio.gather(*(client.find_products(ACCT_A, ["X"]) for _ in range(n)))
    finally:
        await client.aclose()


def served(sandbox: Any) -> list[dict[str, Any]]:
    return sorted(sandbox.requests(ROUTE), key=lambda r: r["t"])


async def callers_on_one_token(
    sandbox: Any,
    redis_url: str,
    period: float,
    callers: dict[int, int],
    seconds: float,
    pause: Callable[[], float] = lambda: 0.0,
) -> dict[int, int]:
    """`callers[p]` callers at priority p (one service each, sharing account A's token),
    each sending request after request, `pause()` seconds apart, for `seconds`: the
    requests each priority made."""
    prefix = f"it-win-{uuid.uuid4().hex[:6]}"
    granted = dict.fromkeys(callers, 0)
    stop = asyncio.Event()

    async def service(priority: int, n: int) -> None:
        client = account_client(sandbox, limiter(redis_url, prefix, 100, period, priority=priority))

        async def one() -> None:
            while not stop.is_set():
                await client.find_products(ACCT_A, ["X"])
                granted[priority] += 1
                await asyncio.sleep(pause())

        try:
            await asyncio.gather(*(one() for _ in range(n)))
        finally:
            await client.aclose()

    tasks = [asyncio.create_task(service(p, n)) for p, n in callers.items()]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return granted


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
async def test_a_backlog_fills_every_window_the_server_opens_and_never_gets_a_429(
    redis_url: str, sandbox_server: Any, mode: str
) -> None:
    # Two processes (two limiters, one Redis) with 7 requests each against 4 per 2 s:
    # 14 requests = windows of 4, 4, 4, 2. Evenly spaced, a window's 4 requests would
    # spread over its whole period; here each window is spent as it opens.
    limit, period = 4, 2.0
    sandbox = await sandbox_server(sandbox_config(requests=limit, period_s=period, mode=mode))
    prefix = f"it-win-{uuid.uuid4().hex[:6]}"
    one, two = (limiter(redis_url, prefix, 100, period) for _ in range(2))
    try:
        await asyncio.gather(call_n(sandbox, one, 7), call_n(sandbox, two, 7))
    finally:
        await one.close()
        await two.close()
    log = served(sandbox)
    assert [r["status"] for r in log] == [200] * 14
    bursts: list[list[float]] = []
    for r in log:  # requests less than half a period apart belong to one burst
        if bursts and r["t"] - bursts[-1][-1] < period / 2:
            bursts[-1].append(r["t"])
        else:
            bursts.append([r["t"]])
    assert [len(b) for b in bursts] == [4, 4, 4, 2], bursts
    assert all(b[-1] - b[0] < 0.5 for b in bursts), bursts
    # Each burst follows the end of the last window, not its Retry-After rounded up to
    # whole seconds.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(bursts)]
    assert all(period <= g <= period + 0.4 for g in gaps), gaps


async def test_a_burst_under_a_fresh_window_goes_at_once(
    redis_url: str, sandbox_server: Any
) -> None:
    # 20 requests under 100 per 60 s: evenly spaced they would take 12 s.
    sandbox = await sandbox_server(sandbox_config(requests=100, period_s=60.0))
    one = limiter(redis_url, f"it-win-{uuid.uuid4().hex[:6]}", 100, 60.0)
    started = time.monotonic()
    try:
        await call_n(sandbox, one, 20)
    finally:
        await one.close()
    assert time.monotonic() - started < 1.5
    assert [r["status"] for r in served(sandbox)] == [200] * 20


async def test_a_configured_budget_below_the_servers_is_an_upper_bound(
    redis_url: str, sandbox_server: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config(requests=10, period_s=2.0))
    one = limiter(redis_url, f"it-win-{uuid.uuid4().hex[:6]}", 4, 2.0)
    try:
        await asyncio.wait_for(call_n(sandbox, one, 6), 10)
    finally:
        await one.close()
    times = [r["t"] for r in served(sandbox)]
    assert times[4] - times[0] >= 2.0  # 4 of the server's 10, then the next window


async def test_without_a_period_the_budget_is_learned_and_reported_once(
    redis_url: str, sandbox_server: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config(requests=4, period_s=2.0))
    learned: list[tuple[str, Learned]] = []
    one = limiter(
        redis_url,
        f"it-win-{uuid.uuid4().hex[:6]}",
        100,
        None,
        on_learned=lambda b, lr: learned.append((b, lr)),
    )
    try:
        await asyncio.wait_for(call_n(sandbox, one, 12), 15)
    finally:
        await one.close()
    log = served(sandbox)
    assert [r["status"] for r in log] == [200] * 12
    assert log[-1]["t"] - log[0]["t"] < 3 * (2.0 + 1.0 + 0.3)  # windows, not 60 s ÷ 4 apart
    assert learned, "nothing learned"
    assert len({lr for _, lr in learned}) == len(learned)  # told once per change
    last = learned[-1][1]
    assert last.limit == 4 and 2.0 <= last.period_s <= 3.0


async def test_a_learned_period_creeping_up_by_microseconds_is_not_reported_again(
    redis_url: str,
) -> None:
    # Found in the learn run: the period is the longest time to a reset seen, so every
    # window's first answer could raise it by a few microseconds and log it again.
    learned: list[Learned] = []
    one = limiter(
        redis_url,
        f"it-win-{uuid.uuid4().hex[:6]}",
        100,
        None,
        on_learned=lambda _b, lr: learned.append(lr),
    )
    try:
        for reset_in in (2.0, 3.0, 3.002, 3.004, 5.0):
            answer = RateFeedback(limit=4, remaining=3, retry_at=time.time() + reset_in)
            await one.feedback("b", answer, uuid.uuid4().hex)
    finally:
        await one.close()
    assert [(lr.limit, round(lr.period_s)) for lr in learned] == [(4, 3), (4, 5)]


async def test_a_take_holds_its_slot_in_flight_like_an_acquire(redis_url: str) -> None:
    """The scheduler's look takes the slot for its batch's first request: a slot taken is
    in flight until answered or given back, and a take finding none takes nothing."""
    one = limiter(redis_url, f"it-win-{uuid.uuid4().hex[:6]}", 10, 1.0)
    try:
        await one.acquire("b", "t0")
        await one.feedback("b", RateFeedback(limit=10, remaining=2, retry_at=time.time() + 5), "t0")
        assert await one.take("b", "t1") == 0.0
        assert await one.take("b", "t2") == 0.0
        assert await one.take("b", "t3") > 0  # the two left are in flight
        assert await one.take("b", "t3") > 0  # and the refused take holds nothing
        await one.feedback("b", UNSENT, "t2")  # never sent: given back
        assert await one.take("b", "t3") == 0.0
    finally:
        await one.close()


async def test_a_paced_take_spends_a_known_window_evenly_and_in_full(redis_url: str) -> None:
    """A backlog read back from the retry topic asks for paced slots: even at the highest
    priority it is granted no faster than evenly over the window, so its window's sends
    (and the work of reading them back) do not all fall in the window's first second."""
    one = limiter(redis_url, f"it-win-{uuid.uuid4().hex[:6]}", 10, 2.0)
    try:
        await one.acquire("b", "t0")
        opened = time.monotonic()
        await one.feedback("b", RateFeedback(limit=10, remaining=9, retry_at=time.time() + 2), "t0")
        granted: list[float] = []
        while len(granted) < 9 and time.monotonic() - opened < 3.0:
            wait = await one.take("b", uuid.uuid4().hex, paced=True)
            if wait > 0:
                assert wait <= 0.25  # told when its next slot comes: one interval at most
                await asyncio.sleep(wait)
            else:
                granted.append(time.monotonic() - opened)
        assert len(granted) == 9, granted  # the window used in full ...
        assert granted[1] - granted[0] > 0.1 and granted[-1] > 1.4, granted  # ... evenly
    finally:
        await one.close()


async def test_headers_that_contradict_themselves_fall_back_to_even_spacing(
    redis_url: str,
) -> None:
    prefix = f"it-win-{uuid.uuid4().hex[:6]}"
    one = limiter(redis_url, prefix, 10, 1.0)
    try:
        await one.acquire("b", "t1")
        await one.feedback("b", RateFeedback(limit=10, remaining=9, retry_at=time.time() + 1), "t1")
        assert await one.ready_in("b") == 0.0  # the window has 9 left: at once
        await one.acquire("b", "t2")
        assert await one.ready_in("b") == 0.0
        # Remaining above the limit: the headers cannot be trusted; even spacing for a period.
        await one.feedback(
            "b", RateFeedback(limit=10, remaining=50, retry_at=time.time() + 1), "t2"
        )
        await one.acquire("b", "t3")
        assert 0.05 < await one.ready_in("b") <= 0.11
    finally:
        await one.close()


async def test_after_a_429_the_budget_is_spaced_evenly_for_a_period(redis_url: str) -> None:
    prefix = f"it-win-{uuid.uuid4().hex[:6]}"
    one = limiter(redis_url, prefix, 10, 1.0)
    try:
        await one.acquire("b", "t1")
        await one.feedback("b", RateFeedback(limit=10, remaining=9, retry_at=time.time() + 1), "t1")
        await one.acquire("b", "t2")
        await one.feedback(
            "b",
            RateFeedback(limit=10, remaining=0, retry_at=time.time() + 0.2, throttled=True),
            "t2",
        )
        await asyncio.sleep(0.25)
        await one.acquire("b", "t3")
        await one.feedback("b", RateFeedback(limit=10, remaining=8, retry_at=time.time() + 1), "t3")
        await one.acquire("b", "t4")
        assert 0.05 < await one.ready_in("b") <= 0.11  # not a burst of 8
    finally:
        await one.close()


async def test_requests_in_flight_are_not_counted_twice_nor_forgotten(redis_url: str) -> None:
    prefix = f"it-win-{uuid.uuid4().hex[:6]}"
    one = limiter(redis_url, prefix, 10, 60.0, inflight_ttl_s=0.5)
    try:
        await one.acquire("b", "probe")
        await one.feedback(
            "b", RateFeedback(limit=10, remaining=2, retry_at=time.time() + 60), "probe"
        )
        await one.acquire("b", "x")
        await one.acquire("b", "y")  # 2 remaining, 2 in flight: nothing more
        assert await one.ready_in("b") > 50
        # A request without an answer (a timeout) may have been counted: taken as spent.
        await one.feedback("b", RateFeedback(answered=False), "x")
        assert await one.ready_in("b") > 50
        # A process that died with a request out: its ticket expires, the slot is free.
        await asyncio.sleep(0.6)
        assert await one.ready_in("b") == 0.0
    finally:
        await one.close()


async def test_a_higher_priority_finds_a_slot_while_a_lower_one_has_a_backlog(
    redis_url: str, sandbox_server: Any
) -> None:
    # 20 per 4 s: product-sync (priority 4) has far more work than that; variant-sync
    # (priority 1) sends one request every 0.5 s. Each of its requests waits at most two
    # slots' worth, product-sync keeps its minimum share, and the windows stay full.
    limit, period = 20, 4.0
    sandbox = await sandbox_server(sandbox_config(requests=limit, period_s=period))
    prefix = f"it-win-{uuid.uuid4().hex[:6]}"
    waits: dict[int, list[float]] = {1: [], 4: []}

    def client(priority: int) -> M2EClient:
        return account_client(
            sandbox,
            limiter(redis_url, prefix, 100, period, priority=priority),
            observer=lambda _a, stats: waits[priority].append(stats.limiter_wait_s),
        )

    high, low = client(1), client(4)
    stop = asyncio.Event()

    async def backlog() -> None:
        async def one() -> None:
            while not stop.is_set():
                await low.find_products(ACCT_A, ["X"])

        await asyncio.gather(*(one() for _ in range(8)))

    async def stock_updates() -> None:
        for _ in range(24):
            await asyncio.sleep(0.5)
            await high.find_products(ACCT_A, ["Y"])

    task = asyncio.create_task(backlog())
    started = time.time()
    try:
        await stock_updates()
    finally:
        stop.set()
        await task
        await high.aclose()
        await low.aclose()
    log = [r for r in served(sandbox) if r["t"] >= started + period]  # after the first window
    assert all(r["status"] == 200 for r in served(sandbox))
    interval = period / limit
    assert max(waits[1]) <= 2 * interval + 0.1, [round(w, 2) for w in waits[1]]
    share = sum(1 for w in waits[4]) / (len(waits[1]) + len(waits[4]))
    assert share >= 0.1, share
    span = log[-1]["t"] - log[0]["t"]
    assert len(log) >= 0.9 * span / period * limit, (len(log), span)


async def test_below_the_highest_priority_a_window_is_spent_evenly_and_in_full(
    redis_url: str, sandbox_server: Any
) -> None:
    sandbox = await sandbox_server(sandbox_config(requests=10, period_s=2.0))
    lim = limiter(redis_url, f"it-{uuid.uuid4().hex[:6]}", 100, 2.0, priority=4)
    try:
        await call_n(sandbox, lim, 20)
    finally:
        await lim.close()
    times = [r["t"] for r in served(sandbox)]
    assert [r["status"] for r in served(sandbox)] == [200] * 20
    first = [t for t in times if t < times[0] + 2.0]
    assert len(first) == 10  # the window used in full ...
    assert first[-1] - first[0] > 1.2  # ... but spread over it, not at once
    assert times[-1] - times[0] < 2 * 2.0 + 0.5


async def test_a_request_lost_in_flight_never_holds_the_next_window(redis_url: str) -> None:
    # Found by the 12-process run against sliding windows: sends cancelled by a rebalance
    # left their tickets in flight, and every process waited for them at each reset.
    one = limiter(redis_url, f"it-win-{uuid.uuid4().hex[:6]}", 10, 60.0)
    try:
        await one.acquire("b", "probe")
        reset = time.time() + 0.3
        await one.feedback("b", RateFeedback(limit=10, remaining=1, retry_at=reset), "probe")
        await one.acquire("b", "lost")  # its process dies: no answer, ever
        assert await one.ready_in("b") > 0.2
        await asyncio.sleep(0.45)
        assert await one.ready_in("b") == 0.0  # the next window's probe goes
        await one.acquire("b", "next")
        assert await one.ready_in("b") > 0  # one probe at a time
    finally:
        await one.close()


async def test_a_cancelled_request_gives_its_slot_back(redis_url: str, sandbox_server: Any) -> None:
    sandbox = await sandbox_server(  # every answer takes 2 s
        sandbox_config(requests=2, period_s=60.0, faults={"latency_ms": 2000})
    )
    one = limiter(redis_url, f"it-win-{uuid.uuid4().hex[:6]}", 2, 60.0)
    client = account_client(sandbox, one)
    try:
        bucket = Credentials({ACCT_A: TOKEN_A}).lookup(ACCT_A)[1]
        first = asyncio.create_task(client.find_products(ACCT_A, ["X"]))
        await asyncio.sleep(2.5)  # answered: the window has 1 left
        await first
        cancelled = asyncio.create_task(client.find_products(ACCT_A, ["X"]))
        await asyncio.sleep(0.3)
        assert await one.ready_in(bucket) > 50  # its slot is taken while it is out
        fly = f"{one._prefix}:{bucket}:fly"
        assert await one._redis.zcard(fly) == 1
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        await asyncio.sleep(0.2)
        # No answer: the server may have counted it, so the window is spent, but the
        # ticket is gone: nothing waits on it after the window ends.
        assert await one._redis.zcard(fly) == 0
    finally:
        await client.aclose()
        await one.close()


async def test_a_late_or_headerless_answer_keeps_the_window(redis_url: str) -> None:
    # Found by the 12-process run against sliding windows: an answer read after its
    # window's reset (a busy event loop) was taken for a contradiction, the token fell back
    # to even spacing that knows nothing of the window, and the next request got a 429.
    one = limiter(redis_url, f"it-win-{uuid.uuid4().hex[:6]}", 10, 1.0)
    try:
        await one.acquire("b", "t1")
        await one.feedback("b", RateFeedback(limit=10, remaining=8, retry_at=time.time() + 5), "t1")
        await one.acquire("b", "t2")
        late = RateFeedback(limit=10, remaining=9, retry_at=time.time() - 0.2)
        await one.feedback("b", late, "t2")
        await one.acquire("b", "t3")
        await one.feedback("b", RateFeedback(), "t3")  # a gateway's page: no headers
        for ticket in ("t4", "t5"):
            assert await one.ready_in("b") == 0.0  # still the window's burst, not spacing
            await one.acquire("b", ticket)
    finally:
        await one.close()


async def test_a_probe_answered_with_the_same_reset_still_states_the_window(
    redis_url: str,
) -> None:
    # Found with sliding windows: the request probing a window after its end was told the
    # same (whole-second) reset as before, when the next request to expire does so within
    # that second. Its answer was ignored, the window still looked ended, and probes went
    # one after another until one got a 429.
    one = limiter(redis_url, f"it-win-{uuid.uuid4().hex[:6]}", 10, 0.5)
    try:
        reset = time.time() + 1.0  # rounded up; the budget's own period ends it sooner
        for ticket, left in (("t1", 1), ("t2", 0)):
            await one.acquire("b", ticket)
            await one.feedback("b", RateFeedback(limit=2, remaining=left, retry_at=reset), ticket)
        assert await one.ready_in("b") > 0
        await asyncio.sleep(0.5 + 0.05)  # the period, the jitter: the probe may go
        assert await one.ready_in("b") == 0.0
        await one.acquire("b", "probe")
        await one.feedback("b", RateFeedback(limit=2, remaining=0, retry_at=reset), "probe")
        assert await one.ready_in("b") > 0.2  # no second probe into a full window
    finally:
        await one.close()


async def test_a_bursting_highest_priority_leaves_a_lower_one_its_minimum_share(
    redis_url: str, sandbox_server: Any
) -> None:
    # variant-sync (priority 1) with a backlog spends each window as it opens; product-sync
    # (priority 4), asking all along, still gets its 10 % of every window.
    limit, period = 20, 2.0
    sandbox = await sandbox_server(sandbox_config(requests=limit, period_s=period))
    granted = await callers_on_one_token(sandbox, redis_url, period, {1: 6, 4: 2}, 4 * period + 0.5)
    assert all(r["status"] == 200 for r in served(sandbox))
    assert granted[4] >= 0.1 * limit * 4, granted  # ≥ its share of each of 4 windows
    assert sum(granted.values()) >= 0.9 * limit * 4, granted


async def test_a_sliding_window_is_spent_as_its_requests_expire_not_at_whole_seconds(
    redis_url: str, sandbox_server: Any
) -> None:
    # Found by the 12-process run against sliding windows (90 %): there the server's
    # Retry-After is when its oldest request stops counting, rounded up to a whole second,
    # so a slot freed mid-second stood idle until the next; and lower priorities paced
    # themselves against it as if it ended a window. Callers spread their requests (as
    # services do), two priorities, more demand than budget.
    limit, period = 10, 2.0
    sandbox = await sandbox_server(sandbox_config(requests=limit, period_s=period, mode="sliding"))
    spread = random.Random(7)
    await callers_on_one_token(
        sandbox, redis_url, period, {1: 4, 4: 4}, 7 * period, lambda: spread.uniform(0, 0.4)
    )
    log = served(sandbox)
    assert all(r["status"] == 200 for r in log)
    # After three periods (time to see the window move and its answers for one period):
    # any stretch of the budget's length holds at most `limit`; four of them, nearly full.
    start = log[0]["t"] + 3 * period
    steady = [r for r in log if start <= r["t"] < start + 4 * period]
    assert len(steady) >= 0.9 * 4 * limit, len(steady)
