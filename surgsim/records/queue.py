"""A durable offline queue of xAPI statements, drained to a learning record store.

The queue is a small SQLite file in the data folder (``xapi-queue.db``), separate
from the attempt database so that statements wait even when that database is a
PostgreSQL server out of reach. Statements are keyed by their id (made on the
client), so queueing the same attempt twice adds nothing, and an LRS that stored
a batch whose answer was lost gets the same ids again (it keeps one of each).

Sends that fail for a reason that may pass (the LRS is unreachable, answers 5xx,
408 timeout, 429 too many requests, or 401/403: credentials to fix) are retried
with exponential backoff (``base_delay * 2**tries``, capped at ``max_delay``, with
jitter), oldest first; each keeps its last error for the report. A statement the
LRS rejects for good (any other 4xx: 400 invalid, 409 conflicting id, 413 ...) is
moved to the *failed* state with the LRS's answer, so that it no longer blocks the
statements behind it: a rejected batch is split in halves until the rejected
statements are alone. Failed statements are kept, listed by :meth:`StatementQueue.failed`
(``surgsim records xapi``) and queued again by :meth:`StatementQueue.retry_failed`
(``surgsim records xapi --retry-failed``, an admin's job) once the cause is fixed.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from surgsim.errors import RecordsError
from surgsim.paths import data_dir

if TYPE_CHECKING:
    from surgsim.records.xapi import LRSClient

__all__ = [
    "DrainReport",
    "FailedStatement",
    "RETRYABLE_4XX",
    "StatementQueue",
    "default_queue_path",
    "is_rejection",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS statements (
    id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    body TEXT NOT NULL,
    queued_at REAL NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at REAL,
    failed_at REAL,
    failed_status INTEGER,
    PRIMARY KEY (endpoint, id)
);
CREATE INDEX IF NOT EXISTS ix_statements_due ON statements (sent_at, next_try);
"""

#: Added to queue files of the first version (columns, SQL type).
_NEW_COLUMNS = (("failed_at", "REAL"), ("failed_status", "INTEGER"))

#: HTTP 4xx answers worth retrying (credentials, timeout, rate limit): the others
#: reject the statements themselves.
RETRYABLE_4XX = frozenset({401, 403, 408, 429})


def is_rejection(exc: Exception) -> bool:
    """True when an LRS error rejects the statements for good (4xx but 401/403/408/429).

    Unreachable servers, 5xx answers, answers without a status and the retryable
    4xx codes are not rejections: those statements wait and are sent again.
    """
    from surgsim.records.xapi import LRSUnavailable

    status = getattr(exc, "status", None)
    return (
        not isinstance(exc, LRSUnavailable)
        and status is not None
        and 400 <= int(status) < 500
        and int(status) not in RETRYABLE_4XX
    )


def default_queue_path() -> Path:
    """``xapi-queue.db`` in the data folder."""
    return data_dir() / "xapi-queue.db"


@dataclass(frozen=True)
class DrainReport:
    """What one :meth:`StatementQueue.drain` did.

    Attributes
    ----------
    sent : int
        Statements the LRS accepted now.
    pending : int
        Statements still waiting (for this endpoint).
    error : str
        The last error ("" when everything due was sent).
    """

    sent: int
    pending: int
    error: str = ""
    failed: int = 0


@dataclass(frozen=True)
class FailedStatement:
    """A statement the LRS rejected for good (see the module docstring).

    Attributes
    ----------
    id, endpoint : str
        Statement id and the LRS endpoint it was for.
    status : int or None
        The HTTP status of the rejection.
    reason : str
        The LRS's answer.
    queued_at, failed_at : float
        Unix times, seconds.
    tries : int
        Sends attempted.
    statement : dict
        The statement itself.
    """

    id: str
    endpoint: str
    status: int | None
    reason: str
    queued_at: float
    failed_at: float
    tries: int
    statement: dict[str, Any]


