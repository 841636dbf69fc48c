"""Settings: defaults, caps, secrets from files, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "POD_NAME", "KAFKA_GROUP_INSTANCE_ID"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_batch_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_MAX_ITEMS", "10000")
    s = load_settings()
    assert s.batch_max_items == 500
    assert s.m2e_base_url == "https://m2e.cloud/api/v1/api"
    assert s.batch_linger_ms == 1000
    assert s.group_id("variant-sync") == "m2e-sync.variant-sync"


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("BATCH_LINGER_MS", "soon", "BATCH_LINGER_MS"),
        ("RATE_LIMIT_REQUESTS", "0", "RATE_LIMIT_REQUESTS"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS", "KAFKA_SECURITY_PROTOCOL"),
        ("REDIS_URL", "http://redis:6379", "REDIS_URL"),
        ("M2E_CREDENTIALS_FILE", "/nonexistent/creds.yaml", "M2E_CREDENTIALS_FILE"),
        ("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/pw", "KAFKA_SASL_PASSWORD_FILE"),
    ],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_sasl_needs_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD"):
        load_settings()


def test_secrets_from_files_and_security_kwargs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(pw))
    monkeypatch.setenv("REDIS_URL", "rediss://redis:6380/0")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(pw))
    s = load_settings()
    assert s.kafka_security() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
    }
    assert s.redis_password is not None and s.redis_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())


def test_ssl_context_from_files(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    kw = load_settings().kafka_security()
    assert isinstance(kw["ssl_context"], ssl.SSLContext)


def test_credentials_from_file_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "creds.yaml"
    f.write_text("acct-1: token-1\nacct-2: token-2\n")
    monkeypatch.setenv("M2E_CREDENTIALS_FILE", str(f))
    monkeypatch.setenv("M2E_ACCESS_TOKENS", '{"acct-3": "token-3"}')
    creds = load_settings().credentials()
    assert dict(creds) == {"acct-1": "token-1", "acct-2": "token-2", "acct-3": "token-3"}
    monkeypatch.setenv("M2E_ACCESS_TOKENS", "not json")
    with pytest.raises(ConfigError, match="M2E_ACCESS_TOKENS"):
        load_settings().credentials()


def test_static_membership_from_pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "variant-sync-7d9f-abc12")
    assert load_settings().kafka_group_instance_id == "variant-sync-7d9f-abc12"
