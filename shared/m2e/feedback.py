"""What the API's rate-limit headers say, read leniently: a header that is missing or
garbage says nothing, never raises."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from shared.limiter import RateFeedback


def parse_feedback(response: httpx.Response) -> RateFeedback:
    def number(name: str) -> int | None:
        value = response.headers.get(name)
        try:
            return int(float(value)) if value is not None else None
        except ValueError:
            return None

    raw = response.headers.get("X-RateLimit-Retry-After")
    return RateFeedback(
        limit=number("X-RateLimit-Limit"),
        remaining=number("X-RateLimit-Remaining"),
        retry_at=parse_retry_at(raw) if raw else None,
        throttled=response.status_code == 429,
    )


def parse_retry_at(raw: str, now: Callable[[], float] = time.time) -> float | None:
    """`X-RateLimit-Retry-After` as epoch seconds: an RFC 3339 date (a `z` in either case;
    without an offset it is UTC, never the pod's local time), or seconds from now."""
    try:
        moment = datetime.fromisoformat(raw.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        try:  # some servers send seconds instead of a date
            return now() + float(raw)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
