"""What M2E's catalog holds, as its writers last left it: one view shared by every writer.

product-sync skips what did not change: it compares each product with the content hashes of
what was last written for that SKU. Those hashes must be the same for every writer of the
catalog — every replica of product-sync, and variant-sync, which changes variants too —
or a re-published product looks unchanged while another writer changed M2E meanwhile. So:

- the view is per catalog, which is per access token (accounts sharing a token share it),
  named by the token's bucket id, never by the token;
- an entry per product SKU: `{"p": product hash, "v": {variant SKU: hash}, "w": {variant
  SKU: write mark}}`, written after a successful write or read from a `find`;
- a write of variants by anyone else (variant-sync) bumps each variant's write mark; an
  entry whose mark differs from the one it recorded has that variant's hash cleared, so
  product-sync sends it again;
- M2E stays the truth: an unknown SKU is looked up with a `find`, an update answered 404
  forgets the entry, a create answered `conflict` falls back to an update;
- event time: per product and per variant SKU, the latest `occurred_at` written
  (`times`, `advance`); an event older than that is not written (shared.coalescer's `AT`).

`RedisView` keeps it in Redis (entries expire after `CATALOG_VIEW_TTL_S`), shared by every
process and bounded in worker memory whatever the catalog size; `MemoryView` keeps it in the
process (without `REDIS_URL`): one writer only, at most `cap` products per catalog.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from redis.exceptions import RedisError

from shared.results import ErrorInfo
from shared.service import ItemOutcome

log = logging.getLogger("m2e_sync.catalog")
# The result of an event older than what was last written for its SKU: not written.
STALE = ItemOutcome(
    "superseded",
    None,
    ErrorInfo(code="stale", message="occurred_at is older than the last write of this SKU"),
)
T = TypeVar("T")

Entry = dict[str, Any]  # {"p": str, "v": {sku: str}, "w": {sku: int}}


def stale_variants(entry: Entry, marks: Mapping[str, int]) -> Entry:
    """The entry with the hash of every variant written by another writer since cleared,
    and the current marks in place of the recorded ones (what a write now records)."""
    recorded = entry.get("w", {})
    variants = {
        sku: (digest if marks.get(sku, 0) == recorded.get(sku, 0) else "")
        for sku, digest in entry.get("v", {}).items()
    }
    return {**entry, "v": variants, "w": {s: marks[s] for s in variants if s in marks}}


class CatalogView(Protocol):
    async def get(self, catalog: str, skus: Sequence[str]) -> dict[str, Entry]:
        """The entries known of these product SKUs, stale variants cleared."""
        ...

    async def marks(self, catalog: str, variant_skus: Sequence[str]) -> dict[str, int]:
        """The variants' current write marks (absent: 0), to be recorded with an entry."""
        ...

    async def put(self, catalog: str, entries: Mapping[str, Entry]) -> None: ...

    async def forget(self, catalog: str, skus: Sequence[str]) -> None: ...

    async def written(self, catalog: str, variant_skus: Sequence[str]) -> None:
        """These variants were written by someone who does not keep their entries."""
        ...

    async def times(self, catalog: str, kind: str, skus: Sequence[str]) -> dict[str, float]:
        """The latest event time written per SKU (`kind`: "product" or "variant")."""
        ...

    async def advance(self, catalog: str, kind: str, times: Mapping[str, float]) -> None:
        """Record event times written; a time only ever moves forward."""
        ...


async def stale(
    view: CatalogView, catalog: str, kind: str, items: Sequence[tuple[str, float | None]]
) -> set[int]:
    """Indices of (sku, event time) items older than what was last written for their SKU."""
    timed = [(i, sku, at) for i, (sku, at) in enumerate(items) if at is not None]
    if not timed:
        return set()
    last = await view.times(catalog, kind, sorted({sku for _, sku, _ in timed}))
    return {i for i, sku, at in timed if sku in last and at < last[sku]}


class MemoryView:
    def __init__(self, cap: int = 200_000) -> None:
        self._cap = cap
        self._entries: dict[str, OrderedDict[str, Entry]] = {}
        self._marks: dict[str, OrderedDict[str, int]] = {}
        self._times: dict[tuple[str, str], OrderedDict[str, float]] = {}

    async def times(self, catalog: str, kind: str, skus: Sequence[str]) -> dict[str, float]:
        held: Mapping[str, float] = self._times.get((catalog, kind), {})
        return {s: held[s] for s in skus if s in held}

    async def advance(self, catalog: str, kind: str, times: Mapping[str, float]) -> None:
        held = self._times.setdefault((catalog, kind), OrderedDict())
        for sku, at in times.items():
            held[sku] = max(at, held.get(sku, at))
            held.move_to_end(sku)
        while len(held) > self._cap:
            held.popitem(last=False)

    def _of(self, catalog: str) -> OrderedDict[str, Entry]:
        return self._entries.setdefault(catalog, OrderedDict())

    async def get(self, catalog: str, skus: Sequence[str]) -> dict[str, Entry]:
        entries = self._of(catalog)
        marks: Mapping[str, int] = self._marks.get(catalog, {})
        return {s: stale_variants(entries[s], marks) for s in skus if s in entries}

    async def marks(self, catalog: str, variant_skus: Sequence[str]) -> dict[str, int]:
        marks: Mapping[str, int] = self._marks.get(catalog, {})
        return {s: marks[s] for s in variant_skus if s in marks}

    async def put(self, catalog: str, entries: Mapping[str, Entry]) -> None:
        held = self._of(catalog)
        for sku, entry in entries.items():
            held[sku] = entry
            held.move_to_end(sku)
        while len(held) > self._cap:
            held.popitem(last=False)

    async def forget(self, catalog: str, skus: Sequence[str]) -> None:
        held = self._of(catalog)
        for sku in skus:
            held.pop(sku, None)

    async def written(self, catalog: str, variant_skus: Sequence[str]) -> None:
        marks = self._marks.setdefault(catalog, OrderedDict())
        for sku in variant_skus:
            marks[sku] = marks.get(sku, 0) + 1
            marks.move_to_end(sku)
        while len(marks) > self._cap:
            marks.popitem(last=False)


