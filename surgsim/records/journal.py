"""Durable attempt journals: the input log is on disk while the attempt runs.

An :class:`AttemptWriter` appends one JSON line per input and event to a journal
file in the data folder (``journal/<attempt id>.journal``), and fsyncs in batches
(every ``batch_size`` records or ``sync_interval`` seconds, and on :meth:`flush`).
What was synced is *committed*: it survives a crash of the process or of the
machine. While it runs, the writer holds an exclusive ``flock`` on its journal, so
that :func:`recover_journals` (run by every :class:`~surgsim.records.Records` open)
only picks up journals whose writer is dead:

- no ``end`` record: the attempt is stored as ``interrupted`` with every synced
  input and event (no samples, no score);
- an ``end`` record (the attempt finished but the database was unreachable): the
  attempt is stored as it finished, with its full log and score.

A journal is deleted once its attempt is in the database. Journal format (one JSON
object per line; a torn last line is ignored)::

    {"type": "begin", "v": 1, "attempt_id": ..., "db": <masked URL>, "trainee_id": ...,
     "scenario": {"id", "version", "hash", "title", "content"}, "seed", "dt", "station",
     "mode", "case_id", "started_at", "pid"}
    {"type": "i", "step": 120, "action": "advance", "value": 0.02}
    {"type": "e", "t": 1.25, "kind": "wall_hit", "data": {...}}
    {"type": "end", "status": "completed", "ended_at": ..., "log": <base64 of the
     compressed log>, "score": ..., "passed": ..., "critical_errors": [...],
     "metrics": {...}, "result": {...}, "released": ...}
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from surgsim.errors import RecordsError
from surgsim.scoring.log import Event, InputEvent, SessionLog
from surgsim.scoring.metrics import critical_errors_in

if TYPE_CHECKING:
    from surgsim.records.db import Records
    from surgsim.scenarios.model import Scenario
    from surgsim.scoring.rubric import ScoreResult

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: fall back to the writer's pid
    fcntl = None  # type: ignore[assignment]

__all__ = ["AttemptPendingError", "AttemptWriter", "recover_journals"]

JOURNAL_SUFFIX = ".journal"


class AttemptPendingError(RecordsError):
    """The attempt finished but the database was unreachable: it is kept in its journal
    and stored the next time records are opened (``attempt_id``, ``journal`` say where)."""

    def __init__(self, message: str, attempt_id: str, journal: Path) -> None:
        super().__init__(message)
        self.attempt_id = attempt_id
        self.journal = journal


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class AttemptWriter:
    """Journal one running attempt, then store it in the database.

    Parameters
    ----------
    records : Records
        The database the attempt goes to (its masked URL is written in the journal).
    trainee_id : str
        Opaque trainee id.
    scenario : Scenario
        The scenario being run.
    seed : int, optional
        Session seed (default: the scenario's).
    dt : float
        Physics step, seconds (input steps are counted in it).
    station, mode, case_id : str, optional
        As for :meth:`Records.add_attempt`.
    batch_size : int
        Records per fsync (also synced every ``sync_interval`` seconds).
    sync_interval : float
        Seconds between fsyncs at most while records arrive.

    Examples
    --------
    >>> with AttemptWriter(records, "T-1", scenario, dt=1e-3) as w:   # doctest: +SKIP
    ...     w.add_input(InputEvent(0, "advance", 0.02))
    ...     ...
    ...     w.finish(session.log(), session.score())
    """

    def __init__(
        self,
        records: Records,
        trainee_id: str,
        scenario: Scenario,
        *,
        seed: int | None = None,
        dt: float = 1e-3,
        station: str | None = None,
        mode: str | None = None,
        case_id: str | None = None,
        batch_size: int = 64,
        sync_interval: float = 0.5,
        attempt_id: str | None = None,
    ) -> None:
        from surgsim.records.db import MODES, _check_trainee_id, _scenario_info

        _check_trainee_id(trainee_id)
        self.records = records
        self.scenario = scenario
        self.trainee_id = trainee_id
        self.mode = mode or scenario.mode
        if self.mode not in MODES:
            raise RecordsError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        self.station = station or socket.gethostname()
        self.case_id = case_id
        self.attempt_id = attempt_id or str(uuid.uuid4())
        self.batch_size = max(1, int(batch_size))
        self.sync_interval = float(sync_interval)
        self.started_at = datetime.now(UTC)
        self.synced = 0  # records (inputs + events) known to be on disk
        self.syncs = 0
        self._pending: list[bytes] = []
        self._count = 0
        self._last_sync = time.monotonic()
        self._closed = False
        folder = records.journal_dir
        self.path = folder / f"{self.attempt_id}{JOURNAL_SUFFIX}"
        tmp = folder / f"{self.attempt_id}.tmp"
        try:
            self._file = open(tmp, "ab")
            if fcntl is not None:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise RecordsError(
                f"cannot write the attempt journal {tmp}: {exc}; check that the data folder "
                "is writable (SURGSIM_DATA_DIR)"
            ) from exc
        header = {
            "type": "begin",
            "v": 1,
            "attempt_id": self.attempt_id,
            "db": records.masked_url,
            "trainee_id": trainee_id,
            "scenario": _scenario_info(scenario),
            "seed": int(scenario.seed if seed is None else seed),
            "dt": float(dt),
            "station": self.station,
            "mode": self.mode,
            "case_id": case_id,
            "started_at": self.started_at.isoformat(),
            "pid": os.getpid(),
        }
        self._append(header)
        self._sync()
        os.replace(tmp, self.path)  # only now may recovery see it (and it is locked)
        _fsync_dir(folder)

    # ------------------------------------------------------------ appending

    def _append(self, record: dict[str, Any]) -> None:
        if self._closed:
            raise RecordsError(f"attempt {self.attempt_id} is finished; start a new AttemptWriter")
        self._pending.append(
            (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        )
        self._count += 1

    def _maybe_sync(self) -> None:
        if (
            len(self._pending) >= self.batch_size
            or time.monotonic() - self._last_sync >= self.sync_interval
        ):
            self._sync()

    def _sync(self) -> None:
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
        self._file.flush()
        os.fsync(self._file.fileno())
        self.synced = self._count - 1  # minus the header
        self.syncs += 1
        self._last_sync = time.monotonic()

    def add_input(self, event: InputEvent) -> None:
        """Journal one trainee input (synced with its batch)."""
        self._append(
            {"type": "i", "step": int(event.step), "action": event.action, "value": float(event.value)}
        )
        self._maybe_sync()

    def add_event(self, event: Event) -> None:
        """Journal one discrete event (synced with its batch)."""
        self._append({"type": "e", "t": float(event.t), "kind": event.kind, "data": dict(event.data)})
        self._maybe_sync()

    def flush(self) -> int:
        """Write and fsync everything journalled so far; the number of records on disk."""
        self._sync()
        return self.synced

    # ------------------------------------------------------------ ending

    def finish(self, log: SessionLog, result: ScoreResult, *, status: str = "completed") -> str:
        """End the attempt and store it (with the same attempt id) in the database.

        The ``end`` record (full log and score) is synced to the journal first, so
        the attempt survives an unreachable database.

        Returns
        -------
        str
            The attempt id.

        Raises
        ------
        AttemptPendingError
            The database could not be written: the attempt waits in its journal and
            is stored the next time records are opened (the message says so).
        """
        from surgsim.records.db import METRICS, MetricError, _finite, compute_metrics

        values: dict[str, float | None] = {m.name: _finite(m.value) for m in result.metrics}
        params = self.scenario.metric_params()
        for name in METRICS:
            if name not in values:
                try:
                    values[name] = _finite(compute_metrics(log, params, [name])[name])
                except MetricError:
                    continue
        blob = log.to_bytes()
        self._append(
            {
                "type": "end",
                "status": status,
                "ended_at": datetime.now(UTC).isoformat(),
                "log": base64.b64encode(blob).decode("ascii"),
                "score": float(result.total),
                "passed": bool(result.passed),
                "critical_errors": list(result.critical_errors),
                "metrics": values,
                "result": result.to_dict(),
            }
        )
        self._sync()
        try:
            self.records.add_attempt(
                self.trainee_id,
                self.scenario,
                log,
                result,
                station=self.station,
                mode=self.mode,
                status=status,
                started_at=self.started_at,
                attempt_id=self.attempt_id,
                case_id=self.case_id,
                log_bytes=blob,
            )
        except RecordsError as exc:
            self._release()
            raise AttemptPendingError(
                f"attempt {self.attempt_id} is kept in {self.path} and will be stored the next "
                f"time records open: {exc}",
                self.attempt_id,
                self.path,
            ) from exc
        self._remove()
        return self.attempt_id

    def abort(self) -> None:
        """Stop journalling without an end: the attempt is recovered as ``interrupted``."""
        if not self._closed:
            self._sync()
            self._release()

    def _release(self) -> None:
        self._closed = True
        try:
            if fcntl is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._file.close()

    def _remove(self) -> None:
        self._release()
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)

    def __enter__(self) -> AttemptWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.abort()


# ------------------------------------------------------------------ recovery


def read_journal(path: Path) -> tuple[dict[str, Any], list[InputEvent], list[Event], dict | None]:
    """The header, inputs, events and end record (or None) of a journal.

    A torn (unterminated or unparsable) last line is ignored; a damaged line
    anywhere else raises :class:`RecordsError`.
    """
    lines = path.read_bytes().split(b"\n")
    header: dict[str, Any] | None = None
    inputs: list[InputEvent] = []
    events: list[Event] = []
    end: dict[str, Any] | None = None
    complete = lines[:-1]  # the last element is "" or a torn line
    for n, raw in enumerate(complete, 1):
        try:
            rec = json.loads(raw)
        except ValueError as exc:
            raise RecordsError(f"attempt journal {path}, line {n}: damaged ({exc})") from exc
        kind = rec.get("type")
        if kind == "begin":
            header = rec
        elif kind == "i":
            inputs.append(InputEvent(int(rec["step"]), str(rec["action"]), float(rec["value"])))
        elif kind == "e":
            events.append(Event(float(rec["t"]), str(rec["kind"]), dict(rec.get("data", {}))))
        elif kind == "end":
            end = rec
    if header is None:
        raise RecordsError(f"attempt journal {path} has no header line; it cannot be recovered")
    return header, inputs, events, end


def _try_lock(f: Any) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def recover_journals(records: Records) -> list[tuple[str, str]]:
    """Store the attempts of dead writers' journals in ``records`` (see the module doc)."""
    out: list[tuple[str, str]] = []
    folder = records.journal_dir
    for path in sorted(folder.glob(f"*{JOURNAL_SUFFIX}")):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            continue  # stored and removed by its writer meanwhile
        with f:
            if not _try_lock(f):
                continue  # its writer is alive
            if not path.exists():
                continue
            header, inputs, events, end = read_journal(path)
            if header.get("db") != records.masked_url:
                continue  # another database's attempt
            aid = header["attempt_id"]
            if not records.has_attempt(aid):
                status = _store_from_journal(records, header, inputs, events, end, path)
                out.append((aid, status))
            path.unlink(missing_ok=True)
    # a writer that died between creating its journal and publishing it left only a
    # header (no input yet): nothing to keep
    for tmp in folder.glob("*.tmp"):
        try:
            with open(tmp, "rb") as f:
                if _try_lock(f) and time.time() - tmp.stat().st_mtime > 60:
                    tmp.unlink(missing_ok=True)
        except OSError:
            continue
    if out:
        _fsync_dir(folder)
    return out


def _store_from_journal(
    records: Records,
    header: dict[str, Any],
    inputs: list[InputEvent],
    events: list[Event],
    end: dict[str, Any] | None,
    path: Path,
) -> str:
    sc = header["scenario"]
    started = datetime.fromisoformat(header["started_at"])
    common = {
        "attempt_id": header["attempt_id"],
        "trainee_id": header["trainee_id"],
        "scenario": sc,
        "station": header.get("station", ""),
        "mode": header.get("mode", "practice"),
        "started_at": started,
        "case_id": header.get("case_id"),
    }
    if end is not None:
        blob = base64.b64decode(end["log"])
        log = SessionLog.from_bytes(blob)
        records._store_attempt(
            **common,
            log=log,
            blob=blob,
            ended_at=datetime.fromisoformat(end["ended_at"]),
            status=end["status"],
            score=end["score"],
            passed=bool(end["passed"]),
            critical_errors=list(end["critical_errors"]),
            metrics=dict(end["metrics"]),
            result=dict(end["result"]),
            released=end.get("released", header.get("mode") == "practice"),
        )
        return str(end["status"])
    log = SessionLog(
        scenario_id=sc["id"],
        scenario_hash=sc["hash"],
        seed=int(header["seed"]),
        dt=float(header["dt"]),
        inputs=inputs,
        samples={},
        events=events,
    )
    ended = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    last_step = max((e.step for e in inputs), default=0) * float(header["dt"])
    records._store_attempt(
        **common,
        log=log,
        blob=log.to_bytes(),
        ended_at=max(ended, started),
        status="interrupted",
        score=None,
        passed=False,
        critical_errors=critical_errors_in(log),
        metrics={},
        result={
            "interrupted": True,
            "inputs": len(inputs),
            "events": len(events),
            "last_input_s": last_step,
            "note": "the station stopped during the attempt; the inputs up to then are kept",
        },
        released=header.get("mode") == "practice",
    )
    return "interrupted"
