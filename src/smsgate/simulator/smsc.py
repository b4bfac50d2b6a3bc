"""The simulated SMSC on the wire: it accepts ESME connections, authenticates binds against the
provisioned operators and answers every SMPP 3.4 operation an ESME may send.

The path of a submit_sm is kept short because the simulator must not be what limits a link
benchmark: no logging per message, one inbox append, the reassembler only for parts, and
receipts handed to the dispatcher, which sends them in batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from smsgate.simulator.config import SimOperator
from smsgate.simulator.dispatch import ReceiptDispatcher
from smsgate.simulator.handsets import decode_text
from smsgate.simulator.messages import (
    MtPart,
    body_of,
    receipt_pdu,
    sar_of,
    smpp_time,
)
from smsgate.simulator.receipts import ids_for
from smsgate.simulator.scenarios import Reaction
from smsgate.simulator.state import SimState
from smsgate.simulator.tracking import Tracked
from smsgate.smpp.constants import CommandStatus
from smsgate.smpp.errors import PduError
from smsgate.smpp.pdu import (
    BindReceiver,
    BindReceiverResp,
    BindRequest,
    BindResponse,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    Response,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    UnsuccessSme,
)
from smsgate.smpp.session import HandlerResult, IncomingPdu, SessionConfig, SmppSession
from smsgate.smpp.states import BindState, Role

log = logging.getLogger(__name__)
S = CommandStatus

SMSC_SYSTEM_ID = "smsgate-sim"
# Many receipts may be in flight to a fast ESME (SimulatorOptions.window); its own window
# limits what it sends us.
SESSION_CONFIG = SessionConfig(window=1000, handler_concurrency=1024)
_RECEIVING = (BindState.BOUND_RX, BindState.BOUND_TRX)
_BIND_RESPONSES: dict[type[BindRequest[Any]], type[BindResponse]] = {
    BindTransmitter: BindTransmitterResp,
    BindReceiver: BindReceiverResp,
    BindTransceiver: BindTransceiverResp,
}


class NoReceiver(Exception):
    """No receiver or transceiver session of the operator is bound."""


class Smsc:
    def __init__(self, state: SimState, *, session_config: SessionConfig | None = None) -> None:
        self.state = state
        window = state.config.options.window
        self.session_config = session_config or replace(SESSION_CONFIG, window=window)
        self.dispatcher = ReceiptDispatcher(self, limit=state.config.options.pending_receipts_limit)
        self.connections: set[Connection] = set()
        self._by_operator: dict[str, list[Connection]] = {}
        self._turn = 0
        self._server: asyncio.Server | None = None
        self._bind_event = asyncio.Event()

    # --- listening ---------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> int:
        """Start accepting ESMEs; return the port (useful when ``port`` is 0)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        self.dispatcher.start()
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            await connection.session.close("simulator stopping")
        await self.dispatcher.stop()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = SmppSession(reader, writer, role=Role.SMSC, config=self.session_config)
        connection = Connection(self, session, writer)
        session.handler = connection.handle
        self.connections.add(connection)
        session.start()
        try:
            await session.wait_closed()
        finally:
            self.connections.discard(connection)
            if connection.operator is not None:
                sessions = self._by_operator.get(connection.operator.id, [])
                if connection in sessions:
                    sessions.remove(connection)

    # --- sessions by operator ------------------------------------------------------------------

    def bound(self, connection: Connection) -> None:
        assert connection.operator is not None
        self._by_operator.setdefault(connection.operator.id, []).append(connection)
        # wake whoever waits for a bind; the session is bound once the handler returns
        event, self._bind_event = self._bind_event, asyncio.Event()
        asyncio.get_running_loop().call_soon(event.set)

    async def next_bind(self) -> None:
        """Return after the next successful bind of any operator."""
        await self._bind_event.wait()

    def receiver_for(self, operator: str, preferred: SmppSession | None) -> SmppSession | None:
        if preferred is not None and preferred.state in _RECEIVING:
            return preferred
        candidates = [
            c.session for c in self._by_operator.get(operator, ()) if c.session.state in _RECEIVING
        ]
        if not candidates:
            return None
        self._turn += 1
        return candidates[self._turn % len(candidates)]

    def sessions(self) -> list[dict[str, Any]]:
        return [
            {
                "operator": c.operator.id if c.operator else None,
                "state": c.session.state.value,
                "peer": c.session.peername,
                "outstanding": c.session.outstanding,
            }
            for c in self.connections
        ]

    async def deliver(
        self, operator: str, pdus: list[DeliverSm], *, response_timeout: float
    ) -> list[DeliverSmResp]:
        """Send deliver_sm PDUs (an MO's parts) on one receiver of ``operator``, in order, and
        return their responses. Raises NoReceiver or an SmppError (ResponseTimeout...)."""
        session = self.receiver_for(operator, None)
        if session is None:
            raise NoReceiver(operator)
        # A copy per request: the session numbers each one, and a redelivery (the same PDU
        # twice) must go out under two sequence numbers.
        futures = [await session.start_request(replace(pdu), response_timeout) for pdu in pdus]
        return list(await asyncio.gather(*futures))


