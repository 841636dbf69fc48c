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
- **Sliding windows** (told apart by a reset moving on by less than half a period; a
  fixed window's moves a whole period): there the reset is when the oldest counted request
  stops counting, rounded up to a whole second, and a slot freed mid-second would idle
  until it. So every answer is then logged for a period (`:log`); once it covers one, a
  request may go while fewer than the limit were answered in the last period or are in
  flight. An answer comes after its count, so the log never overstates the room; while it
  is full no probe goes (it could take the same freed slot twice). A probe's answer
  states the window afresh even when it names the same whole-second reset.
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
caller told to wait for budget claims the slot at its turn; a lower one leaves it to
the claim. Only priority 1 bursts: below it, a known window is spent no faster than
evenly over its length, so a product-sync backlog never takes at once the slots stock
updates are about to need, and the window is still used in full (a sliding window's
reset ends no window: there a lower priority takes any free slot no higher one claims). Neither rule holds
back a priority granted less than `min_share` of the limit over the last period, and
every priority leaves lower ones asking now what remains of their share of the window.
A paced take (`take(..., paced=True)`: a backlog read back from the retry topic) is spent
evenly over a known fixed window at any priority: the backlog drains at the same pace, but
reading it back and sending it no longer falls all in the window's first seconds.

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

from shared.budget_lua import ACQUIRE_LUA, FEEDBACK_LUA
from shared.limiter import CONSERVATIVE_PERIOD_S, RateFeedback, RatePolicy


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
LEARNED_STEP_S = 0.1  # a learned period moving less than this is not news
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
            f"{base}:use:{self._policy.priority}",
            f"{base}:want",
            f"{base}:log",
        ]

    async def _try(self, bucket: str, take: bool, ticket: str, paced: bool = False) -> float:
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
                1 if paced else 0,
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

    async def take(self, bucket: str, ticket: str, paced: bool = False) -> float:
        return await self._try(bucket, True, ticket, paced)

    async def feedback(self, bucket: str, feedback: RateFeedback, ticket: str = "") -> None:
        p = self._policy
        # Only a 429 pauses everyone: a window spent (remaining 0) is waited out through
        # its state here, which knows its end better than a Retry-After rounded up.
        until = feedback.pause_until if feedback.throttled else None
        lower = feedback.limit if feedback.limit is not None else 0
        reset_at = feedback.retry_at
        keys = self._keys(bucket)
        learned_us, windows, limit = await self._feedback(
            keys=[*keys[1:5], keys[7]],
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
        whenever it changes by more than `LEARNED_STEP_S` (the period is a running maximum
        of times to a reset: it creeps up by microseconds)."""
        if learned.windows < 2 or learned.limit < 1 or self._on_learned is None:
            return
        before = self._learned.get(bucket)
        if (
            before is None
            or before.limit != learned.limit
            or abs(before.period_s - learned.period_s) >= LEARNED_STEP_S
        ):
            self._learned[bucket] = learned
            self._on_learned(bucket, learned)

    async def close(self) -> None:
        await self._redis.aclose()
