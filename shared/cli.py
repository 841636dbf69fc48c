"""`m2e-sync`: the project's one command line.

m2e-sync stack up [--fresh] | down | status
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError


def _stack(args: argparse.Namespace) -> int:
    from shared import devstack

    settings = devstack.StackSettings()
    if args.action == "up":
        devstack.up(settings, fresh=args.fresh)
    elif args.action == "down":
        devstack.down(settings)
    else:
        for comp in devstack.status(settings):
            state = f"running (pid {comp.pid})" if comp.running else "stopped"
            print(f"{comp.name:6} {state:22} {comp.address}")
        print(f"state  {settings.dir}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from services.registry import SERVICES
    from shared.bootstrap import run
    from shared.config import load_settings

    settings = load_settings()
    return run(SERVICES[args.service](settings), settings)


def _tick(args: argparse.Namespace) -> int:
    import asyncio

    from services.order_poller.tick import tick
    from shared.config import load_settings

    return asyncio.run(tick(load_settings(), args.every, args.topic))


def _produce(args: argparse.Namespace) -> int:
    import asyncio

    from shared import ops
    from shared.config import load_settings

    if args.file is not None:
        events = ops.read_jsonl(args.file.read_text())
    else:
        events = list(ops.samples(args.topic, args.sample, args.account))
    sent = asyncio.run(ops.produce(load_settings(), args.topic, events))
    print(f"published {sent} records to {args.topic}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    import asyncio

    from shared import ops
    from shared.config import load_settings

    return asyncio.run(ops.tail(load_settings(), args.topic, args.last, args.follow))


def _dlq(args: argparse.Namespace) -> int:
    import asyncio

    from shared import ops
    from shared.config import load_settings

    report = asyncio.run(
        ops.replay(load_settings(), args.topic, ops.parse_filters(args.filter), args.dry_run)
    )
    verb = "would send" if args.dry_run else "sent"
    print(
        f"read {report.read} DLQ records, {report.matched} matched, {verb} "
        f"{report.matched if args.dry_run else report.sent}: {report.by_topic}"
    )
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from services.sandbox import server

    return server.main(args.config, args.host, args.port)


def _schemas(args: argparse.Namespace) -> int:
    from services import schemas
    from shared.m2e import openapi

    print(f"wrote {openapi.export()}")
    for path in schemas.export():
        print(f"wrote {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from shared import demo

    return demo.main(args.products, args.updates, args.timeout, args.sandbox_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2e-sync", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local Kafka broker and Redis server")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--fresh", action="store_true", help="up: wipe the broker's data first")
    stack.set_defaults(func=_stack)

    from services.registry import SERVICES

    run = sub.add_parser("run", help="run a worker (settings from the environment)")
    run.add_argument("service", choices=sorted(SERVICES))
    run.set_defaults(func=_run)

    ticks = sub.add_parser("tick", help="publish order-poll ticks for the configured accounts")
    ticks.add_argument(
        "--every", type=float, default=None, help="repeat every SECONDS (default: once)"
    )
    ticks.add_argument("--topic", default="order-poll-ticks")
    ticks.set_defaults(func=_tick)

    produce = sub.add_parser(
        "produce", help="publish events from a JSON-lines file or generated samples"
    )
    produce.add_argument("topic")
    source = produce.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--file", type=Path, help='JSON lines: values, or {"key": ..., "value": ...}'
    )
    source.add_argument("--sample", type=int, help="N realistic sample events for the topic")
    produce.add_argument(
        "--account",
        default="6f1c2d3e-0001-4a5b-8c9d-000000000001",
        help="account token of the samples (default: the sandbox demo's eBay account)",
    )
    produce.set_defaults(func=_produce)

    tail = sub.add_parser("tail", help="read a topic's records in readable form")
    tail.add_argument("topic")
    tail.add_argument("--last", type=int, default=20, help="records per partition (default 20)")
    tail.add_argument("--follow", action="store_true", help="keep printing new records")
    tail.set_defaults(func=_tail)

    dlq = sub.add_parser("dlq", help="dead-letter queue tools")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    replay = dlq_sub.add_parser("replay", help="re-publish DLQ records to their source topic")
    replay.add_argument("topic", help="the DLQ topic, e.g. product-upserts.dlq")
    replay.add_argument(
        "--filter",
        action="append",
        default=[],
        help="HEADER=VALUE, e.g. error.class=UnknownAccount",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="count what would be sent, send nothing"
    )
    replay.set_defaults(func=_dlq)

    sandbox = sub.add_parser("sandbox", help="run the M2E API sandbox")
    sandbox.add_argument("--config", type=Path, help="YAML config (default: the built-in demo)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from shared.config import ConfigError
    from shared.devstack import StackError

    try:
        return int(args.func(args))
    except (StackError, ConfigError, ValueError) as exc:
        print(f"m2e-sync: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        # A bad setting: name it, no traceback.
        print(f"m2e-sync: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
