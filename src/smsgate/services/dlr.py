"""Delivery receipts: keep every receipt, match it to the part it reports on, move the message's
state, and tell the merchant.

A receipt can arrive before the submit_sm_resp that tells us the operator's message id
(DESIGN.md §2.2, immediate DLRs). Such a receipt is stored unmatched and applied the moment the
link records the id (``apply_early_receipts``); it is never dropped or retried on a timer.

Receipts come in batches (a link hands over everything that arrived while its last
transaction ran), so the work is done set-wise: one lookup of the parts, one insert of the
reports, one update of the parts and one of the messages, one insert of the callbacks and one
of their delivery jobs, whatever the batch's size. The receipts of a batch are applied in
order, in memory, each by the rules of a single receipt (``_Batch.apply``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from smsgate.domain.delivery import aggregate, is_final
from smsgate.metrics import DLR_RECEIVED
from smsgate.services.webhooks import NewEvent, emit_many
from smsgate.store.models import DeliveryReport, MtMessage, MtPart, Service

_MT = cast(Table, MtMessage.__table__)
_PARTS = cast(Table, MtPart.__table__)
_REPORTS = cast(Table, DeliveryReport.__table__)
_SERVICES = cast(Table, Service.__table__)
_CHUNK: Final = 500  # values per IN (...) list

# What a DLR callback calls a state (docs/bulk.md, "DLR callbacks"): "submitted" is the SMSC's
# acceptance of the submit_sm, which merchants know as "accepted".
_CALLBACK_STATUS = {"submitted": "accepted"}
DLR_EVENT = "message.dlr"
# The link's own outcomes of a submit, which notify_submit_outcomes reports.
_SUBMIT_OUTCOMES: Final = frozenset({"submitted", "failed", "unknown"})
# What the link concludes when it cannot get a message (or part of it) out.
_GIVEN_UP: Final = frozenset({"failed", "unknown"})


@dataclass(frozen=True)
class IncomingReceipt:
    operator_id: str
    operator_message_id: str
    state: str  # in our vocabulary: see domain/delivery.py
    error_code: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceiptOutcome:
    report_id: int
    matched: bool
    mt_id: int | None


async def receive_receipt(
    session: AsyncSession, receipt: IncomingReceipt, *, now: datetime
) -> ReceiptOutcome:
    """Store one receipt and apply it if its part is known; runs in the caller's transaction."""
    return (await receive_receipts(session, [receipt], now=now))[0]


async def receive_receipts(
    session: AsyncSession, receipts: Sequence[IncomingReceipt], *, now: datetime
) -> list[ReceiptOutcome]:
    """Store receipts and apply those whose part is known, in order, in the caller's
    transaction; one outcome per receipt, in order. The caller tells the link about the
    unmatched ones (their part may be written moments later: ``apply_early_receipts``)."""
    if not receipts:
        return []
    for (operator_id, state), count in Counter(
        (receipt.operator_id, receipt.state) for receipt in receipts
    ).items():
        DLR_RECEIVED.labels(operator_id, state).inc(count)
    connection = await session.connection()
    batch = _Batch(now)
    await batch.load_parts(
        connection, {(receipt.operator_id, receipt.operator_message_id) for receipt in receipts}
    )
    parts = [batch.part(receipt.operator_id, receipt.operator_message_id) for receipt in receipts]
    report_ids = (
        await connection.execute(
            insert(_REPORTS).returning(_REPORTS.c.id, sort_by_parameter_order=True),
            [
                {
                    "operator_id": receipt.operator_id,
                    "operator_message_id": receipt.operator_message_id,
                    "mt_part_id": part.id if part is not None else None,
                    "state": receipt.state,
                    "error_code": receipt.error_code,
                    "received_at": now,
                    "raw": receipt.raw,
                }
                for receipt, part in zip(receipts, parts, strict=True)
            ],
        )
    ).scalars()
    outcomes = []
    for receipt, part, report_id in zip(receipts, parts, report_ids, strict=True):
        if part is None:
            outcomes.append(ReceiptOutcome(report_id, False, None))
            continue
        batch.apply(part, receipt.state, receipt.error_code)
        outcomes.append(ReceiptOutcome(report_id, True, part.mt_id))
    await batch.write(session, connection)
    return outcomes


