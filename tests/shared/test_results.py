"""Result records: the spliced fast path says exactly what the model says."""

from __future__ import annotations

import json

from shared.results import ErrorInfo, ResultRecord, ResultTemplate, SourceRef, dlq_headers


def test_template_renders_what_the_model_would() -> None:
    base = {
        "status": "failed",
        "account_token": "acct",
        "sku": 'we"ird\\sku',
        "operation": "variant.update",
        "http_status": 404,
        "error": ErrorInfo(code="not_found", message="variant 'x' is not found"),
        "batch_id": "b1",
        "attempts": 2,
    }
    template = ResultTemplate(
        ResultRecord(**base, source=SourceRef(topic="t", partition=0, offset=0)), "in.topic"
    )
    for partition, offset, event_id in ((3, 17, None), (0, 0, 'e-"1"')):
        rendered = json.loads(template.render(partition, offset, event_id))
        expected = ResultRecord(
            **base,
            source=SourceRef(topic="in.topic", partition=partition, offset=offset),
            event_id=event_id,
        ).model_dump(mode="json", exclude_none=True)
        assert rendered == expected
        ResultRecord.model_validate(rendered)


def test_dlq_headers_carry_reason_and_source_and_keep_original_headers() -> None:
    headers = dict(
        dlq_headers(
            "ValidationError",
            "price: bad",
            "variant-updates",
            2,
            41,
            [("traceparent", b"00-abc"), ("error.class", b"old")],
        )
    )
    assert headers == {
        "error.class": b"ValidationError",
        "error.message": b"price: bad",
        "source.topic": b"variant-updates",
        "source.partition": b"2",
        "source.offset": b"41",
        "traceparent": b"00-abc",
    }
