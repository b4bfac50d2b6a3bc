"""The batches of bulk sends on SQLite: stdlib ``sqlite3`` on a thread and a connection of
their own.

The whole transaction of a batch (``services/bulk_decide.py``: read, lock, decide, write)
runs on that thread in one call, so a batch costs the event loop one hand-over instead of one
per statement, and the statements run in C. ``BEGIN IMMEDIATE`` takes SQLite's one write
lock before the first read, so nothing the batch reads can change before it commits (this is
the lock the SQLAlchemy store gets with its upserts on PostgreSQL); the one thread also queues
this process's batches in order instead of in SQLite's busy handler, which sleeps in steps of
up to 100 ms. The statements are constant (``json_each`` of a JSON array where a list is
needed), so sqlite3's statement cache prepares each once.

The rows written are the ones the SQLAlchemy store writes (``bulk_batch.py``), in the storage
format of store/types.py and of SQLAlchemy's JSON type; the ledger entries are those of
``store/ledger.charge_merchant_many``: one conditional debit of the merchant's cached balance
by the batch's total, one ``mt_cost`` entry per message.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final

from smsgate.services.bulk_batch import NEVER, BatchConflict
from smsgate.services.bulk_decide import BatchDecision
from smsgate.services.bulk_inputs import ServiceView
from smsgate.services.bulk_model import MT_COST_KIND, Accepted, BulkRequest, SendResult
from smsgate.services.routes import RouteRow
from smsgate.store.ledger import merchant_account

__all__ = ["SqliteBatches"]

_SERVICES: Final = (
    "SELECT s.id, s.type, s.merchant_id, s.status, s.ip_allowlist, s.settings, m.status, "
    "m.currency, m.timezone FROM services AS s JOIN merchants AS m ON m.id = s.merchant_id "
    "WHERE s.id IN (SELECT value FROM json_each(?))"
)
_OPTED_OUT: Final = (
    "SELECT service_id, msisdn FROM opt_outs "
    "WHERE service_id IN (SELECT value FROM json_each(?)) "
    "AND msisdn IN (SELECT value FROM json_each(?))"
)
_EARLIER: Final = (
    "SELECT id, service_id, idempotency_key, msisdn, parts, encoding, cost_minor, currency, "
    "operator_id FROM mt_messages WHERE service_id IN (SELECT value FROM json_each(?)) "
    "AND idempotency_key IN (SELECT value FROM json_each(?))"
)
_ROUTES: Final = (
    "SELECT r.country, r.operator_id, r.priority FROM routes AS r "
    "JOIN operators AS o ON o.id = r.operator_id WHERE o.enabled"
)
_OPERATORS: Final = "SELECT id, country FROM operators WHERE enabled"
# Reading under the write lock is locking here; the upserts create the rows the writes move.
_LOCK_COUNTERS: Final = (
    'INSERT INTO quota_counters (service_id, "window", count) '
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 0 FROM json_each(?) "
    'WHERE true ON CONFLICT (service_id, "window") DO UPDATE SET count = count '
    'RETURNING service_id, "window", count'
)
_LOCK_MARKS: Final = (
    "INSERT INTO send_marks (service_id, scope, last_at) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), ? FROM json_each(?) "
    "WHERE true ON CONFLICT (service_id, scope) DO UPDATE SET last_at = last_at "
    "RETURNING service_id, scope, last_at"
)
_MERCHANTS: Final = (
    "SELECT id, balance_minor, credit_minor FROM merchants "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_INSERT_MT: Final = (
    "INSERT INTO mt_messages (merchant_id, service_id, mo_id, operator_id, msisdn, sender, "
    "text, encoding, parts, status, error_code, cost_minor, currency, idempotency_key, "
    "attempts, next_attempt_at, created_at, updated_at, details) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MOVE_COUNTER: Final = (
    "UPDATE quota_counters SET count = count + ? "
    'WHERE service_id = ? AND "window" = ? AND count + ? <= ?'
)
_MOVE_MARK: Final = "UPDATE send_marks SET last_at = ? WHERE service_id = ? AND scope = ?"
_DEBIT: Final = (
    "UPDATE merchants SET balance_minor = balance_minor - ? "
    "WHERE id = ? AND currency = ? AND balance_minor - ? >= -credit_minor"
)
_LEDGER: Final = (
    "INSERT INTO ledger_entries (account, merchant_id, kind, amount_minor, currency, ref, "
    "memo, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def sqlite_time(when: datetime) -> str:
    """store/types.UTCDateTime's storage on SQLite (SQLAlchemy's format): naive UTC, the
    microseconds always written, so that times compare as text."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _mt_params(row: dict[str, Any], times: dict[datetime, str]) -> tuple[Any, ...]:
    """_INSERT_MT's parameters; ``times`` keeps the batch's few instants formatted."""

    def stored(when: datetime) -> str:
        found = times.get(when)
        if found is None:
            found = times[when] = sqlite_time(when)
        return found

    return (
        row["merchant_id"],
        row["service_id"],
        row["mo_id"],
        row["operator_id"],
        row["msisdn"],
        row["sender"],
        row["text"],
        row["encoding"],
        row["parts"],
        row["status"],
        row["error_code"],
        row["cost_minor"],
        row["currency"],
        row["idempotency_key"],
        row["attempts"],
        stored(row["next_attempt_at"]),
        stored(row["created_at"]),
        stored(row["updated_at"]),
        json.dumps(row["details"]),
    )


