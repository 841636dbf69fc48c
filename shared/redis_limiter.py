"""The shared budget in Redis: the server's window first, even spacing when it is unknown.

Every response says what the server allows: `X-RateLimit-Limit`, `-Remaining` in the
current window, and `-Retry-After` (when that window resets). One hash per bucket keeps
the latest word, shared by every replica and service on the token:

- **Window known** (a fresh answer, no 429 lately): requests go at once while
  `remaining - in flight` is above zero, then wait for the reset. In flight is a set of
  tickets, one per granted request, cleared by its answer (or after `inflight_ttl_s`, for
  a process that died mid-request): a burst never counts on slots its own requests are
  about to take. A request that got no answer is taken as counted by the server.
- **Window reset**: what the server will allow now is unknown (a fixed window has its
  whole limit, a sliding one frees one slot per expired request). One request goes alone
  (another only if it is unanswered after `PROBE_TTL_S`); its answer states the new
  window, and the rest follow. Requests still in flight were granted within the last
  window's budget: wherever the server counts them, they fit.
- **Unknown or not to be trusted**: no answer yet, headers contradicting each other
  (remaining above the limit, one of the three missing), and for one period after a 429:
  GCRA, requests evenly spaced (period + jitter) ÷ limit apart, as `RatePolicy` says. An
  answer without any of the headers (a gateway's page) or read only after the window it
  speaks of had ended (a busy event loop) changes nothing.

Windows are told apart by the server's own `Retry-After` (the same window repeats it);
durations are measured from Redis' `TIME`, so pod clocks only matter in converting the
server's reset into "seconds from now". A window ends no later than one period after the
first answer seen from it: with the period known (configured or learned), that bound
beats a `Retry-After` rounded up to whole seconds, which would cost up to a second per
window (10 % of a 10 s budget). A configured budget is an upper bound: with a
server limit above it, the difference is held back from each window.

Priority: every service on a token has one (`RatePolicy.priority`, 1 the highest). A
caller told to wait marks its priority until then; a lower one leaves the next slot to a
marked higher one. Only the highest priority bursts: below it, a known window is spent
no faster than evenly over its length (the higher one alone may go ahead of that pace),
so a product-sync backlog never spends at once the slots stock updates are about to need,
and the window is still used in full. A service alone on its tokens may be given
priority 1 to burst. Neither applies to a priority granted
less than `min_share` of the limit over the last period: nobody starves. With no higher
priority busy, a lower one uses the whole budget.

Learning: with `RATE_LIMIT_PERIOD_S` unset, the period is the longest time to a reset
seen (a window's first request sees all of it), once two windows have been seen; until
then even spacing assumes `CONSERVATIVE_PERIOD_S`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from shared.limiter import CONSERVATIVE_PERIOD_S, RateFeedback, RatePolicy

# KEYS: tat, pause, server limit, window, in flight, grants by priority, waiting priorities.
# ARGV: [1] period_us (0: learn), [2] configured limit, [3] safety, [4] take (1/0),
# [5] ticket, [6] jitter_us, [7] in-flight ttl_us, [8] wait while a reset is probed (us),
# [9] conservative period_us, [10] priority (1: highest), [11] minimum share, [12] grace_us,
# [13] how long a window's probe may stay unanswered before another goes (us).
# Returns {allowed (1/0), wait_us}.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local take, prio, grace = ARGV[4] == '1', tonumber(ARGV[10]), tonumber(ARGV[12])
local jitter, probe_wait, ttl = tonumber(ARGV[6]), tonumber(ARGV[8]), tonumber(ARGV[7])
local function refuse(wait)
  -- A caller told to wait marks its priority until then, so lower ones leave it the slot.
  local until_us = now + wait + grace
  if until_us > tonumber(redis.call('HGET', KEYS[7], prio) or '0') then
    redis.call('HSET', KEYS[7], prio, until_us)
  end
  redis.call('PEXPIRE', KEYS[7], math.floor((wait + grace) / 1000) + 1000)
  return {0, wait}
end
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return refuse(pause - now) end
local limit = tonumber(ARGV[2])
local server_limit = tonumber(redis.call('GET', KEYS[3]) or '0')
if server_limit > 0 and server_limit < limit then limit = server_limit end
local w = redis.call('HMGET', KEYS[4], 'reset', 'remaining', 'limit', 'fallback', 'period',
  'windows', 'probe_at')
local reset, fallback = tonumber(w[1]), tonumber(w[4] or '0')
local period = tonumber(ARGV[1])
if period == 0 then
  period = tonumber(ARGV[9])
  if tonumber(w[6] or '0') >= 2 then period = tonumber(w[5]) end
end
-- Priority: this priority's grants in the last period, and whether a higher one waits.
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - period)
local owed, waiting = false, false
if prio > 1 then
  local mine = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
    if tonumber(string.match(m, '^(%d+):')) == prio then mine = mine + 1 end
  end
  owed = mine < tonumber(ARGV[11]) * limit  -- below its minimum share: no one goes first
  local want = redis.call('HGETALL', KEYS[7])
  for i = 1, #want, 2 do
    if tonumber(want[i]) < prio and tonumber(want[i + 1]) >= now then waiting = not owed end
  end
end
local function grant()
  if take then
    redis.call('ZADD', KEYS[5], now, ARGV[5])
    redis.call('PEXPIRE', KEYS[5], math.floor(ttl / 1000) + 1000)
    redis.call('ZADD', KEYS[6], now, prio .. ':' .. ARGV[5])
    redis.call('PEXPIRE', KEYS[6], math.floor(period / 1000) + 1000)
    redis.call('HDEL', KEYS[7], prio)
  end
  return {1, 0}
end
if reset and fallback <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - ttl)
  local inflight = redis.call('ZCARD', KEYS[5])
  if now < reset + jitter then
    local over = tonumber(w[3]) - tonumber(ARGV[2])
    if over < 0 then over = 0 end
    local avail = tonumber(w[2]) - over - inflight
    if avail <= 0 then return refuse(reset + jitter - now) end
    if waiting then return {0, probe_wait} end
    if prio == 1 or owed then return grant() end
    -- Below the highest priority, spend no faster than evenly over the window, so that
    -- whatever a higher one needs next finds a slot; it alone may go ahead of that pace.
    local window_limit = tonumber(w[3]) - over
    if avail >= math.ceil(window_limit * (reset - now) / period) then return grant() end
    local wait = reset - math.floor(avail * period / window_limit) - now
    if wait < probe_wait then wait = probe_wait end
    return {0, wait}
  end
  -- The window has ended: one request goes alone, its answer states the next window.
  if waiting or tonumber(w[7] or '0') > now - tonumber(ARGV[13]) then return {0, probe_wait} end
  if take then redis.call('HSET', KEYS[4], 'probe', ARGV[5], 'probe_at', now) end
  return grant()
end
local interval = math.floor((period + jitter) / limit * (1 + tonumber(ARGV[3])))
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat > now then return refuse(tat - now) end
if waiting then return {0, probe_wait} end
if take then
  redis.call('SET', KEYS[1], tat + interval, 'PX', math.floor(interval / 1000) + 60000)
end
return grant()
"""

