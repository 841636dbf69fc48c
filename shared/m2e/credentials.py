"""Which access token serves an account, and which rate-limit bucket: one lookup, one
behaviour for an unknown account (`UnknownAccount`), wherever it is asked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.limiter import PUBLIC_BUCKET_KEY, bucket_id
from shared.m2e.errors import UnknownAccount


class Credentials(Mapping[str, str]):
    """account token → access token. Values are secrets: never printed."""

    def __init__(self, tokens: Mapping[str, str], bucket_key: bytes = PUBLIC_BUCKET_KEY) -> None:
        self._tokens = dict(tokens)
        self._buckets = {
            access: bucket_id(access, bucket_key) for access in set(self._tokens.values())
        }

    def lookup(self, account_token: str) -> tuple[str, str]:
        """(access token, limiter bucket) of an account; UnknownAccount when none is set."""
        try:
            access = self._tokens[account_token]
        except KeyError:
            raise UnknownAccount(account_token) from None
        return access, self._buckets[access]

    def __getitem__(self, account_token: str) -> str:
        return self._tokens[account_token]

    def __iter__(self) -> Any:
        return iter(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"Credentials({len(self._tokens)} accounts)"

    def secrets(self) -> set[str]:
        return set(self._tokens.values())
