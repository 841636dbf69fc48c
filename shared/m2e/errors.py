"""The M2E client's errors, in one tree:

    M2EError
     ├── UnknownAccount      no access token is configured for the account token
     ├── Unauthorized        401: stop calling for this account
     ├── BatchRejected       400/404/413 naming items or not: isolate them (shared.isolate)
     ├── TransientFailure    5xx, timeouts, connection errors, malformed bodies or 429s past
     │                       the retry budget: keep the items, back off, try again later
     └── Abandoned           the batch's partitions were revoked: nothing more is sent for it

Access tokens never appear in an error's message.
"""

from __future__ import annotations

import httpx

from shared.m2e.models import ApiError


class M2EError(Exception):
    """Base of the client's errors."""


class UnknownAccount(M2EError):
    def __init__(self, account_token: str) -> None:
        super().__init__(f"no access token configured for account {account_token}")
        self.account_token = account_token


class Abandoned(M2EError):
    def __init__(self, endpoint: str) -> None:
        super().__init__(f"not sent: the batch was abandoned ({endpoint})")


class Unauthorized(M2EError):
    def __init__(self, account_token: str) -> None:
        super().__init__(f"M2E answered 401 Unauthorized for account {account_token}")
        self.account_token = account_token


class BatchRejected(M2EError):
    """The API refused the request (400 or 404) and said why."""

    def __init__(self, status: int, errors: list[ApiError]) -> None:
        text = "; ".join(e.message for e in errors[:3]) or f"HTTP {status}"
        super().__init__(f"M2E rejected the request ({status}): {text}")
        self.status = status
        self.errors = errors

    def item_errors(self, size: int) -> dict[int, ApiError]:
        """Errors that name an item of the request by index (`data.index`)."""
        named: dict[int, ApiError] = {}
        for error in self.errors:
            index = error.data.get("index") if isinstance(error.data, dict) else None
            if isinstance(index, int) and 0 <= index < size and index not in named:
                named[index] = error
        return named


class TransientFailure(M2EError):
    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(f"{reason} (after {attempts} attempts)")
        self.reason = reason
        self.attempts = attempts


def api_errors(response: httpx.Response) -> list[ApiError]:
    try:
        body = response.json()
    except ValueError:
        return [ApiError(code=response.status_code, message=response.text[:500] or "no body")]
    items = body if isinstance(body, list) else [body]
    errors = []
    for item in items:
        try:
            errors.append(ApiError.model_validate(item))
        except ValueError:
            errors.append(ApiError(code=response.status_code, message=str(item)[:500]))
    return errors
