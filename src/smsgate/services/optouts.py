"""Opt-outs: recipients who must not get a bulk service's messages.

A number joins a service's list when the subscriber answers STOP (an MO whose keyword is a stop
word, sent to a short number the bulk service listens on) or when the merchant adds it through
the API. A send to a listed number is refused (``INVALID_MSISDN`` on send_bulk.php, the
``opted-out`` problem on the REST API) and counted in ``smsgate_bulk_opt_out_refusals``.

START (a start word) takes the number off the list again, but only when the subscriber put it
there: a number the merchant listed stays listed until the merchant removes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain import routing
from smsgate.domain.msisdn import try_normalize_msisdn
from smsgate.services.mo import MoContext
from smsgate.store.models import MoMessage, OptOut, Service

__all__ = [
    "BY_MERCHANT",
    "BY_STOP_MO",
    "START_WORDS",
    "STOP_WORDS",
    "OptOutEntry",
    "add_opt_out",
    "get_opt_out",
    "handle_bulk_mo",
    "is_opted_out",
    "list_opt_outs",
    "remove_opt_out",
]

BY_STOP_MO: Final = "stop_mo"
BY_MERCHANT: Final = "merchant"

# Compared after domain.routing's keyword normalisation (case-folded, punctuation trimmed).
STOP_WORDS: Final = frozenset({"stop", "стоп", "unsubscribe", "optout"})
START_WORDS: Final = frozenset({"start", "старт"})


@dataclass(frozen=True, slots=True)
class OptOutEntry:
    msisdn: str
    reason: str
    at: datetime


async def is_opted_out(session: AsyncSession, service_id: int, msisdn: str) -> bool:
    found = await session.scalar(
        select(OptOut.msisdn).where(OptOut.service_id == service_id, OptOut.msisdn == msisdn)
    )
    return found is not None


async def get_opt_out(session: AsyncSession, service_id: int, msisdn: str) -> OptOutEntry | None:
    row = (
        await session.execute(
            select(OptOut.msisdn, OptOut.reason, OptOut.at).where(
                OptOut.service_id == service_id, OptOut.msisdn == msisdn
            )
        )
    ).one_or_none()
    return OptOutEntry(row.msisdn, row.reason, row.at) if row is not None else None


async def add_opt_out(
    session: AsyncSession, service_id: int, msisdn: str, *, reason: str, now: datetime
) -> bool:
    """List ``msisdn`` (canonical digits) for the service; False when it already was."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = await session.execute(
        insert(OptOut)
        .values(service_id=service_id, msisdn=msisdn, reason=reason, at=now)
        .on_conflict_do_nothing(index_elements=["service_id", "msisdn"])
        .returning(OptOut.msisdn)
    )
    return result.scalar_one_or_none() is not None


async def remove_opt_out(
    session: AsyncSession, service_id: int, msisdn: str, *, only_reason: str | None = None
) -> bool:
    """Take ``msisdn`` off the list; False when it was not listed (for that reason)."""
    statement = delete(OptOut).where(OptOut.service_id == service_id, OptOut.msisdn == msisdn)
    if only_reason is not None:
        statement = statement.where(OptOut.reason == only_reason)
    result = await session.execute(statement.returning(OptOut.msisdn))
    return result.scalar_one_or_none() is not None


async def list_opt_outs(
    session: AsyncSession, service_id: int, *, limit: int = 100, after: str = ""
) -> list[OptOutEntry]:
    """The service's list ordered by number; page with ``after`` (the last number seen)."""
    rows = (
        await session.execute(
            select(OptOut.msisdn, OptOut.reason, OptOut.at)
            .where(OptOut.service_id == service_id, OptOut.msisdn > after)
            .order_by(OptOut.msisdn)
            .limit(limit)
        )
    ).all()
    return [OptOutEntry(row.msisdn, row.reason, row.at) for row in rows]


async def handle_bulk_mo(
    session: AsyncSession, mo: MoMessage, service: Service, context: MoContext
) -> None:
    """What an MO routed to a bulk service does: STOP lists the sender, START unlists it.

    Any other text is kept as received and does nothing (a bulk service sells no MO).
    """
    keyword = routing.keyword_of(mo.text)
    number = try_normalize_msisdn(mo.msisdn, require_valid=False)
    msisdn = number.digits if number is not None else mo.msisdn
    if keyword in STOP_WORDS:
        await add_opt_out(session, service.id, msisdn, reason=BY_STOP_MO, now=context.now)
        mo.status = "processed"
    elif keyword in START_WORDS:
        await remove_opt_out(session, service.id, msisdn, only_reason=BY_STOP_MO)
        mo.status = "processed"
