"""docker-compose.yml stays in step with the code (it is validated, not run, here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.registry import all_topics

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def test_compose_creates_every_project_topic() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    script = doc["services"]["kafka-init"]["command"][0]
    for spec in all_topics():
        if "." in spec.name and spec.name.rsplit(".", 1)[0] in {
            "product-upserts",
            "variant-updates",
            "invoice-uploads",
            "order-poll-ticks",
        }:
            continue  # created by the loop over inputs as $t.results / $t.dlq / $t.retry
        assert spec.name in script, spec.name
    assert "cleanup.policy=compact" in script


def test_compose_pins_kafka_4() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    image = doc["services"]["kafka"]["image"]
    assert image.startswith("apache/kafka:4.")


def test_compose_runs_every_worker_with_the_cli_the_code_has() -> None:
    from services.registry import SERVICES

    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    for name in SERVICES:
        assert services[name]["command"] == ["run", name]
        env = services[name]["environment"]
        assert env["M2E_CREDENTIALS_FILE"].startswith("/config/") and env["REDIS_URL"].startswith(
            "redis://"
        )
    assert services["sandbox"]["build"]["target"] == "sandbox"  # the worker image has none
    assert services["order-ticks"]["command"][0] == "tick"
    root = COMPOSE.parent
    for mount in (
        services["prometheus"]["volumes"]
        + services["grafana"]["volumes"]
        + services["product-sync"]["volumes"]
    ):
        assert (root / mount.split(":")[0]).exists(), mount


def test_dockerfile_runs_as_non_root_with_the_cli_as_entrypoint() -> None:
    text = (COMPOSE.parent / "Dockerfile").read_text()
    assert "USER 10001" in text and 'ENTRYPOINT ["m2e-sync"]' in text


def test_compose_publishes_every_port_on_this_machine_only() -> None:
    # Kafka is plaintext and Redis has no password here: never on all interfaces.
    doc = yaml.safe_load(COMPOSE.read_text())
    published = [
        (name, str(port))
        for name, service in doc["services"].items()
        for port in service.get("ports", [])
    ]
    assert published and all(p.startswith("127.0.0.1:") for _, p in published), published
