"""``smsgate simulator``: the built-in operator alone, SMPP and its HTTP control API, until
SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from smsgate.simulator.config import SimulatorConfig
from smsgate.simulator.simulator import Simulator

log = logging.getLogger(__name__)


class _ControlServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns SIGINT and SIGTERM and stops
    the SMPP side and the HTTP side together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_simulator(
    config: SimulatorConfig, *, host: str, smpp_port: int, http_port: int
) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    simulator = Simulator(config)
    smpp_port = await simulator.start(host, smpp_port)
    server = _ControlServer(
        uvicorn.Config(
            simulator.http_app(),
            host=host,
            port=http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    http = loop.create_task(server.serve(), name="simulator http")
    try:
        while not server.started:
            if http.done():
                await http  # it failed to start (port taken): raise its error
                raise RuntimeError("the control API stopped before it started")
            await asyncio.sleep(0.01)
        http_port = server.servers[0].sockets[0].getsockname()[1]
        operators = ", ".join(op.id for op in config.operators) or "none"
        log.info(
            "simulator: SMPP on %s:%d (operators: %s), control API on http://%s:%d/sim",
            host,
            smpp_port,
            operators,
            host,
            http_port,
        )
        print(f"SMPP listening on {host}:{smpp_port}", flush=True)
        print(f"HTTP control API on http://{host}:{http_port}/sim", flush=True)
        stop = loop.create_task(stopping.wait())
        await asyncio.wait({http, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await http
        await simulator.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("simulator: stopped")
