"""One rate budget per M2E access token, shared by every service and replica.

    limiter = build_limiter(settings, metrics)   # shared.budget
    bucket = bucket_id(access_token)          # the M2E client names the bucket
    await limiter.acquire(bucket, ticket)     # wait for a token of that bucket
    await limiter.ready_in(bucket)            # seconds until one is free (0.0: now)
    await limiter.take(bucket, ticket)        # the same, but a free one is taken (0.0)
    await limiter.take(bucket, ticket, paced=True)   # a backlog's: evenly over the window
    await limiter.feedback(bucket, RateFeedback(...), ticket)   # what the server said

A ticket names one request, so its answer clears it from what is in flight.

A bucket is an access token's budget, named by a hash of the token (`bucket_id`: the
token never leaves memory). The M2E client is its one user: it resolves an account token
to its access token once, and both asks when a request may go and takes the token for
it (the scheduler's look, `take`, takes the token for a batch's first request when one is
free: one round trip to Redis for both). Implementations:

- `LocalLimiter`: in-process, one `aiolimiter.AsyncLimiter` per bucket, evenly spaced.
- `RedisLimiter` (shared.redis_limiter): the server's window as its headers state it,
  shared in Redis by every replica and service: what remains of a window is spent at
  once; when the window is unknown, GCRA in Lua (reading `redis.call("TIME")`, so pod
  clocks do not matter).
- `FailoverLimiter`: Redis while it answers; otherwise a `LocalLimiter` at
  rate ÷ expected replicas (degraded), with a metric and a log line, back to Redis when
  it answers again.

Without a known window, requests are spaced evenly at (period + jitter) / limit ×
(1 + safety). Evenly, because a burst could overrun the server's window; the jitter term because requests spaced
exactly period / limit apart can still arrive N + 1 to a window when their network delays
differ by up to `jitter`. The margin that guards against that is a time, not a share of
the period: 100 ms costs 0.17 % of a 60 s budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from aiolimiter import AsyncLimiter

from shared.clock import Clock

log = logging.getLogger("m2e_sync.limiter")


@dataclass(frozen=True, slots=True)
class RateFeedback:
    """The server's rate-limit headers (and whether it answered 429)."""

    limit: int | None = None
    remaining: int | None = None
    retry_at: float | None = None  # epoch seconds
    throttled: bool = False
    answered: bool = True  # False: the request failed before any answer (no headers)
    sent: bool = True  # False: granted but never sent (its slot is given back)

    @property
    def pause_until(self) -> float | None:
        if (self.throttled or self.remaining == 0) and self.retry_at is not None:
            return self.retry_at
        return None


UNSENT = RateFeedback(sent=False)  # granted, never sent: the slot is given back
LOST = RateFeedback(answered=False)  # sent, no answer: the server may have counted it

CONSERVATIVE_PERIOD_S = 60.0  # the period assumed until an unconfigured one is learned


@dataclass(frozen=True, slots=True)
class RatePolicy:
    requests: int  # per period, per access token (an upper bound on the server's limit)
    period_s: float | None  # None: learned from the server's window resets
    safety: float = 0.0  # space requests this much wider still (a share of the interval)
    max_pause_s: float = 300.0  # cap on a server-requested pause (clock skew guard)
    jitter_s: float = 0.1  # the spread of request delays one window must absorb
    priority: int = 1  # this process's claim on a shared token: 1 is the highest
    min_share: float = 0.1  # of the budget, kept for each priority however busy higher ones are

    @property
    def assumed_period_s(self) -> float:
        return CONSERVATIVE_PERIOD_S if self.period_s is None else self.period_s

    @property
    def spaced_period_s(self) -> float:
        """The period requests are spread over: the server's, widened by the jitter."""
        return self.assumed_period_s + self.jitter_s

    def interval(self, limit: int | None = None) -> float:
        effective = self.requests if limit is None else min(self.requests, limit)
        return self.spaced_period_s / max(1, effective) * (1 + self.safety)


class Limiter(Protocol):
    async def acquire(self, bucket: str, ticket: str = "") -> float:
        """Wait until a request may be sent on the bucket; return the seconds waited."""
        ...

    async def ready_in(self, bucket: str) -> float: ...

    async def take(self, bucket: str, ticket: str, paced: bool = False) -> float:
        """Take a slot under `ticket` if one is free now (0.0); else the seconds until one
        may be, taking nothing: a look and a first request's grant in one call. `paced`:
        a backlog's request, granted no faster than evenly over the window."""
        ...

    async def feedback(self, bucket: str, feedback: RateFeedback, ticket: str = "") -> None: ...

    async def close(self) -> None: ...


PUBLIC_BUCKET_KEY = b"m2e-sync bucket"  # without REDIS_KEY_SECRET: stable, but guessable


def bucket_id(access_token: str, key: bytes = PUBLIC_BUCKET_KEY) -> str:
    """A stable, non-reversible name for an access token's bucket: an HMAC of the token,
    keyed by REDIS_KEY_SECRET so that key names cannot be matched against guesses."""
    return hmac.new(key, access_token.encode(), hashlib.sha256).hexdigest()[:24]


