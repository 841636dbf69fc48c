"""The Helm chart, checked with the real helm and Kubernetes' and the CRDs' own schemas.

`make test` builds helm and caches the schema modules (tests/tools.py); nothing here
reaches the network.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.registry import SERVICES
from tests import tools

CHART = Path(__file__).resolve().parents[2] / "charts" / "m2e-sync"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
KUBERNETES = "1.29"  # the oldest minor we support; every API used is GA there
VALUES = {"default": [], "all-options": ["-f", str(ALL_OPTIONS)]}
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "prometheus-operator",
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        "prometheus-operator",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): ("keda", "config/crd/bases/keda.sh_scaledobjects.yaml"),
}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools.helm()), *args], capture_output=True, text=True, check=False, cwd=CHART
    )


def render(*extra: str) -> list[dict[str, Any]]:
    done = helm("template", "rel", ".", *extra)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema as a JSON Schema that refuses unknown fields (like kubeconform -strict)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    module, path = CRDS[(api_version, kind)]
    crd = yaml.safe_load((tools.module_dir(module) / path).read_text())
    version = api_version.rsplit("/", 1)[1]
    (spec,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return jsonschema.Draft7Validator(strict(spec["schema"]["openAPIV3Schema"]))


def problems(doc: dict[str, Any]) -> list[str]:
    """Every schema violation in one rendered manifest."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRDS:
        return [
            f"{doc['kind']}: {'/'.join(map(str, e.path))}: {e.message}"
            for e in crd_validator(*key).iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc['kind']} {doc['metadata']['name']}: {exc.message}"]
    return []


@pytest.mark.parametrize("values", VALUES)
def test_helm_lint_passes_strictly(values: str) -> None:
    done = helm("lint", "--strict", ".", *VALUES[values])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", VALUES)
def test_rendered_manifests_pass_strict_schema_validation(values: str) -> None:
    docs = render(*VALUES[values])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "CronJob"} <= kinds
    if values == "all-options":
        assert {
            "HorizontalPodAutoscaler",
            "ScaledObject",
            "ServiceMonitor",
            "PrometheusRule",
            "NetworkPolicy",
        } <= kinds
    assert [p for d in docs for p in problems(d)] == []


def test_the_validation_catches_a_misspelled_field() -> None:
    docs = render("-f", str(ALL_OPTIONS))
    for kind in ("Deployment", "ServiceMonitor", "ScaledObject"):
        doc = copy.deepcopy(next(d for d in docs if d["kind"] == kind))
        doc["spec"]["replicaz"] = 1
        assert problems(doc), kind
    rule = copy.deepcopy(next(d for d in docs if d["kind"] == "PrometheusRule"))
    del rule["spec"]["groups"][0]["name"]
    assert problems(rule)


@pytest.mark.parametrize("values", VALUES)
def test_every_worker_is_a_hardened_deployment_that_outlives_its_shutdown_grace(
    values: str,
) -> None:
    docs = render(*VALUES[values])
    env = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-env")
    )
    grace = float(env["data"]["SHUTDOWN_GRACE_S"])
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in docs
        if d["kind"] == "Deployment"
    }
    assert set(deployments) == set(SERVICES)
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["run", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["terminationGracePeriodSeconds"] > grace
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_access_tokens_live_only_in_the_secret() -> None:
    access = "at-7f3c9e-never-in-a-configmap"
    docs = render("--set", f"m2e.accessTokens.11111111-2222-3333-4444-555555555555={access}")
    holders = {d["kind"] for d in docs if access in json.dumps(d)}
    assert holders == {"Secret"}
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert yaml.safe_load(secret["stringData"]["credentials.yaml"]) == {
        "11111111-2222-3333-4444-555555555555": access
    }
    # With existingSecret the chart renders no credentials Secret and mounts the named one.
    docs = render("--set", "m2e.existingSecret=mine")
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"] == ["rel-m2e-sync-redis"]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert {
        "secretName": "mine",
        "items": [{"key": "credentials.yaml", "path": "credentials.yaml"}],
    } in [v.get("secret") for v in volumes]


def test_keda_scales_on_the_services_own_group_and_topic_instead_of_the_hpa() -> None:
    docs = render("-f", str(ALL_OPTIONS))
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    assert [s["metadata"]["name"] for s in scaled] == ["rel-m2e-sync-variant-sync"]
    trigger = scaled[0]["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "m2e-sync.variant-sync"
    assert trigger["metadata"]["topic"] == SERVICES["variant-sync"].topic
    hpas = {
        d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert hpas == {"rel-m2e-sync-product-sync", "rel-m2e-sync-invoice-upload"}
    env = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-env")
    )
    # 4 (HPA max) + 4 (KEDA max) + 4 (HPA max) + 1 (order-poller, fixed): the degraded share.
    assert env["data"]["EXPECTED_REPLICAS"] == "13"


def test_the_rules_and_the_dashboard_ship_as_the_tested_files() -> None:
    docs = render("-f", str(ALL_OPTIONS))
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    board = next(d for d in docs if d["metadata"]["name"].endswith("-dashboard"))
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["m2e-sync.json"]) == json.loads(
        (CHART / "files" / "dashboard.json").read_text()
    )
    tick = next(d for d in docs if d["kind"] == "CronJob")
    (container,) = tick["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["tick"]
    assert {
        "name": "TICK_ACCOUNTS",
        "value": "ebay:11111111-2222-3333-4444-555555555555",
    } in container["env"]


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(
        (tools.module_dir("compose-spec") / "schema" / "compose-spec.json").read_text()
    )
    compose = yaml.safe_load((CHART.parents[1] / "docker-compose.yml").read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)
    ] == []
    broken = copy.deepcopy(compose)
    broken["services"]["variant-sync"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken))


