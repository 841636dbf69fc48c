"""One rate budget per M2E access token, shared by every service and replica.

    limiter = build_limiter(settings, metrics)
    bucket = bucket_id(access_token)          # the M2E client names the bucket
    await limiter.acquire(bucket)             # wait for a token of that bucket
    await limiter.ready_in(bucket)            # seconds until one is free (0.0: now)
    await limiter.feedback(bucket, RateFeedback(...))   # what the server said

A bucket is an access token's budget, named by a hash of the token (`bucket_id`: the
token never leaves memory). The M2E client is its one user: it resolves an account token
to its access token once, and both asks when a request may go and takes the token for
it. Implementations:

- `LocalLimiter`: in-process, one `aiolimiter.AsyncLimiter` per bucket, evenly spaced.
- `RedisLimiter`: GCRA in a Lua script reading `redis.call("TIME")`, so pod clocks do
  not matter; pauses and a lower server limit are stored in Redis, so every replica obeys
  what one of them was told.
- `FailoverLimiter`: Redis while it answers; otherwise a `LocalLimiter` at
  rate ÷ expected replicas (degraded), with a metric and a log line, back to Redis when
  it answers again.

Requests are spaced evenly at (period + jitter) / limit × (1 + safety). Evenly, because a
burst could overrun the server's fixed window; the jitter term because requests spaced
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

    @property
    def pause_until(self) -> float | None:
        if (self.throttled or self.remaining == 0) and self.retry_at is not None:
            return self.retry_at
        return None


@dataclass(frozen=True, slots=True)
class RatePolicy:
    requests: int  # per period, per access token
    period_s: float
    safety: float = 0.0  # space requests this much wider still (a share of the interval)
    max_pause_s: float = 300.0  # cap on a server-requested pause (clock skew guard)
    jitter_s: float = 0.1  # the spread of request delays one window must absorb

    @property
    def spaced_period_s(self) -> float:
        """The period requests are spread over: the server's, widened by the jitter."""
        return self.period_s + self.jitter_s

    def interval(self, limit: int | None = None) -> float:
        effective = self.requests if limit is None else min(self.requests, limit)
        return self.spaced_period_s / max(1, effective) * (1 + self.safety)


class Limiter(Protocol):
    async def acquire(self, bucket: str) -> float:
        """Wait until a request may be sent on the bucket; return the seconds waited."""
        ...

    async def ready_in(self, bucket: str) -> float: ...

    async def feedback(self, bucket: str, feedback: RateFeedback) -> None: ...

    async def close(self) -> None: ...


PUBLIC_BUCKET_KEY = b"m2e-sync bucket"  # without REDIS_KEY_SECRET: stable, but guessable


def bucket_id(access_token: str, key: bytes = PUBLIC_BUCKET_KEY) -> str:
    """A stable, non-reversible name for an access token's bucket: an HMAC of the token,
    keyed by REDIS_KEY_SECRET so that key names cannot be matched against guesses."""
    return hmac.new(key, access_token.encode(), hashlib.sha256).hexdigest()[:24]


class UnlimitedLimiter:
    """No limit at all: for benchmarks of the pipeline itself (RATE_LIMIT_ENABLED=false)."""

    async def acquire(self, bucket: str) -> float:
        return 0.0

    async def ready_in(self, bucket: str) -> float:
        return 0.0

    async def feedback(self, bucket: str, feedback: RateFeedback) -> None:
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

    async def acquire(self, bucket: str) -> float:
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

    async def feedback(self, bucket: str, feedback: RateFeedback) -> None:
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


