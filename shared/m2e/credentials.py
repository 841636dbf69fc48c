"""Which access token serves an account, and which rate-limit bucket: one lookup, one
behaviour for an unknown account (`UnknownAccount`), wherever it is asked.

One `Credentials` object serves a whole process (the services' account checks and the
client's lookups), so `replace` (a reload of the credentials file) reaches all of them:
the next message, the next request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.limiter import PUBLIC_BUCKET_KEY, bucket_id
from shared.m2e.errors import UnknownAccount


@dataclass(frozen=True)
class Change:
    """What a replace changed, by account token (never the access tokens)."""

    added: frozenset[str] = field(default_factory=frozenset)
    removed: frozenset[str] = field(default_factory=frozenset)
    rotated: frozenset[str] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.rotated)


class Credentials(Mapping[str, str]):
    """account token → access token. Values are secrets: never printed."""

    def __init__(self, tokens: Mapping[str, str], bucket_key: bytes = PUBLIC_BUCKET_KEY) -> None:
        self._bucket_key = bucket_key
        self._tokens: dict[str, str] = {}
        self._buckets: dict[str, str] = {}
        self.replace(tokens)

    def replace(self, tokens: Mapping[str, str]) -> Change:
        """Serve `tokens` from now on (no await inside: every reader sees old or new)."""
        old, new = self._tokens, dict(tokens)
        buckets = {access: bucket_id(access, self._bucket_key) for access in set(new.values())}
        self._tokens, self._buckets = new, buckets
        return Change(
            added=frozenset(new.keys() - old.keys()),
            removed=frozenset(old.keys() - new.keys()),
            rotated=frozenset(a for a in new.keys() & old.keys() if new[a] != old[a]),
        )

    def lookup(self, account_token: str) -> tuple[str, str]:
        """(access token, limiter bucket) of an account; UnknownAccount when none is set."""
        tokens, buckets = self._tokens, self._buckets
        try:
            access = tokens[account_token]
        except KeyError:
            raise UnknownAccount(account_token) from None
        return access, buckets[access]

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
