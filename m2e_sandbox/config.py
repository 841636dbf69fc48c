"""The sandbox's configuration: users and accounts, rate limit, faults, order generation.

A YAML file (`m2e-sync sandbox --config FILE`) or the built-in demo default below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.config import ConfigError, describe_errors, read_yaml
from shared.m2e.models import Channel

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountConfig(_Config):
    token: UUID
    channel: Channel
    title: str = ""
    identifier: str = ""


class UserConfig(_Config):
    name: str = ""
    access_token: Annotated[str, Field(min_length=8)]
    accounts: list[AccountConfig] = []


class RateLimitConfig(_Config):
    requests: Annotated[int, Field(ge=1)] = 100
    period_s: Annotated[float, Field(gt=0)] = 60.0
    # fixed: windows of period_s opened by the first request after the last one closed;
    # sliding: a request counts for period_s after it was made. Clients must cope with both.
    mode: Literal["fixed", "sliding"] = "fixed"


class FaultConfig(_Config):
    error_rate: Rate = 0.0  # 500 with an ErrorList
    throttle_rate: Rate = 0.0  # 429 whatever the budget
    latency_ms: Annotated[int, Field(ge=0)] = 0  # added to every API response
    timeout_rate: Rate = 0.0  # hold the request, then close without a response
    reset_rate: Rate = 0.0  # reset the connection (TCP RST)
    timeout_hold_s: Annotated[float, Field(gt=0)] = 30.0
    # What misbehaving gateways do: an HTML 502/503 from a load balancer (the request never
    # reached the API), a 200 whose body is not JSON or cut short (the request was applied),
    # and rate-limit headers with garbage values.
    html_error_rate: Rate = 0.0
    malformed_body_rate: Rate = 0.0
    truncated_body_rate: Rate = 0.0
    bad_ratelimit_headers_rate: Rate = 0.0
    seed: int | None = None  # a seed makes each (token, route)'s fault sequence repeatable

    @model_validator(mode="after")
    def _shares_fit(self) -> FaultConfig:
        # Each request meets at most one fault: the rates are shares of one draw.
        rates = [name for name in type(self).model_fields if name.endswith("_rate")]
        total = sum(getattr(self, name) for name in rates)
        if total > 1.0 + 1e-9:
            raise ValueError(f"{' + '.join(rates)} must not exceed 1 (they add up to {total:g})")
        return self


class OrdersConfig(_Config):
    seed: int = 1
    per_account: Annotated[int, Field(ge=0)] = 200
    new_per_minute: Annotated[float, Field(ge=0)] = 30.0
    status_change_per_minute: Annotated[float, Field(ge=0)] = 10.0
    history_days: Annotated[float, Field(gt=0)] = 30.0  # initial orders spread over this
    require_known_order_for_invoice: bool = True


class ValidationConfig(_Config):
    # The reference's 400 example suggests a batch with any invalid item is rejected
    # whole. False: valid items are applied and the invalid ones reported.
    reject_whole_batch: bool = True


class SandboxConfig(_Config):
    users: Annotated[list[UserConfig], Field(min_length=1)]
    rate_limit: RateLimitConfig = RateLimitConfig()
    faults: FaultConfig = FaultConfig()
    orders: OrdersConfig = OrdersConfig()
    validation: ValidationConfig = ValidationConfig()
    # The create response's count key: the reference requires `created`, its example
    # shows `deleted`. Workers accept both; this lets a test see them do it.
    create_response_key: Literal["created", "deleted"] = "created"

    @model_validator(mode="after")
    def _unique(self) -> SandboxConfig:
        tokens = [u.access_token for u in self.users]
        if len(set(tokens)) != len(tokens):
            raise ValueError("users: access_token values must be unique")
        accounts = [a.token for u in self.users for a in u.accounts]
        if len(set(accounts)) != len(accounts):
            raise ValueError("users: account tokens must be unique across users")
        for i, user in enumerate(self.users):
            if not user.name:
                user.name = f"user-{i + 1}"
        return self


DEMO_CONFIG_YAML = """\
# The sandbox's built-in demo configuration (m2e-sync sandbox --config FILE to change it).
users:
  - name: demo-shop
    access_token: "demo-access-token-0001"
    accounts:
      - {token: "6f1c2d3e-0001-4a5b-8c9d-000000000001", channel: ebay, title: "Demo eBay US", identifier: "demo-ebay-us"}
      - {token: "6f1c2d3e-0002-4a5b-8c9d-000000000002", channel: amazon, title: "Demo Amazon DE", identifier: "demo-amazon-de"}
  - name: demo-outlet
    access_token: "demo-access-token-0002"
    accounts:
      - {token: "6f1c2d3e-0003-4a5b-8c9d-000000000003", channel: kaufland, title: "Demo Kaufland", identifier: "demo-kaufland"}
rate_limit: {requests: 100, period_s: 60}
faults: {error_rate: 0.0, throttle_rate: 0.0, latency_ms: 0, timeout_rate: 0.0, reset_rate: 0.0}
orders: {seed: 1, per_account: 200, new_per_minute: 30, status_change_per_minute: 10}
"""


def load_config(path: Path | None) -> SandboxConfig:
    """Load and validate a config file; None gives the demo default. A bad file raises
    ConfigError naming the file and the keys, never the values (access tokens among them)."""
    raw = yaml.safe_load(DEMO_CONFIG_YAML) if path is None else read_yaml(path, "--config")
    try:
        return SandboxConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"--config {path}: {describe_errors(exc)}") from None
