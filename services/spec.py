"""What the registry knows of a worker: everything outside the core reads it from here.

The CLI (`run`, `produce`), the operator tools (a topic's key rule), the demo (samples,
topics), the schema export (event models) and the tests of the chart and Compose file
(one Deployment and one service each) all read `services.registry.SERVICES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from shared.config import WorkerSettings
from shared.service import Service
from shared.topics import TopicSpec

Event = tuple[str, Any]  # (key, value)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str  # `m2e-sync run NAME`
    topic: str  # its input topic (KAFKA_INPUT_TOPIC overrides it)
    key_field: str  # the result field naming the entity
    event: type[BaseModel]  # the input topic's value contract
    settings: type[WorkerSettings]  # what `run` loads from the environment
    build: Callable[[Any], Service]  # settings → the service
    key: Callable[[Mapping[str, Any]], str | None]  # the key the topic's contract asks for
    samples: Callable[[int, str], list[Event]]  # N realistic events for an account
    invalid_samples: int = 0  # of the demo's samples, how many are refused on purpose
    outputs: tuple[TopicSpec, ...] = ()  # topics it writes besides results and DLQ
    budget_priority: int = 4  # its claim on a token's budget shared with others (1: highest)

    @classmethod
    def of(
        cls,
        service: type[Service],
        *,
        event: type[BaseModel],
        settings: type[WorkerSettings],
        build: Callable[[Any], Service],
        key: Callable[[Mapping[str, Any]], str | None],
        samples: ModuleType,
        outputs: tuple[TopicSpec, ...] = (),
    ) -> ServiceSpec:
        """The spec of a service class; `samples` is its samples module (`samples`, `INVALID`)."""
        return cls(
            name=service.name,
            topic=service.input_topic,
            key_field=service.key_field,
            event=event,
            settings=settings,
            build=build,
            key=key,
            samples=samples.samples,
            invalid_samples=samples.INVALID,
            outputs=outputs,
            budget_priority=service.budget_priority,
        )
