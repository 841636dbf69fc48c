import gc
from collections.abc import Iterator

import pytest

from shared import gc_tuning


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def young_collections_while_allocating(n: int) -> int:
    before = gc.get_stats()[0]["collections"]
    held = [{"sku": i} for i in range(n)]  # containers the collector tracks, kept alive
    after = gc.get_stats()[0]["collections"]
    del held
    return after - before


def test_a_tuned_worker_does_not_collect_every_few_hundred_allocations(restored: None) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's default
    assert young_collections_while_allocating(20_000) >= 20
    gc_tuning.tune()
    assert young_collections_while_allocating(20_000) == 0


def test_what_was_built_before_tuning_is_never_walked_again(restored: None) -> None:
    long_lived = [{"setting": i} for i in range(1000)]
    gc_tuning.tune()
    assert gc.get_freeze_count() >= len(long_lived)
