"""A limiter for unit tests: its next token is `wait` seconds away, and it records what
was taken, asked and fed back."""

from __future__ import annotations

from collections.abc import Callable

from shared.limiter import RateFeedback


class FakeLimiter:
    def __init__(self) -> None:
        self.wait = 0.0
        self.taken = 0
        self.asked: list[str] = []
        self.paced: list[bool] = []  # per take: asked for a paced slot
        self.calls = 0  # round trips to the budget, of any kind
        self.on_take: Callable[[], None] | None = None  # runs while a take is awaited
        self.feedback_seen: list[RateFeedback] = []

    async def acquire(self, bucket: str, ticket: str = "") -> float:
        self.calls += 1
        self.taken += 1
        return 0.0

    async def ready_in(self, bucket: str) -> float:
        self.calls += 1
        self.asked.append(bucket)
        return self.wait

    async def take(self, bucket: str, ticket: str, paced: bool = False) -> float:
        self.calls += 1
        self.asked.append(bucket)
        self.paced.append(paced)
        if self.on_take is not None:
            self.on_take()
        if self.wait <= 0:
            self.taken += 1
        return self.wait

    async def feedback(self, bucket: str, feedback: RateFeedback, ticket: str = "") -> None:
        self.feedback_seen.append(feedback)

    async def close(self) -> None:
        return None
