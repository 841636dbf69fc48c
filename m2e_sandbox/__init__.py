"""The M2E sandbox: a stateful simulator of the Sales Channels API v4."""

from m2e_sandbox.app import API_BASE, Sandbox, create_app
from m2e_sandbox.config import SandboxConfig, load_config

__all__ = ["API_BASE", "Sandbox", "SandboxConfig", "create_app", "load_config"]