class Connection:
    """One ESME connection: its session, and the operator once bound."""

    def __init__(self, smsc: Smsc, session: SmppSession, writer: asyncio.StreamWriter) -> None:
        self.smsc = smsc
        self.state = smsc.state
        self.session = session
        self.writer = writer
        self.operator: SimOperator | None = None
        self._handlers: dict[type[Any], Callable[[Any], Awaitable[Response]]] = {
            SubmitSm: self._submit,
            DataSm: self._submit,
            SubmitMulti: self._submit_multi,
            QuerySm: self._query_sm,
            CancelSm: self._cancel_sm,
            ReplaceSm: self._replace_sm,
            BindTransmitter: self._bind,
            BindReceiver: self._bind,
            BindTransceiver: self._bind,
        }

    def handle(self, pdu: IncomingPdu) -> HandlerResult:
        # The hot path, a submit_sm with no fault switched on, is answered at once: a plain
        # result saves the session a task per message. Everything else runs as a coroutine.
        if type(pdu) is SubmitSm and not self.state.faults:
            return self._submit_sm_now(pdu)
        handler = self._handlers.get(type(pdu))
        if handler is None:
            raise PduError(S.ESME_RINVCMDID, f"{pdu.command_id.name} is not handled")
        return handler(pdu)

    def _submit_sm_now(self, pdu: SubmitSm) -> HandlerResult:
        message_id, receipt, tracked = self._accept_message(pdu)
        response = SubmitSmResp(message_id=message_id)
        if receipt is None:
            return response
        return self._after_receipt(receipt, tracked, response)

    async def _after_receipt(
        self, receipt: DeliverSm, tracked: Tracked, response: Response
    ) -> Response:
        await self._receipt_first(receipt, tracked)
        return response

    # --- binds -------------------------------------------------------------------------------

    async def _bind(self, pdu: BindRequest[Any]) -> Response:
        state = self.state
        operator = state.config.authenticate(pdu.system_id, pdu.password, pdu.system_type)
        if operator is None:
            state.counters.bind_failures += 1
            known = any(op.system_id == pdu.system_id for op in state.config.operators)
            # SMPP 3.4 §5.1.3: ESME_RINVPASWD for a known system_id, else ESME_RINVSYSID
            return pdu.error_response(S.ESME_RINVPASWD if known else S.ESME_RINVSYSID)
        refusal = state.faults.bind_refusal(operator.id) if state.faults else None
        if refusal is not None:
            state.counters.bind_failures += 1
            return pdu.error_response(refusal)
        self.operator = operator
        self.smsc.bound(self)
        state.counters.binds += 1
        log.info("%s bound as %s (%s)", self.session.peername, operator.id, type(pdu).__name__)
        if not isinstance(pdu, BindTransmitter):
            # after this handler returns the session is bound; then stored receipts may flow
            asyncio.get_running_loop().call_soon(self.smsc.dispatcher.receiver_bound, operator.id)
        return _BIND_RESPONSES[type(pdu)](system_id=SMSC_SYSTEM_ID)

    # --- submissions -------------------------------------------------------------------------

    async def _submit(self, pdu: SubmitSm | DataSm) -> Response:
        response_class = SubmitSmResp if isinstance(pdu, SubmitSm) else DataSmResp
        refusal = await self._faults() if self.state.faults else None
        if refusal:
            return response_class(command_status=refusal)
        message_id, receipt, tracked = self._accept_message(pdu)
        await self._receipt_first(receipt, tracked)
        return response_class(message_id=message_id)

    def _accept_message(self, pdu: SubmitSm | DataSm) -> tuple[str, DeliverSm | None, Tracked]:
        # data_sm is submit_sm with its text in message_payload (SMPP 3.4 §4.7)
        if isinstance(pdu, SubmitSm):
            body = body_of(pdu.short_message, pdu.tlvs)
        else:
            body = pdu.tlvs.message_payload or b""
        return self._accept(
            pdu.source_addr,
            pdu.destination_addr,
            pdu.esm_class,
            pdu.data_coding,
            body,
            pdu.tlvs,
            pdu.registered_delivery,
        )

    async def _submit_multi(self, pdu: SubmitMulti) -> Response:
        refusal = await self._faults() if self.state.faults else None
        if refusal:
            return SubmitMultiResp(command_status=refusal)
        if not pdu.dest_addresses:
            return SubmitMultiResp(command_status=S.ESME_RINVNUMDESTS)
        number = next(self.state.message_numbers)
        body = body_of(pdu.short_message, pdu.tlvs)
        unsuccessful: list[UnsuccessSme] = []
        message_id = ""
        for dest in pdu.dest_addresses:
            if isinstance(dest, DistributionList):
                # the simulator keeps no distribution lists (SMPP 3.4 §4.5.1)
                unsuccessful.append(UnsuccessSme(0, 0, dest.name, S.ESME_RINVDLNAME))
                continue
            message_id, receipt, tracked = self._accept(
                pdu.source_addr,
                dest.address,
                pdu.esm_class,
                pdu.data_coding,
                body,
                pdu.tlvs,
                pdu.registered_delivery,
                number=number,
            )
            await self._receipt_first(receipt, tracked)
        if not message_id:
            return SubmitMultiResp(command_status=S.ESME_RINVDLNAME)
        return SubmitMultiResp(message_id=message_id, unsuccess_smes=tuple(unsuccessful))

    async def _faults(self) -> int:
        """Apply the switched-on fault scenarios; a non-zero status refuses the submission."""
        assert self.operator is not None
        reaction = self.state.faults.submit_reaction(self.operator.id)
        if reaction is None:
            return 0
        refusal = await self._react(reaction)
        if refusal:
            self.state.counters.submits_refused += 1
        return refusal

    async def _react(self, reaction: Reaction) -> int:
        if reaction.delay:
            await asyncio.sleep(reaction.delay)
        if reaction.garbage:
            # Written past the session on purpose: it frames only valid PDUs. The session
            # buffers whole PDUs only, so this never lands inside one.
            self.writer.write(reaction.garbage)
        if reaction.drop:
            await self.session.close("fault scenario: connection dropped")
            return S.ESME_RSYSERR  # never written: the session is closed
        return reaction.status

    def _accept(
        self,
        source: str,
        destination: str,
        esm_class: int,
        data_coding: int,
        body: bytes,
        tlvs: Tlvs,
        registered_delivery: int,
        *,
        number: int | None = None,
    ) -> tuple[str, DeliverSm | None, Tracked]:
        """Accept one message part: inbox, tracking, and its receipt, scheduled after the
        delay or (with before_resp) returned for the caller to send before answering.

        Returns the part's message_id, that receipt, and the tracked message.
        """
        if not destination:
            raise PduError(S.ESME_RINVDSTADR, "destination_addr is empty")
        operator = self.operator
        assert operator is not None
        state = self.state
        if number is None:
            number = next(state.message_numbers)
        message_id, receipt_id = ids_for(number, operator.dlr_id_format)
        part = MtPart(
            operator.id,
            source,
            destination,
            esm_class,
            data_coding,
            body,
            sar_of(tlvs) if tlvs.sar_msg_ref_num is not None else None,
            message_id,
        )
        now = state.clock.now()
        settings = state.dlr_settings(operator.id)
        delay = 0.0 if settings.before_resp else settings.delay_ms / 1000
        final_at = now + timedelta(seconds=delay) if delay else now
        tracked = Tracked(
            message_id,
            operator.id,
            source,
            destination,
            now,
            final_at,
            settings.message_state,
            settings.error_code,
        )
        state.tracker.add(tracked)
        state.counters.submits += 1
        if state.mailroom.deliver(part, now) is not None:
            state.counters.messages_completed += 1
        if not settings.wanted(registered_delivery):
            return message_id, None, tracked
        receipt = receipt_pdu(
            part=part,
            receipt_id=receipt_id,
            submitted_at=now,
            done_at=final_at,
            settings=settings,
        )
        if settings.before_resp:
            return message_id, receipt, tracked
        self.smsc.dispatcher.schedule(
            operator.id, receipt, delay, tracked=tracked, preferred=self.session
        )
        return message_id, None, tracked

    async def _receipt_first(self, receipt: DeliverSm | None, tracked: Tracked) -> None:
        """With before_resp: put the receipt on the wire now, before the caller's answer."""
        if receipt is not None:
            assert self.operator is not None
            await self.smsc.dispatcher.send_now(
                self.operator.id, receipt, tracked=tracked, preferred=self.session
            )

    # --- query, cancel, replace ----------------------------------------------------------------

    def _tracked(self, message_id: str) -> Tracked | None:
        assert self.operator is not None
        return self.state.tracker.get(self.operator.id, message_id)

    async def _query_sm(self, pdu: QuerySm) -> Response:
        self.state.counters.queries += 1
        tracked = self._tracked(pdu.message_id)
        if tracked is None:
            return QuerySmResp(command_status=S.ESME_RQUERYFAIL)
        now = self.state.clock.now()
        final = tracked.is_final_at(now)
        return QuerySmResp(
            message_id=pdu.message_id,
            final_date=smpp_time(min(now, tracked.final_at)) if final else "",
            message_state=tracked.state_at(now),
            error_code=tracked.error_code if final else 0,
        )

    async def _cancel_sm(self, pdu: CancelSm) -> Response:
        self.state.counters.cancels += 1
        tracked = self._tracked(pdu.message_id)
        # SMPP 3.4 §4.9: only a message still pending delivery can be cancelled
        if tracked is None or tracked.is_final_at(self.state.clock.now()):
            return CancelSmResp(command_status=S.ESME_RCANCELFAIL)
        tracked.cancelled = True
        return CancelSmResp()

    async def _replace_sm(self, pdu: ReplaceSm) -> Response:
        self.state.counters.replaces += 1
        tracked = self._tracked(pdu.message_id)
        if tracked is None or tracked.is_final_at(self.state.clock.now()):
            return ReplaceSmResp(command_status=S.ESME_RREPLACEFAIL)
        # replace_sm carries no data_coding (SMPP 3.4 §4.10.1): the SMSC default alphabet
        tracked.text = decode_text(pdu.short_message, 0)
        handset = self.state.handsets.find(tracked.destination)
        if handset is not None:
            for index, message in enumerate(handset.inbox):
                if tracked.message_id in message.message_ids:
                    handset.inbox[index] = replace(message, decoded=tracked.text)
        return ReplaceSmResp()