# GCRA: the bucket's "theoretical arrival time" (TAT) in microseconds of Redis time.
# KEYS: tat, pause, server limit. ARGV: period_us + jitter_us, configured limit, safety,
# take (1/0).
# Returns {allowed (1/0), wait_us}.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return {0, pause - now} end
local limit = tonumber(ARGV[2])
local server_limit = tonumber(redis.call('GET', KEYS[3]) or '0')
if server_limit > 0 and server_limit < limit then limit = server_limit end
local interval = math.floor(tonumber(ARGV[1]) / limit * (1 + tonumber(ARGV[3])))
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat > now then return {0, tat - now} end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[1], tat + interval, 'PX', math.floor(interval / 1000) + 60000)
end
return {1, 0}
"""

# KEYS: pause, server limit. ARGV: pause_until_us (0: none), server limit (0: none),
# max pause us, period_us.
FEEDBACK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = tonumber(ARGV[1])
if until_us > 0 then
  if until_us > now + tonumber(ARGV[3]) then until_us = now + tonumber(ARGV[3]) end
  local current = tonumber(redis.call('GET', KEYS[1]) or '0')
  if until_us > current and until_us > now then
    redis.call('SET', KEYS[1], until_us, 'PX', math.floor((until_us - now) / 1000) + 1)
  end
end
local limit = tonumber(ARGV[2])
if limit > 0 then
  local current = tonumber(redis.call('GET', KEYS[2]) or '0')
  if current == 0 or limit < current then
    redis.call('SET', KEYS[2], limit, 'PX', math.floor(tonumber(ARGV[4]) / 1000) * 10)
  end
end
return 1
"""


class RedisLimiter:
    """GCRA per bucket in Redis. Raises redis errors; `FailoverLimiter` handles them."""

    def __init__(self, redis: object, policy: RatePolicy, prefix: str = "m2e-sync:rl") -> None:
        from redis.asyncio import Redis

        assert isinstance(redis, Redis)
        self._redis = redis
        self._policy = policy
        self._prefix = prefix
        self._gcra = redis.register_script(GCRA_LUA)
        self._feedback = redis.register_script(FEEDBACK_LUA)

    def _keys(self, bucket: str) -> list[str]:
        base = f"{self._prefix}:{bucket}"
        return [f"{base}:tat", f"{base}:pause", f"{base}:limit"]

    async def _try(self, bucket: str, take: bool) -> float:
        p = self._policy
        allowed, wait_us = await self._gcra(
            keys=self._keys(bucket),
            args=[int(p.spaced_period_s * 1_000_000), p.requests, p.safety, 1 if take else 0],
        )
        return 0.0 if allowed else max(int(wait_us), 1) / 1_000_000

    async def acquire(self, bucket: str) -> float:
        started = time.monotonic()
        while True:  # sleep exactly until the bucket's next slot, then try for it
            wait = await self._try(bucket, take=True)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        return time.monotonic() - started

    async def ready_in(self, bucket: str) -> float:
        return await self._try(bucket, take=False)

    async def feedback(self, bucket: str, feedback: RateFeedback) -> None:
        until = feedback.pause_until
        limit = feedback.limit if feedback.limit is not None else 0
        if until is None and (limit <= 0 or limit >= self._policy.requests):
            return
        _tat_key, pause_key, limit_key = self._keys(bucket)
        await self._feedback(
            keys=[pause_key, limit_key],
            args=[
                int(until * 1_000_000) if until is not None else 0,
                limit if 0 < limit < self._policy.requests else 0,
                int(self._policy.max_pause_s * 1_000_000),
                int(self._policy.period_s * 1_000_000),
            ],
        )

    async def close(self) -> None:
        await self._redis.aclose()


class DegradedObserver(Protocol):
    def __call__(self, degraded: bool) -> None: ...


class FailoverLimiter:
    """Redis when it answers; a local limiter at a conservative share when it does not."""

    def __init__(
        self,
        redis_limiter: RedisLimiter,
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

    async def acquire(self, bucket: str) -> float:
        return float(await self._call("acquire", bucket))  # type: ignore[arg-type]

    async def ready_in(self, bucket: str) -> float:
        return float(await self._call("ready_in", bucket))  # type: ignore[arg-type]

    async def feedback(self, bucket: str, feedback: RateFeedback) -> None:
        await self._local.feedback(bucket, feedback)  # the fallback knows too
        await self._call("feedback", bucket, feedback)

    async def close(self) -> None:
        await self._redis.close()
