"""The sandbox's state: users' catalogs and invoices, orders, limits, faults, stats."""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from m2e_sandbox.catalog import Catalog
from m2e_sandbox.config import FaultConfig, SandboxConfig, UserConfig
from m2e_sandbox.faults import FaultDice
from m2e_sandbox.orders import OrderBook
from m2e_sandbox.ratelimit import FixedWindowLimiter
from shared.clock import Clock

REQUEST_LOG_SIZE = 200_000


@dataclass(slots=True)
class UserState:
    config: UserConfig
    catalog: Catalog
    invoices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def account_tokens(self) -> list[str]:
        return [str(a.token) for a in self.config.accounts]


@dataclass(slots=True)
class Stats:
    requests: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    items: Counter[str] = field(default_factory=Counter)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))

    def record(
        self,
        at: float,
        user: str | None,
        route: str,
        status: int,
        items: int,
        window: float | None = None,
    ) -> None:
        """`window`: the start of the rate-limit window the request counted in, if it did."""
        self.requests[route][str(status)] += 1
        if 200 <= status < 300 and items:
            self.items[route] += items
        self.log.append(
            {
                "t": at,
                "user": user,
                "route": route,
                "status": status,
                "items": items,
                "window": window,
            }
        )


class Sandbox:
    """All state of one sandbox: users' catalogs, invoices, orders, limits, faults, stats."""

    def __init__(self, config: SandboxConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.limiter = FixedWindowLimiter(config.rate_limit, clock)
        self.dice = FaultDice(config.faults)
        self.revoked: set[str] = set()  # users whose access token answers 401 (a reset keeps it)
        self.rotated: dict[str, str] = {}  # user → the access token it was given (a reset keeps it)
        self.reset()

    def reset(self) -> None:
        users = [
            u.model_copy(update={"access_token": self.rotated[u.name]})
            if u.name in self.rotated
            else u
            for u in self.config.users
        ]
        self.users = {
            u.access_token: UserState(config=u, catalog=Catalog(self.clock)) for u in users
        }
        accounts = [(str(a.token), a.channel) for u in self.config.users for a in u.accounts]
        self.origin = self.clock()
        self.orders = OrderBook(self.config.orders, accounts, origin=self.origin, clock=self.clock)
        self.limiter.reset()
        self.stats = Stats()
        self.dice.restart()

    def rotate(self, name: str, access_token: str) -> None:
        """The user's access token becomes `access_token`; the old one answers 401. Its
        catalog and invoices go with it; its rate-limit window starts afresh."""
        for old, user in list(self.users.items()):
            if user.config.name == name:
                del self.users[old]
                user.config = user.config.model_copy(update={"access_token": access_token})
                self.users[access_token] = user
        self.rotated[name] = access_token

    @property
    def faults(self) -> FaultConfig:
        return self.dice.config

    def set_faults(self, faults: FaultConfig) -> None:
        self.dice = FaultDice(faults)


SANDBOX = web.AppKey("sandbox", Sandbox)
USER = web.RequestKey("user", UserState)
ITEMS = web.RequestKey("items", int)  # items the request carried, for stats


def sandbox_of(request: web.Request) -> Sandbox:
    return request.app[SANDBOX]
