"""Receiving MOs: store each once, route it to its service, let the service act, all in the
caller's transaction.

The caller (the SMPP link or the HTTP intake) acknowledges the operator only after the
transaction that runs ``receive_mos`` has committed: DESIGN.md §2.1, nothing accepted is lost.

A batch of MOs (what an SMPP link received meanwhile) costs a fixed number of statements, not
a number per MO: the short numbers and services of the whole batch are read at once
(``mo_routing.py``), the MOs are inserted in one statement (an MO already stored, by its
operator message id, is a duplicate and changes nothing), each service type handles all its
MOs at once (:class:`MoBatchHandler`), the replies are queued in one statement and the MOs'
outcomes written in one more (on PostgreSQL both in one: a round trip to the server costs
more than the work; ``mo_replies.py``). A handler that takes one MO at a time
(:data:`MoItemHandler`) is still called once per MO, with the ORM objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol, cast, runtime_checkable

from sqlalchemy import Table, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain import routing
from smsgate.metrics import MO_RECEIVED
from smsgate.services.mo_replies import ROUTE_COLUMNS, write_replies
from smsgate.services.mo_routing import ServiceView, ShortNumberView, load_short_numbers
from smsgate.services.mt import (
    NewMt,
    QueuedMt,
)
from smsgate.store.models import MoMessage, Service, ShortNumber
from smsgate.store.row_sets import insert_rows, update_rows


@dataclass(frozen=True)
class IncomingMo:
    """An MO as an operator hands it over, before we have stored it."""

    operator_id: str
    operator_message_id: str
    short_number: str
    msisdn: str
    text: str
    kind: str = "sms"  # sms | call
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MoOutcome:
    mo_id: int
    duplicate: bool
    status: str
    service_id: int | None
    item_handled: bool = False
    """A one-at-a-time handler (:data:`MoItemHandler`) acted on it: it may have queued MTs
    of its own beside the replies (which name the MO in ``mt_messages.mo_id``)."""


@dataclass(frozen=True)
class MoContext:
    """What a one-at-a-time MO handler gets besides the stored MO and the service."""

    short_number: ShortNumber | None
    now: datetime


@dataclass(slots=True)
class RoutedMo:
    """An MO just stored and routed to a service, as a :class:`MoBatchHandler` sees it.

    The handler sets ``status`` (``routed`` until then), adds to ``details`` and may give a
    ``reply``, which is queued with the batch's other replies; its MT id is then written to
    ``details[reply.mt_id_key]`` when that key is set.
    """

    mo_id: int
    incoming: IncomingMo
    service: ServiceView
    short_number: ShortNumberView
    status: str = "routed"
    details: dict[str, Any] = field(default_factory=dict)
    reply: Reply | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    merchant_id: int | None = None
    service_id: int | None = None
    idempotency_key: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    mt_id_key: str | None = None


@runtime_checkable
class MoBatchHandler(Protocol):
    """A service type's reaction to the MOs of a batch routed to its services (issue codes,
    ...). It runs inside the MOs' transaction, writes what it owns and must not commit. The
    MOs' rows may not show their routes yet (:func:`unrouted_rows`): it reads the
    :class:`RoutedMo` given, not them."""

    async def handle_batch(
        self, session: AsyncSession, mos: Sequence[RoutedMo], now: datetime
    ) -> None: ...


# A service type's reaction to one MO routed to it; same rules as MoBatchHandler.
MoItemHandler = Callable[[AsyncSession, MoMessage, Service, MoContext], Awaitable[None]]
MoHandler = MoItemHandler | MoBatchHandler


class UnknownShortNumber(Exception):
    """The operator sent an MO to a number we have not provisioned on that operator."""


async def receive_mo(
    session: AsyncSession,
    incoming: IncomingMo,
    *,
    now: datetime,
    handlers: Mapping[str, MoHandler],
) -> MoOutcome:
    """Store, route and handle one MO in the caller's transaction; a redelivery is a no-op."""
    (outcome,) = await receive_mos(session, [incoming], now=now, handlers=handlers)
    return outcome


async def receive_mos(
    session: AsyncSession,
    incomings: Sequence[IncomingMo],
    *,
    now: datetime,
    handlers: Mapping[str, MoHandler],
    numbers: Mapping[tuple[str, str], ShortNumberView] | None = None,
    inserted: Mapping[tuple[str, str], int] | None = None,
) -> list[MoOutcome]:
    """Store, route and handle MOs in the caller's transaction; one outcome per MO, in order.

    An MO whose (operator, operator message id) is stored already, before or earlier in
    ``incomings``, is a duplicate: it gets the stored MO's outcome and changes nothing.
    ``numbers``: the short numbers of the MOs (``mo_routing.py``) when the caller has read
    them in this transaction already; ``inserted``: the MOs' ids by (operator id, operator
    message id) when the caller has inserted their rows (:func:`unrouted_rows`) in this
    transaction already, those left out being duplicates.
    """
    outcomes, _ = await _receive(session, incomings, now, handlers, numbers, inserted, claim=False)
    return outcomes


