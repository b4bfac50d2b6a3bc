"""A merchant's callback receiver on 127.0.0.1 (a free port), and a runtime to deliver to it.

The receiver is a small HTTP/1.1 server on asyncio + h11 that answers from a script of status
codes and records every request raw (method, target, headers, body) and the connection it
came on. Its port is bound before it listens, so "connection refused" comes first if a test
wants it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import h11
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.domain.signing import new_signing_secret
from smsgate.runtime import Runtime
from smsgate.store.models import Merchant, Service

SECRET = new_signing_secret(bytes(range(24)))


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int
    status: int

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


@dataclass
class Receiver:
    sock: socket.socket
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    body: bytes = b"ok"
    stall: asyncio.Event | None = None  # when set up, answers wait for it
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, sock=self.sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        else:
            self.sock.close()

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                    continue
                if isinstance(event, h11.Request):
                    request, body = event, bytearray()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert request is not None
                    status = self.statuses.pop(0) if self.statuses else 200
                    if self.stall is not None:
                        await self.stall.wait()
                    self.requests.append(
                        Received(
                            method=request.method.decode(),
                            target=request.target.decode(),
                            headers={k.decode(): v.decode() for k, v in request.headers},
                            body=bytes(body),
                            connection=number,
                            status=status,
                        )
                    )
                    headers = [("content-length", str(len(self.body)))]
                    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                    writer.write(conn.send(h11.Data(data=self.body)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    if conn.our_state is h11.MUST_CLOSE:
                        break
                    conn.start_next_cycle()
                else:  # ConnectionClosed, PAUSED
                    break
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    recv = Receiver(sock=sock)
    yield recv
    await recv.close()


@pytest.fixture
def clock() -> FakeClock:
    # Near the real time: standardwebhooks' verify() accepts timestamps within 5 minutes.
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def runtime(
    database_url: str,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
) -> Runtime:
    """Merchant 1 with service 201 (signed with ``SECRET``); callbacks may reach 127.0.0.1."""
    runtime = Runtime(
        settings=Settings(
            database_url=database_url, webhook_allow_private=True, webhook_timeout_seconds=5.0
        ),
        engine=engine,
        sessions=sessionmaker,
        clock=clock,
    )
    await add_service(runtime)
    return runtime


@pytest.fixture
def secret() -> str:
    return SECRET


async def add_service(
    runtime: Runtime, *, merchant_id: int = 1, service_id: int = 201, secret: str = SECRET
) -> None:
    now = runtime.clock.now()
    async with runtime.sessions.begin() as session:
        if await session.get(Merchant, merchant_id) is None:
            session.add(
                Merchant(
                    id=merchant_id,
                    login=f"shop{merchant_id}",
                    password_hash="x",
                    currency="BGN",
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
        session.add(
            Service(
                id=service_id,
                merchant_id=merchant_id,
                type="bulk",
                signing_secret=secret,
                created_at=now,
                updated_at=now,
            )
        )
