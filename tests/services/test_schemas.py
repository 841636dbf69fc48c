"""schemas/topics/ is in step with the models; the samples the demo sends conform to it."""

from __future__ import annotations

from services import schemas


def test_committed_topic_schemas_match_the_models() -> None:
    for name, text in schemas.render().items():
        path = schemas.TOPICS_DIR / name
        assert path.exists(), f"{name} missing: run `m2e-sync schemas export`"
        assert path.read_text() == text, (
            f"{name} drifted from the models: run `m2e-sync schemas export`"
        )


def test_every_input_topic_has_a_schema() -> None:
    from services.registry import SERVICES

    assert {spec.topic for spec in SERVICES.values()} <= set(schemas.MODELS)
    assert {"results", "orders"} <= set(schemas.MODELS)


async def test_committed_asyncapi_documents_match_the_workers() -> None:
    documents = await schemas.asyncapi_documents()
    assert sorted(documents) == [
        "invoice-upload.json",
        "order-poller.json",
        "product-sync.json",
        "variant-sync.json",
    ]
    for name, text in documents.items():
        path = schemas.ASYNCAPI_DIR / name
        assert path.exists() and path.read_text() == text, f"{name}: run `m2e-sync schemas export`"
