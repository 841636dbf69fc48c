"""Run the sandbox: `m2e-sync sandbox [--config FILE] [--host H] [--port N]`."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import yaml
from aiohttp import web

from services.sandbox.app import API_BASE, create_app
from services.sandbox.config import DEMO_CONFIG_YAML, SandboxConfig, load_config


def describe(config: SandboxConfig, demo: bool) -> str:
    """What to print at start. Tokens of a user's own config are masked; the demo's are
    public so that a newcomer can call the sandbox."""
    if demo:
        return DEMO_CONFIG_YAML
    dump = config.model_dump(mode="json")
    for user in dump["users"]:
        user["access_token"] = user["access_token"][:4] + "…"
    return yaml.safe_dump(dump, sort_keys=False, allow_unicode=True)


async def serve(config: SandboxConfig, host: str, port: int, *, demo: bool) -> None:
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    print(describe(config, demo), flush=True)
    print(
        f"M2E sandbox listening on http://{host}:{port}{API_BASE} "
        f"(admin: http://{host}:{port}/_sandbox/stats)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(config_path: Path | None, host: str, port: int) -> int:
    config = load_config(config_path)
    asyncio.run(serve(config, host, port, demo=config_path is None))
    return 0


if __name__ == "__main__":
    sys.exit(main(None, "127.0.0.1", 8765))
