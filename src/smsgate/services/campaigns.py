"""Campaigns: a bulk send from a CSV file (``smsgate send-csv``), resumable without sending
anything twice.

A campaign is one file (its SHA-256) sent through one service. Each CSV row becomes one
message through the same rules as send_bulk.php (services/bulk_batch.py, batch by batch:
checks, quotas, charge, MT), and the row's ``campaign_rows`` entry is written in the same
transaction as its MT. A run
that is interrupted (Ctrl-C, SIGKILL, a crash) therefore leaves every row either committed
with its MT or not started; running the same file again resumes with the rows not yet
committed. The MT's idempotency key ``campaign:<id>:<row>`` is a second guard: even a row
entry lost some other way could not queue the same row twice.

A refused row (an invalid number, a limit, no funds) is recorded with its reason and is not
retried on resume: its reason is in the summary.

The CSV file: UTF-8 (a BOM is fine), comma- or semicolon-separated, a header row. Column
``msisdn`` is the recipient; the text is column ``text``, or a template given on the command
line whose ``{column}`` placeholders take each row's values (``{{`` and ``}}`` for braces).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.domain.errors import InvalidTemplate
from smsgate.domain.templates import ReplyTemplate, parse_template, render
from smsgate.services.bulk import BULK_ACCEPTED, BULK_REFUSED, Accepted, BulkRequest, accept
from smsgate.services.bulk_batch import accept_batch
from smsgate.store.models import Campaign, CampaignRow, Service

__all__ = [
    "RUNNING",
    "SENT",
    "CampaignError",
    "CampaignFile",
    "CampaignRun",
    "CsvRow",
    "RunSummary",
    "mark_interrupted",
    "open_campaign",
    "read_csv",
    "send_rows",
]

log = logging.getLogger(__name__)

RUNNING: Final = "running"
DONE: Final = "done"
INTERRUPTED: Final = "interrupted"
SENT: Final = "sent"  # campaign_rows.outcome of a row whose MT was queued

MAX_ROWS: Final = 10_000_000


class CampaignError(ValueError):
    """The file or the service cannot make a campaign; the message says why."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    row_no: int  # 1 = the first row after the header
    msisdn: str
    text: str


@dataclass(frozen=True, slots=True)
class CampaignFile:
    source: str
    sha256: str
    rows: list[CsvRow]