class StatementQueue:
    """Statements waiting for a learning record store.

    Parameters
    ----------
    path : path, optional
        SQLite file (default :func:`default_queue_path`).
    base_delay, max_delay : float
        Backoff after a failed send, seconds.
    """

    def __init__(
        self, path: str | Path | None = None, *, base_delay: float = 2.0, max_delay: float = 600.0
    ) -> None:
        self.path = Path(path) if path is not None else default_queue_path()
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._upgrade()
        except sqlite3.Error as exc:
            raise RecordsError(
                f"cannot open the statement queue {self.path}: {exc}; check that the data "
                "folder is writable (SURGSIM_DATA_DIR)"
            ) from exc

    def _upgrade(self) -> None:
        """Add the columns of the failed state to a queue file of the first version."""
        have = {r[1] for r in self._db.execute("PRAGMA table_info(statements)")}
        for name, kind in _NEW_COLUMNS:
            if name not in have:
                try:
                    self._db.execute(f"ALTER TABLE statements ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it meanwhile
                    if "duplicate column" not in str(exc).lower():
                        raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StatementQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(self, endpoint: str, statements: Iterable[dict[str, Any]]) -> int:
        """Queue statements for ``endpoint``; the number newly added (known ids are skipped)."""
        from surgsim.records.xapi import validate_statement

        rows = []
        for st in statements:
            problems = validate_statement(st)
            if problems or "id" not in st:
                raise RecordsError(
                    f"refusing to queue an invalid statement {st.get('id')!r}: "
                    + "; ".join(problems or ["it has no id"])
                )
            rows.append((st["id"], endpoint, json.dumps(st, sort_keys=True), time.time()))
        before = self._db.total_changes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO statements (id, endpoint, body, queued_at) VALUES (?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self._db.total_changes - before

    def _count(self, where: str, endpoint: str | None) -> int:
        sql = f"SELECT count(*) FROM statements WHERE {where}"
        args: tuple[Any, ...] = ()
        if endpoint is not None:
            sql += " AND endpoint = ?"
            args = (endpoint,)
        return int(self._db.execute(sql, args).fetchone()[0])

    def pending(self, endpoint: str | None = None) -> int:
        """Statements waiting to be sent (for one endpoint, or all); failed ones excluded."""
        return self._count("sent_at IS NULL AND failed_at IS NULL", endpoint)

    def sent(self, endpoint: str | None = None) -> int:
        """Statements already accepted by the LRS."""
        return self._count("sent_at IS NOT NULL", endpoint)

    def failed_count(self, endpoint: str | None = None) -> int:
        """Statements the LRS rejected for good (see :meth:`failed`)."""
        return self._count("failed_at IS NOT NULL AND sent_at IS NULL", endpoint)

    def last_error(self, endpoint: str) -> str:
        """The last error of a waiting statement of ``endpoint`` ("" when none)."""
        row = self._db.execute(
            "SELECT last_error FROM statements WHERE endpoint = ? AND sent_at IS NULL "
            "AND failed_at IS NULL AND last_error IS NOT NULL ORDER BY next_try DESC LIMIT 1",
            (endpoint,),
        ).fetchone()
        return row[0] if row else ""

    def failed(self, endpoint: str | None = None) -> list[FailedStatement]:
        """The statements the LRS rejected for good, oldest rejection first."""
        sql = (
            "SELECT id, endpoint, failed_status, last_error, queued_at, failed_at, tries, body "
            "FROM statements WHERE failed_at IS NOT NULL AND sent_at IS NULL"
        )
        args: tuple[Any, ...] = ()
        if endpoint is not None:
            sql += " AND endpoint = ?"
            args = (endpoint,)
        rows = self._db.execute(sql + " ORDER BY failed_at, queued_at, id", args).fetchall()
        return [
            FailedStatement(
                id=r[0], endpoint=r[1], status=r[2], reason=r[3] or "", queued_at=r[4],
                failed_at=r[5], tries=r[6], statement=json.loads(r[7]),
            )
            for r in rows
        ]

    def retry_failed(self, endpoint: str | None = None, ids: Iterable[str] | None = None) -> int:
        """Queue failed statements again (all, or those of ``endpoint`` / with ``ids``).

        Returns
        -------
        int
            How many went back to waiting (sent with the next drain).
        """
        sql = (
            "UPDATE statements SET failed_at = NULL, failed_status = NULL, tries = 0, "
            "next_try = 0 WHERE failed_at IS NOT NULL AND sent_at IS NULL"
        )
        args: list[Any] = []
        if endpoint is not None:
            sql += " AND endpoint = ?"
            args.append(endpoint)
        if ids is not None:
            wanted = list(ids)
            if not wanted:
                return 0
            sql += f" AND id IN ({', '.join('?' * len(wanted))})"
            args += wanted
        return self._db.execute(sql, args).rowcount

    def drain(
        self,
        client: LRSClient,
        *,
        batch_size: int = 50,
        now: float | None = None,
        ignore_backoff: bool = False,
    ) -> DrainReport:
        """Send the due statements of ``client.endpoint`` in batches, oldest first.

        A batch the LRS rejects for good (see :func:`is_rejection`) is split until the
        rejected statements are found; they move to the failed state and the rest
        goes on. Any other failure stops the drain (the rest waits for the next one)
        and reschedules the unsent statements with backoff. ``ignore_backoff`` sends
        everything waiting now (an explicit "send now" from the user).
        """
        endpoint = client.endpoint
        totals = {"sent": 0, "failed": 0}
        error = ""
        while True:
            t = time.time() if now is None else now
            rows = self._db.execute(
                "SELECT id, body, tries FROM statements WHERE endpoint = ? AND sent_at IS NULL "
                "AND failed_at IS NULL"
                + ("" if ignore_backoff else " AND next_try <= ?")
                + " ORDER BY queued_at, id LIMIT ?",
                (endpoint, batch_size) if ignore_backoff else (endpoint, t, batch_size),
            ).fetchall()
            if not rows:
                break
            error = self._send(client, rows, t, totals)
            if error:
                break
        if not error and totals["failed"]:
            error = self._failed_note(endpoint, totals["failed"])
        return DrainReport(
            sent=totals["sent"], pending=self.pending(endpoint), error=error, failed=totals["failed"]
        )

    def _send(
        self, client: LRSClient, rows: list[tuple[str, str, int]], t: float, totals: dict[str, int]
    ) -> str:
        """Post ``rows``; split rejected batches. The error that stopped sending, or ""."""
        from surgsim.records.xapi import LRSError

        endpoint = client.endpoint
        try:
            client.post([json.loads(body) for _, body, _ in rows])
        except LRSError as exc:
            if not is_rejection(exc):
                self._backoff(endpoint, rows, t, str(exc))
                return str(exc)
            if len(rows) == 1:
                self._fail(endpoint, rows[0][0], exc)
                totals["failed"] += 1
                return ""
            half = len(rows) // 2
            for part in (rows[:half], rows[half:]):
                error = self._send(client, part, t, totals)
                if error:
                    return error
            return ""
        self._db.executemany(
            "UPDATE statements SET sent_at = ?, last_error = NULL, tries = tries + 1 "
            "WHERE endpoint = ? AND id = ?",
            [(time.time(), endpoint, r[0]) for r in rows],
        )
        totals["sent"] += len(rows)
        return ""

    def _backoff(self, endpoint: str, rows: list[tuple[str, str, int]], t: float, error: str) -> None:
        tries = max(r[2] for r in rows) + 1
        delay = min(self.max_delay, self.base_delay * 2 ** (tries - 1))
        delay *= 0.75 + 0.5 * random.random()
        self._db.executemany(
            "UPDATE statements SET tries = tries + 1, next_try = ?, last_error = ? "
            "WHERE endpoint = ? AND id = ?",
            [(t + delay, error, endpoint, r[0]) for r in rows],
        )

    def _fail(self, endpoint: str, statement_id: str, exc: Exception) -> None:
        self._db.execute(
            "UPDATE statements SET tries = tries + 1, failed_at = ?, failed_status = ?, "
            "last_error = ? WHERE endpoint = ? AND id = ?",
            (time.time(), getattr(exc, "status", None), str(exc), endpoint, statement_id),
        )

    def _failed_note(self, endpoint: str, n: int) -> str:
        last = self.failed(endpoint)[-1]
        return (
            f"the learning record store rejected {n} statement(s) for good (last: HTTP "
            f"{last.status}: {last.reason}); they are kept as failed: list them with "
            "`surgsim records xapi` and send them again with `surgsim records xapi "
            "--retry-failed` once the cause is fixed"
        )