async def receive_mos_with_replies(
    session: AsyncSession,
    incomings: Sequence[IncomingMo],
    *,
    now: datetime,
    handlers: Mapping[str, MoHandler],
    numbers: Mapping[tuple[str, str], ShortNumberView] | None = None,
    inserted: Mapping[tuple[str, str], int] | None = None,
    claim: bool,
) -> tuple[list[MoOutcome], list[QueuedMt]]:
    """:func:`receive_mos`, and the replies it queued; with ``claim`` they are written claimed
    for the caller to send (``queue_replies``). MTs a one-at-a-time handler queued are left to
    claim."""
    return await _receive(session, incomings, now, handlers, numbers, inserted, claim=claim)


def unrouted_rows(incomings: Sequence[IncomingMo], now: datetime) -> list[dict[str, Any]]:
    """The rows of ``incomings`` (the first copy of each) as an MO to no known number is
    stored, for a caller to insert (as :data:`MO_TABLE`, :data:`MO_COLUMNS`, ignoring the
    duplicates of (operator id, operator message id)) with a statement of its own: one round
    trip less on PostgreSQL. :func:`receive_mos` (``inserted``) writes their routes."""
    return [_mo_row(mo, None, None, now) for mo in _firsts(incomings).values()]


def _firsts(incomings: Sequence[IncomingMo]) -> dict[tuple[str, str], IncomingMo]:
    firsts: dict[tuple[str, str], IncomingMo] = {}
    for mo in incomings:
        firsts.setdefault((mo.operator_id, mo.operator_message_id), mo)
    return firsts


async def _receive(
    session: AsyncSession,
    incomings: Sequence[IncomingMo],
    now: datetime,
    handlers: Mapping[str, MoHandler],
    numbers: Mapping[tuple[str, str], ShortNumberView] | None,
    inserted: Mapping[tuple[str, str], int] | None,
    *,
    claim: bool,
) -> tuple[list[MoOutcome], list[QueuedMt]]:
    if not incomings:
        return [], []
    # Statements below go to the connection directly: the ORM's pending work goes first.
    await session.flush()
    connection = await session.connection()
    if numbers is None:
        numbers = await load_short_numbers(
            connection, {(mo.operator_id, mo.short_number) for mo in incomings}
        )
    firsts = _firsts(incomings)
    routes = {key: _route(numbers, mo) for key, mo in firsts.items()}
    # Routes left to write: those of MOs the caller inserted as unrouted.
    unwritten: dict[int, dict[str, Any]] = {}
    if inserted is None:
        new_ids = {
            (op, message_id): mo_id
            for op, message_id, mo_id in await insert_rows(
                connection,
                _MO,
                [_mo_row(mo, *routes[key], now) for key, mo in firsts.items()],
                columns=_MO_COLUMNS,
                conflict=("operator_id", "operator_message_id"),
                returning=("operator_id", "operator_message_id", "id"),
            )
        }
    else:
        new_ids = dict(inserted)
        unwritten = {
            mo_id: {"id": mo_id, **_mo_row(firsts[key], *routes[key], now)}
            for key, mo_id in new_ids.items()
        }
    outcomes = await _stored_before([key for key in firsts if key not in new_ids], session)
    routed: dict[str, list[RoutedMo]] = {}
    replies: dict[int, tuple[NewMt, str | None]] = {}
    for key, mo_id in new_ids.items():
        mo = firsts[key]
        number, service = routes[key]
        if number is not None and service is not None:
            details = dict(mo.details)
            routed.setdefault(service.type, []).append(
                RoutedMo(mo_id, mo, service, number, details=details)
            )
            continue
        outcomes[key] = MoOutcome(mo_id, False, "unrouted", None)
        if number is not None and number.default_reply:
            replies[mo_id] = (_reply_mt(mo, Reply(number.default_reply)), None)
    item_types = {
        service_type
        for service_type in routed
        if service_type in handlers and not isinstance(handlers[service_type], MoBatchHandler)
    }
    if unwritten and (item_types or connection.dialect.name == "sqlite"):
        # A one-at-a-time handler reads its MO as stored: the routes are written first.
        await update_rows(
            connection,
            _MO,
            [{name: row[name] for name in ("id", *ROUTE_COLUMNS)} for row in unwritten.values()],
            key="id",
            columns=ROUTE_COLUMNS,
        )
        unwritten = {}
    changed = await _handle(session, routed, handlers, now)
    for routed_mo in changed:
        if routed_mo.reply is not None:
            mt = _reply_mt(routed_mo.incoming, routed_mo.reply)
            replies[routed_mo.mo_id] = (mt, routed_mo.reply.mt_id_key)
    for service_type, mos in routed.items():
        for routed_mo in mos:
            outcomes[_key(routed_mo.incoming)] = MoOutcome(
                routed_mo.mo_id,
                False,
                routed_mo.status,
                routed_mo.service.id,
                item_handled=service_type in item_types,
            )
    queued = await write_replies(session, connection, changed, replies, now, claim, unwritten)
    return _in_order(incomings, firsts, outcomes), queued