def _sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def read_csv(path: Path, *, template: str | None = None) -> CampaignFile:
    """Read and check the whole file first: a campaign never starts on a file that is broken
    halfway (an unknown column, a row without a number, a template placeholder missing)."""
    try:
        raw = path.read_bytes()
        content = raw.decode("utf-8-sig")
    except OSError as error:
        raise CampaignError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise CampaignError(f"{path}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(content), _sniff_dialect(content[:4096]))
    header = next(reader, None)
    if header is None:
        raise CampaignError(f"{path}: the file is empty")
    columns = [name.strip().lower() for name in header]
    if "msisdn" not in columns:
        raise CampaignError(f"{path}: no 'msisdn' column in the header {header!r}")
    parsed: ReplyTemplate | None = None
    if template is not None:
        try:
            parsed = parse_template(template, allowed=frozenset(columns))
        except InvalidTemplate as error:
            raise CampaignError(f"template: {error}") from None
    elif "text" not in columns:
        raise CampaignError(f"{path}: no 'text' column, and no template given")
    rows: list[CsvRow] = []
    for number, values in enumerate(reader, start=1):
        if not any(value.strip() for value in values):
            continue  # blank lines are not rows
        if len(values) != len(columns):
            raise CampaignError(
                f"{path}: row {number}: {len(values)} fields, the header has {len(columns)}"
            )
        record = dict(zip(columns, values, strict=True))
        text = render(parsed, record) if parsed is not None else record["text"]
        rows.append(CsvRow(number, record["msisdn"].strip(), text))
        if len(rows) > MAX_ROWS:
            raise CampaignError(f"{path}: more than {MAX_ROWS} rows")
    if not rows:
        raise CampaignError(f"{path}: no rows after the header")
    digest = hashlib.sha256(raw)
    if template is not None:
        # The same file with another template is another campaign.
        digest.update(b"\0template\0" + template.encode())
    return CampaignFile(str(path), digest.hexdigest(), rows)


@dataclass(frozen=True, slots=True)
class CampaignRun:
    campaign_id: int
    resumed: bool
    done_rows: frozenset[int]  # rows committed by earlier runs


async def open_campaign(
    sessions: async_sessionmaker[AsyncSession],
    file: CampaignFile,
    *,
    service_id: int,
    now: datetime,
    new: bool = False,
) -> CampaignRun:
    """The unfinished campaign of this file and service (resumed), or a new one.

    A file whose campaign is done raises CampaignError unless ``new`` asks for a new one.
    """
    async with sessions() as session, session.begin():
        service = await session.get(Service, service_id)
        if service is None or service.type != "bulk":
            raise CampaignError(f"no bulk service {service_id}")
        campaign = None
        if not new:
            campaign = (
                await session.execute(
                    select(Campaign)
                    .where(
                        Campaign.service_id == service_id,
                        Campaign.source_sha256 == file.sha256,
                    )
                    .order_by(Campaign.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if campaign is not None and campaign.status == DONE:
                # Running the same command twice must not send the file twice.
                raise CampaignError(
                    f"campaign {campaign.id} already sent this file through service "
                    f"{service_id}; use --new to send it again"
                )
        if campaign is None:
            campaign = Campaign(
                service_id=service_id,
                source=file.source[-255:],
                source_sha256=file.sha256,
                status=RUNNING,
                total=len(file.rows),
                created_at=now,
                updated_at=now,
            )
            session.add(campaign)
            await session.flush()
            return CampaignRun(campaign.id, False, frozenset())
        campaign.status = RUNNING
        campaign.updated_at = now
        done = (
            await session.execute(
                select(CampaignRow.row_no).where(CampaignRow.campaign_id == campaign.id)
            )
        ).scalars()
        return CampaignRun(campaign.id, True, frozenset(done))


@dataclass
class RunSummary:
    campaign_id: int
    total: int
    sent_before: int = 0  # rows committed by earlier runs (resumed)
    sent: int = 0
    parts: int = 0
    cost_minor: int = 0
    currency: str = ""
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return self.sent_before + self.sent + sum(self.refused.values())


def _insert(session: AsyncSession) -> type[postgresql.Insert] | type[sqlite.Insert]:
    return postgresql.Insert if session.get_bind().dialect.name == "postgresql" else sqlite.Insert


async def send_rows(
    sessions: async_sessionmaker[AsyncSession],
    run: CampaignRun,
    file: CampaignFile,
    *,
    service_id: int,
    clock: Callable[[], datetime],
    batch_size: int = 100,
    on_batch: Callable[[RunSummary, int], None] | None = None,
) -> RunSummary:
    """Send the rows ``run`` has not done yet, ``batch_size`` rows per transaction.

    ``on_batch(summary, rows_in_batch)`` is called after each commit (a progress bar).
    """
    summary = RunSummary(run.campaign_id, len(file.rows), sent_before=len(run.done_rows))
    pending = [row for row in file.rows if row.row_no not in run.done_rows]
    for start in range(0, len(pending), max(1, batch_size)):
        batch = pending[start : start + batch_size]
        done = await _send_batch(sessions, run.campaign_id, service_id, batch, clock(), summary)
        if on_batch is not None:
            on_batch(summary, done)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(Campaign.id == run.campaign_id)
            .values(status=DONE, updated_at=clock())
            .execution_options(synchronize_session=False)
        )
    return summary


def _request(campaign_id: int, service_id: int, row: CsvRow) -> BulkRequest:
    return BulkRequest(
        service_id=service_id,
        msisdn=row.msisdn,
        text=row.text,
        check_ip=False,
        idempotency_key=f"campaign:{campaign_id}:{row.row_no}",
        via="campaign",
        details={"campaign": campaign_id, "row": row.row_no},
    )


_ROW_OUTCOME: Final = (
    update(cast(Table, CampaignRow.__table__))
    .where(
        CampaignRow.__table__.c.campaign_id == bindparam("b_campaign"),
        CampaignRow.__table__.c.row_no == bindparam("b_row"),
    )
    .values(mt_id=bindparam("b_mt"), outcome=bindparam("b_outcome"))
)


async def _send_batch(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: int,
    service_id: int,
    batch: Sequence[CsvRow],
    now: datetime,
    summary: RunSummary,
) -> int:
    """One transaction: claim the rows, accept their messages, record each row's outcome.

    The messages go through services/bulk_batch.accept_batch (a few statements for the whole
    batch); if that fails as a whole, the batch is done again row by row with
    services/bulk.accept, each row in a savepoint."""
    try:
        outcomes = await _batch_at_once(sessions, campaign_id, service_id, batch, now)
    except Exception:
        log.warning(
            "campaign %d: a batch failed; sending it row by row", campaign_id, exc_info=True
        )
        outcomes = await _batch_row_by_row(sessions, campaign_id, service_id, batch, now)
    # Counted only once committed.
    for outcome, accepted in outcomes:
        if accepted is not None:
            BULK_ACCEPTED.labels("campaign").inc()
        else:
            BULK_REFUSED.labels(outcome).inc()
        if accepted is not None:
            summary.sent += 1
            summary.parts += accepted.parts
            summary.cost_minor += accepted.cost_minor
            summary.currency = accepted.currency
        else:
            summary.refused[outcome] += 1
    return len(outcomes)


async def _claim(session: AsyncSession, campaign_id: int, batch: Sequence[CsvRow]) -> list[CsvRow]:
    """Claim the rows first: a second run of the same campaign at the same time skips them."""
    claimed = await session.execute(
        _insert(session)(CampaignRow)
        .values(
            [
                {"campaign_id": campaign_id, "row_no": row.row_no, "mt_id": None, "outcome": ""}
                for row in batch
            ]
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "row_no"])
        .returning(CampaignRow.row_no)
    )
    mine = set(claimed.scalars())
    return [row for row in batch if row.row_no in mine]


async def _touch(session: AsyncSession, campaign_id: int, now: datetime) -> None:
    await session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def _batch_at_once(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: int,
    service_id: int,
    batch: Sequence[CsvRow],
    now: datetime,
) -> list[tuple[str, Accepted | None]]:
    async with sessions() as session, session.begin():
        rows = await _claim(session, campaign_id, batch)
        if not rows:
            return []
        results = await accept_batch(
            session, [_request(campaign_id, service_id, row) for row in rows], [now] * len(rows)
        )
        outcomes: list[tuple[str, Accepted | None]] = [
            (SENT, result) if isinstance(result, Accepted) else (result.reason.value, None)
            for result in results
        ]
        connection = await session.connection()
        await connection.execute(
            _ROW_OUTCOME,
            [
                {
                    "b_campaign": campaign_id,
                    "b_row": row.row_no,
                    "b_mt": accepted.mt_id if accepted is not None else None,
                    "b_outcome": outcome,
                }
                for row, (outcome, accepted) in zip(rows, outcomes, strict=True)
            ],
        )
        await _touch(session, campaign_id, now)
    return outcomes


async def _batch_row_by_row(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: int,
    service_id: int,
    batch: Sequence[CsvRow],
    now: datetime,
) -> list[tuple[str, Accepted | None]]:
    outcomes: list[tuple[str, Accepted | None]] = []
    async with sessions() as session, session.begin():
        for row in await _claim(session, campaign_id, batch):
            savepoint = await session.begin_nested()
            result = await accept(session, _request(campaign_id, service_id, row), now=now)
            if isinstance(result, Accepted):
                await savepoint.commit()
                outcome, mt_id = SENT, result.mt_id
                outcomes.append((SENT, result))
            else:
                await savepoint.rollback()
                outcome, mt_id = result.reason.value, None
                outcomes.append((outcome, None))
            await session.execute(
                update(CampaignRow)
                .where(CampaignRow.campaign_id == campaign_id, CampaignRow.row_no == row.row_no)
                .values(mt_id=mt_id, outcome=outcome)
                .execution_options(synchronize_session=False)
            )
        await _touch(session, campaign_id, now)
    return outcomes


async def mark_interrupted(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int, now: datetime
) -> None:
    """Best effort on Ctrl-C: the status is informative, resuming does not depend on it."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == RUNNING)
            .values(status=INTERRUPTED, updated_at=now)
            .execution_options(synchronize_session=False)
        )


async def row_outcomes(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int
) -> dict[str, int]:
    """How many rows of a campaign ended each way (``sent`` or a refusal reason)."""
    async with sessions() as session:
        rows = await session.execute(
            select(CampaignRow.outcome, func.count())
            .where(CampaignRow.campaign_id == campaign_id)
            .group_by(CampaignRow.outcome)
        )
        return {outcome: int(count) for outcome, count in rows.all()}
