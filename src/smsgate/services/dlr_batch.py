"""The rows a batch of delivery receipts (or of submit outcomes) touches: loaded once, changed
in memory by the rules of one receipt at a time, written once; and the DLR callbacks the
changes make (docs/bulk.md, "DLR callbacks"). Used by services/dlr.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import DateTime, Select, Table, bindparam, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from smsgate.domain.delivery import aggregate, is_final
from smsgate.services.webhooks import NewEvent, emit_many
from smsgate.store.models import MtMessage, MtPart, Service
from smsgate.store.row_sets import update_rows
from smsgate.store.types import UTCDateTime

_MT = cast(Table, MtMessage.__table__)
_PARTS = cast(Table, MtPart.__table__)
_SERVICES = cast(Table, Service.__table__)
CHUNK: Final = 500  # values per IN (...) list

# What a DLR callback calls a state (docs/bulk.md, "DLR callbacks"): "submitted" is the SMSC's
# acceptance of the submit_sm, which merchants know as "accepted".
_CALLBACK_STATUS = {"submitted": "accepted"}
DLR_EVENT = "message.dlr"
# What the link concludes when it cannot get a message (or part of it) out.
_GIVEN_UP: Final = frozenset({"failed", "unknown"})


async def fetch_rows(
    connection: AsyncConnection, query: Select[Any], params: dict[str, Any]
) -> list[Sequence[Any]]:
    """The rows of ``query`` (a statement built once, its values in ``params``).

    On SQLite they come as one JSON array built by the database: fetching row by row,
    aiosqlite's thread hands the GIL back and forth with a busy event loop at every row, and
    each hand-over can wait for the interpreter's switch interval (store/row_sets.py). The
    query's columns must be plain values or ``UTCDateTime``s.
    """
    if connection.dialect.name != "sqlite":
        return list((await connection.execute(query, params)).all())
    packed, times = _packed(query)
    text = (await connection.execute(packed, params)).scalar_one()
    decoded: list[list[Any]] = json.loads(text)
    if times:
        read = _time_reader(connection.dialect)
        for row in decoded:
            for n in times:
                row[n] = read(row[n])
    return cast(list[Sequence[Any]], decoded)


# By statement: the statements given to fetch_rows are built once, at import.
_PACKED: dict[Select[Any], tuple[Select[Any], list[int]]] = {}


def _packed(query: Select[Any]) -> tuple[Select[Any], list[int]]:
    """``query`` as one JSON array, and which of its columns are times (built once: a
    subquery costs more to build than a small batch of receipts to apply)."""
    packed = _PACKED.get(query)
    if packed is None:
        rows = query.subquery()
        times = [n for n, column in enumerate(rows.c) if isinstance(column.type, UTCDateTime)]
        packed = _PACKED[query] = (
            select(func.json_group_array(func.json_array(*rows.c))),
            times,
        )
    return packed


def _time_reader(dialect: Dialect) -> Callable[[Any], datetime | None]:
    as_datetime = DateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert as_datetime is not None
    column_type = UTCDateTime()
    return lambda value: column_type.process_result_value(as_datetime(value), dialect)


def callback_status(state: str) -> str:
    return _CALLBACK_STATUS.get(state, state)


@dataclass(slots=True, eq=False)
class PartRow:
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
class MessageRow:
    id: int
    merchant_id: int | None
    service_id: int | None
    msisdn: str
    parts: int
    status: str
    error_code: str
    created_at: datetime
    rows: dict[int, PartRow] = field(default_factory=dict)  # by part_no
    changed: bool = False

    def sorted_rows(self) -> list[PartRow]:
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


# The service's DLR URL (``callback_urls.dlr``, else ``settings.dlr_url``) and callback method,
# read in the query of the rows they are for.
_DLR_URL = func.coalesce(
    func.nullif(_SERVICES.c.callback_urls["dlr"].as_string(), ""),
    func.nullif(_SERVICES.c.settings["dlr_url"].as_string(), ""),
)
_CALLBACK_COLUMNS = (_DLR_URL, _SERVICES.c.callback_method)

_PARTS_BY_MESSAGE_ID = (
    select(*_PART_COLUMNS, *_MESSAGE_COLUMNS, *_CALLBACK_COLUMNS)
    .join(_MT, _MT.c.id == _PARTS.c.mt_id)
    .outerjoin(_SERVICES, _SERVICES.c.id == _MT.c.service_id)
    .where(
        _PARTS.c.operator_id == bindparam("operator_id"),
        _PARTS.c.operator_message_id.in_(bindparam("ids", expanding=True)),
    )
    .order_by(_PARTS.c.id)
)
_PARTS_OF_MESSAGES = select(*_PART_COLUMNS).where(
    _PARTS.c.mt_id.in_(bindparam("ids", expanding=True))
)
_MESSAGES_WITH_DLR_URL = (
    select(*_MESSAGE_COLUMNS, *_PART_COLUMNS, *_CALLBACK_COLUMNS)
    .join(_SERVICES, _SERVICES.c.id == _MT.c.service_id)
    .outerjoin(_PARTS, _PARTS.c.mt_id == _MT.c.id)
    .where(_MT.c.id.in_(bindparam("ids", expanding=True)), _DLR_URL.is_not(None))
)


class Batch:
    """The messages and parts one batch touches, and the callbacks its changes make."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.messages: dict[int, MessageRow] = {}
        self.services: dict[int, tuple[str, str]] = {}  # id: (DLR URL, method), with a URL
        self.events: list[NewEvent] = []
        self._by_message_id: dict[tuple[str, str], PartRow] = {}
        self._changed_parts: list[PartRow] = []

    def part(self, operator_id: str, operator_message_id: str) -> PartRow | None:
        return self._by_message_id.get((operator_id, operator_message_id))

    async def load_parts(
        self, connection: AsyncConnection, keys: Iterable[tuple[str, str]]
    ) -> None:
        """The parts these (operator, operator message id) name, with their messages, their
        services' DLR URLs, and all the other parts of their multipart messages."""
        by_operator: dict[str, list[str]] = {}
        for operator_id, message_id in keys:
            by_operator.setdefault(operator_id, []).append(message_id)
        width, end = len(_PART_COLUMNS), len(_PART_COLUMNS) + len(_MESSAGE_COLUMNS)
        for operator_id, message_ids in by_operator.items():
            for start in range(0, len(message_ids), CHUNK):
                rows = await fetch_rows(
                    connection,
                    _PARTS_BY_MESSAGE_ID,
                    {"operator_id": operator_id, "ids": message_ids[start : start + CHUNK]},
                )
                for row in rows:
                    mt = self.messages.get(row[1])
                    if mt is None:
                        mt = self.messages[row[1]] = MessageRow(*row[width:end])
                        self._callbacks_to(mt, row[end], row[end + 1])
                    part = mt.rows.get(row[2])
                    if part is None:
                        part = mt.rows[row[2]] = PartRow(*row[:width])
                    # Ids are the SMSC's and should be unique; if not, the latest part wins.
                    self._by_message_id[(operator_id, row[3])] = part
        multipart = [mt.id for mt in self.messages.values() if mt.parts > len(mt.rows)]
        for start in range(0, len(multipart), CHUNK):
            rows = await fetch_rows(
                connection, _PARTS_OF_MESSAGES, {"ids": multipart[start : start + CHUNK]}
            )
            for row in rows:
                self.messages[row[1]].rows.setdefault(row[2], PartRow(*row[:width]))

    async def load_messages(self, connection: AsyncConnection, mt_ids: list[int]) -> None:
        """These MTs, with every row of their parts; only those of services with a DLR URL."""
        width, end = len(_MESSAGE_COLUMNS), len(_MESSAGE_COLUMNS) + len(_PART_COLUMNS)
        for start in range(0, len(mt_ids), CHUNK):
            rows = await fetch_rows(
                connection, _MESSAGES_WITH_DLR_URL, {"ids": mt_ids[start : start + CHUNK]}
            )
            for row in rows:
                mt = self.messages.get(row[0])
                if mt is None:
                    mt = self.messages[row[0]] = MessageRow(*row[:width])
                    self._callbacks_to(mt, row[end], row[end + 1])
                if row[width] is not None:
                    mt.rows[row[width + 2]] = PartRow(*row[width:end])

    def _callbacks_to(self, mt: MessageRow, url: str | None, method: str | None) -> None:
        if mt.service_id is not None and url:
            self.services[mt.service_id] = (str(url), method or "POST")

    def apply(self, part: PartRow, state: str, error_code: str) -> None:
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
            self.callback(mt, part_fields(mt, part, self.now))
        if mt.parts == 1 or whole_changed:
            self.callback(mt, message_fields(mt, mt.sorted_rows(), self.now))

    def callback(self, mt: MessageRow, fields: dict[str, str]) -> None:
        if mt.merchant_id is None or mt.service_id is None:
            return
        service = self.services.get(mt.service_id)
        if service is None:
            return
        url, method = service
        self.events.append(NewEvent(mt.merchant_id, mt.service_id, DLR_EVENT, url, fields, method))

    async def write(self, session: AsyncSession, connection: AsyncConnection) -> None:
        now = self.now
        await update_rows(
            connection,
            _PARTS,
            [
                {
                    "id": part.id,
                    "status": part.status,
                    "error_code": part.error_code,
                    "done_at": part.done_at,
                }
                for part in self._changed_parts
            ],
            key="id",
            columns=("status", "error_code", "done_at"),
        )
        await update_rows(
            connection,
            _MT,
            [
                {"id": mt.id, "status": mt.status, "error_code": mt.error_code, "updated_at": now}
                for mt in self.messages.values()
                if mt.changed
            ],
            key="id",
            columns=("status", "error_code", "updated_at"),
        )
        await emit_many(session, self.events, now=now)


# --- callback fields (docs/bulk.md, "DLR callbacks") -----------------------------------------


def _common_fields(mt: MessageRow, now: datetime) -> dict[str, str]:
    return {
        "id": str(mt.id),
        "user_id": str(mt.merchant_id),
        "service_id": str(mt.service_id),
        "msisdn": mt.msisdn,
        "parts": str(mt.parts),
        "created_at": mt.created_at.isoformat(),
        "status_at": now.isoformat(),
    }


def part_fields(mt: MessageRow, part: PartRow, now: datetime) -> dict[str, str]:
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


def message_fields(mt: MessageRow, parts: Sequence[PartRow], now: datetime) -> dict[str, str]:
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
