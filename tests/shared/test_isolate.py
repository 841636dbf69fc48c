"""Isolating rejected items: 3 bad of 500 within 3·⌈log2 500⌉ + 1 requests."""

from __future__ import annotations

import math

import pytest

from shared.isolate import isolate
from shared.m2e.client import BatchRejected
from shared.m2e.models import ApiError


def rejecting(bad: set[int], with_index: bool) -> tuple[list[int], object]:
    calls: list[int] = []

    async def send(items: list[int]) -> None:
        calls.append(len(items))
        found = [pos for pos, item in enumerate(items) if item in bad]
        if found:
            errors = [ApiError(code=None, message="All array items must match schema")]
            for pos in found:
                data = {"index": pos} if with_index else {}
                errors.append(
                    ApiError(
                        code="validation_error",
                        data=data,
                        message=f"item {pos}: price: bad price of {items[pos]}",
                    )
                )
            raise BatchRejected(400, errors)

    return calls, send


@pytest.mark.parametrize("bad", [{0, 250, 499}, {1, 2, 3}, {17, 300, 301}, {498, 499, 7}])
async def test_bisection_without_hints_stays_within_budget(bad: set[int]) -> None:
    items = list(range(500))
    calls, send = rejecting(bad, with_index=False)
    failures, requests = await isolate(items, send, use_index_hints=False)  # type: ignore[arg-type]
    assert set(failures) == bad
    assert requests == len(calls)
    assert requests <= 3 * math.ceil(math.log2(500)) + 1, requests
    assert all(f.status == 400 for f in failures.values())


async def test_no_bad_items_costs_one_request() -> None:
    _calls, send = rejecting(set(), with_index=False)
    failures, requests = await isolate(list(range(500)), send)  # type: ignore[arg-type]
    assert failures == {} and requests == 1


async def test_index_hints_isolate_in_two_requests_with_the_apis_messages() -> None:
    calls, send = rejecting({3, 77, 400}, with_index=True)
    failures, requests = await isolate(list(range(500)), send)  # type: ignore[arg-type]
    assert requests == 2 and calls == [500, 497]
    assert failures[77].message == "item 77: price: bad price of 77"
    assert failures[77].code == "validation_error"


async def test_single_item_gets_its_own_message() -> None:
    _calls, send = rejecting({5}, with_index=False)
    failures, _ = await isolate([5], send)  # type: ignore[arg-type]
    assert failures[0].message == "item 0: price: bad price of 5"


async def test_other_errors_propagate() -> None:
    async def send(items: list[int]) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await isolate([1, 2], send)


async def test_three_bad_of_500_anywhere_within_budget() -> None:
    """300 random placements; the API lists one error per bad item, without indexes."""
    import random

    rng = random.Random(7)
    worst = 0
    for _ in range(300):
        bad = set(rng.sample(range(500), 3))
        _calls, send = rejecting(bad, with_index=False)
        failures, requests = await isolate(list(range(500)), send, use_index_hints=False)  # type: ignore[arg-type]
        assert set(failures) == bad
        worst = max(worst, requests)
    assert worst <= 3 * math.ceil(math.log2(500)) + 1, worst


@pytest.mark.parametrize("listed", [1, 2, 5, 40])
async def test_good_items_are_never_failed_whatever_the_error_count(listed: int) -> None:
    """The API may list more or fewer errors than there are bad items."""
    import random

    rng = random.Random(listed)
    for size in (2, 3, 7, 64, 500):
        for _ in range(20):
            bad = set(rng.sample(range(size), rng.randint(1, min(4, size))))

            async def send(items: list[int], bad: set[int] = bad) -> None:
                if any(i in bad for i in items):
                    raise BatchRejected(400, [ApiError(message=f"e{k}") for k in range(listed)])

            failures, _ = await isolate(list(range(size)), send, use_index_hints=False)
            assert set(failures) == bad, (size, bad, sorted(failures))
