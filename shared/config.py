"""Worker settings: the one place that reads the environment (pydantic-settings).

`WorkerSettings` holds what every worker reads; a service with settings of its own
subclasses it in `services/<name>/settings.py`, so the core knows none of them. Built
once in `main` (`load_settings(cls)`) and passed down. A bad value fails at start naming the variable.
Secrets (SASL and Redis passwords, M2E access tokens) are `SecretStr` and may come from
files (`*_FILE`, e.g. a mounted Kubernetes Secret); they are never logged.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.coalescer import MAX_BATCH_ITEMS
from shared.limiter import CONSERVATIVE_PERIOD_S
from shared.m2e.client import PRODUCTION_BASE_URL, Credentials


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it, never a secret value."""


def read_yaml(path: Path, setting: str, text: str | None = None) -> Any:
    """A YAML file's content (`text`: already read). A read or parse error names the
    setting, the file and where; never the text, whose lines may be secrets (a credentials
    file's are)."""
    try:
        text = path.read_text() if text is None else text
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed"
        raise ConfigError(f"{setting}: {path} is not valid YAML{where}: {problem}") from None


def describe_errors(exc: ValidationError, prefix: str = "") -> str:
    """'users.0.acces_token: Extra inputs are not permitted; …': where and what, never the
    value that was given (pydantic's own text repeats it: `input_value='<the token>'`)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{prefix}{where}: {message}" if where else f"{prefix}{message}")
    return "; ".join(problems)


def _read_secret(path: Path | None, name: str) -> SecretStr | None:
    if path is None:
        return None
    try:
        return SecretStr(path.read_text().strip())
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror}") from None


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")
    _credentials: Credentials | None = PrivateAttr(default=None)

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_group_id: str | None = None  # default: m2e-sync.<service>
    kafka_group_instance_id: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_GROUP_INSTANCE_ID", "POD_NAME")
    )  # static membership: a restarted pod keeps its partitions without a rebalance
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_key_password_file: Path | None = None
    kafka_input_topic: str | None = None  # default: the service's topic; results/DLQ follow it
    kafka_max_poll_records: Annotated[int, Field(ge=1, le=100_000)] = 5000
    kafka_session_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000

    # M2E API
    m2e_base_url: str = PRODUCTION_BASE_URL
    m2e_allow_http: bool = False  # plain http to a non-loopback host (a sandbox in Compose)
    m2e_credentials_file: Path | None = None  # YAML map: account_token → access_token
    m2e_access_tokens: SecretStr | None = None  # the same map as JSON, from env
    # Re-read M2E_CREDENTIALS_FILE this often when it changes (shared.reload); 0: never.
    credentials_reload_s: Annotated[float, Field(ge=0)] = 10.0
    # false: every metric's account label reads `_all` (hundreds of merchants; /accounts
    # keeps the per-account view).
    metrics_per_account: bool = True
    m2e_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    m2e_retry_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    m2e_retry_base_s: Annotated[float, Field(gt=0)] = 0.2
    m2e_retry_cap_s: Annotated[float, Field(gt=0)] = 10.0

    # Rate limit, per access token
    redis_url: str | None = None
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = None
    rate_limit_enabled: bool = True
    rate_limit_requests: Annotated[int, Field(ge=1)] = 100
    # None: learned from the server's window resets (even spacing assumes 60 s until then).
    rate_limit_period_s: Annotated[float | None, Field(gt=0)] = None
    rate_limit_safety: Annotated[float, Field(ge=0, le=1)] = 0.0
    # This service's claim on a token's budget shared with others (1: highest); None: the
    # service's own default (variant-sync 1, order-poller 2, invoice-upload 3, product-sync 4).
    rate_limit_priority: Annotated[int | None, Field(ge=1, le=9)] = None
    rate_limit_min_share: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    rate_limit_jitter_ms: Annotated[int, Field(ge=0, le=60_000)] = 100
    rate_limit_redis_prefix: str = "m2e-sync:rl"  # Redis key prefix of the shared buckets
    # How long the shared view of the catalog (shared.catalog) remembers a SKU in Redis.
    catalog_view_ttl_s: Annotated[int, Field(ge=60)] = 7 * 86400
    redis_key_secret: SecretStr | None = None  # HMAC key of the bucket names (same everywhere)
    # Degraded share (Redis down) = rate ÷ this: every process that may share a token's
    # budget. Default: one replica of each of the four workers (the chart sets the real sum).
    expected_replicas: Annotated[int, Field(ge=1)] = 4

    # Batching and delivery
    batch_max_items: Annotated[int, Field(ge=1)] = MAX_BATCH_ITEMS
    batch_linger_ms: Annotated[int, Field(ge=0)] = 1000
    # Batches in flight per account and operation; never two with the same key.
    batch_max_in_flight: Annotated[int, Field(ge=1)] = 4
    max_pending_items: Annotated[int, Field(ge=1)] = 50_000
    # Bytes of unsettled messages (each is held about twice: its bytes and its decoded
    # item), so 64 MiB keeps a worker well inside the chart's 256 Mi memory limit.
    max_pending_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    commit_interval_ms: Annotated[int, Field(ge=10)] = 1000
    revoke_flush_deadline_s: Annotated[float, Field(ge=0)] = 10.0
    shutdown_grace_s: Annotated[float, Field(gt=0)] = 25.0
    startup_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    failure_backoff_cap_s: Annotated[float, Field(gt=0)] = 60.0
    auth_backoff_s: Annotated[float, Field(gt=0)] = 60.0
    poison_max_attempts: Annotated[int, Field(ge=1, le=100)] = 3  # then the item goes to the DLQ
    # An account failing this long (401s, or no send succeeding) is parked: its messages move
    # to `<input>.retry` so the others' commits and fetching go on (shared.worker.park).
    account_park_after_s: Annotated[float, Field(gt=0)] = 60.0
    # Items one account (and operation) may hold buffered from the input once the worker is
    # past half its memory bound; past it, its further messages wait in `<input>.retry` and
    # come back at its budget's pace, so a hot account's backlog never pauses fetching for
    # the others. At least BATCH_MAX_ITEMS.
    max_pending_per_account: Annotated[int, Field(ge=1)] = 5_000

    # Operations
    http_host: str = "0.0.0.0"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _per_account_bound(self) -> WorkerSettings:
        batch = min(self.batch_max_items, MAX_BATCH_ITEMS)
        if self.max_pending_per_account < batch:
            raise ValueError(
                f"MAX_PENDING_PER_ACCOUNT must be at least BATCH_MAX_ITEMS ({batch}): "
                "a hot account would never fill a batch"
            )
        return self

    @model_validator(mode="after")
    def _files_and_consistency(self) -> WorkerSettings:
        self.batch_max_items = min(self.batch_max_items, MAX_BATCH_ITEMS)
        for field, file_field in (
            ("kafka_sasl_password", "kafka_sasl_password_file"),
            ("kafka_ssl_key_password", "kafka_ssl_key_password_file"),
            ("redis_password", "redis_password_file"),
        ):
            secret = _read_secret(getattr(self, file_field), file_field.upper())
            if secret is not None:
                setattr(self, field, secret)
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                name.upper()
                for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs {', '.join(missing)}"
                )
        base = urlsplit(self.m2e_base_url)
        if base.scheme not in ("https", "http") or not base.hostname:
            raise ValueError("M2E_BASE_URL must be an https:// URL")
        if base.scheme == "http" and not (self.m2e_allow_http or _loopback(base.hostname)):
            # Access tokens would cross the network in clear text.
            raise ValueError(
                "M2E_BASE_URL must be https:// unless its host is loopback "
                "(M2E_ALLOW_HTTP=true allows plain http, e.g. to a sandbox in Compose)"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        if self.m2e_credentials_file is not None and not self.m2e_credentials_file.is_file():
            raise ValueError(f"M2E_CREDENTIALS_FILE: {self.m2e_credentials_file} is not a file")
        return self

    def group_id(self, service: str) -> str:
        return self.kafka_group_id or f"m2e-sync.{service}"

    @property
    def budget_period_s(self) -> float:
        """The period the budget is counted over: the configured one, or the one even
        spacing assumes while the server's is being learned."""
        return self.rate_limit_period_s or CONSERVATIVE_PERIOD_S

    def kafka_security(self) -> dict[str, Any]:
        """aiokafka keyword arguments for the configured security protocol."""
        kw: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
                certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
                keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
                password=self.kafka_ssl_key_password.get_secret_value()
                if self.kafka_ssl_key_password
                else None,
            )
        if self.kafka_security_protocol.startswith("SASL_"):
            kw["sasl_mechanism"] = self.kafka_sasl_mechanism
            kw["sasl_plain_username"] = self.kafka_sasl_username
            assert self.kafka_sasl_password is not None
            kw["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return kw

    def secrets(self) -> set[str]:
        """Every secret this process knows, for the log filter: the M2E access tokens, the
        SASL, SSL-key and Redis passwords (a password in REDIS_URL too)."""
        found = self.credentials().secrets()
        for secret in (
            self.kafka_sasl_password,
            self.kafka_ssl_key_password,
            self.redis_password,
            self.redis_key_secret,
        ):
            if secret is not None:
                found.add(secret.get_secret_value())
        if self.redis_url is not None and (password := urlsplit(self.redis_url).password):
            found.add(password)
        return found

    def credentials(self) -> Credentials:
        """account token → access token, from M2E_CREDENTIALS_FILE and M2E_ACCESS_TOKENS:
        read once, then one object for the process (a reload replaces what it holds)."""
        if self._credentials is None:
            key = self.redis_key_secret
            tokens = self.token_map()
            self._credentials = (
                Credentials(tokens)
                if key is None
                else Credentials(tokens, key.get_secret_value().encode())
            )
        return self._credentials

    def token_map(self, file_text: str | None = None) -> dict[str, str]:
        """The credentials as read now (`file_text`: the file's content, already read)."""
        tokens: dict[str, str] = {}
        if self.m2e_credentials_file is not None:
            tokens |= _token_map(
                read_yaml(self.m2e_credentials_file, "M2E_CREDENTIALS_FILE", file_text),
                "M2E_CREDENTIALS_FILE",
            )
        if self.m2e_access_tokens is not None:
            try:
                raw = json.loads(self.m2e_access_tokens.get_secret_value())
            except ValueError:
                raise ConfigError(
                    "M2E_ACCESS_TOKENS must be a JSON object {account_token: access_token}"
                ) from None
            tokens |= _token_map(raw, "M2E_ACCESS_TOKENS")
        return tokens


S = TypeVar("S", bound=WorkerSettings)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token_map(raw: object, source: str) -> dict[str, str]:
    if isinstance(raw, dict) and isinstance(raw.get("accounts"), dict):
        raw = raw["accounts"]
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in raw.items()
    ):
        raise ConfigError(f"{source} must map account tokens to access tokens (strings)")
    return {str(k): str(v) for k, v in raw.items()}


def load_settings(cls: type[S] | None = None, **overrides: Any) -> S:
    """Build the settings (`WorkerSettings` or a service's subclass) from the environment
    and `overrides`; a bad value raises ConfigError naming the variable."""
    settings_cls: type[Any] = WorkerSettings if cls is None else cls
    unknown = sorted(set(overrides) - set(settings_cls.model_fields))
    if unknown:  # pydantic-settings would ignore them silently
        raise TypeError(f"{settings_cls.__name__} has no setting {', '.join(unknown)}")
    try:
        return settings_cls(**overrides)  # type: ignore[no-any-return]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(p) for p in error["loc"]).upper() or "settings"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(
                f"{name}: {message}"
                if name != "settings" and not message.startswith(name)
                else message
            )
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