# KEYS: pause, server limit, window, in flight.
# ARGV: [1] pause_until_us (0: none), [2] lower server limit (0: none), [3] max pause us,
# [4] period_us (limit key lifetime, fallback length), [5] ticket,
# [6] answered (1), no answer (0: may have been counted), never sent (2),
# [7] header limit (-1), [8] remaining (-1), [9] server's reset as epoch us (-1),
# [10] us from now to that reset (-1), [11] throttled (1/0), [12] configured period us (0).
# Returns {learned period us, windows seen, header limit}.
FEEDBACK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local was_out = redis.call('ZREM', KEYS[4], ARGV[5])
if redis.call('HGET', KEYS[3], 'probe') == ARGV[5] then
  redis.call('HDEL', KEYS[3], 'probe', 'probe_at')
end
if ARGV[6] == '2' then return {0, 0, 0} end
if ARGV[6] ~= '1' then
  -- No answer (a timeout, a reset connection): the server may have counted it.
  local left = tonumber(redis.call('HGET', KEYS[3], 'remaining') or '0')
  if was_out == 1 and left > 0 then redis.call('HSET', KEYS[3], 'remaining', left - 1) end
  return {0, 0, 0}
end
local period = tonumber(ARGV[4])
local until_us = tonumber(ARGV[1])
if until_us > 0 then
  if until_us > now + tonumber(ARGV[3]) then until_us = now + tonumber(ARGV[3]) end
  local current = tonumber(redis.call('GET', KEYS[1]) or '0')
  if until_us > current and until_us > now then
    redis.call('SET', KEYS[1], until_us, 'PX', math.floor((until_us - now) / 1000) + 1)
  end
