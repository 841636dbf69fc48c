"""`m2e-sync status [--url URL ...]`: which merchants are unhealthy right now, and why.

Gathers `GET /accounts` from running workers (every `--url`, or the local demo's workers
when none is given), merges the replicas of a service (worst state, summed backlogs,
oldest age, latest success) and prints one table, worst first:

    ACCOUNT        SERVICE       STATE         PENDING  OLDEST  PARKED  LAST SUCCESS  LAST ERROR    BUDGET
    6f1c…0002      variant-sync  unauthorized      120   41.0s      80  08:02:11      Unauthorized    0.0%

Exit code 0 when every worker answered, 1 when one did not (the others are still shown).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from shared.worker.accounts import SEVERITY, sort_worst_first

# Where `m2e-sync demo` writes its workers' base URLs while it runs.
DEMO_WORKERS_FILE = Path(
    os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "m2e-sync", "demo", "workers.json"
)
COLUMNS = (
    ("ACCOUNT", "account"),
    ("SERVICE", "service"),
    ("STATE", "state"),
    ("PENDING", "pending_messages"),
    ("OLDEST", "oldest_pending_s"),
    ("PARKED", "parked_messages"),
    ("LAST SUCCESS", "last_success"),
    ("LAST ERROR", "last_error"),
    ("BUDGET", "budget_used"),
)


class StatusError(Exception):
    """The command cannot run as asked (the CLI prints it, exit code 1)."""


def demo_urls() -> list[str]:
    try:
        urls = json.loads(DEMO_WORKERS_FILE.read_text())
    except (OSError, ValueError):
        raise StatusError(
            "no --url given and no local demo running (start one with `m2e-sync demo`)"
        ) from None
    return [str(u) for u in urls]


async def gather(
    urls: Sequence[str],
    timeout_s: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every worker's rows, and a line per worker that did not answer."""
    async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as http:

        async def one(url: str) -> list[dict[str, Any]] | str:
            try:
                response = await http.get(url.rstrip("/") + "/accounts")
                response.raise_for_status()
                body = response.json()
                return list(body["accounts"])
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                return f"{url}: {type(exc).__name__}: {exc}"

        answers = await asyncio.gather(*(one(u) for u in urls))
    rows = [row for a in answers if isinstance(a, list) for row in a]
    failures = [a for a in answers if isinstance(a, str)]
    return rows, failures


def merge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (account, service): the replicas of a service added up."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["account"], row["service"])
        seen = merged.get(key)
        if seen is None:
            merged[key] = dict(row)
            continue
        if SEVERITY.get(row["state"], 0) > SEVERITY.get(seen["state"], 0):
            seen["state"], seen["last_error"] = row["state"], row["last_error"]
        for field in ("pending_messages", "parked_messages", "requests_in_window"):
            seen[field] = seen.get(field, 0) + row.get(field, 0)
        if row.get("budget_used") is not None:
            seen["budget_used"] = (seen.get("budget_used") or 0) + row["budget_used"]
        seen["oldest_pending_s"] = max(seen["oldest_pending_s"], row["oldest_pending_s"])
        seen["last_success"] = max(
            (s for s in (seen["last_success"], row["last_success"]) if s), default=None
        )
        seen["last_error"] = seen["last_error"] or row["last_error"]
    return sort_worst_first(list(merged.values()))


def _cell(field: str, value: Any) -> str:
    if value is None:
        return "-"
    if field == "oldest_pending_s":
        return f"{value:.1f}s"
    if field == "budget_used":
        return f"{100 * value:.1f}%"
    if field == "last_success":
        return str(value)[11:19]  # the time of day (UTC); the JSON has the date
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[title for title, _ in COLUMNS]]
    cells += [[_cell(field, row.get(field)) for _, field in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


async def status(
    urls: Sequence[str], as_json: bool = False, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    rows, failures = await gather(list(urls) or demo_urls(), transport=transport)
    rows = merge(rows)
    print(json.dumps(rows, indent=2) if as_json else table(rows))
    for failure in failures:
        print(f"unreachable: {failure}", file=sys.stderr)
    return 1 if failures else 0
