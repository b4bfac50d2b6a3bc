"""The built-in operator: an SMSC over SMPP with handsets, billing and calls, as one object.

simulator = Simulator(load_config("shop.toml"))
port = await simulator.start("127.0.0.1", 0)
...  # bind an ESME to port, then:
await simulator.inject_mo("359888123456", "1851", "KOD", operator="sim-bg")
simulator.inbox("359888123456")
app.include_router(simulator.http_router())  # the control API under /sim
await simulator.stop()
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smsgate.domain.clock import Clock
from smsgate.domain.errors import TextError
from smsgate.simulator.calls import CallEvent, CallOutcome, CallSink, HttpCallSink
from smsgate.simulator.config import SimShortNumber, SimulatorConfig
from smsgate.simulator.handsets import Charge, Handset, InboxMessage
from smsgate.simulator.messages import make_tlvs
from smsgate.simulator.receipts import DlrSettings, ids_for
from smsgate.simulator.scenarios import ActiveFault, Monotonic, make_scenario
from smsgate.simulator.smsc import NoReceiver, Smsc
from smsgate.simulator.state import SimState
from smsgate.smpp.errors import ResponseTimeout, SmppError
from smsgate.smpp.pdu import DeliverSm

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI


log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0


class SimulatorError(Exception):
    """A request the simulator cannot carry out; ``code`` and ``http_status`` say why."""

    def __init__(self, code: str, detail: str, http_status: int) -> None:
        self.code = code
        self.detail = detail
        self.http_status = http_status
        super().__init__(f"{code}: {detail}")


@dataclass(frozen=True, slots=True)
class MoResult:
    """An injected MO: where it went and what the ESME answered to each part."""

    operator: str
    msisdn: str
    short_number: str
    price: str
    currency: str
    parts: int
    statuses: list[int] = field(default_factory=list)  # one command_status per part sent
    message_ids: list[str] = field(default_factory=list)  # with SimulatorOptions.mo_message_ids

    @property
    def status(self) -> str:
        if not self.statuses:
            return "queued"
        return "acknowledged" if not any(self.statuses) else "refused"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "operator": self.operator,
            "msisdn": self.msisdn,
            "short_number": self.short_number,
            "price": self.price,
            "currency": self.currency,
            "parts": self.parts,
            "command_statuses": self.statuses,
            "message_ids": self.message_ids,
        }


class Simulator:
    """The simulated operator(s) of one provisioning file. Run it on the caller's loop."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Clock | None = None,
        call_sink: CallSink | None = None,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.config = config
        self.state = SimState(config, clock=clock, monotonic=monotonic)
        self._call_sink = call_sink
        self._http_sink: HttpCallSink | None = None
        self._smsc: Smsc | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.host = ""
        self.smpp_port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", smpp_port: int = 0) -> int:
        """Listen for ESMEs on ``host:smpp_port`` (0: any free port); return the port."""
        if self._smsc is not None:
            raise RuntimeError("simulator already started")
        self._smsc = Smsc(self.state)
        self.smpp_port = await self._smsc.listen(host, smpp_port)
        self.host = host
        housekeeping = asyncio.get_running_loop().create_task(self._housekeeping())
        self._background.add(housekeeping)
        if self._call_sink is None and self.config.options.gateway_url:
            self._http_sink = HttpCallSink(self.config.options.gateway_url, self._intake_secret)
            self._call_sink = self._http_sink
        return self.smpp_port

    async def stop(self) -> None:
        """Close every session, stop sending receipts, release the HTTP client."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._smsc is not None:
            await self._smsc.close()
            self._smsc = None
        if self._http_sink is not None:
            await self._http_sink.aclose()
            self._call_sink = self._http_sink = None

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            self.state.mailroom.expire(self.state.clock.now())

    async def __aenter__(self) -> Simulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def smsc(self) -> Smsc:
        if self._smsc is None:
            raise RuntimeError("simulator not started")
        return self._smsc

    @property
    def running(self) -> bool:
        return self._smsc is not None

    def receiver_bound(self, operator: str) -> bool:
        """Whether a receiver or transceiver of ``operator`` is bound now."""
        return self._smsc is not None and self._smsc.receiver_for(operator, None) is not None

    async def wait_for_receiver(self, operator: str) -> None:
        """Return once a receiver of ``operator`` is bound (wrap it in asyncio.timeout)."""
        while not self.receiver_bound(operator):
            await self.smsc.next_bind()

    # --- handsets ------------------------------------------------------------------------------

    def inbox(self, msisdn: str) -> list[InboxMessage]:
        """What the handset received, oldest first."""
        return self.state.handsets.inbox(msisdn)

    def handset(self, msisdn: str) -> Handset:
        return self.state.handsets.get(msisdn)

    def set_balance(self, msisdn: str, amount_minor: int | None, currency: str | None) -> Handset:
        return self.state.handsets.set_balance(msisdn, amount_minor, currency)

    def charge(
        self, *, operator: str, msisdn: str, amount_minor: int, currency: str, reference: str
    ) -> tuple[Charge, bool]:
        """Charge a handset (a subscription rebill); (the charge, whether it is a repeat)."""
        self._operator(operator)
        charge, repeat = self.state.handsets.charge(
            operator=operator,
            msisdn=msisdn,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
            at=self.state.clock.now(),
        )
        if not repeat:
            self.state.counters.charges += 1
        return charge, repeat

    # --- MOs -----------------------------------------------------------------------------------

    async def inject_mo(
        self,
        msisdn: str,
        short_number: str,
        text: str,
        operator: str | None = None,
        *,
        wait: bool = True,
        ack_timeout: float = 10.0,
        copies: int = 1,
    ) -> MoResult:
        """Send an MO from handset ``msisdn`` to ``short_number`` as deliver_sm to a bound
        receiver of the operator; priced by the short number and charged to the handset when
        the ESME acknowledges every part.

        ``wait``: return after the ESME answered (its statuses are in the result), at most
        ``ack_timeout`` seconds; otherwise right after queuing. ``copies`` > 1 delivers the
        same PDUs again, as an SMSC redelivers an MO whose response it did not get (the
        subscriber is charged once). Raises SimulatorError:
        unknown_short_number (404), ambiguous_short_number (422), invalid_text (422),
        no_receiver (409), insufficient_funds (402), timeout (504), link_error (502).
        """
        tariff = self._tariff(short_number, operator)
        handsets = self.state.handsets
        payable = handsets.can_pay(msisdn, tariff.price_minor, tariff.currency)
        if payable != "ok":
            raise SimulatorError(payable, f"{msisdn} cannot pay {tariff.price}", 402)
        try:
            pdus = self.state.mo_builder.parts(
                msisdn=msisdn.removeprefix("+"), short_number=short_number, text=text
            )
        except TextError as exc:
            raise SimulatorError("invalid_text", str(exc), 422) from None
        smsc = self.smsc
        if smsc.receiver_for(tariff.operator, None) is None:
            raise SimulatorError(
                "no_receiver", f"no receiver or transceiver of {tariff.operator} is bound", 409
            )
        if not 1 <= copies <= 10:
            raise SimulatorError("invalid_copies", "copies must be between 1 and 10", 422)
        self.state.counters.mos_injected += 1
        result = MoResult(
            tariff.operator, msisdn, short_number, tariff.price, tariff.currency, len(pdus)
        )
        if self.config.options.mo_message_ids:
            self._name_mo_parts(tariff.operator, pdus, result)
        delivery = self._deliver_mo(result, pdus * copies, ack_timeout)
        if not wait:
            task = asyncio.get_running_loop().create_task(delivery)
            self._background.add(task)
            task.add_done_callback(self._mo_delivered)
            return result
        return await delivery

    async def _deliver_mo(
        self, result: MoResult, pdus: list[DeliverSm], ack_timeout: float
    ) -> MoResult:
        try:
            async with asyncio.timeout(ack_timeout):
                responses = await self.smsc.deliver(
                    result.operator, pdus, response_timeout=ack_timeout
                )
        except NoReceiver:
            raise SimulatorError("no_receiver", f"{result.operator} went away", 409) from None
        except (TimeoutError, ResponseTimeout):
            detail = f"no deliver_sm_resp in {ack_timeout}s"
            raise SimulatorError("timeout", detail, 504) from None
        except SmppError as exc:
            raise SimulatorError("link_error", str(exc), 502) from None
        self.state.counters.mo_parts_sent += len(pdus)
        result.statuses.extend(r.command_status for r in responses)
        if result.status == "acknowledged":
            tariff = self._tariff(result.short_number, result.operator)
            self.state.handsets.charge(
                operator=result.operator,
                msisdn=result.msisdn,
                amount_minor=tariff.price_minor,
                currency=tariff.currency,
                reference=f"mo:{uuid.uuid4().hex}",
                at=self.state.clock.now(),
            )
        return result

    def _name_mo_parts(self, operator: str, pdus: list[DeliverSm], result: MoResult) -> None:
        # Some SMSCs name their MOs with receipted_message_id, so a gateway can tell a
        # redelivery from a new message; the link uses that id when it is there.
        entry = self.config.operator(operator)
        id_format = entry.dlr_id_format if entry else None
        for pdu in pdus:
            message_id = ids_for(next(self.state.message_numbers), id_format)[1]
            pdu.tlvs = make_tlvs(receipted_message_id=message_id)
            result.message_ids.append(message_id)

    def _mo_delivered(self, task: asyncio.Task[MoResult]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("MO not delivered: %s", task.exception())

    def _tariff(self, short_number: str, operator: str | None) -> SimShortNumber:
        if operator is not None:
            self._operator(operator)
            tariff = self.config.short_number(short_number, operator)
            if tariff is None:
                raise SimulatorError(
                    "unknown_short_number", f"{short_number} is not a number of {operator}", 404
                )
            return tariff
        matches = [sn for sn in self.config.short_numbers if sn.number == short_number]
        if not matches:
            raise SimulatorError("unknown_short_number", f"no short number {short_number}", 404)
        if len(matches) > 1:
            names = ", ".join(sn.operator for sn in matches)
            raise SimulatorError(
                "ambiguous_short_number", f"{short_number} is on {names}: name the operator", 422
            )
        return matches[0]

    def _operator(self, operator: str) -> None:
        if self.config.operator(operator) is None:
            raise SimulatorError("unknown_operator", f"no operator {operator!r}", 404)

    # --- calls ---------------------------------------------------------------------------------

    async def place_call(
        self, caller: str, called: str, operator: str | None = None
    ) -> tuple[CallEvent, CallOutcome]:
        """Tell the gateway that ``caller`` dialled ``called``; return the event and the
        gateway's answer. Raises SimulatorError: unknown_operator (404), ambiguous_operator
        (422), no_gateway (409); CallForwardingError when the gateway is unreachable."""
        if self._call_sink is None:
            raise SimulatorError("no_gateway", "start with a gateway URL to forward calls", 409)
        if operator is None:
            candidates = {sn.operator for sn in self.config.short_numbers if sn.number == called}
            if not candidates and len(self.config.operators) == 1:
                candidates = {self.config.operators[0].id}
            if len(candidates) != 1:
                raise SimulatorError(
                    "ambiguous_operator",
                    f"name the operator that carries the call to {called}",
                    422,
                )
            operator = candidates.pop()
        self._operator(operator)
        event = CallEvent(operator, f"sim-{uuid.uuid4().hex}", caller.removeprefix("+"), called)
        self.state.counters.calls += 1
        return event, await self._call_sink(event)

    def _intake_secret(self, operator: str) -> str | None:
        if self.config.options.intake_secret:
            return self.config.options.intake_secret
        entry = self.config.operator(operator)
        return entry.intake_secret if entry else None

    # --- faults and receipts -------------------------------------------------------------------

    def add_fault(
        self, scenario: str, params: dict[str, Any] | None = None, operator: str | None = None
    ) -> ActiveFault:
        """Switch a fault scenario on (ScenarioError for a bad name or parameters)."""
        if operator is not None:
            self._operator(operator)
        return self.state.faults.add(make_scenario(scenario, params), operator)

    def clear_faults(self, operator: str | None = None) -> int:
        return self.state.faults.clear(operator)

    def set_dlr(self, settings: DlrSettings, operator: str | None = None) -> None:
        if operator is not None:
            self._operator(operator)
        self.state.set_dlr(settings, operator)

    # --- reporting -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        counters = self.state.counters.to_json()
        receipts = self._smsc.dispatcher.counters if self._smsc else None
        return {
            **counters,
            "dlrs_sent": receipts.sent if receipts else 0,
            "dlrs_acknowledged": receipts.acknowledged if receipts else 0,
            "dlrs_failed": receipts.failed if receipts else 0,
            "dlrs_dropped": receipts.dropped if receipts else 0,
            "dlrs_pending": self._smsc.dispatcher.pending if self._smsc else 0,
            "partials_pending": self.state.mailroom.pending_partials,
            "partials_expired": self.state.mailroom.partials_expired,
            "handsets": len(self.state.handsets),
            "faults": len(self.state.faults.list()),
            "sessions": self._smsc.sessions() if self._smsc else [],
        }

    # --- HTTP ----------------------------------------------------------------------------------

    def http_router(self) -> APIRouter:
        """The control API (prefix ``/sim``) to include in another FastAPI app."""
        from smsgate.simulator.control import build_router

        return build_router(self)

    def http_app(self) -> FastAPI:
        """A FastAPI app serving only the control API."""
        from smsgate.simulator.control import build_app

        return build_app(self)
