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


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://m2e.cloud/api/v1/api", True),
        ("http://127.0.0.1:8765/api/v1/api", True),
        ("http://localhost:8765/api/v1/api", True),
        ("http://[::1]:8765/api/v1/api", True),
        ("http://m2e.cloud/api/v1/api", False),  # tokens in clear text across the network
        ("http://10.0.0.5/api/v1/api", False),
        ("ftp://m2e.cloud/api", False),
    ],
)
def test_the_api_is_https_unless_it_is_on_this_host(url: str, allowed: bool) -> None:
    if allowed:
        assert load_settings(m2e_base_url=url).m2e_base_url == url
    else:
        with pytest.raises(ConfigError, match="M2E_BASE_URL"):
            load_settings(m2e_base_url=url)
    # The explicit opt-in (a sandbox in another container) allows plain http.
    assert load_settings(m2e_base_url="http://sandbox:8765/api", m2e_allow_http=True)


def test_every_secret_the_process_knows_is_given_to_the_log_filter(tmp_path: Path) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text("acct-1: m2e-token-1\nacct-2: m2e-token-2\n")
    settings = load_settings(
        m2e_credentials_file=creds,
        kafka_sasl_password="sasl-pass",
        kafka_ssl_key_password="key-pass",
        redis_url="redis://:url-pass@redis:6379/0",
        redis_password="redis-pass",
    )
    assert settings.secrets() >= {
        "m2e-token-1",
        "m2e-token-2",
        "sasl-pass",
        "key-pass",
        "url-pass",
        "redis-pass",
    }


@pytest.mark.parametrize(
    "text",
    [
        "acct-1: m2e-secret-token-1\n  bad-indent: m2e-secret-token-2\n",  # a typo
        "acct-1: [m2e-secret-token-1\n",  # unclosed
        "acct-1: 'm2e-secret-token-1\n",  # unterminated quote
    ],
)
def test_a_malformed_credentials_file_names_the_file_never_a_token(
    tmp_path: Path, text: str
) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text(text)
    with pytest.raises(ConfigError) as failed:
        load_settings(m2e_credentials_file=creds).credentials()
    message = str(failed.value)
    assert "M2E_CREDENTIALS_FILE" in message and str(creds) in message and "line" in message
    assert "secret" not in message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
