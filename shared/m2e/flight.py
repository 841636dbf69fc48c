"""A batch's requests as its sender sees them, across every call the service makes for it.

The scheduler runs each batch in a task whose context holds a `Flight`. When the batch's
partitions are revoked, the old owner must send nothing more for it, but a request
already on the wire cannot be recalled: the server may apply it whatever the client does,
and if it landed after the new owner's request, M2E would keep the older value. So the
scheduler marks the flight abandoned — the client then raises `Abandoned` instead of
sending — and waits until it has `landed` (no request on the wire) (at most one request timeout) before it
cancels the task and lets the partitions go.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(slots=True)
class Flight:
    abandoned: bool = False
    on_wire: int = 0  # requests sent and not answered yet
    landed: asyncio.Event = field(default_factory=asyncio.Event)  # set while on_wire is 0
    # (account, ticket): a slot the scheduler took when it chose to send the batch, for its
    # first request (M2EClient.take); released if the flight ends without using it.
    prepaid: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self.landed.set()

    def sent(self) -> None:
        self.on_wire += 1
        self.landed.clear()

    def use_prepaid(self, account: str) -> str | None:
        if self.prepaid is None or self.prepaid[0] != account:
            return None
        ticket, self.prepaid = self.prepaid[1], None
        return ticket

    def answered(self) -> None:
        self.on_wire -= 1
        if not self.on_wire:
            self.landed.set()


FLIGHT: ContextVar[Flight | None] = ContextVar("m2e_flight", default=None)
