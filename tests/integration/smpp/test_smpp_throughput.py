"""Throughput sanity check between two processes (printed, not asserted on time).

The target is >= 5,000 submit_sm/s through one link at window >= 10 on a 2-core machine;
a shared or loaded machine gives less, so the test only checks that every message went
through and reports the rate (run with -s to see it).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsgate.smpp import BindTransmitter, CommandStatus, SessionConfig, SubmitSm, connect

SERVER = Path(__file__).with_name("smpp_sink_server.py")


@pytest.fixture
async def sink_port() -> AsyncIterator[int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SERVER),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        yield int(line)
    finally:
        process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("window", [10, 50])
async def test_submit_sm_rate_between_two_processes(sink_port: int, window: int) -> None:
    count = 5000
    session = await connect("127.0.0.1", sink_port, config=SessionConfig(window=window))
    try:
        await session.bind(BindTransmitter(system_id="bench", password="x"))
        message = SubmitSm(source_addr="1851", destination_addr="359888123456")
        started, cpu = time.perf_counter(), time.process_time()
        futures = []
        for n in range(count):
            pdu = SubmitSm(
                source_addr=message.source_addr,
                destination_addr=message.destination_addr,
                short_message=b"throughput %d" % n,
            )
            futures.append(await session.start_request(pdu))
        responses = await asyncio.gather(*futures)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await session.unbind()
    assert all(r.command_status == CommandStatus.ESME_ROK for r in responses)
    assert len({r.message_id for r in responses}) == count
    print(
        f"\nwindow {window}: {count / elapsed:,.0f} submit_sm/s, "
        f"client CPU {cpu / count * 1e6:.0f} us per message"
    )
