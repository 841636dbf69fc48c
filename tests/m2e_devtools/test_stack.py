"""The stack script fails with messages that name what is missing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from m2e_devtools import stack as devstack
from m2e_devtools.stack import StackError, StackSettings
from services.registry import all_topics


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
    ],
)
def test_java_major_version(output: str, major: int) -> None:
    assert devstack.java_major_version(output) == major


def _settings(tmp_path: Path, **kw: object) -> StackSettings:
    return StackSettings(dir=tmp_path / "state", cache_dir=tmp_path / "cache", **kw)


def _fake_bin(tmp_path: Path, name: str, script: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return bindir


def test_missing_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match=r"Java 17\+ is required"):
        devstack.ensure_java()


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bindir = _fake_bin(tmp_path, "java", "echo 'java version \"1.8.0_392\"' >&2\n")
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(StackError, match="found Java 8"):
        devstack.ensure_java()


def test_maven_refusal_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bindir = _fake_bin(
        tmp_path, "mvn", "echo '[ERROR] Could not transfer artifact org.apache.kafka'\nexit 1\n"
    )
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(StackError, match=r"Maven could not resolve.*exit 1.*Could not transfer"):
        devstack.ensure_kafka_jars(_settings(tmp_path))
    # Nothing half-resolved is left where a later run would take it for a cache.
    cached = [p for p in (tmp_path / "cache").glob("kafka-jars-*") if p.suffix != ".partial"]
    assert cached == []


def test_missing_maven_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match=r"Maven \(mvn\) is required"):
        devstack.ensure_kafka_jars(_settings(tmp_path))


def test_cached_jars_are_reused_without_maven(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    import hashlib

    digest = hashlib.sha256(devstack.POM.read_bytes()).hexdigest()[:12]
    libdir = settings.cache_dir / f"kafka-jars-{digest}"
    libdir.mkdir(parents=True)
    (libdir / ".complete").write_text("")
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn: must not be needed
    assert devstack.ensure_kafka_jars(settings) == libdir


def test_busy_port_is_named_with_its_setting(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        settings = _settings(tmp_path, kafka_port=port, controller_port=port + 1)
        with pytest.raises(StackError, match=f"port {port} .* M2E_STACK_KAFKA_PORT"):
            devstack.start_kafka(settings, tmp_path)


def test_bad_setting_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M2E_STACK_KAFKA_PORT", "not-a-port")
    with pytest.raises(Exception, match="kafka_port"):
        StackSettings()


def test_kafka_properties_single_node_kraft(tmp_path: Path) -> None:
    props = devstack.kafka_properties(_settings(tmp_path, kafka_port=19092, partitions=3))
    lines = set(props.splitlines())
    assert "process.roles=broker,controller" in lines
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:9093" in lines
    assert "num.partitions=3" in lines
    assert "transaction.state.log.replication.factor=1" in lines


def test_topics_cover_inputs_results_dlqs_orders_and_state() -> None:
    names = {t.name for t in all_topics()}
    for base in ("product-upserts", "variant-updates", "invoice-uploads", "order-poll-ticks"):
        assert {base, f"{base}.results", f"{base}.dlq"} <= names
    assert "orders" in names
    assert [t.name for t in all_topics() if t.compacted] == ["m2e-sync.order-cursors"]


def test_stop_leaves_foreign_processes_alone(tmp_path: Path) -> None:
    import os

    settings = _settings(tmp_path)
    settings.dir.mkdir(parents=True)
    # A pid file pointing at a process we did not start (this test runner).
    (settings.dir / "kafka.pid").write_text(str(os.getpid()))
    assert devstack.status(settings)[0].running is False
    assert not (settings.dir / "kafka.pid").exists()


def test_cluster_ids_never_look_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    # 0xF8 as first byte encodes to "-" in URL-safe base64; the storage tool would
    # take such an id for an option. The generator must draw again.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=7)])
    monkeypatch.setattr(devstack.uuid, "uuid4", lambda: next(draws))
    cid = devstack._kafka_cluster_id()
    assert not cid.startswith("-") and len(cid) == 22
