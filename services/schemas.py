"""JSON Schemas of every topic's value, generated from the pydantic models.

`m2e-sync schemas export` writes them to `schemas/topics/`; a test fails when the committed
files drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.order_poller.models import CursorRecord, OrderRecord
from services.order_poller.settings import ORDER_CURSORS_TOPIC, ORDERS_TOPIC
from services.registry import SERVICES
from shared.results import keyed_result

TOPICS_DIR = Path(__file__).resolve().parents[1] / "schemas" / "topics"

MODELS: dict[str, type[BaseModel]] = {
    **{spec.topic: spec.event for spec in SERVICES.values()},
    # Every <input>.results topic: the common fields and each service's key field.
    "results": keyed_result(*sorted({spec.key_field for spec in SERVICES.values()})),
    ORDERS_TOPIC: OrderRecord,
    ORDER_CURSORS_TOPIC: CursorRecord,
}

DLQ_HEADERS: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "<input>.dlq record headers",
    "description": "A DLQ record's value is the original message's bytes, unchanged, with its key. "
    "These headers say why and where from; the original headers follow them.",
    "type": "object",
    "properties": {
        "error.class": {
            "type": "string",
            "description": "ValidationError, UnknownAccount, KeyMismatch, "
            "MappingError, NotBase64, NotPdf, TooLarge, scheme_refused, address_refused, …",
        },
        "error.message": {"type": "string", "description": "The reason, naming the field or rule."},
        "source.topic": {"type": "string"},
        "source.partition": {"type": "string", "pattern": "^[0-9]+$"},
        "source.offset": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "required": [
        "error.class",
        "error.message",
        "source.topic",
        "source.partition",
        "source.offset",
    ],
}


def render() -> dict[str, str]:
    """file name → content."""
    out = {}
    for topic, model in MODELS.items():
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"m2e-sync:{topic}",
            **model.model_json_schema(mode="validation"),
        }
        out[f"{topic}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    out["dlq-headers.schema.json"] = json.dumps(DLQ_HEADERS, indent=2, sort_keys=True) + "\n"
    return out


ASYNCAPI_DIR = TOPICS_DIR.parent / "asyncapi"


async def asyncapi_documents() -> dict[str, str]:
    """service → its AsyncAPI document, as FastStream renders it for the default settings."""
    from shared.bootstrap import build_parts, create_app
    from shared.config import load_settings

    out = {}
    for name, spec in sorted(SERVICES.items()):
        # What the documents show must not depend on the caller's environment.
        settings = load_settings(
            spec.settings, kafka_bootstrap_servers="kafka:9092", kafka_input_topic=None
        )
        service = spec.build(settings)
        parts = build_parts(service, settings)
        app = create_app(service, settings, parts)
        spec = app.schema.to_specification().to_jsonable()
        out[f"{name}.json"] = json.dumps(spec, indent=2, sort_keys=True) + "\n"
        await parts.client.aclose()
        await parts.worker.publisher.stop()  # never started; this closes it quietly
    return out


def export(directory: Path = TOPICS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    import asyncio

    ASYNCAPI_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in asyncio.run(asyncapi_documents()).items():
        path = ASYNCAPI_DIR / name
        path.write_text(text)
        written.append(path)
    return written