class RedisView:
    """Redis down is not an error here: `get` and `marks` know nothing (product-sync asks M2E
    with a `find`, the truth), writes are skipped with a warning."""

    def __init__(self, redis: Any, ttl_s: int, prefix: str = "m2e-sync:catalog") -> None:
        self._redis = redis
        self._ttl = ttl_s
        self._prefix = prefix

    async def _or(self, default: T, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("catalog view in Redis unavailable: %s", type(exc).__name__)
            return default

    def _product(self, catalog: str, sku: str) -> str:
        return f"{self._prefix}:{catalog}:p:{sku}"

    def _mark(self, catalog: str, sku: str) -> str:
        return f"{self._prefix}:{catalog}:w:{sku}"

    def _time(self, catalog: str, kind: str, sku: str) -> str:
        return f"{self._prefix}:{catalog}:t{kind[0]}:{sku}"

    async def times(self, catalog: str, kind: str, skus: Sequence[str]) -> dict[str, float]:
        async def read() -> dict[str, float]:
            raw = await self._redis.mget([self._time(catalog, kind, s) for s in skus])
            return {s: float(r) for s, r in zip(skus, raw, strict=True) if r is not None}

        return await self._or({}, read) if skus else {}

    async def advance(self, catalog: str, kind: str, times: Mapping[str, float]) -> None:
        if times:
            keys = [self._time(catalog, kind, s) for s in times]
            args = [self._ttl, *(repr(t) for t in times.values())]
            await self._or(None, lambda: self._redis.eval(_ADVANCE, len(keys), *keys, *args))

    async def get(self, catalog: str, skus: Sequence[str]) -> dict[str, Entry]:
        return await self._or({}, lambda: self._get(catalog, skus)) if skus else {}

    async def marks(self, catalog: str, variant_skus: Sequence[str]) -> dict[str, int]:
        return await self._or({}, lambda: self._marks(catalog, variant_skus))

    async def put(self, catalog: str, entries: Mapping[str, Entry]) -> None:
        if entries:
            await self._or(None, lambda: self._put(catalog, entries))

    async def forget(self, catalog: str, skus: Sequence[str]) -> None:
        if skus:
            keys = [self._product(catalog, s) for s in skus]
            await self._or(None, lambda: self._redis.delete(*keys))

    async def written(self, catalog: str, variant_skus: Sequence[str]) -> None:
        if variant_skus:
            await self._or(None, lambda: self._written(catalog, variant_skus))

    async def _get(self, catalog: str, skus: Sequence[str]) -> dict[str, Entry]:
        raw = await self._redis.mget([self._product(catalog, s) for s in skus])
        entries = {s: json.loads(r) for s, r in zip(skus, raw, strict=True) if r is not None}
        variants = sorted({v for e in entries.values() for v in e.get("v", {})})
        marks = await self._marks(catalog, variants)
        return {s: stale_variants(e, marks) for s, e in entries.items()}

    async def _marks(self, catalog: str, variant_skus: Sequence[str]) -> dict[str, int]:
        if not variant_skus:
            return {}
        raw = await self._redis.mget([self._mark(catalog, s) for s in variant_skus])
        return {s: int(r) for s, r in zip(variant_skus, raw, strict=True) if r is not None}

    async def _put(self, catalog: str, entries: Mapping[str, Entry]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for sku, entry in entries.items():
                pipe.set(self._product(catalog, sku), json.dumps(entry), ex=self._ttl)
            await pipe.execute()

    async def _written(self, catalog: str, variant_skus: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for sku in variant_skus:
                key = self._mark(catalog, sku)
                pipe.incr(key)
                pipe.expire(key, self._ttl)
            await pipe.execute()


# Each key takes its time only if it is later than the one it holds (a time never goes back).
_ADVANCE = """
for i, key in ipairs(KEYS) do
  local held = tonumber(redis.call('GET', key))
  local at = tonumber(ARGV[i + 1])
  if not held or held < at then
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
  end
end
return 0
"""
