"""SMPP sessions over TCP: ``connect`` for the ESME side, ``serve`` for the SMSC side."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .options import Handler, SessionConfig
from .session import SmppSession
from .states import Role

log = logging.getLogger(__name__)

HandlerFactory = Callable[[SmppSession], Handler]
"""Builds the request handler of each accepted session (and may keep the session, e.g. to
send it deliver_sm later)."""


async def connect(
    host: str,
    port: int,
    *,
    handler: Handler | None = None,
    config: SessionConfig | None = None,
    connect_timeout: float = 10.0,
    name: str = "",
) -> SmppSession:
    """Open a TCP connection to an SMSC and start an ESME-side session (not yet bound)."""
    async with asyncio.timeout(connect_timeout):
        reader, writer = await asyncio.open_connection(host, port)
    try:
        session = SmppSession(
            reader, writer, role=Role.ESME, handler=handler, config=config, name=name
        )
    except BaseException:
        writer.close()
        raise
    session.start()
    return session


class SmppServer:
    """A listening SMSC-side endpoint and the sessions it has accepted."""

    def __init__(
        self, handler_factory: HandlerFactory, config: SessionConfig | None = None
    ) -> None:
        self._handler_factory = handler_factory
        self._config = config
        self.sessions: set[SmppSession] = set()
        self._server: asyncio.Server | None = None

    @property
    def server(self) -> asyncio.Server:
        if self._server is None:
            raise RuntimeError("not listening")
        return self._server

    @property
    def port(self) -> int:
        """The port listened on (useful after asking for port 0)."""
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def listen(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            session = SmppSession(reader, writer, role=Role.SMSC, config=self._config)
            session.handler = self._handler_factory(session)
        except Exception:
            log.exception("cannot start a session for %s", writer.get_extra_info("peername"))
            writer.close()
            return
        self.sessions.add(session)
        session.start()
        try:
            await session.wait_closed()
        except asyncio.CancelledError:
            # asyncio.streams reports a cancelled connection callback as an error; this task
            # only mirrors the session's life, so end the session and finish quietly.
            await session.close("server task cancelled")
        finally:
            self.sessions.discard(session)

    async def close(self) -> None:
        """Stop listening and close every session (outstanding requests fail)."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            await session.close("server closing")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def __aenter__(self) -> SmppServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(
    handler_factory: HandlerFactory,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: SessionConfig | None = None,
) -> SmppServer:
    """Listen for ESMEs; each connection gets an SMSC-side session and its own handler."""
    server = SmppServer(handler_factory, config)
    await server.listen(host, port)
    return server
