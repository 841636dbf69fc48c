"""The workers, in one table: the CLI, the operator tools, the demo, the schema export and
the deployment tests all read it. A new worker is a package under services/ with a
`SPEC`, added here."""

from __future__ import annotations

from services import invoice_upload, order_poller, product_sync, variant_sync
from services.spec import ServiceSpec
from shared.topics import TopicSpec, dlq_topic, results_topic, retry_topic

SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (product_sync.SPEC, variant_sync.SPEC, invoice_upload.SPEC, order_poller.SPEC)
}


def for_topic(topic: str) -> ServiceSpec | None:
    """The service whose input `topic` is: its own name, or one ending in `.<its name>`
    (a prefixed copy, as tests and staging environments use)."""
    for spec in SERVICES.values():
        if topic == spec.topic or topic.endswith("." + spec.topic):
            return spec
    return None


def all_topics() -> list[TopicSpec]:
    """Every topic the stack creates: inputs, their results, DLQs and retry topics, and what
    services write."""
    inputs = [spec.topic for spec in SERVICES.values()]
    specs = [TopicSpec(t) for t in inputs]
    specs += [TopicSpec(results_topic(t)) for t in inputs]
    specs += [TopicSpec(dlq_topic(t)) for t in inputs]
    specs += [TopicSpec(retry_topic(t)) for t in inputs]
    for spec in SERVICES.values():
        specs += spec.outputs
    return specs
