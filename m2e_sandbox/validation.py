"""Request bodies and error responses, shaped as the v4 reference shapes them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from m2e_sandbox.catalog import ItemError, new_seen
from m2e_sandbox.orders import rfc3339
from m2e_sandbox.ratelimit import Decision
from m2e_sandbox.state import Sandbox
from shared.m2e.models import MAX_BATCH_ITEMS

M = TypeVar("M", bound=BaseModel)


def api_error(
    code: str, message: str, data: dict[str, Any] | list[Any] | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "data": {} if data is None else data}


def error_response(status: int, errors: list[dict[str, Any]]) -> web.Response:
    return web.json_response(errors, status=status)


def rate_headers(decision: Decision, retry_at: float | None = None) -> dict[str, str]:
    reset = decision.reset_at if retry_at is None else retry_at
    # Round up so a client that waits until the stated second is never early.
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Retry-After": rfc3339(float(int(reset) + (reset % 1 > 0))),
    }


class BadRequest(Exception):
    def __init__(self, errors: list[dict[str, Any]], status: int = 400) -> None:
        super().__init__(errors[0]["message"] if errors else "bad request")
        self.errors = errors
        self.status = status


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest([api_error("validation_error", "request body is required")])
        return {}
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest(
            [api_error("validation_error", "request body is nested too deeply")]
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            [api_error("validation_error", f"request body is not valid JSON: {exc}")]
        ) from exc


def field_path(loc: Iterable[int | str]) -> str:
    """('variants', 0, 'price') → 'variants[0].price'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def item_errors(index: int, exc: ValidationError) -> list[ItemError]:
    return [ItemError(index, field_path(e["loc"]), e["msg"]) for e in exc.errors()]


def validate_body(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(
            [
                api_error(
                    "validation_error",
                    f"{field_path(e['loc'])}: {e['msg']}",
                    {"field": field_path(e["loc"])},
                )
                for e in exc.errors()
            ]
        ) from exc


def batch_items(body: Any, container: str | None) -> list[Any]:
    """The item list of a batch body: the body itself, or `body[container]`."""
    where = "request body" if container is None else container
    if container is not None:
        if not isinstance(body, dict):
            raise BadRequest([api_error("validation_error", "request body must be an object")])
        if container not in body:
            raise BadRequest(
                [
                    api_error(
                        "validation_error", f"{container}: Field required", {"field": container}
                    )
                ]
            )
        body = body[container]
    if not isinstance(body, list):
        raise BadRequest([api_error("validation_error", f"{where} must be an array")])
    if not 1 <= len(body) <= MAX_BATCH_ITEMS:
        raise BadRequest(
            [
                api_error(
                    "validation_error",
                    f"{where} has {len(body)} items; 1 to {MAX_BATCH_ITEMS} are accepted",
                    {"items": len(body), "max_items": MAX_BATCH_ITEMS},
                )
            ]
        )
    return body


def run_batch(
    sandbox: Sandbox,
    raw_items: list[Any],
    model: type[M],
    check: Callable[[int, M, Any], ItemError | None],
    apply: Callable[[M], None],
) -> tuple[int, list[ItemError]]:
    """Validate every item, check it against the state, apply (all, or the valid ones)."""
    seen = new_seen()
    valid: list[M] = []
    errors: list[ItemError] = []
    for index, raw in enumerate(raw_items):
        try:
            item = model.model_validate(raw)
        except ValidationError as exc:
            errors += item_errors(index, exc)
            continue
        problem = check(index, item, seen)
        if problem is not None:
            errors.append(problem)
        else:
            valid.append(item)
    if errors and sandbox.config.validation.reject_whole_batch:
        return 0, errors
    for item in valid:
        apply(item)
    return len(valid), errors


def batch_response(
    applied: int, errors: list[ItemError], count_key: str, whole: bool
) -> web.Response:
    if errors and whole:
        status = 404 if all(e.code == "not_found" for e in errors) else 400
        summary = api_error(
            "validation_error" if status == 400 else "not_found",
            "All array items must match schema" if status == 400 else "Entity is not found.",
            {"invalid_items": sorted({e.index for e in errors})},
        )
        return error_response(status, [summary, *(e.to_api() for e in errors)])
    body: dict[str, Any] = {count_key: applied}
    if errors:  # partial mode: the valid items were applied
        body["errors"] = [e.to_api() for e in errors]
    return web.json_response(body)
