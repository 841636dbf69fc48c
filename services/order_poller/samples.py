"""Sample poll ticks."""

from __future__ import annotations

from typing import Any

INVALID = 0


def samples(n: int, account: str, channel: str = "ebay") -> list[tuple[str, Any]]:
    """N ticks for one (channel, account): they collapse into one poll."""
    return [(f"{channel}:{account}", {"account_token": account, "channel": channel})] * n
