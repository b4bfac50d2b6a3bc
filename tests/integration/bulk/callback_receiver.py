"""A merchant's DLR script on 127.0.0.1 (a free port): records every callback's form fields."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import h11


@dataclass
class CallbackReceiver:
    sock: socket.socket
    received: list[dict[str, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    @classmethod
    async def start(cls) -> CallbackReceiver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        receiver = cls(sock)
        receiver._server = await asyncio.start_server(receiver._serve, sock=sock)
        return receiver

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/dlr"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_for(self, count: int, seconds: float = 20.0) -> list[dict[str, str]]:
        """Wait (bounded) until ``count`` callbacks arrived; returns them all."""
        deadline = asyncio.get_running_loop().time() + seconds
        while len(self.received) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.5))
        return list(self.received)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        target = b""
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    target, body = event.target, bytearray()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    query = target.decode().partition("?")[2]
                    self.received.append(
                        dict(parse_qsl(body.decode() or query, keep_blank_values=True))
                    )
                    self.arrived.set()
                    headers = [("content-length", "2")]
                    writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
                    writer.write(conn.send(h11.Data(data=b"OK")))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    if conn.our_state is h11.MUST_CLOSE:
                        break
                    conn.start_next_cycle()
                else:
                    break
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        finally:
            writer.close()