def test_bad_values_fail_at_render_naming_the_setting() -> None:
    typo = helm("template", "rel", ".", "--set", "services.variant-sync.replica=2")
    assert (
        typo.returncode != 0 and "services.variant-sync" in typo.stderr and "replica" in typo.stderr
    )
    protocol = helm("template", "rel", ".", "--set", "kafka.securityProtocol=SASL")
    assert protocol.returncode != 0 and "kafka.securityProtocol" in protocol.stderr
    sasl = helm("template", "rel", ".", "--set", "kafka.securityProtocol=SASL_SSL")
    assert sasl.returncode != 0 and "kafka.sasl.existingSecret" in sasl.stderr


def test_the_network_policy_is_on_and_every_egress_rule_names_its_peers() -> None:
    for values in VALUES.values():
        docs = render(*values)
        [policy] = [d for d in docs if d["kind"] == "NetworkPolicy"]
        egress = policy["spec"]["egress"]
        assert egress and all(rule.get("to") for rule in egress), egress  # nothing "to anywhere"
    default = next(d for d in render() if d["kind"] == "NetworkPolicy")
    https = next(
        r for r in default["spec"]["egress"] if {"port": 443, "protocol": "TCP"} in r["ports"]
    )
    blocks = [peer["ipBlock"] for peer in https["to"]]
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert {"169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(v4["except"])
    # Kafka and Redis ports are open to the cluster's pods only, not to ipBlocks.
    for port in (9092, 6379):
        rule = next(
            r for r in default["spec"]["egress"] if {"port": port, "protocol": "TCP"} in r["ports"]
        )
        assert all("ipBlock" not in peer for peer in rule["to"])


def test_secrets_never_reach_a_configmap() -> None:
    url = "redis://:redis-pw-never-in-a-configmap@redis:6379/0"
    docs = render("--set", f"redis.url={url}")
    assert {d["kind"] for d in docs if "redis-pw-never" in json.dumps(d)} == {"Secret"}
    dep = next(d for d in docs if d["kind"] == "Deployment")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "rel-m2e-sync-redis", "key": "REDIS_URL"}},
    } in env
    assert "redis.url" not in (CHART / "templates" / "NOTES.txt").read_text().replace(
        "if .Values.redis.url", ""
    )
    for key in (
        "M2E_ACCESS_TOKENS",
        "KAFKA_SASL_PASSWORD",
        "REDIS_PASSWORD",
        "REDIS_URL",
        "REDIS_KEY_SECRET",
    ):
        refused = helm("template", "rel", ".", "--set", f"config.{key}=x")
        assert refused.returncode != 0 and "config" in refused.stderr, (key, refused.stderr)
    assert helm("template", "rel", ".", "--set", "config.BATCH_LINGER_MS=5").returncode == 0


def test_a_kafka_ca_is_mounted_from_a_secret() -> None:
    docs = render("-f", str(ALL_OPTIONS))
    dep = next(d for d in docs if d["kind"] == "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert {
        "name": "kafka-ca",
        "secret": {"secretName": "kafka-ca", "items": [{"key": "ca.pem", "path": "ca.crt"}]},
    } in spec["volumes"]
    mounts = spec["containers"][0]["volumeMounts"]
    assert {"name": "kafka-ca", "mountPath": "/etc/m2e-sync/kafka-ca", "readOnly": True} in mounts
    env = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-env")
    )
    assert env["data"]["KAFKA_SSL_CAFILE"] == "/etc/m2e-sync/kafka-ca/ca.crt"


def test_the_chart_names_each_service_as_the_registry_does() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {name: svc["topic"] for name, svc in values["services"].items()} == {
        name: spec.topic for name, spec in SERVICES.items()
    }
    assert {name: svc["budgetPriority"] for name, svc in values["services"].items()} == {
        name: spec.budget_priority for name, spec in SERVICES.items()
    }


def test_each_service_carries_its_budget_priority_and_it_can_be_changed() -> None:
    def priorities(*extra: str) -> dict[str, str]:
        return {
            d["metadata"]["labels"]["app.kubernetes.io/component"]: next(
                e["value"]
                for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
                if e["name"] == "RATE_LIMIT_PRIORITY"
            )
            for d in render(*extra)
            if d["kind"] == "Deployment"
        }

    assert priorities() == {
        "variant-sync": "1",
        "order-poller": "2",
        "invoice-upload": "3",
        "product-sync": "4",
    }
    assert priorities("--set", "services.product-sync.budgetPriority=2")["product-sync"] == "2"
