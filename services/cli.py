"""`m2e-sync`: the project's one command line.

    m2e-sync run NAME | tick | produce | tail | dlq replay | status   (the worker image has these)
    m2e-sync stack | sandbox | demo | schemas export              (developer tools, when installed)

The commands a deployment needs live here; the developer tools (m2e_devtools) add
theirs when they are installed, so the worker image carries no sandbox or local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.registry import SERVICES
from shared.config import ConfigError, load_settings

DEMO_ACCOUNT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"  # the sandbox demo's eBay account
DEV_COMMANDS = "m2e_devtools.commands"


class CommandError(Exception):
    """A command cannot run as asked; the message says why (exit code 1, no traceback)."""


def _run(args: argparse.Namespace) -> int:
    from shared.bootstrap import run

    spec = SERVICES[args.service]
    settings = load_settings(spec.settings)
    return run(spec.build(settings), settings)


def _tick(args: argparse.Namespace) -> int:
    from services.order_poller.settings import OrderPollerSettings
    from services.order_poller.tick import tick

    return asyncio.run(tick(load_settings(OrderPollerSettings), args.every, args.topic))


def _produce(args: argparse.Namespace) -> int:
    from services import ops

    events: Sequence[tuple[str | None, Any]]
    if args.file is not None:
        events = ops.read_jsonl(args.file.read_text())
    else:
        events = ops.samples(args.topic, args.sample, args.account)
    sent = asyncio.run(ops.produce(load_settings(), args.topic, events))
    print(f"published {sent} records to {args.topic}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    from services import ops

    return asyncio.run(ops.tail(load_settings(), args.topic, args.last, args.follow))


def _dlq(args: argparse.Namespace) -> int:
    from services import ops

    report = asyncio.run(
        ops.replay(load_settings(), args.topic, ops.parse_filters(args.filter), args.dry_run)
    )
    verb = "would send" if args.dry_run else "sent"
    print(
        f"read {report.read} DLQ records, {report.matched} matched, {verb} "
        f"{report.matched if args.dry_run else report.sent}: {report.by_topic}"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from services.status import StatusError, status

    try:
        return asyncio.run(status(args.url, args.json))
    except StatusError as exc:
        raise CommandError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2e-sync", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a worker (settings from the environment)")
    run.add_argument("service", choices=sorted(SERVICES))
    run.set_defaults(func=_run)

    ticks = sub.add_parser("tick", help="publish order-poll ticks for the configured accounts")
    ticks.add_argument(
        "--every", type=float, default=None, help="repeat every SECONDS (default: once)"
    )
    ticks.add_argument("--topic", default=SERVICES["order-poller"].topic)
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
        default=DEMO_ACCOUNT,
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

    state = sub.add_parser(
        "status", help="which accounts are unhealthy now, from running workers' /accounts"
    )
    state.add_argument(
        "--url",
        action="append",
        default=[],
        help="a worker's base URL, e.g. http://10.0.0.7:8000 (repeat; default: the local demo)",
    )
    state.add_argument("--json", action="store_true", help="print the merged rows as JSON")
    state.set_defaults(func=_status)

    try:  # the developer tools are not in the worker image
        dev = importlib.import_module(DEV_COMMANDS)
    except ModuleNotFoundError as exc:
        if exc.name is None or not DEV_COMMANDS.startswith(exc.name):
            raise
    else:
        dev.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CommandError, ConfigError, ValueError) as exc:
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
