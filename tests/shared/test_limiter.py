"""The in-process limiter: even spacing, server feedback, shares; the failover switch."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.limiter import FailoverLimiter, LocalLimiter, RateFeedback, RatePolicy, bucket_id
from shared.m2e.client import Credentials


def test_policy_interval_includes_safety_and_server_limit() -> None:
    p = RatePolicy(requests=100, period_s=60, safety=0.02, jitter_s=0.0)
    assert p.interval() == pytest.approx(0.612)
    assert p.interval(limit=50) == pytest.approx(1.224)
    assert p.interval(limit=500) == pytest.approx(0.612)  # a higher server limit is not taken


def test_the_jitter_margin_is_a_time_not_a_share_of_the_period() -> None:
    # N requests spaced (P + J) / N apart span P + J - (P + J) / N: even if their delays
    # differ by J, no window of P seconds receives N + 1.
    p = RatePolicy(requests=100, period_s=60)
    assert p.interval() == pytest.approx(60.1 / 100)
    assert 100 * 60 / (p.interval() * 100) / 100 == pytest.approx(0.99834, abs=1e-5)  # share used
    short = RatePolicy(requests=10, period_s=1)
    assert short.interval() == pytest.approx(0.11)


def test_bucket_id_hides_the_token() -> None:
    bid = bucket_id("secret-access-token")
    assert "secret" not in bid and len(bid) == 24 and bid == bucket_id("secret-access-token")
    # Keyed: without REDIS_KEY_SECRET a reader of Redis cannot tell which token a bucket is.
    keyed = bucket_id("secret-access-token", b"deployment key")
    assert keyed != bid and keyed == bucket_id("secret-access-token", b"deployment key")
    assert Credentials({"a": "secret-access-token"}, b"deployment key").lookup("a")[1] == keyed


async def test_local_limiter_spaces_requests_evenly() -> None:
    limiter = LocalLimiter(RatePolicy(20, 1.0, safety=0.0))
    started = time.monotonic()
    for _ in range(6):
        await limiter.acquire("acct")
    # capacity 1 at 1 per 50 ms: no burst; 6 acquisitions need about 5 intervals.
    assert time.monotonic() - started >= 0.2


async def test_accounts_sharing_an_access_token_share_a_bucket() -> None:
    creds = Credentials({"a1": "tok", "a2": "tok", "b": "other"})
    limiter = LocalLimiter(RatePolicy(1, 60.0))
    await limiter.acquire(creds.lookup("a1")[1])
    assert await limiter.ready_in(creds.lookup("a2")[1]) > 0
    assert await limiter.ready_in(creds.lookup("b")[1]) == 0.0
    assert creds.lookup("a1")[1] == bucket_id("tok")


async def test_a_take_grants_a_free_slot_and_takes_nothing_otherwise() -> None:
    limiter = LocalLimiter(RatePolicy(1, 60.0))
    assert await limiter.take("acct", "t1") == 0.0  # free: taken
    wait = await limiter.take("acct", "t2")
    assert wait > 0 and await limiter.ready_in("acct") == pytest.approx(wait, abs=0.1)
    assert await limiter.ready_in("other") == 0.0  # nothing taken from another bucket


async def test_server_pause_and_lower_limit() -> None:
    now = [1000.0]
    limiter = LocalLimiter(RatePolicy(100, 60.0), clock=lambda: now[0])
    await limiter.feedback("acct", RateFeedback(limit=100, remaining=0, retry_at=1003.0))
    assert await limiter.ready_in("acct") == pytest.approx(3.0)
    now[0] = 1003.5
    assert await limiter.ready_in("acct") == 0.0
    await limiter.feedback("acct", RateFeedback(limit=10, remaining=5))
    assert limiter._limiter("acct").time_period == pytest.approx(6.01)  # (60 s + 0.1 s) / 10


async def test_pause_is_capped_against_clock_skew() -> None:
    limiter = LocalLimiter(RatePolicy(100, 60.0, max_pause_s=5), clock=lambda: 0.0)
    await limiter.feedback("acct", RateFeedback(throttled=True, retry_at=10_000.0))
    assert await limiter.ready_in("acct") == 5.0


def test_feedback_pause_rule() -> None:
    assert RateFeedback(remaining=0, retry_at=5.0).pause_until == 5.0
    assert RateFeedback(throttled=True, retry_at=5.0).pause_until == 5.0
    assert RateFeedback(remaining=3, retry_at=5.0).pause_until is None


class BrokenRedis:
    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    async def acquire(self, account: str, ticket: str = "") -> float:
        from redis.exceptions import ConnectionError

        self.calls += 1
        if not self.up:
            raise ConnectionError("down")
        return 0.0

    async def ready_in(self, account: str) -> float:
        return await self.acquire(account)

    async def take(self, account: str, ticket: str, paced: bool = False) -> float:
        return await self.acquire(account)

    async def feedback(self, account: str, fb: RateFeedback, ticket: str = "") -> None:
        await self.acquire(account)

    async def close(self) -> None:
        return None


async def test_failover_degrades_and_recovers() -> None:
    now = [0.0]
    changes: list[bool] = []
    redis = BrokenRedis()
    local = LocalLimiter(RatePolicy(1000, 1.0))
    limiter = FailoverLimiter(redis, local, changes.append, retry_s=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    await limiter.acquire("acct")
    assert limiter.degraded and changes == [True]
    calls = redis.calls
    await asyncio.gather(*(limiter.acquire("acct") for _ in range(3)))
    assert redis.calls == calls  # not retried before retry_s
    redis.up = True
    now[0] = 6.0
    await limiter.acquire("acct")
    assert not limiter.degraded and changes == [True, False]


async def test_local_limiter_says_what_is_left_of_the_interval() -> None:
    # The scheduler sleeps this long before it flushes: a whole interval each time would
    # leave a slice of the budget unused (found by bench/paced.py: 1.6 of 2 requests/s).
    limiter = LocalLimiter(RatePolicy(5, 1.0, jitter_s=0.0))
    assert await limiter.ready_in("acct") == 0.0
    await limiter.acquire("acct")
    first = await limiter.ready_in("acct")
    await asyncio.sleep(0.1)
    later = await limiter.ready_in("acct")
    assert 0.15 < first <= 0.2
    assert later <= 0.1 + 0.005 and later < first