async def _handle(
    session: AsyncSession,
    routed: Mapping[str, list[RoutedMo]],
    handlers: Mapping[str, MoHandler],
    now: datetime,
) -> list[RoutedMo]:
    """Run each service type's handler; returns the MOs whose outcome is left to write."""
    changed: list[RoutedMo] = []
    for service_type, mos in routed.items():
        handler = handlers.get(service_type)
        if isinstance(handler, MoBatchHandler):
            await handler.handle_batch(session, mos, now)
            changed.extend(mos)
        elif handler is not None:
            for routed_mo in mos:
                routed_mo.status = await _handle_one(session, handler, routed_mo, now)
    return changed


def _in_order(
    incomings: Sequence[IncomingMo],
    firsts: Mapping[tuple[str, str], IncomingMo],
    outcomes: Mapping[tuple[str, str], MoOutcome],
) -> list[MoOutcome]:
    """One outcome per MO given; a later copy of an MO in the same batch is its duplicate."""
    results: list[MoOutcome] = []
    for mo in incomings:
        key = _key(mo)
        outcome = outcomes[key]
        if firsts[key] is not mo and not outcome.duplicate:
            outcome = MoOutcome(outcome.mo_id, True, outcome.status, outcome.service_id)
        label = "duplicate" if outcome.duplicate else outcome.status
        MO_RECEIVED.labels(mo.operator_id, label).inc()
        results.append(outcome)
    return results


def _key(mo: IncomingMo) -> tuple[str, str]:
    return (mo.operator_id, mo.operator_message_id)


def _route(
    numbers: Mapping[tuple[str, str], ShortNumberView], mo: IncomingMo
) -> tuple[ShortNumberView | None, ServiceView | None]:
    number = numbers.get((mo.operator_id, mo.short_number))
    return number, number.route(mo.text) if number is not None else None


_MO: Final = cast(Table, MoMessage.__table__)
MO_TABLE: Final = _MO
_MO_COLUMNS: Final = (
    "operator_id",
    "operator_message_id",
    "short_number",
    "msisdn",
    "text",
    "keyword",
    "kind",
    "service_id",
    "status",
    "price_minor",
    "currency",
    "received_at",
    "details",
)
MO_COLUMNS: Final = _MO_COLUMNS


def _mo_row(
    mo: IncomingMo, number: ShortNumberView | None, service: ServiceView | None, now: datetime
) -> dict[str, Any]:
    return {
        "operator_id": mo.operator_id,
        "operator_message_id": mo.operator_message_id,
        "short_number": mo.short_number,
        "msisdn": mo.msisdn,
        "text": mo.text,
        "keyword": routing.keyword_of(mo.text),
        "kind": mo.kind,
        "service_id": service.id if service is not None else None,
        "status": "unrouted" if service is None else "routed",
        "price_minor": number.price_minor if number is not None else 0,
        "currency": number.currency if number is not None else "",
        "received_at": now,
        "details": mo.details,
    }


def _reply_mt(mo: IncomingMo, reply: Reply) -> NewMt:
    return NewMt(
        operator_id=mo.operator_id,
        msisdn=mo.msisdn,
        sender=mo.short_number,
        text=reply.text,
        merchant_id=reply.merchant_id,
        service_id=reply.service_id,
        idempotency_key=reply.idempotency_key,
        details=reply.details,
    )


async def _stored_before(
    keys: list[tuple[str, str]], session: AsyncSession
) -> dict[tuple[str, str], MoOutcome]:
    """The outcomes of MOs stored by an earlier transaction: their redeliveries'."""
    if not keys:
        return {}
    rows = await session.execute(
        select(
            MoMessage.operator_id,
            MoMessage.operator_message_id,
            MoMessage.id,
            MoMessage.status,
            MoMessage.service_id,
        ).where(tuple_(MoMessage.operator_id, MoMessage.operator_message_id).in_(keys))
    )
    return {
        (row.operator_id, row.operator_message_id): MoOutcome(
            row.id, True, row.status, row.service_id
        )
        for row in rows
    }


async def _handle_one(
    session: AsyncSession, handler: MoItemHandler, routed: RoutedMo, now: datetime
) -> str:
    """A one-at-a-time handler, with the ORM objects it expects; returns the MO's status."""
    mo = await session.get_one(MoMessage, routed.mo_id)
    service = await session.get_one(Service, routed.service.id)
    number = await session.get_one(ShortNumber, routed.short_number.id)
    await handler(session, mo, service, MoContext(short_number=number, now=now))
    await session.flush()
    return mo.status
