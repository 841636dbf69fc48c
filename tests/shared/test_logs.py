"""JSON logs; access tokens are masked wherever they appear."""

from __future__ import annotations

import io
import json
import logging

from shared.logs import JsonFormatter, RedactSecrets


def test_json_lines_with_extras_and_masked_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(["tok-secret-123"]))
    log = logging.getLogger("test.logs")
    log.handlers[:] = [handler]
    log.propagate = False
    log.warning("calling with %s", "tok-secret-123", extra={"account": "a1"})
    try:
        raise RuntimeError("bad token tok-secret-123")
    except RuntimeError:
        log.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "calling with ***" and first["account"] == "a1"
    assert first["level"] == "warning"
    assert "tok-secret-123" not in stream.getvalue()
    assert "RuntimeError: bad token ***" in second["exc"]


def test_secrets_in_extra_fields_are_masked_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(["tok-secret-123", "redis-pass-9"]))
    log = logging.getLogger("test.logs.extra")
    log.handlers[:] = [handler]
    log.propagate = False
    log.warning(
        "connecting",
        extra={
            "url": "redis://:redis-pass-9@redis:6379/0",
            "headers": {"access-token": "tok-secret-123"},
            "account": "a1",
            "attempt": 2,
        },
    )
    line = json.loads(stream.getvalue())
    assert "tok-secret-123" not in stream.getvalue() and "redis-pass-9" not in stream.getvalue()
    assert line["url"] == "redis://:***@redis:6379/0"
    assert "***" in line["headers"]
    assert line["account"] == "a1" and line["attempt"] == 2  # untouched: no secret in them