async def apply_early_receipts(
    session: AsyncSession, operator_id: str, message_ids: Iterable[str], *, now: datetime
) -> int:
    """Apply the stored, unmatched receipts for these operator message ids, whose parts the
    link has just written; oldest receipt first. Returns how many were applied."""
    connection = await session.connection()
    wanted = list(dict.fromkeys(message_ids))
    reports: list[Any] = []
    for start in range(0, len(wanted), _CHUNK):
        rows = await connection.execute(
            select(
                _REPORTS.c.id,
                _REPORTS.c.operator_message_id,
                _REPORTS.c.state,
                _REPORTS.c.error_code,
            ).where(
                _REPORTS.c.operator_id == operator_id,
                _REPORTS.c.mt_part_id.is_(None),
                _REPORTS.c.operator_message_id.in_(wanted[start : start + _CHUNK]),
            )
        )
        reports.extend(rows.all())
    if not reports:
        return 0
    reports.sort(key=lambda report: report.id)
    batch = _Batch(now)
    await batch.load_parts(connection, {(operator_id, r.operator_message_id) for r in reports})
    matched = [
        (report, part)
        for report in reports
        if (part := batch.part(operator_id, report.operator_message_id)) is not None
    ]
    if not matched:
        return 0
    await connection.execute(
        update(_REPORTS)
        .where(_REPORTS.c.id == bindparam("b_id"))
        .values(mt_part_id=bindparam("b_part")),
        [{"b_id": report.id, "b_part": part.id} for report, part in matched],
    )
    for report, part in matched:
        batch.apply(part, report.state, report.error_code)
    await batch.write(session, connection)
    return len(matched)


async def attach_operator_message_id(
    session: AsyncSession, part: MtPart, operator_message_id: str, *, now: datetime
) -> None:
    """Record the id a submit_sm_resp gave a part, then apply receipts that came before it."""
    part.operator_message_id = operator_message_id
    await session.flush()
    await apply_early_receipts(session, part.operator_id, [operator_message_id], now=now)


async def notify_submit_outcomes(
    session: AsyncSession, mt_ids: Sequence[int], *, now: datetime
) -> int:
    """Callbacks for MTs whose submit outcome a link has just written: ``accepted`` (the SMSC
    took every part: ``submitted``), ``failed`` (the SMSC refused a part) or ``unknown``.

    Call it in the transaction that wrote the outcomes, after writing their ``mt_parts`` and
    before applying receipts that came early (their callbacks follow this one). An MT whose
    state is no longer the link's outcome (a receipt has moved it) is not reported again.
    MTs of services without a DLR URL cost two small queries per batch and nothing else.
    Returns the number of callbacks queued.
    """
    connection = await session.connection()
    batch = _Batch(now)
    ids = list(dict.fromkeys(mt_ids))
    service_ids: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        rows = await connection.execute(
            select(_MT.c.service_id)
            .where(_MT.c.id.in_(ids[start : start + _CHUNK]), _MT.c.service_id.is_not(None))
            .distinct()
        )
        service_ids.update(rows.scalars())
    await batch.load_services(connection, service_ids)
    with_url = sorted(batch.services)
    if not with_url:
        return 0
    await batch.load_messages(connection, ids, with_url)
    for mt in sorted(batch.messages.values(), key=lambda mt: mt.id):
        if mt.status not in _SUBMIT_OUTCOMES:
            continue
        parts = mt.sorted_rows()
        if mt.parts > 1:
            for part in parts:
                if part.status in _SUBMIT_OUTCOMES:
                    batch.callback(mt, _part_fields(mt, part, now))
        batch.callback(mt, _message_fields(mt, parts, now))
    await emit_many(session, batch.events, now=now)
    return len(batch.events)


def callback_status(state: str) -> str:
    return _CALLBACK_STATUS.get(state, state)


# --- the batch: rows loaded once, changed in memory, written once -----------------------------


@dataclass(slots=True, eq=False)
class _Part:
    id: int
    mt_id: int
    part_no: int
    operator_message_id: str | None
    status: str
    error_code: str
    submitted_at: datetime | None
    done_at: datetime | None
    changed: bool = False


@dataclass(slots=True, eq=False)
class _Message:
    id: int
    merchant_id: int | None
    service_id: int | None
    msisdn: str
    parts: int
    status: str
    error_code: str
    created_at: datetime
    rows: dict[int, _Part] = field(default_factory=dict)  # by part_no
    changed: bool = False

    def sorted_rows(self) -> list[_Part]:
        return [self.rows[number] for number in sorted(self.rows)]

    def whole_state(self) -> str:
        """The message's state from all its parts.

        When the link gave up on the message (``failed``, ``unknown``), that verdict counts as
        one more part: it stands for the parts that never left, whose rows were never written
        (an MT refused on a retry keeps only the rows of the parts an earlier attempt sent)
        or only stand for them (``submitting`` rows of an MT the link's last owner was
        sending when it stopped). Otherwise a receipt for the one part that went out would
        make the whole message look delivered, or send it back to ``submitting``. The rows
        alone are not enough to tell: how many parts go out depends on the link (with
        ``message_payload`` a long message is one submit_sm).
        """
        states = [part.status for part in self.rows.values()]
        if self.status in _GIVEN_UP:
            states.append(self.status)
        return aggregate(states)


