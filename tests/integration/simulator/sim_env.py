"""Helpers for simulator tests: a provisioning document, and a test ESME built on our own SMPP
session that records everything the simulated SMSC delivers to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from smsgate.simulator import Simulator, SimulatorOptions, config_from_mapping
from smsgate.smpp.pdu import (
    BindReceiver,
    BindRequest,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    DeliverSmResp,
    Request,
    Response,
    SubmitSm,
    SubmitSmResp,
)
from smsgate.smpp.session import IncomingPdu, SessionConfig, SmppSession
from smsgate.smpp.tcp import connect

OPERATOR = "sim-bg"
SYSTEM_ID = "smsgate"
PASSWORD = "secret"
HANDSET = "359888123456"
WAIT = 5.0  # seconds: the bound of every wait for real I/O


def document(**operator: Any) -> dict[str, Any]:
    return {
        "operators": [
            {
                "id": OPERATOR,
                "country": "BG",
                "kind": "smpp",
                "host": "127.0.0.1",
                "port": 2775,
                "system_id": SYSTEM_ID,
                "password": PASSWORD,
                **operator,
            },
            {
                "id": "sim-ro",
                "country": "RO",
                "kind": "smpp",
                "host": "127.0.0.1",
                "port": 2775,
                "system_id": "ro-gw",
                "password": "ro-pw",
                "dlr_id_format": "hex",
            },
        ],
        "short_numbers": [
            {"number": "1851", "operator": OPERATOR, "price": "2.40", "currency": "BGN"},
            {"number": "1919", "operator": OPERATOR, "price": "1.20", "currency": "BGN"},
            {"number": "1919", "operator": "sim-ro", "price": "5.00", "currency": "RON"},
        ],
    }


def make_simulator(options: SimulatorOptions | None = None, **operator: Any) -> Simulator:
    return Simulator(config_from_mapping(document(**operator), options=options))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """The simulator of ``document()``, its SMSC listening on a free port of 127.0.0.1."""
    simulator = make_simulator()
    await simulator.start("127.0.0.1", 0)
    try:
        yield simulator
    finally:
        await simulator.stop()


class TestEsme:
    """An ESME that answers every deliver_sm with ESME_ROK (or ``answer_status``)."""

    __test__ = False  # not a test class for pytest

    def __init__(self) -> None:
        self.delivered: asyncio.Queue[DeliverSm] = asyncio.Queue()
        self.events: list[str] = []
        self.answer_status = 0
        self.session: SmppSession | None = None

    async def _handle(self, pdu: IncomingPdu) -> Response | None:
        if isinstance(pdu, DeliverSm):
            self.events.append("deliver_sm")
            self.delivered.put_nowait(pdu)
            return DeliverSmResp(command_status=self.answer_status)
        return None

    async def connect(self, port: int, *, window: int = 10) -> SmppSession:
        config = SessionConfig(window=window, enquire_link_interval=None, inactivity_timeout=None)
        self.session = await connect("127.0.0.1", port, handler=self._handle, config=config)
        return self.session

    async def bind(
        self,
        kind: type[BindRequest[Any]] = BindTransceiver,
        system_id: str = SYSTEM_ID,
        password: str = PASSWORD,
    ) -> Response:
        assert self.session is not None
        async with asyncio.timeout(WAIT):
            return await self.session.send_request(kind(system_id=system_id, password=password))

    async def request(self, pdu: Request[Any]) -> Any:
        assert self.session is not None
        async with asyncio.timeout(WAIT):
            return await self.session.send_request(pdu)

    async def submit(self, text: bytes = b"Hello", **fields: Any) -> SubmitSmResp:
        fields.setdefault("source_addr", "SHOP")
        fields.setdefault("destination_addr", HANDSET)
        fields.setdefault("registered_delivery", 1)
        response: SubmitSmResp = await self.request(SubmitSm(short_message=text, **fields))
        return response

    async def next_delivery(self, wait: float = WAIT) -> DeliverSm:
        async with asyncio.timeout(wait):
            return await self.delivered.get()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


@asynccontextmanager
async def bound_esme(
    port: int, kind: type[BindRequest[Any]] = BindTransceiver, **credentials: str
) -> AsyncIterator[TestEsme]:
    esme = TestEsme()
    await esme.connect(port)
    try:
        response = await esme.bind(kind, **credentials)
        assert response.command_status == 0, response
        yield esme
    finally:
        await esme.close()


__all__ = [
    "HANDSET",
    "OPERATOR",
    "PASSWORD",
    "SYSTEM_ID",
    "WAIT",
    "BindReceiver",
    "BindTransceiver",
    "BindTransmitter",
    "TestEsme",
    "bound_esme",
    "document",
    "make_simulator",
]
