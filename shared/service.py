"""What a service supplies to the worker core: decoding, merge rules and the API call.

A service maps and wires; commits, batching, rate limits and retries live in shared/.
Services subclass `Service` (a Protocol with defaults), so the optional hooks — `start`,
`stop` for resources of their own, `use_metrics` for metrics of their own — are part of
the contract and need no look-up by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Mapping, Sequence, Set
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from shared.coalescer import MergeRule, Payload
from shared.isolate import isolate
from shared.m2e.client import M2EClient
from shared.metrics import Metrics
from shared.results import ErrorInfo, Status


def describe(exc: ValidationError) -> str:
    """'price: Input should be ...; quantity: ...' — the fields named, short."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def check_account(accounts: Container[str], account: str, key: str | None) -> None:
    """Only accounts with a configured access token can be served."""
    if account not in accounts:
        raise InvalidMessage(
            f"unknown account_token {account}: no access token configured",
            "UnknownAccount",
            account,
            key,
        )


def check_key(
    message_key: str | None, expected: str, what: str, account: str, *, by_account: bool = True
) -> None:
    """The message key must be the entity's key or (`by_account`) its account token, or
    per-key ordering breaks. Keyed by account, all of an account's events share one
    partition (so every event of an entity still does): fuller batches for merchants that
    trickle."""
    allowed = (expected, account) if by_account else (expected,)
    if message_key is not None and message_key not in allowed:
        raise InvalidMessage(
            f"message key {message_key!r} is not {what} {expected!r}",
            "KeyMismatch",
            account,
            expected,
        )


class InvalidMessage(Exception):
    """The message cannot be processed as it is: it goes to the DLQ with this reason."""

    def __init__(
        self,
        reason: str,
        error_class: str = "ValidationError",
        account_token: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class
        self.account_token = account_token
        self.key = key


@dataclass(frozen=True, slots=True)
class Decoded:
    account_token: str
    operation: str  # the coalescing bucket, e.g. "variant.update"
    key: str  # the entity key, e.g. the SKU
    payload: Payload
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    status: Status
    http_status: int | None = None
    error: ErrorInfo | None = None
    operation: str | None = None  # what was done, when the service decided at send time
    dead_letter: bool = False  # also write the original message to the DLQ (with error)
    # Failed for now, may succeed later (a SKU not created yet): the core sends the item
    # again, alone and with back-off, until this long after its first such answer.
    retry_for_s: float | None = None


OK = ItemOutcome("ok", 200)

# While `send` runs: the input partition each payload came from, in order. A service whose
# writes are fenced per partition (order-poller's transactional producers) reads it.
PARTITIONS: ContextVar[Sequence[int]] = ContextVar("m2e_partitions", default=())


class Fatal(Exception):
    """The process must not go on (its transactional producer was fenced: another process
    owns its work now). The batch is given back unsettled, `/healthz` fails, and the
    process exits non-zero after a graceful stop, so Kubernetes restarts it."""


Headers = Sequence[tuple[str, bytes]]
T = TypeVar("T")


class Service(Protocol):
    name: str
    input_topic: str  # the default; KAFKA_INPUT_TOPIC overrides it
    key_field: str  # the result record's field naming the entity: "sku", "order_id", …
    merge_rules: Mapping[str, MergeRule]
    budget_priority: int = 4  # its claim on a token's budget shared with others (1: highest)

    async def start(self) -> None:
        """Open the service's own resources (before the consumer starts)."""
        return None

    async def stop(self) -> None:
        """Close them (after the last commit)."""
        return None

    def use_metrics(self, metrics: Metrics) -> None:
        """The worker's metrics, for services that record metrics of their own."""
        return None

    async def assigned(self, partitions: Set[int]) -> None:
        """Input partitions now owned; called before any of their messages is read (a
        KafkaError is retried)."""
        return None

    async def revoked(self, partitions: Set[int]) -> None:
        """Input partitions no longer owned; called once nothing of theirs is sent any more,
        before the group hears they are let go."""
        return None

    def decode(self, key: bytes | None, value: bytes | None, headers: Headers) -> Decoded:
        """Validate one message; raise InvalidMessage when it cannot be processed."""
        ...

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Payload]
    ) -> list[ItemOutcome]:
        """Send one batch; one outcome per payload, in order. M2EErrors other than a
        rejection of items propagate (the core keeps the batch and backs off)."""
        ...


async def send_isolating(
    payloads: Sequence[T], call: Callable[[list[T]], Awaitable[Any]], ok_status: int = 200
) -> list[ItemOutcome]:
    """Call the API with the batch, isolating rejected items (shared.isolate)."""

    async def send(items: list[T]) -> None:
        await call(items)

    failures, _requests = await isolate(payloads, send)
    ok = ItemOutcome("ok", ok_status)
    return [
        ItemOutcome("failed", f.status, ErrorInfo(code=f.code, message=f.message))
        if (f := failures.get(i)) is not None
        else ok
        for i in range(len(payloads))
    ]