_PART_COLUMNS = (
    _PARTS.c.id,
    _PARTS.c.mt_id,
    _PARTS.c.part_no,
    _PARTS.c.operator_message_id,
    _PARTS.c.status,
    _PARTS.c.error_code,
    _PARTS.c.submitted_at,
    _PARTS.c.done_at,
)
_MESSAGE_COLUMNS = (
    _MT.c.id,
    _MT.c.merchant_id,
    _MT.c.service_id,
    _MT.c.msisdn,
    _MT.c.parts,
    _MT.c.status,
    _MT.c.error_code,
    _MT.c.created_at,
)
_PART_UPDATE = (
    update(_PARTS)
    .where(_PARTS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        error_code=bindparam("b_error"),
        done_at=bindparam("b_done"),
    )
)
_MESSAGE_UPDATE = (
    update(_MT)
    .where(_MT.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        error_code=bindparam("b_error"),
        updated_at=bindparam("b_now"),
    )
)


class _Batch:
    """The messages and parts one batch touches, and the callbacks its changes make."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.messages: dict[int, _Message] = {}
        self.services: dict[int, tuple[str, str]] = {}  # id: (DLR URL, method), with a URL
        self.events: list[NewEvent] = []
        self._by_message_id: dict[tuple[str, str], _Part] = {}
        self._changed_parts: list[_Part] = []

    def part(self, operator_id: str, operator_message_id: str) -> _Part | None:
        return self._by_message_id.get((operator_id, operator_message_id))

    async def load_parts(
        self, connection: AsyncConnection, keys: Iterable[tuple[str, str]]
    ) -> None:
        """The parts these (operator, operator message id) name, with their messages, all the
        other parts of their multipart messages, and their services' DLR URLs."""
        by_operator: dict[str, list[str]] = {}
        for operator_id, message_id in keys:
            by_operator.setdefault(operator_id, []).append(message_id)
        width = len(_PART_COLUMNS)
        for operator_id, message_ids in by_operator.items():
            for start in range(0, len(message_ids), _CHUNK):
                rows = await connection.execute(
                    select(*_PART_COLUMNS, *_MESSAGE_COLUMNS)
                    .join(_MT, _MT.c.id == _PARTS.c.mt_id)
                    .where(
                        _PARTS.c.operator_id == operator_id,
                        _PARTS.c.operator_message_id.in_(message_ids[start : start + _CHUNK]),
                    )
                    .order_by(_PARTS.c.id)
                )
                for row in rows:
                    mt = self.messages.get(row[1])
                    if mt is None:
                        mt = self.messages[row[1]] = _Message(*row[width:])
                    part = mt.rows.get(row[2])
                    if part is None:
                        part = mt.rows[row[2]] = _Part(*row[:width])
                    # Ids are the SMSC's and should be unique; if not, the latest part wins.
                    self._by_message_id[(operator_id, row[3])] = part
        multipart = [mt.id for mt in self.messages.values() if mt.parts > len(mt.rows)]
        for start in range(0, len(multipart), _CHUNK):
            rows = await connection.execute(
                select(*_PART_COLUMNS).where(_PARTS.c.mt_id.in_(multipart[start : start + _CHUNK]))
            )
            for row in rows:
                self.messages[row[1]].rows.setdefault(row[2], _Part(*row[:width]))
        await self.load_services(
            connection, {mt.service_id for mt in self.messages.values() if mt.service_id}
        )

    async def load_messages(
        self, connection: AsyncConnection, mt_ids: list[int], service_ids: list[int]
    ) -> None:
        """These MTs of these services, with every row of their parts."""
        width = len(_MESSAGE_COLUMNS)
        for start in range(0, len(mt_ids), _CHUNK):
            rows = await connection.execute(
                select(*_MESSAGE_COLUMNS, *_PART_COLUMNS)
                .outerjoin(_PARTS, _PARTS.c.mt_id == _MT.c.id)
                .where(
                    _MT.c.id.in_(mt_ids[start : start + _CHUNK]),
                    _MT.c.service_id.in_(service_ids),
                )
            )
            for row in rows:
                mt = self.messages.get(row[0])
                if mt is None:
                    mt = self.messages[row[0]] = _Message(*row[:width])
                if row[width] is not None:
                    mt.rows[row[width + 2]] = _Part(*row[width:])

    async def load_services(self, connection: AsyncConnection, service_ids: set[int]) -> None:
        wanted = sorted(service_ids - set(self.services))
        for start in range(0, len(wanted), _CHUNK):
            rows = await connection.execute(
                select(
                    _SERVICES.c.id,
                    _SERVICES.c.callback_urls,
                    _SERVICES.c.settings,
                    _SERVICES.c.callback_method,
                ).where(_SERVICES.c.id.in_(wanted[start : start + _CHUNK]))
            )
            for service_id, callback_urls, settings, method in rows:
                url = (callback_urls or {}).get("dlr") or (settings or {}).get("dlr_url")
                if url:
                    self.services[service_id] = (str(url), method)

    def apply(self, part: _Part, state: str, error_code: str) -> None:
        """One receipt's change: a final or equal state never moves a part back."""
        if is_final(part.status) or part.status == state:
            return
        part.status = state
        part.error_code = error_code
        if is_final(state):
            part.done_at = self.now
        if not part.changed:
            part.changed = True
            self._changed_parts.append(part)
        mt = self.messages[part.mt_id]
        whole = mt.whole_state()
        whole_changed = whole != mt.status
        mt.status = whole
        mt.changed = True
        if error_code:
            mt.error_code = error_code
        # A one-part message gets one callback per change (scope=message); a multipart one
        # gets one per part and change (scope=part) and one more when the whole moves.
        if mt.parts > 1:
            self.callback(mt, _part_fields(mt, part, self.now))
        if mt.parts == 1 or whole_changed:
            self.callback(mt, _message_fields(mt, mt.sorted_rows(), self.now))

    def callback(self, mt: _Message, fields: dict[str, str]) -> None:
        if mt.merchant_id is None or mt.service_id is None:
            return
        service = self.services.get(mt.service_id)
        if service is None:
            return
        url, method = service
        self.events.append(NewEvent(mt.merchant_id, mt.service_id, DLR_EVENT, url, fields, method))

    async def write(self, session: AsyncSession, connection: AsyncConnection) -> None:
        now = self.now
        if self._changed_parts:
            await connection.execute(
                _PART_UPDATE,
                [
                    {
                        "b_id": part.id,
                        "b_status": part.status,
                        "b_error": part.error_code,
                        "b_done": part.done_at,
                    }
                    for part in self._changed_parts
                ],
            )
        changed = [mt for mt in self.messages.values() if mt.changed]
        if changed:
            await connection.execute(
                _MESSAGE_UPDATE,
                [
                    {"b_id": mt.id, "b_status": mt.status, "b_error": mt.error_code, "b_now": now}
                    for mt in changed
                ],
            )
        await emit_many(session, self.events, now=now)


