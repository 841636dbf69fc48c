"""Isolating rejected items: 3 bad of 500 within 3·⌈log2 500⌉ + 1 requests."""

from __future__ import annotations

import math

import pytest

from shared.isolate import budget, isolate
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


async def test_a_413_splits_the_batch_by_size_and_fails_no_item() -> None:
    async def send(items: list[int]) -> None:
        if len(items) > 100:  # the gateway takes at most 100 items' worth of body
            raise BatchRejected(413, [ApiError(message="Request Entity Too Large")])

    failures, requests = await isolate(list(range(500)), send)
    assert failures == {}
    assert requests <= 1 + 2 + 4 + 8  # halves until each part fits: 8 parts of 62-63


async def test_a_413_fails_only_an_item_too_large_alone() -> None:
    async def send(items: list[int]) -> None:
        if 7 in items or len(items) > 100:
            raise BatchRejected(413, [ApiError(message="Request Entity Too Large")])

    failures, _ = await isolate(list(range(200)), send)
    assert set(failures) == {7} and failures[7].code == "too_large"


async def test_a_rejection_about_the_request_costs_a_bounded_number_of_requests() -> None:
    """One generic error, no item index, every request rejected alike (an account-level
    problem the API reports as 400): not thousands of requests."""

    async def send(items: list[int]) -> None:
        raise BatchRejected(400, [ApiError(code="bad_request", message="account suspended")])

    failures, requests = await isolate(list(range(500)), send)
    assert requests <= budget(500) == 80
    assert set(failures) == set(range(500))
    assert all("account suspended" in f.message for f in failures.values())
    assert sum("named no item" in f.message for f in failures.values()) > 400


@pytest.mark.parametrize("seed", range(20))
async def test_a_few_bad_items_behind_one_generic_error_are_still_isolated_exactly(
    seed: int,
) -> None:
    import random

    rng = random.Random(seed)
    bad = set(rng.sample(range(500), rng.randint(1, 4)))

    async def send(items: list[int]) -> None:
        if any(i in bad for i in items):
            raise BatchRejected(400, [ApiError(message="Bad Request")])

    failures, requests = await isolate(list(range(500)), send)
    assert set(failures) == bad and requests <= budget(500)
