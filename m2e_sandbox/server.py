"""Run the sandbox: `python -m m2e_sandbox [--config FILE] [--host H] [--port N]`
(or `m2e-sync sandbox …` where the developer tools are installed)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import yaml
from aiohttp import web

from m2e_sandbox.app import API_BASE, create_app
from m2e_sandbox.config import DEMO_CONFIG_YAML, SandboxConfig, load_config
from shared.config import ConfigError


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
    runner = web.AppRunner(
        create_app(config, bind_host=host), access_log=None, handle_signals=False
    )
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config (default: the built-in demo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)


def main(config_path: Path | None, host: str, port: int) -> int:
    config = load_config(config_path)
    asyncio.run(serve(config, host, port, demo=config_path is None))
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m m2e_sandbox", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args.config, args.host, args.port)
    except ConfigError as exc:  # a bad config file: which file and key, never a value
        print(f"m2e-sandbox: {exc}", file=sys.stderr)
        return 1
