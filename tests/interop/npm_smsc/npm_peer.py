"""The npm ``smpp`` package as an SMSC (tests/peers/smsc.js), driven over its stdin/stdout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

PEERS = Path(__file__).resolve().parents[2] / "peers"


def require_node_peer() -> str:
    node = shutil.which("node")
    if node is None or not (PEERS / "node_modules" / "smpp").is_dir():
        pytest.skip("the npm smpp peer is not installed: run scripts/install-test-peers")
    return node


class NpmSmsc:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.port = 0

    @classmethod
    async def start(cls, system_id: str, password: str) -> NpmSmsc:
        node = require_node_peer()
        process = await asyncio.create_subprocess_exec(
            node,
            str(PEERS / "smsc.js"),
            "0",
            system_id,
            password,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(PEERS),
        )
        peer = cls(process)
        (listening,) = await peer.wait_for("listening")
        peer.port = int(listening["port"])
        return peer

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            self.events.append(json.loads(line))
            self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]

    async def wait_for(
        self, kind: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The first ``count`` events of ``kind``, waiting at most ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                self._changed.clear()
                if self._reader.done():
                    raise AssertionError(f"the peer exited; events: {self.events}")
                await self._changed.wait()
        return self.of(kind)[:count]

    async def deliver(self, ref: str, **fields: Any) -> int:
        """Send a deliver_sm and return the command_status of our deliver_sm_resp."""
        assert self._process.stdin is not None
        command = {"cmd": "deliver", "ref": ref, "fields": fields}
        self._process.stdin.write((json.dumps(command) + "\n").encode())
        await self._process.stdin.drain()
        async with asyncio.timeout(10):
            while True:
                for event in self.of("deliver_sm_resp"):
                    if event["ref"] == ref:
                        return int(event["command_status"])
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await self._process.wait()
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
