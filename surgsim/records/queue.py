"""A durable offline queue of xAPI statements, drained to a learning record store.

The queue is a small SQLite file in the data folder (``xapi-queue.db``), separate
from the attempt database so that statements wait even when that database is a
PostgreSQL server out of reach. Statements are keyed by their id (made on the
client), so queueing the same attempt twice adds nothing, and an LRS that stored
a batch whose answer was lost gets the same ids again (it keeps one of each).

Failed sends are retried with exponential backoff (``base_delay * 2**tries``,
capped at ``max_delay``, with jitter); each keeps its last error for the report.
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

__all__ = ["DrainReport", "StatementQueue", "default_queue_path"]

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
    PRIMARY KEY (endpoint, id)
);
CREATE INDEX IF NOT EXISTS ix_statements_due ON statements (sent_at, next_try);
"""


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
        except sqlite3.Error as exc:
            raise RecordsError(
                f"cannot open the statement queue {self.path}: {exc}; check that the data "
                "folder is writable (SURGSIM_DATA_DIR)"
            ) from exc

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

    def pending(self, endpoint: str | None = None) -> int:
        """Statements not yet sent (for one endpoint, or all)."""
        sql = "SELECT count(*) FROM statements WHERE sent_at IS NULL"
        args: tuple[Any, ...] = ()
        if endpoint is not None:
            sql += " AND endpoint = ?"
            args = (endpoint,)
        return int(self._db.execute(sql, args).fetchone()[0])

    def sent(self, endpoint: str | None = None) -> int:
        """Statements already accepted by the LRS."""
        sql = "SELECT count(*) FROM statements WHERE sent_at IS NOT NULL"
        args: tuple[Any, ...] = ()
        if endpoint is not None:
            sql += " AND endpoint = ?"
            args = (endpoint,)
        return int(self._db.execute(sql, args).fetchone()[0])

    def last_error(self, endpoint: str) -> str:
        row = self._db.execute(
            "SELECT last_error FROM statements WHERE endpoint = ? AND sent_at IS NULL "
            "AND last_error IS NOT NULL ORDER BY next_try DESC LIMIT 1",
            (endpoint,),
        ).fetchone()
        return row[0] if row else ""

    def drain(
        self,
        client: LRSClient,
        *,
        batch_size: int = 50,
        now: float | None = None,
        ignore_backoff: bool = False,
    ) -> DrainReport:
        """Send the due statements of ``client.endpoint`` in batches, oldest first.

        Stops at the first failure (the rest waits for the next drain); the failed
        batch is rescheduled with backoff. ``ignore_backoff`` sends everything
        pending now (an explicit "send now" from the user).
        """
        from surgsim.records.xapi import LRSError

        endpoint = client.endpoint
        sent = 0
        error = ""
        while True:
            t = time.time() if now is None else now
            rows = self._db.execute(
                "SELECT id, body, tries FROM statements WHERE endpoint = ? AND sent_at IS NULL"
                + ("" if ignore_backoff else " AND next_try <= ?")
                + " ORDER BY queued_at, id LIMIT ?",
                (endpoint, batch_size) if ignore_backoff else (endpoint, t, batch_size),
            ).fetchall()
            if not rows:
                break
            try:
                client.post([json.loads(body) for _, body, _ in rows])
            except LRSError as exc:
                error = str(exc)
                tries = max(r[2] for r in rows) + 1
                delay = min(self.max_delay, self.base_delay * 2 ** (tries - 1))
                delay *= 0.75 + 0.5 * random.random()
                self._db.executemany(
                    "UPDATE statements SET tries = tries + 1, next_try = ?, last_error = ? "
                    "WHERE endpoint = ? AND id = ?",
                    [(t + delay, error, endpoint, r[0]) for r in rows],
                )
                break
            self._db.executemany(
                "UPDATE statements SET sent_at = ?, last_error = NULL WHERE endpoint = ? AND id = ?",
                [(time.time(), endpoint, r[0]) for r in rows],
            )
            sent += len(rows)
        return DrainReport(sent=sent, pending=self.pending(endpoint), error=error)
