"""The sandbox's rate limit: `requests` per `period_s` per access token, in fixed or
sliding windows (`rate_limit.mode`).

ASSUMPTION (README, assumptions): the reference's `X-RateLimit-Retry-After` is "the date
the number of remaining requests will reset", so the API meters fixed windows; a window opens at
the first request after the previous one closed. Servers behind other gateways meter
sliding windows (a request counts for `period_s` after it was made; `Retry-After` is when
the oldest counted request stops counting): `mode: sliding`, so clients are tested
against both.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from m2e_sandbox.config import RateLimitConfig
from shared.clock import Clock


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    window_start: float  # epoch seconds; identifies the window the request counted in
    reset_at: float  # epoch seconds


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0


class FixedWindowLimiter:
    def __init__(self, config: RateLimitConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._recent: dict[str, deque[float]] = {}  # sliding: times of counted requests

    @property
    def config(self) -> RateLimitConfig:
        return self._config

    def configure(self, config: RateLimitConfig) -> None:
        """Change the limit at run time; open windows keep their counts (a change of mode
        starts afresh)."""
        if config.mode != self._config.mode:
            self.reset()
        self._config = config

    def reset(self) -> None:
        self._windows.clear()
        self._recent.clear()

    def _window(self, key: str) -> _Window:
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now >= window.start + self._config.period_s:
            window = self._windows[key] = _Window(start=now)
        return window

    def _decision(self, window: _Window, allowed: bool) -> Decision:
        limit = self._config.requests
        return Decision(
            allowed=allowed,
            limit=limit,
            remaining=max(0, limit - window.count),
            window_start=window.start,
            reset_at=window.start + self._config.period_s,
        )

    def _sliding(self, key: str, take: bool) -> Decision:
        now, limit, period = self._clock(), self._config.requests, self._config.period_s
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - period:
            recent.popleft()
        allowed = len(recent) < limit
        if allowed and take:
            recent.append(now)
        reset_at = recent[0] + period if recent else now + period
        # Each counted request is its own window in the request log (null when refused).
        return Decision(allowed, limit, max(0, limit - len(recent)), now, reset_at)

    def hit(self, key: str) -> Decision:
        """Count one request for `key` if the window has room."""
        if self._config.mode == "sliding":
            return self._sliding(key, take=True)
        window = self._window(key)
        if window.count >= self._config.requests:
            return self._decision(window, allowed=False)
        window.count += 1
        return self._decision(window, allowed=True)

    def peek(self, key: str) -> Decision:
        if self._config.mode == "sliding":
            return self._sliding(key, take=False)
        window = self._window(key)
        return self._decision(window, allowed=window.count < self._config.requests)
