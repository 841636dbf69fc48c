"""The sandbox's rate limit: a fixed window of `requests` per `period_s` per access token.

ASSUMPTION (README, assumptions): the reference's `X-RateLimit-Retry-After` is "the date
the number of remaining requests will reset", so the API meters fixed windows; a window opens at
the first request after the previous one closed.
"""

from __future__ import annotations

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

    @property
    def config(self) -> RateLimitConfig:
        return self._config

    def configure(self, config: RateLimitConfig) -> None:
        """Change the limit at run time; open windows keep their counts."""
        self._config = config

    def reset(self) -> None:
        self._windows.clear()

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

    def hit(self, key: str) -> Decision:
        """Count one request for `key` if the window has room."""
        window = self._window(key)
        if window.count >= self._config.requests:
            return self._decision(window, allowed=False)
        window.count += 1
        return self._decision(window, allowed=True)

    def peek(self, key: str) -> Decision:
        window = self._window(key)
        return self._decision(window, allowed=window.count < self._config.requests)