end
local lower = tonumber(ARGV[2])
if lower > 0 then
  local current = tonumber(redis.call('GET', KEYS[2]) or '0')
  if current == 0 or lower < current then
    redis.call('SET', KEYS[2], lower, 'PX', math.floor(period / 1000) * 10)
  end
end
local limit, remaining = tonumber(ARGV[7]), tonumber(ARGV[8])
local id, reset_in = tonumber(ARGV[9]), tonumber(ARGV[10])
local w = redis.call('HMGET', KEYS[3], 'id', 'remaining', 'period', 'windows')
local learned, windows = tonumber(w[3] or '0'), tonumber(w[4] or '0')
redis.call('PEXPIRE', KEYS[3], math.floor(period / 1000) * 10 + 60000)
-- No headers at all (a gateway's page): the API never counted it; nothing changes.
if ARGV[11] ~= '1' and limit < 0 and remaining < 0 and id < 0 then return {learned, windows, 0} end
if ARGV[11] == '1' or limit < 1 or remaining < 0 or remaining > limit or id < 0
    or reset_in > tonumber(ARGV[3]) then
  redis.call('HDEL', KEYS[3], 'reset', 'remaining', 'id')
  redis.call('HSET', KEYS[3], 'fallback', now + period)
  return {learned, windows, limit}
end
-- Read after the window it speaks of had ended (a busy reader): nothing left to use.
if reset_in <= 0 then return {learned, windows, limit} end
local seen = tonumber(w[1])
if seen == nil or id > seen then
  -- A window ends at most one period after this answer: sooner than a reset rounded up.
  local known = tonumber(ARGV[12])
  if known == 0 and windows >= 2 then known = learned end
  local ends_in = reset_in
  if known > 0 and known < ends_in then ends_in = known end
  redis.call('HSET', KEYS[3], 'id', id, 'reset', now + ends_in, 'remaining', remaining,
    'limit', limit)
  windows = windows + 1
  redis.call('HSET', KEYS[3], 'windows', windows)
elseif id == seen and remaining < tonumber(w[2]) then
  redis.call('HSET', KEYS[3], 'remaining', remaining)
end
if reset_in > learned then
  learned = reset_in
  redis.call('HSET', KEYS[3], 'period', learned)
end
return {learned, windows, limit}
"""


@dataclass(frozen=True, slots=True)
class Learned:
    """What the server's answers taught about a bucket's budget."""

    limit: int
    period_s: float
    windows: int


class LearnedObserver(Protocol):
    def __call__(self, bucket: str, learned: Learned) -> None: ...


PROBE_WAIT_S = 0.02  # how often a waiter looks again while a reset is being probed
PROBE_TTL_S = 5.0  # a probe unanswered this long (a slow API, a lost process): another goes
PRIORITY_GRACE_S = 0.25  # a waiting priority's claim outlives its wait by this much


class RedisLimiter:
    """The window-aware budget per bucket in Redis. Raises redis errors;
    `FailoverLimiter` handles them."""

    def __init__(
        self,
        redis: object,
        policy: RatePolicy,
        prefix: str = "m2e-sync:rl",
        inflight_ttl_s: float = 60.0,
        on_learned: LearnedObserver | None = None,
    ) -> None:
        from redis.asyncio import Redis

        assert isinstance(redis, Redis)
        self._redis = redis
        self._policy = policy
        self._prefix = prefix
        self._inflight_ttl_us = int(inflight_ttl_s * 1_000_000)
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._feedback = redis.register_script(FEEDBACK_LUA)
        self._on_learned = on_learned
        self._learned: dict[str, Learned] = {}

    def _keys(self, bucket: str) -> list[str]:
        base = f"{self._prefix}:{bucket}"
        return [
            f"{base}:tat",
            f"{base}:pause",
            f"{base}:limit",
            f"{base}:win",
            f"{base}:fly",
            f"{base}:use",
            f"{base}:want",
        ]

    async def _try(self, bucket: str, take: bool, ticket: str) -> float:
        p = self._policy
        allowed, wait_us = await self._acquire(
            keys=self._keys(bucket),
            args=[
                int((p.period_s or 0) * 1_000_000),
                p.requests,
                p.safety,
                1 if take else 0,
                ticket,
                int(p.jitter_s * 1_000_000),
                self._inflight_ttl_us,
                int(PROBE_WAIT_S * 1_000_000),
                int(CONSERVATIVE_PERIOD_S * 1_000_000),
                p.priority,
                p.min_share,
                int(max(p.jitter_s, PRIORITY_GRACE_S) * 1_000_000),
                int(PROBE_TTL_S * 1_000_000),
            ],
        )
        return 0.0 if allowed else max(int(wait_us), 1) / 1_000_000

    async def acquire(self, bucket: str, ticket: str = "") -> float:
        started = time.monotonic()
        ticket = ticket or uuid.uuid4().hex
        while True:  # sleep exactly until the bucket's next slot, then try for it
            wait = await self._try(bucket, True, ticket)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        return time.monotonic() - started

    async def ready_in(self, bucket: str) -> float:
        return await self._try(bucket, False, "")

    async def feedback(self, bucket: str, feedback: RateFeedback, ticket: str = "") -> None:
        p = self._policy
        # Only a 429 pauses everyone: a window spent (remaining 0) is waited out through
        # its state here, which knows its end better than a Retry-After rounded up.
        until = feedback.pause_until if feedback.throttled else None
        lower = feedback.limit if feedback.limit is not None else 0
        reset_at = feedback.retry_at
        keys = self._keys(bucket)
        learned_us, windows, limit = await self._feedback(
            keys=keys[1:5],
            args=[
                int(until * 1_000_000) if until is not None else 0,
                lower if 0 < lower < p.requests else 0,
                int(p.max_pause_s * 1_000_000),
                int(p.assumed_period_s * 1_000_000),
                ticket,
                (1 if feedback.answered else 0) if feedback.sent else 2,
                -1 if feedback.limit is None else feedback.limit,
                -1 if feedback.remaining is None else feedback.remaining,
                -1 if reset_at is None else int(reset_at * 1_000_000),
                -1 if reset_at is None else int((reset_at - time.time()) * 1_000_000),
                1 if feedback.throttled else 0,
                int((p.period_s or 0) * 1_000_000),
            ],
        )
        self._learn(bucket, Learned(int(limit), int(learned_us) / 1_000_000, int(windows)))

    def _learn(self, bucket: str, learned: Learned) -> None:
        """Tell the observer once per bucket when its budget is first known, and again
        whenever it changes."""
        if learned.windows < 2 or learned.limit < 1 or self._on_learned is None:
            return
        before = self._learned.get(bucket)
        if before is None or (before.limit, before.period_s) != (learned.limit, learned.period_s):
            self._learned[bucket] = learned
            self._on_learned(bucket, learned)

    async def close(self) -> None:
        await self._redis.aclose()
