"""Result records: the spliced fast path says exactly what the model says."""

from __future__ import annotations

import json

from shared.results import ErrorInfo, ResultTemplate, SourceRef, dlq_headers, keyed_result

ResultRecord = keyed_result("sku")  # as variant-sync's results


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


def test_a_dead_letter_near_the_broker_limit_is_cut_to_fit_and_says_so() -> None:
    from shared.results import RECORD_LIMIT, OutRecord, dlq_headers, fit, record_size

    value = b"x" * 1_000_000  # the source topic took it; with DLQ headers it no longer fits
    key = b"k" * 5000
    record = OutRecord(
        "t.dlq", key, value, dlq_headers("ValidationError", "sku: too long", "t", 0, 7)
    )
    cut = fit(record)
    assert record_size(cut) <= RECORD_LIMIT
    headers = dict(cut.headers)
    assert headers["truncated.value-bytes"] == b"1000000"
    assert headers["truncated.key-bytes"] == b"5000"
    assert headers["source.offset"] == b"7"  # the whole original is still findable
    assert cut.value is not None and value.startswith(cut.value) and len(cut.value) > 990_000
    small = OutRecord("t.dlq", b"k", b"v", record.headers)
    assert fit(small) is small


def test_results_clip_hostile_keys_and_messages() -> None:
    result = ResultRecord(
        status="failed",
        account_token=None,
        operation="decode",
        error=ErrorInfo(code="KeyMismatch", message="m" * 50_000),
        source=SourceRef(topic="t", partition=0, offset=1),
        sku="s" * 1_000_000,
    )
    assert len(result.model_dump_json()) < 5000
    sku = result.model_dump()["sku"]
    assert sku.endswith("[998976 more characters]")


def test_each_service_names_its_entity_in_a_field_of_its_own() -> None:
    order = keyed_result("order_id")
    assert "order_id" in order.model_fields and "sku" not in order.model_fields
    assert keyed_result("order_id") is order  # built once per field
