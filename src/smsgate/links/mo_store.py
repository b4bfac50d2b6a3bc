"""Storing MOs from an SMPP link: whole messages, parts of concatenated ones, and the guard
against redeliveries. Every function runs in the caller's transaction and never commits.

Redeliveries. An SMSC delivers an MO again when it did not get our deliver_sm_resp, and SMPP
gives the MO no id to recognise it by (``incoming.py``). A fingerprint alone cannot tell a
redelivery from the same subscriber sending the same text again, which is exactly what a
multi-message "safe" payment asks of them. So each MO is written with a row in
``mo_unconfirmed_acks`` (fingerprint, connection), deleted once the SMSC has answered a
request we sent after the response on that connection (TCP delivers in order: it has read
the response). A deliver_sm whose fingerprint matches a row *of another connection*, younger
than ``mo_redelivery_seconds``, is the redelivery of that MO: it gets the same operator
message id, and ``receive_mo`` treats it as the duplicate it is. One row accounts for one
redelivery: it moves to the new connection. An identical MO on the same live connection is a
new message: an SMSC only redelivers after it gave up on a response, and then it drops the
connection or the response timer has long passed. (The guards' statements: ``mo_guards.py``.)

Concatenated MOs. Each part is stored in ``mo_fragments`` before it is acknowledged (unique
per operator, sender, short number, reference, total and part number, so a redelivered part
changes nothing), and the MO is created in the transaction that stores the last part.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain.text import Alphabet, decode
from smsgate.links import mo_guards
from smsgate.links.incoming import IncomingMoPart
from smsgate.links.mo_guards import confirm_acks as confirm_acks  # (re-exported: the link)
from smsgate.links.pdus import ClaimedMt
from smsgate.services.mo import (
    IncomingMo,
    MoHandler,
    MoOutcome,
    receive_mo,
    receive_mos_with_replies,
)
from smsgate.services.mt import QueuedMt
from smsgate.store.conflicts import insert_if_absent
from smsgate.store.models import MoFragment, MoUnconfirmedAck
from smsgate.store.row_sets import execute, stored_time

_FRAGMENT_KEY: Final = ("operator_id", "msisdn", "short_number", "ref", "total", "seq")
_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class StoredMo:
    outcome: MoOutcome | None  # None: a part of a message still missing others
    ack_guard_id: int | None  # the mo_unconfirmed_acks row to delete once confirmed
    redelivery: bool = False


@dataclass(frozen=True, slots=True)
class WholeMo:
    """A message on its own as delivered on one connection, with its text decoded."""

    part: IncomingMoPart
    text: str
    connection_id: str


async def store_whole_mos(
    session: AsyncSession,
    *,
    operator_id: str,
    mos: Sequence[WholeMo],
    now: datetime,
    redelivery_window: timedelta,
    handlers: Mapping[str, MoHandler],
    confirmed: Sequence[int] = (),
) -> list[StoredMo]:
    """:func:`store_whole_mo` for each of ``mos``, in a fixed number of statements; first the
    ``confirmed`` guards are deleted (:func:`confirm_acks`).

    The common case, MOs none of which is a redelivery, takes one look for earlier guards
    and one insert of the new ones (on PostgreSQL one statement with the deletion and the
    reading of the MOs' short numbers for ``receive_mos``: a round trip each costs more than
    the work), then ``receive_mos`` for all. A batch with a redelivery among its MOs, or MOs
    of several connections (a guard of one could match an MO of another), is stored one MO
    at a time, in order, as :func:`store_whole_mo` does.
    """
    stored, _ = await _store_whole(
        session,
        operator_id=operator_id,
        mos=mos,
        now=now,
        redelivery_window=redelivery_window,
        handlers=handlers,
        confirmed=confirmed,
        claim=False,
    )
    return stored


async def _store_whole(
    session: AsyncSession,
    *,
    operator_id: str,
    mos: Sequence[WholeMo],
    now: datetime,
    redelivery_window: timedelta,
    handlers: Mapping[str, MoHandler],
    confirmed: Sequence[int],
    claim: bool,
) -> tuple[list[StoredMo], list[QueuedMt] | None]:
    """:func:`store_whole_mos`; with ``claim``, the replies of the MOs stored as a batch are
    written claimed (``receive_mos_with_replies``), None when the MOs went one at a time."""
    if not mos:
        await confirm_acks(session, list(confirmed))
        return [], []
    guarded = [mo for mo in mos if mo.part.smsc_id is None]
    stamp = int(now.timestamp() * 1_000_000)
    message_ids = [
        _smsc_message_id(mo.part.smsc_id)
        if mo.part.smsc_id is not None
        else f"fp:{mo.part.fingerprint[:32]}:{stamp}:{next(_counter)}"
        for mo in mos
    ]
    guard_rows = [
        {
            "operator_id": operator_id,
            "fingerprint": mo.part.fingerprint,
            "operator_message_id": message_id,
            "connection_id": mo.connection_id,
            "received_at": now,
        }
        for mo, message_id in zip(mos, message_ids, strict=True)
        if mo.part.smsc_id is None
    ]
    incomings = [
        _incoming(operator_id, message_id, mo.part, mo.text)
        for mo, message_id in zip(mos, message_ids, strict=True)
    ]
    guards: dict[str, int] | None = None
    numbers: mo_guards.NumbersRead | None = None
    inserted: mo_guards.MosInserted | None = None
    if len({mo.connection_id for mo in guarded}) > 1:
        await confirm_acks(session, list(confirmed))
    else:
        guards, numbers, inserted = await mo_guards.new_guards(
            session,
            operator_id,
            mos,
            guarded,
            guard_rows,
            now - redelivery_window,
            confirmed,
            incomings,
            now,
        )
    if guards is None:
        return [
            await store_whole_mo(
                session,
                operator_id=operator_id,
                part=mo.part,
                text=mo.text,
                connection_id=mo.connection_id,
                now=now,
                redelivery_window=redelivery_window,
                handlers=handlers,
            )
            for mo in mos
        ], None
    outcomes, queued = await receive_mos_with_replies(
        session,
        incomings,
        now=now,
        handlers=handlers,
        numbers=numbers,
        inserted=inserted,
        claim=claim,
    )
    stored = [
        StoredMo(outcome, guards.get(message_id))
        for outcome, message_id in zip(outcomes, message_ids, strict=True)
    ]
    return stored, queued


async def store_and_claim(
    session: AsyncSession,
    *,
    operator_id: str,
    mos: Sequence[WholeMo],
    now: datetime,
    redelivery_window: timedelta,
    handlers: Mapping[str, MoHandler],
    confirmed: Sequence[int] = (),
) -> tuple[list[StoredMo], list[ClaimedMt]]:
    """A link's batch of whole MOs: :func:`store_whole_mos`, and the MTs due now that name
    the MOs it stored (not the redeliveries) claimed for the link, as :func:`claim_replies`
    claims them. The replies of a batch are written claimed already (one statement less);
    what a one-at-a-time handler queued, and the MTs of MOs stored one at a time, are
    claimed after."""
    stored, queued = await _store_whole(
        session,
        operator_id=operator_id,
        mos=mos,
        now=now,
        redelivery_window=redelivery_window,
        handlers=handlers,
        confirmed=confirmed,
        claim=True,
    )
    new = [
        one.outcome
        for one in stored
        if one.outcome is not None and not one.outcome.duplicate and not one.redelivery
    ]
    if queued is None:
        return stored, await claim_replies(
            session, operator_id, [outcome.mo_id for outcome in new], now
        )
    claimed = [
        ClaimedMt(mt.id, mt.msisdn, mt.sender, mt.text, mt.encoding, mt.attempts) for mt in queued
    ]
    others = [outcome.mo_id for outcome in new if outcome.item_handled]
    claimed += await claim_replies(session, operator_id, others, now)
    claimed.sort(key=lambda mt: mt.id)
    return stored, claimed


def _smsc_message_id(smsc_id: str) -> str:
    return f"smsc:{smsc_id}"[:128]


def _incoming(operator_id: str, message_id: str, part: IncomingMoPart, text: str) -> IncomingMo:
    return IncomingMo(
        operator_id=operator_id,
        operator_message_id=message_id,
        short_number=part.short_number,
        msisdn=part.msisdn,
        text=text,
        details={"via": "smpp", "data_coding": part.data_coding, "parts": 1},
    )


async def store_whole_mo(
    session: AsyncSession,
    *,
    operator_id: str,
    part: IncomingMoPart,
    text: str,
    connection_id: str,
    now: datetime,
    redelivery_window: timedelta,
    handlers: Mapping[str, MoHandler],
) -> StoredMo:
    guard_id: int | None = None
    redelivery = False
    if part.smsc_id is not None:
        message_id = _smsc_message_id(part.smsc_id)
    else:
        earlier = (
            await session.execute(
                select(MoUnconfirmedAck.id, MoUnconfirmedAck.operator_message_id)
                .where(
                    MoUnconfirmedAck.operator_id == operator_id,
                    MoUnconfirmedAck.fingerprint == part.fingerprint,
                    MoUnconfirmedAck.connection_id != connection_id,
                    MoUnconfirmedAck.received_at >= now - redelivery_window,
                )
                .order_by(MoUnconfirmedAck.id)
                .limit(1)
            )
        ).first()
        if earlier is not None:
            guard_id, message_id, redelivery = earlier.id, earlier.operator_message_id, True
            await session.execute(
                update(MoUnconfirmedAck)
                .where(MoUnconfirmedAck.id == guard_id)
                .values(connection_id=connection_id)
            )
        else:
            stamp = int(now.timestamp() * 1_000_000)
            message_id = f"fp:{part.fingerprint[:32]}:{stamp}:{next(_counter)}"
            guard = MoUnconfirmedAck(
                operator_id=operator_id,
                fingerprint=part.fingerprint,
                operator_message_id=message_id,
                connection_id=connection_id,
                received_at=now,
            )
            session.add(guard)
            await session.flush()
            guard_id = guard.id
    outcome = await receive_mo(
        session, _incoming(operator_id, message_id, part, text), now=now, handlers=handlers
    )
    return StoredMo(outcome, guard_id, redelivery)


async def store_fragment(
    session: AsyncSession,
    *,
    operator_id: str,
    part: IncomingMoPart,
    now: datetime,
    default_alphabet: Alphabet,
    handlers: Mapping[str, MoHandler],
) -> StoredMo:
    """Keep one part; when it completes its message, create the MO and drop the parts."""
    concat = part.concat
    assert concat is not None
    values = {
        "operator_id": operator_id,
        "msisdn": part.msisdn,
        "short_number": part.short_number,
        "ref": concat.ref,
        "total": concat.total,
        "seq": concat.seq,
        "data_coding": part.data_coding,
        "payload": part.payload,
        "received_at": now,
    }
    same_message = and_(
        MoFragment.operator_id == operator_id,
        MoFragment.msisdn == part.msisdn,
        MoFragment.short_number == part.short_number,
        MoFragment.ref == concat.ref,
        MoFragment.total == concat.total,
    )
    table = MoFragment.__table__
    inserted = await insert_if_absent(session, table, values, _FRAGMENT_KEY)  # type: ignore[arg-type]
    if inserted is None:
        stored = (
            await session.execute(
                select(MoFragment.payload).where(same_message, MoFragment.seq == concat.seq)
            )
        ).scalar_one()
        if bytes(stored) == part.payload:
            return StoredMo(None, None, redelivery=True)
        # The handset reused the reference for a new message: the old parts are stale.
        await session.execute(delete(MoFragment).where(same_message))
        await insert_if_absent(session, table, values, _FRAGMENT_KEY)  # type: ignore[arg-type]
    rows = (
        await session.execute(
            select(
                MoFragment.id,
                MoFragment.seq,
                MoFragment.data_coding,
                MoFragment.payload,
                MoFragment.received_at,
            )
            .where(same_message)
            .order_by(MoFragment.seq)
        )
    ).all()
    if len(rows) < concat.total:
        return StoredMo(None, None)
    # Joined as octets and decoded once: a sender may cut an escape or a surrogate pair.
    joined = b"".join(bytes(row.payload) for row in rows)
    text = decode(joined, rows[0].data_coding, default_alphabet=default_alphabet)
    first_id = min(row.id for row in rows)
    first_at = min(row.received_at for row in rows)
    identity = f"{part.msisdn}|{part.short_number}|{concat.ref}|{concat.total}|{first_id}|"
    identity += first_at.isoformat()
    message_id = "cat:" + hashlib.sha256(identity.encode()).hexdigest()[:40]
    await session.execute(delete(MoFragment).where(same_message))
    outcome = await receive_mo(
        session,
        IncomingMo(
            operator_id=operator_id,
            operator_message_id=message_id,
            short_number=part.short_number,
            msisdn=part.msisdn,
            text=text,
            details={
                "via": "smpp",
                "data_coding": rows[0].data_coding,
                "parts": concat.total,
                "ref": concat.ref,
            },
        ),
        now=now,
        handlers=handlers,
    )
    return StoredMo(outcome, None)


async def claim_replies(
    session: AsyncSession, operator_id: str, mo_ids: Sequence[int], now: datetime
) -> list[ClaimedMt]:
    """Claim, for this link, the MTs due now that name one of ``mo_ids`` (the MOs just
    stored in this transaction): their replies, then sent without a claim of their own.

    Only MTs of ``operator_id`` (the link's own: it owns the bind, as a claim requires).
    Nobody else can see these rows before the transaction commits, so no lock is needed; a
    process that dies after the commit leaves them ``submitting`` like any claimed MT.
    """
    if not mo_ids:
        return []
    connection = await session.connection()
    dialect = connection.dialect
    sql = _CLAIM_SQLITE if dialect.name == "sqlite" else _CLAIM_POSTGRESQL
    at = stored_time(dialect, now)
    rows = await execute(connection, sql, (at, json.dumps(list(mo_ids)), operator_id, at))
    claimed = [ClaimedMt(*row) for row in rows]
    claimed.sort(key=lambda mt: mt.id)
    return claimed


_CLAIM: Final = (
    "UPDATE mt_messages SET status = 'submitting', attempts = attempts + 1, updated_at = {} "
    "WHERE mo_id IN ({}) AND operator_id = {} AND status = 'queued' AND next_attempt_at <= {} "
    "RETURNING id, msisdn, sender, text, encoding, attempts"
)
_CLAIM_SQLITE: Final = _CLAIM.format("?", "SELECT value FROM json_each(?)", "?", "?")
_CLAIM_POSTGRESQL: Final = _CLAIM.format(
    "$1", "SELECT json_array_elements_text($2::json)::bigint", "$3", "$4"
)


async def expire(
    session: AsyncSession,
    *,
    operator_id: str,
    now: datetime,
    fragment_max_age: timedelta,
    redelivery_window: timedelta,
) -> tuple[int, int]:
    """Drop parts that waited too long for the rest, and guards past the redelivery window.

    Returns (parts dropped, guards dropped).
    """
    fragments = await session.execute(
        delete(MoFragment).where(
            MoFragment.operator_id == operator_id,
            MoFragment.received_at < now - fragment_max_age,
        )
    )
    guards = await session.execute(
        delete(MoUnconfirmedAck).where(
            MoUnconfirmedAck.operator_id == operator_id,
            MoUnconfirmedAck.received_at < now - redelivery_window,
        )
    )
    return (
        int(getattr(fragments, "rowcount", 0) or 0),
        int(getattr(guards, "rowcount", 0) or 0),
    )