class UnlimitedLimiter:
    """No limit at all: for benchmarks of the pipeline itself (RATE_LIMIT_ENABLED=false)."""

    async def acquire(self, bucket: str, ticket: str = "") -> float:
        return 0.0

    async def ready_in(self, bucket: str) -> float:
        return 0.0

    async def take(self, bucket: str, ticket: str, paced: bool = False) -> float:
        return 0.0

    async def feedback(self, bucket: str, feedback: RateFeedback, ticket: str = "") -> None:
        return None

    async def close(self) -> None:
        return None


class LocalLimiter:
    def __init__(self, policy: RatePolicy, clock: Clock = time.time, share: float = 1.0) -> None:
        """`share`: the fraction of the budget this process may use (degraded mode)."""
        self._policy = policy
        self._clock = clock
        self._share = share
        self._limiters: dict[str, AsyncLimiter] = {}
        self._server_limit: dict[str, int] = {}
        self._paused_until: dict[str, float] = {}
        self._granted: dict[str, float] = {}  # bucket → loop time of its last grant

    def _limiter(self, bucket: str) -> AsyncLimiter:
        limiter = self._limiters.get(bucket)
        if limiter is None:
            interval = self._policy.interval(self._server_limit.get(bucket)) / self._share
            # Capacity 1: evenly spaced, no burst at start.
            limiter = self._limiters[bucket] = AsyncLimiter(1, interval)
        return limiter

    async def acquire(self, bucket: str, ticket: str = "") -> float:
        started = self._clock()
        while True:  # a pause may be extended while we sleep
            pause = self._paused_until.get(bucket, 0.0) - self._clock()
            if pause <= 0:
                break
            await asyncio.sleep(pause)
        await self._limiter(bucket).acquire()
        self._granted[bucket] = asyncio.get_running_loop().time()  # aiolimiter's clock
        return self._clock() - started

    async def ready_in(self, bucket: str) -> float:
        pause = max(0.0, self._paused_until.get(bucket, 0.0) - self._clock())
        if pause:
            return pause
        limiter = self._limiter(bucket)
        if limiter.has_capacity():
            return 0.0
        # What is left of the interval since the last grant, not a whole interval: the
        # scheduler sleeps exactly this long, so the budget is used in full.
        granted = self._granted.get(bucket)
        if granted is None:
            return limiter.time_period
        left = granted + limiter.time_period - asyncio.get_running_loop().time()
        return min(limiter.time_period, max(left, 0.001))

    async def take(self, bucket: str, ticket: str, paced: bool = False) -> float:
        wait = await self.ready_in(bucket)  # evenly spaced already: paced or not
        if wait > 0:
            return wait
        await self.acquire(bucket, ticket)
        return 0.0

    async def feedback(self, bucket: str, feedback: RateFeedback, ticket: str = "") -> None:
        until = feedback.pause_until
        if until is not None:
            until = min(until, self._clock() + self._policy.max_pause_s)
            self._paused_until[bucket] = max(self._paused_until.get(bucket, 0.0), until)
        if feedback.limit is not None and feedback.limit < self._server_limit.get(
            bucket, self._policy.requests
        ):
            self._server_limit[bucket] = feedback.limit
            self._limiters.pop(bucket, None)  # rebuilt at the lower rate

    async def close(self) -> None:
        return None


class DegradedObserver(Protocol):
    def __call__(self, degraded: bool) -> None: ...


class FailoverLimiter:
    """Redis when it answers; a local limiter at a conservative share when it does not."""

    def __init__(
        self,
        redis_limiter: Limiter,
        local: LocalLimiter,
        on_change: DegradedObserver,
        retry_s: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._redis = redis_limiter
        self._local = local
        self._on_change = on_change
        self._retry_s = retry_s
        self._clock = clock
        self._down_since: float | None = None
        self._next_try = 0.0

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    def _use_redis(self) -> bool:
        return self._down_since is None or self._clock() >= self._next_try

    def _failed(self, exc: Exception) -> None:
        self._next_try = self._clock() + self._retry_s
        if self._down_since is None:
            self._down_since = self._clock()
            log.warning(
                "redis unreachable, limiter degraded to in-process share: %s", type(exc).__name__
            )
            self._on_change(True)

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning("redis reachable again, limiter back to the shared budget")
            self._down_since = None
            self._on_change(False)

    async def _call(self, name: str, *args: object) -> object:
        from redis.exceptions import RedisError

        if self._use_redis():
            try:
                result = await getattr(self._redis, name)(*args)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc)
            else:
                self._recovered()
                return result
        return await getattr(self._local, name)(*args)

    async def acquire(self, bucket: str, ticket: str = "") -> float:
        return float(await self._call("acquire", bucket, ticket))  # type: ignore[arg-type]

    async def ready_in(self, bucket: str) -> float:
        return float(await self._call("ready_in", bucket))  # type: ignore[arg-type]

    async def take(self, bucket: str, ticket: str, paced: bool = False) -> float:
        return float(await self._call("take", bucket, ticket, paced))  # type: ignore[arg-type]

    async def feedback(self, bucket: str, feedback: RateFeedback, ticket: str = "") -> None:
        await self._local.feedback(bucket, feedback)  # the fallback knows too
        await self._call("feedback", bucket, feedback, ticket)

    async def close(self) -> None:
        await self._redis.close()
