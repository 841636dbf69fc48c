"""What one account's polls have seen inside the overlap window, small enough for any volume.

A poll re-reads the overlap window (7 days) and must not publish an order again unless its
content changed, so the cursor remembers every order in the window. Inline as JSON that
cost ~91 bytes an order, and one Kafka record (1 MiB by default) overflowed at ~11,500.
Here an order costs 14 bytes: 8 of a digest of its token, 6 of its content hash (a false
"unchanged" needs a 48-bit collision of one order's two versions). They are grouped by sale
day — an order's sale day never changes — and each day is written in parts of at most
`part_entries` (25,000 by default: ~470 KB of base64), each its own record of the compacted
cursor topic keyed `<channel:account>#<day>#<part>`. A poll rewrites only the days it
touched, and deletes (tombstones) the parts of days that left the window.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import date

ENTRY = 14  # bytes: token digest (8), content digest (6)
PART_ENTRIES = 25_000
_EPOCH = date(1970, 1, 1).toordinal()


def token_digest(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")


def content_digest(content_hash: str) -> int:
    """The first 6 bytes of an order's content hash (hex)."""
    return int(content_hash[:12], 16)


def _day_number(day: str) -> int:
    return date.fromisoformat(day).toordinal() - _EPOCH


def _day(number: int) -> str:
    return date.fromordinal(number + _EPOCH).isoformat()


class Seen:
    """token digest → (content digest, sale day), as ints: ~100 bytes an order in memory."""

    __slots__ = ("_entries", "touched")

    def __init__(self, entries: dict[int, int] | None = None) -> None:
        self._entries: dict[int, int] = entries or {}  # token → content << 16 | day number
        self.touched: set[str] = set()  # days changed since the last write

    def __len__(self) -> int:
        return len(self._entries)

    def copy(self) -> Seen:
        return Seen(dict(self._entries))

    def update(self, token: str, content_hash: str, sale_date: str) -> bool:
        """Record an order as seen; True when it is new or its content changed."""
        key = token_digest(token)
        day = sale_date[:10]
        value = content_digest(content_hash) << 16 | _day_number(day)
        if self._entries.get(key) == value:
            return False
        self._entries[key] = value
        self.touched.add(day)
        return True

    def expire(self, horizon_day: str) -> None:
        """Forget the orders of sale days before `horizon_day` (out of the window)."""
        horizon = _day_number(horizon_day)
        old = [k for k, v in self._entries.items() if v & 0xFFFF < horizon]
        for key in old:
            del self._entries[key]

    def days(self, part_entries: int = PART_ENTRIES) -> dict[str, int]:
        """Each sale day held → how many parts it is written in."""
        counts = Counter(v & 0xFFFF for v in self._entries.values())
        return {_day(d): -(-n // part_entries) for d, n in sorted(counts.items())}

    def parts(self, day: str, part_entries: int = PART_ENTRIES) -> Iterator[str]:
        """The day's entries, sorted by token digest, in parts, each base64."""
        number = _day_number(day)
        entries = sorted((k, v >> 16) for k, v in self._entries.items() if v & 0xFFFF == number)
        for start in range(0, len(entries), part_entries):
            raw = b"".join(
                k.to_bytes(8, "big") + c.to_bytes(6, "big")
                for k, c in entries[start : start + part_entries]
            )
            yield base64.b64encode(raw).decode()

    def load(self, day: str, part: str) -> None:
        number = _day_number(day)
        raw = base64.b64decode(part)
        for i in range(0, len(raw) - ENTRY + 1, ENTRY):
            key = int.from_bytes(raw[i : i + 8], "big")
            self._entries[key] = int.from_bytes(raw[i + 8 : i + ENTRY], "big") << 16 | number

    @classmethod
    def from_inline(cls, seen: Mapping[str, tuple[str, str]]) -> Seen:
        """From a cursor written before parts existed (order token → (hash, sale_date)):
        every day counts as touched, so the next poll writes it as parts."""
        out = cls()
        for token, (digest, sale_date) in seen.items():
            out.update(token, digest, sale_date)
        return out
