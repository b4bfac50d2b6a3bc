"""``python -m smsgate.worker``: run the outbox worker alone in this process.

``--handlers module:function`` (repeatable) adds the handlers that ``function(runtime)``
returns to the default ones; SIGTERM or SIGINT stops the worker gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Callable, Mapping

from smsgate import eventloop
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.runtime import Runtime
from smsgate.worker.handler import Handler
from smsgate.worker.runner import Worker, default_handlers

HandlerFactory = Callable[[Runtime], Mapping[str, Handler]]


def _load_factory(spec: str) -> HandlerFactory:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise argparse.ArgumentTypeError(f"expected module:function, got {spec!r}")
    factory: HandlerFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m smsgate.worker", description=__doc__)
    parser.add_argument("--database-url", help="overrides SMSGATE_DATABASE_URL")
    parser.add_argument("--worker-id", help="default: host:pid:random")
    parser.add_argument("--concurrency", type=int, help="jobs of single-job kinds at once")
    parser.add_argument(
        "--batch-size", type=int, default=200, help="jobs per batch of batch kinds (webhooks)"
    )
    parser.add_argument("--poll-seconds", type=float)
    parser.add_argument("--lease-seconds", type=float)
    parser.add_argument("--handlers", action="append", default=[], metavar="MODULE:FUNCTION")
    parser.add_argument(
        "--no-default-handlers", action="store_true", help="run only the --handlers kinds"
    )
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = Settings(**overrides)
    runtime = build_runtime(settings)
    handlers: dict[str, Handler] = {} if args.no_default_handlers else default_handlers(runtime)
    for spec in args.handlers:
        handlers.update(_load_factory(spec)(runtime))
    worker = Worker(
        runtime,
        handlers,
        worker_id=args.worker_id,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        poll_seconds=args.poll_seconds,
        lease_seconds=args.lease_seconds,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        await runtime.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    eventloop.run(_main(args))


if __name__ == "__main__":
    main()
