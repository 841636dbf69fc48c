"""order-poller's cursors in their compacted topic: one `Cursor` per (channel, account), key
`channel:account_token`, and the parts of its `Seen` orders, keys `<key>#<day>#<part>`
(services.order_poller.seen). A poll writes them in the transaction of its orders."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.order_poller.models import Cursor, CursorPart
from services.order_poller.seen import PART_ENTRIES, Seen
from services.order_poller.transactions import Record
from shared.topics import read_topic

log = logging.getLogger("m2e_sync.order_poller")


@dataclass(slots=True)
class State:
    cursor: Cursor
    seen: Seen


async def load(
    bootstrap_servers: str, topic: str, kafka: Mapping[str, Any] | None = None
) -> dict[str, State]:
    """Every account's state. To the high watermark: a cursor committed after another
    transaction that is still open lies beyond the last stable offset, and must be seen."""
    heads: dict[str, Cursor] = {}
    parts: dict[str, str] = {}
    async for r in read_topic(bootstrap_servers, topic, kafka, settled=True):
        key = r.key.decode()
        if "#" in key:
            if r.value is None:
                parts.pop(key, None)
            else:
                parts[key] = CursorPart.model_validate_json(r.value).entries
        elif r.value is None:
            heads.pop(key, None)
        else:
            heads[key] = Cursor.model_validate_json(r.value)
    states = {}
    for key, head in heads.items():
        if head.seen is not None:
            seen = Seen.from_inline(head.seen)
        else:
            seen = Seen()
            for day, count in head.days.items():
                for i in range(count):
                    part = parts.get(f"{key}#{day}#{i}")
                    if part is None:  # its orders may be published again
                        log.warning("cursor %s: part %s#%d is missing", key, day, i)
                    else:
                        seen.load(day, part)
        states[key] = State(head, seen)
    return states


def records(
    topic: str,
    key: str,
    before: Cursor | None,
    after: Cursor,
    seen: Seen,
    part_entries: int = PART_ENTRIES,
) -> tuple[Cursor, list[Record]]:
    """The records that take the topic from `before` to `after` with `seen`: the parts of
    the days the poll touched, tombstones for parts no longer used, and the cursor naming
    its parts. Returns the cursor as written."""
    days = seen.days(part_entries)
    old_days = before.days if before is not None and before.seen is None else {}
    out: list[Record] = []
    for day in sorted(seen.touched & days.keys()):
        for i, part in enumerate(seen.parts(day, part_entries)):
            out.append((topic, f"{key}#{day}#{i}".encode(), _json(CursorPart(entries=part))))
    for day, count in old_days.items():
        for i in range(days.get(day, 0), count):
            out.append((topic, f"{key}#{day}#{i}".encode(), None))
    head = after.model_copy(update={"days": days, "seen": None})
    out.append((topic, key.encode(), _json(head)))
    return head, out


def _json(model: Cursor | CursorPart) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()