# --- callback fields (docs/bulk.md, "DLR callbacks") -----------------------------------------


def _common_fields(mt: _Message, now: datetime) -> dict[str, str]:
    return {
        "id": str(mt.id),
        "user_id": str(mt.merchant_id),
        "service_id": str(mt.service_id),
        "msisdn": mt.msisdn,
        "parts": str(mt.parts),
        "created_at": mt.created_at.isoformat(),
        "status_at": now.isoformat(),
    }


def _part_fields(mt: _Message, part: _Part, now: datetime) -> dict[str, str]:
    return {
        **_common_fields(mt, now),
        "scope": "part",
        "part": str(part.part_no),
        "status": callback_status(part.status),
        "error_code": part.error_code,
        "operator_message_id": part.operator_message_id or "",
        "submitted_at": _iso(part.submitted_at),
        "done_at": _iso(part.done_at),
    }


def _message_fields(mt: _Message, parts: Sequence[_Part], now: datetime) -> dict[str, str]:
    submitted = [p.submitted_at for p in parts if p.submitted_at is not None]
    done = [p.done_at for p in parts if p.done_at is not None]
    only = parts[0] if mt.parts == 1 and len(parts) == 1 else None
    return {
        **_common_fields(mt, now),
        "scope": "message",
        "part": str(only.part_no) if only is not None else "",
        "status": callback_status(mt.status),
        "error_code": mt.error_code,
        "operator_message_id": (only.operator_message_id or "") if only is not None else "",
        "submitted_at": _iso(min(submitted) if submitted else None),
        "done_at": _iso(max(done) if done and is_final(mt.status) else None),
    }


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""