class SqliteBatches:
    """This process's bulk batches on one SQLite file, one after another."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-accept")
        # Opened on the thread; closed when the queue holding this is dropped.
        self._db: list[sqlite3.Connection] = []
        weakref.finalize(self, _close, self._db, self._executor)

    async def accept(
        self, requests: Sequence[BulkRequest], nows: Sequence[datetime]
    ) -> list[SendResult]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, requests, nows)

    async def release(self) -> None:
        return None  # the connection is the thread's, kept for the process's life

    def _connect(self) -> sqlite3.Connection:
        # The pragmas store/db.py gives the gateway's own connections; BEGIN is ours.
        db = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, cached_statements=32
        )
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA busy_timeout=30000",
            "PRAGMA foreign_keys=ON",
        ):
            db.execute(pragma)
        self._db.append(db)
        return db

    def _transaction(
        self, requests: Sequence[BulkRequest], nows: Sequence[datetime]
    ) -> list[SendResult]:
        db = self._db[0] if self._db else self._connect()
        # Numbers and texts are parsed before the write lock is taken: other writers (the
        # operator links, a campaign) wait for it meanwhile.
        batch = BatchDecision(requests, nows)
        db.execute("BEGIN IMMEDIATE")
        try:
            results = _accept(db, batch)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results


def _close(connections: list[sqlite3.Connection], executor: ThreadPoolExecutor) -> None:
    for db in connections:
        db.close()
    executor.shutdown(wait=False)


def _accept(db: sqlite3.Connection, batch: BatchDecision) -> list[SendResult]:
    services = {
        row[0]: ServiceView.of(
            kind=row[1],
            merchant_id=row[2],
            status=row[3],
            ip_allowlist=json.loads(row[4]) if row[4] else None,
            settings=json.loads(row[5]) if row[5] else None,
            merchant_status=row[6],
            currency=row[7],
            timezone=row[8],
        )
        for row in db.execute(_SERVICES, (json.dumps(batch.service_ids()),))
    }
    batch.check(
        services,
        _opted_out(db, batch.recipients()),
        _earlier(db, batch.idempotency_keys()),
        [RouteRow(*row) for row in db.execute(_ROUTES)],
        [(row[0], row[1]) for row in db.execute(_OPERATORS)],
    )
    counters: dict[tuple[int, str], int] = {}
    if keys := batch.counter_keys():
        for service_id, window, count in db.execute(_LOCK_COUNTERS, (json.dumps(keys),)):
            counters[(service_id, window)] = int(count)
    marks: dict[tuple[int, str], datetime] = {}
    if keys := batch.mark_keys():
        for service_id, scope, last in db.execute(
            _LOCK_MARKS, (sqlite_time(NEVER), json.dumps(keys))
        ):
            marks[(service_id, scope)] = _parse_time(last)
    funds: dict[int, tuple[int, int]] = {}
    if ids := batch.merchant_ids():
        for merchant_id, balance, credit in db.execute(_MERCHANTS, (json.dumps(ids),)):
            funds[merchant_id] = (int(balance), -int(credit))
    batch.decide(counters, marks, funds)
    return batch.finish(_write(db, batch))


def _opted_out(db: sqlite3.Connection, pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
    if not pairs:
        return set()
    services = json.dumps(sorted({s for s, _ in pairs}))
    numbers = json.dumps(sorted({m for _, m in pairs}))
    found = {(row[0], row[1]) for row in db.execute(_OPTED_OUT, (services, numbers))}
    return found & set(pairs)


def _earlier(
    db: sqlite3.Connection, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], Accepted]:
    if not keys:
        return {}
    services = json.dumps(sorted({s for s, _ in keys}))
    names = json.dumps(sorted({k for _, k in keys}))
    wanted = set(keys)
    found: dict[tuple[int, str], Accepted] = {}
    for row in db.execute(_EARLIER, (services, names)):
        if (row[1], row[2]) in wanted:
            found[(row[1], row[2])] = Accepted(
                row[0], row[3], row[4], row[5], row[6], row[7], row[8], duplicate=True
            )
    return found


def _write(db: sqlite3.Connection, batch: BatchDecision) -> list[int]:
    if not batch.mt_rows:
        return []
    ids: list[int] = []
    times: dict[datetime, str] = {}
    for row in batch.mt_rows:
        inserted = db.execute(_INSERT_MT, _mt_params(row, times)).lastrowid
        assert inserted is not None
        ids.append(inserted)
    moves = batch.counter_moves()
    if moves:
        moved = db.executemany(
            _MOVE_COUNTER, [(used, s, w, used, limit) for s, w, used, limit in moves]
        )
        if moved.rowcount != len(moves):
            raise BatchConflict("a quota counter moved under its lock")
    if marks := batch.mark_moves():
        db.executemany(_MOVE_MARK, [(sqlite_time(last), s, scope) for s, scope, last in marks])
    for charge in batch.charges():
        debited = db.execute(
            _DEBIT, (charge.total, charge.merchant_id, charge.currency, charge.total)
        )
        if debited.rowcount != 1:
            raise BatchConflict("a merchant's balance moved under its lock")
        account = merchant_account(charge.merchant_id)
        at = sqlite_time(charge.at)
        db.executemany(
            _LEDGER,
            [
                (
                    account,
                    charge.merchant_id,
                    MT_COST_KIND,
                    -amount,
                    charge.currency,
                    f"mt:{ids[position]}",
                    memo[:255],
                    at,
                )
                for position, amount, memo in charge.entries
            ],
        )
    return ids
