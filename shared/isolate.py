"""Isolate the items an API rejects, so one bad item never sinks 499 good ones.

    failures = await isolate(items, send)      # send(list) raises BatchRejected

When the API names the offending items (`data.index`, as the sandbox does), they fail
with their own messages and the rest is sent again: two requests. When it does not,
Hwang's generalized binary splitting finds them: test groups of 2^α items sized from
the expected number of bad items d (the item errors the API listed), binary-search a
rejected group for one bad item, return the unsearched rest to the pool. It needs about
log2 C(n, d) + d requests: 3 bad items among 500 in at most 3·⌈log2 500⌉ + 1.

Not every rejection is about items:
- 413 (the request is too large) fails no item: the batch is split in halves until each
  part fits; only an item too large on its own fails.
- A rejection with one generic error and no item index may be about the whole request
  (every part rejected alike). The search is bounded: at most `budget(n)` requests
  (8·⌈log2 n⌉ + 8: 80 for 500 items), after which the items not yet sent or isolated fail
  with the API's message, saying that it named no item. Up to 4 bad items of 500 stay
  within it, exactly isolated. A rejection listing several errors is searched in full.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shared.m2e.client import BatchRejected
from shared.m2e.models import ApiError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ItemFailure:
    status: int
    code: str
    message: str


def _failure(exc: BatchRejected, error: ApiError | None) -> ItemFailure:
    chosen = error or (exc.errors[-1] if exc.errors else None)
    if chosen is None:
        return ItemFailure(exc.status, str(exc.status), str(exc))
    code = "not_found" if exc.status == 404 else "rejected"
    return ItemFailure(exc.status, str(chosen.code) if chosen.code else code, chosen.message)


def budget(n: int) -> int:
    """Requests one batch of `n` items may cost while isolating items the API did not name."""
    return 8 * math.ceil(math.log2(max(2, n))) + 8


class _OutOfBudget(Exception):
    def __init__(self, last: BatchRejected) -> None:
        self.last = last


@dataclass(slots=True)
class _Run(Generic[T]):
    items: Sequence[T]
    send: Callable[[list[T]], Awaitable[None]]
    failures: dict[int, ItemFailure]
    limit: int
    requests: int = 0
    accepted: set[int] = field(default_factory=set)
    last: BatchRejected | None = None

    async def call(self, idx: list[int]) -> BatchRejected | None:
        if self.requests >= self.limit and self.last is not None:
            raise _OutOfBudget(self.last)
        self.requests += 1
        try:
            await self.send([self.items[i] for i in idx])
        except BatchRejected as exc:
            self.last = exc
            if exc.status == 413:
                return await self.split(idx, exc)
            return exc
        self.accepted.update(idx)
        return None

    async def split(self, idx: list[int], exc: BatchRejected) -> BatchRejected | None:
        """413: send the halves on their own; only an item too large alone fails.
        Returns None: what the halves' rejections are about is resolved here."""
        if len(idx) == 1:
            self.failures[idx[0]] = ItemFailure(413, "too_large", "the item alone is too large")
            return None
        mid = len(idx) // 2
        for half in (idx[:mid], idx[mid:]):
            rejected = await self.call(half)
            if rejected is not None:
                await _resolve(self, half, rejected)
        return None

    async def find_one(self, group: list[int], exc: BatchRejected) -> list[int]:
        """Binary search in a rejected group: fail one item, return the unresolved rest."""
        unresolved: list[int] = []
        while len(group) > 1:
            half = len(group) // 2
            left, right = group[:half], group[half:]
            left_exc = await self.call(left)
            if left_exc is None:
                group = right  # the left half is good
            else:
                unresolved += right
                group, exc = left, left_exc
        named = exc.item_errors(1) if exc is not None else {}
        self.failures[group[0]] = _failure(exc, named.get(0))
        return unresolved

    async def hwang(self, pool: list[int], exc: BatchRejected, expected: int) -> None:
        """Hwang's generalized binary splitting over `pool`, known to hold bad items."""
        d = max(1, expected)
        known_bad = True  # is `exc` the rejection of exactly the current pool?
        while pool:
            if d <= 0:  # as many found as expected: the rest is probably clean
                rest_exc = await self.call(pool)
                if rest_exc is None:
                    return
                exc, d, known_bad = rest_exc, max(1, _expected(rest_exc, len(pool))), True
            n = len(pool)
            if n <= 2 * d - 2:
                for i in pool:
                    one = await self.call([i])
                    if one is not None:
                        self.failures[i] = _failure(one, one.item_errors(1).get(0))
                return
            alpha = math.floor(math.log2(max(1.0, (n - d + 1) / d)))
            group, pool = pool[: 2**alpha], pool[2**alpha :]
            group_exc = exc if known_bad and not pool else await self.call(group)
            known_bad = False
            if group_exc is None:
                continue
            pool = await self.find_one(group, group_exc) + pool
            d -= 1


def _expected(exc: BatchRejected, size: int) -> int:
    """How many bad items a rejection suggests: its item-level errors (not the summary)."""
    per_item = [e for e in exc.errors if e.message != "All array items must match schema"]
    return max(1, min(size, len(per_item)))


async def _resolve(run: _Run[T], pool: list[int], exc: BatchRejected, hints: bool = True) -> None:
    """`pool` was rejected with `exc`: fail the items the rejection is about."""
    while True:
        named = exc.item_errors(len(pool)) if hints else {}
        if not named:
            if len(pool) == 1:
                run.failures[pool[0]] = _failure(exc, exc.item_errors(1).get(0))
            else:
                await run.hwang(pool, exc, _expected(exc, len(pool)))
            return
        for pos, error in named.items():
            run.failures[pool[pos]] = _failure(exc, error)
        pool = [i for p, i in enumerate(pool) if p not in named]
        if not pool:
            return
        rejected = await run.call(pool)
        if rejected is None:
            return
        exc = rejected


async def isolate(
    items: Sequence[T], send: Callable[[list[T]], Awaitable[None]], *, use_index_hints: bool = True
) -> tuple[dict[int, ItemFailure], int]:
    """Send `items`, isolating rejected ones. Returns (failures by index, requests made).

    Other errors of `send` (401, transient failures) propagate: nothing is decided then.
    """
    run: _Run[T] = _Run(items, send, {}, limit=2**31)
    pool = list(range(len(items)))
    try:
        exc = await run.call(pool)
        if exc is not None:
            if len(exc.errors) <= 1 and not exc.item_errors(len(pool)):
                run.limit = budget(len(pool))  # a rejection with no item information
            await _resolve(run, pool, exc, use_index_hints)
    except _OutOfBudget as out:
        # The API named no item and splitting did not find them within the budget: the
        # rejection is about the request; what is left fails with its message.
        base = _failure(out.last, None)
        reason = ItemFailure(
            base.status, base.code, f"{base.message} (the API named no item; not isolated)"
        )
        for i in pool:
            if i not in run.failures and i not in run.accepted:
                run.failures[i] = reason
    return run.failures, run.requests
