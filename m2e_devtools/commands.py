"""The developer commands `m2e-sync` gains when the developer tools are installed:

m2e-sync stack up [--fresh] | down | status
m2e-sync sandbox [--config FILE] [--host H] [--port P]
m2e-sync demo [--products N] [--updates N] [--timeout S] [--sandbox-port P]
m2e-sync schemas export
"""

from __future__ import annotations

import argparse
from typing import Any

from m2e_devtools.stack import StackError
from services.cli import CommandError


def _stack(args: argparse.Namespace) -> int:
    from m2e_devtools import stack

    settings = stack.StackSettings()
    try:
        if args.action == "up":
            stack.up(settings, fresh=args.fresh)
        elif args.action == "down":
            stack.down(settings)
        else:
            for comp in stack.status(settings):
                state = f"running (pid {comp.pid})" if comp.running else "stopped"
                print(f"{comp.name:6} {state:22} {comp.address}")
            print(f"state  {settings.dir}")
    except StackError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    try:
        from m2e_sandbox import server
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"the sandbox needs {exc.name}: pip install 'm2e-sync[sandbox]'"
        ) from None
    return server.main(args.config, args.host, args.port)


def _schemas(args: argparse.Namespace) -> int:
    from services import schemas
    from shared.m2e import openapi

    print(f"wrote {openapi.export()}")
    for path in schemas.export():
        print(f"wrote {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from m2e_devtools import demo

    try:
        return demo.main(args.products, args.updates, args.timeout, args.sandbox_port)
    except StackError as exc:
        raise CommandError(str(exc)) from None


def add_commands(sub: Any) -> None:
    """Add the developer commands to `m2e-sync`'s subparsers."""
    stack = sub.add_parser("stack", help="the local Kafka broker and Redis server")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--fresh", action="store_true", help="up: wipe the broker's data first")
    stack.set_defaults(func=_stack)

    sandbox = sub.add_parser("sandbox", help="run the M2E API sandbox")
    try:
        from m2e_sandbox.server import add_arguments
    except ModuleNotFoundError:  # no aiohttp: the command says what to install
        sandbox.add_argument("args", nargs="*")
    else:
        add_arguments(sandbox)
    sandbox.set_defaults(func=_sandbox)

    schemas = sub.add_parser("schemas", help="regenerate the committed schema documents")
    schemas.add_argument("action", choices=["export"])
    schemas.set_defaults(func=_schemas)

    demo = sub.add_parser(
        "demo", help="run the whole job locally: stack, sandbox, workers, sample events"
    )
    demo.add_argument("--products", type=int, default=300, help="sample products to publish")
    demo.add_argument(
        "--updates", type=int, default=5000, help="sample price/stock updates to publish"
    )
    demo.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds"
    )
    demo.add_argument("--sandbox-port", type=int, default=8765)
    demo.set_defaults(func=_demo)
