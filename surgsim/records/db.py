"""The attempt database: trainees, attempts (with their full session log) and metrics.

SQLAlchemy 2 with SQLite by default (:func:`surgsim.paths.default_db_url`, in WAL
mode with ``synchronous=FULL`` so a stored attempt survives a power cut) or any
SQLAlchemy URL (e.g. ``postgresql+psycopg://user:pw@host/surgsim``).

Trainees are stored by an opaque id only (``T-3f9a...`` or one the lab gives);
names and e-mails never enter this database (docs/domain.md section 6).
"""

from __future__ import annotations

import hashlib
import math
import re
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    LargeBinary,
    String,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    sessionmaker,
)

from surgsim.errors import RecordsError
from surgsim.paths import default_db_url
from surgsim.scoring.log import SessionLog
from surgsim.scoring.metrics import METRICS, MetricError, compute_metrics

if TYPE_CHECKING:
    from surgsim.scenarios.model import Scenario
    from surgsim.scoring.rubric import ScoreResult

__all__ = [
    "ATTEMPT_STATUSES",
    "AttemptRecord",
    "AttemptSummary",
    "Records",
    "mask_url",
    "new_trainee_id",
]

ATTEMPT_STATUSES = ("completed", "aborted", "interrupted")
MODES = ("practice", "assessment")
ROLES = ("trainee", "educator", "admin")
_TRAINEE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


# ------------------------------------------------------------------ tables


class Base(DeclarativeBase):
    pass


class TraineeRow(Base):
    __tablename__ = "trainees"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    role: Mapped[str] = mapped_column(String(16), default="trainee")

    attempts: Mapped[list[AttemptRow]] = relationship(back_populates="trainee")


class AttemptRow(Base):
    __tablename__ = "attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    trainee_id: Mapped[str] = mapped_column(ForeignKey("trainees.id"), index=True)
    scenario_id: Mapped[str] = mapped_column(String(64), index=True)
    scenario_version: Mapped[str] = mapped_column(String(32))
    scenario_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    station: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    critical_errors: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, float | None]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    log: Mapped[bytes] = mapped_column(LargeBinary)
    log_hash: Mapped[str] = mapped_column(String(64))
    input_hash: Mapped[str] = mapped_column(String(64))

    trainee: Mapped[TraineeRow] = relationship(back_populates="attempts")
    metric_rows: Mapped[list[MetricRow]] = relationship(
        back_populates="attempt", cascade="all, delete-orphan"
    )


class MetricRow(Base):
    __tablename__ = "metrics"

    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(16))

    attempt: Mapped[AttemptRow] = relationship(back_populates="metric_rows")


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class AttemptSummary:
    """One attempt without its log (what lists show)."""

    id: str
    trainee_id: str
    scenario_id: str
    scenario_version: str
    mode: str
    status: str
    station: str
    started_at: datetime
    ended_at: datetime
    score: float
    passed: bool


@dataclass(frozen=True)
class AttemptRecord(AttemptSummary):
    """One attempt in full, with its session log (for replay and debrief)."""

    scenario_hash: str = ""
    seed: int = 0
    critical_errors: tuple[str, ...] = ()
    metrics: dict[str, float | None] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    log_bytes: bytes = b""
    log_hash: str = ""
    input_hash: str = ""
    log: SessionLog | None = None


# ------------------------------------------------------------------ helpers


def mask_url(url: str) -> str:
    """The database URL with its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: mask anything like user:pw@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def new_trainee_id() -> str:
    """A new opaque trainee id, ``T-`` and 12 hex digits."""
    return "T-" + uuid.uuid4().hex[:12]


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _check_trainee_id(trainee_id: str) -> None:
    if not isinstance(trainee_id, str) or not _TRAINEE_ID.match(trainee_id):
        raise RecordsError(
            f"trainee id {trainee_id!r} is not an opaque id: use 1 to 64 letters, digits, "
            "'.', '_', ':' or '-' (no spaces, no '@'); never a name or an e-mail address. "
            "Make one with surgsim.records.new_trainee_id()"
        )


# ------------------------------------------------------------------ the store


class Records:
    """The attempt database.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy database URL (default :func:`surgsim.paths.default_db_url`).

    Raises
    ------
    RecordsError
        The database cannot be opened or its tables created; the message names the
        URL (password masked) and what to do.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_db_url()
        self.masked_url = mask_url(self.url)
        try:
            parsed = make_url(self.url)
            connect_args: dict[str, Any] = {}
            if parsed.get_backend_name() == "postgresql":
                connect_args["connect_timeout"] = 10
            self.engine: Engine = create_engine(self.url, connect_args=connect_args)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise RecordsError(
                f"cannot use the attempt database URL {self.masked_url}: {exc}. "
                "Give a SQLAlchemy URL such as sqlite:///path/to/surgsim.db (install the "
                "database driver for other databases), or set SURGSIM_DB_URL"
            ) from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            Base.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise RecordsError(
                f"cannot open the attempt database {self.masked_url}: "
                f"{getattr(exc, 'orig', None) or exc}. {self._what_to_do()}"
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _what_to_do(self) -> str:
        if self.engine.dialect.name == "sqlite":
            db = self.engine.url.database or ""
            return (
                f"Check that the folder of {db!r} exists and is writable, "
                "or set SURGSIM_DB_URL to another database"
            )
        return (
            "Check that the database server is running and reachable from this station "
            "and that the user name and password are right, or set SURGSIM_DB_URL"
        )

    # ------------------------------------------------------------ context manager

    def __enter__(self) -> Records:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------ trainees

    def ensure_trainee(self, trainee_id: str, role: str = "trainee") -> None:
        """Create the trainee if it does not exist (an existing one is left as is).

        Raises
        ------
        RecordsError
            The id looks like a name or e-mail, the role is unknown, or the write failed.
        """
        _check_trainee_id(trainee_id)
        if role not in ROLES:
            raise RecordsError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        try:
            with self._sessions.begin() as s:
                if s.get(TraineeRow, trainee_id) is None:
                    s.add(TraineeRow(id=trainee_id, created_at=datetime.now(UTC), role=role))
        except SQLAlchemyError as exc:
            raise RecordsError(
                f"cannot write trainee {trainee_id!r} to {self.masked_url}: {exc}"
            ) from exc

    # ------------------------------------------------------------ attempts

    def add_attempt(
        self,
        trainee_id: str,
        scenario: Scenario,
        log: SessionLog,
        result: ScoreResult,
        *,
        station: str | None = None,
        mode: str | None = None,
        status: str = "completed",
        started_at: datetime | None = None,
    ) -> str:
        """Store one attempt (trainee created if new) in one durable transaction.

        Parameters
        ----------
        trainee_id : str
            Opaque trainee id.
        scenario : Scenario
            The scenario the attempt ran (id, version and content hash are stored).
        log : SessionLog
            The attempt's log, stored as :meth:`SessionLog.to_bytes` with its hash.
        result : ScoreResult
            Its score (from :func:`surgsim.scoring.score`).
        station : str, optional
            Station name (default: this computer's host name).
        mode : {"practice", "assessment"}, optional
            Default: the scenario's mode.
        status : {"completed", "aborted", "interrupted"}
        started_at : datetime, optional
            Wall-clock start (default: now minus the log's duration).

        Returns
        -------
        str
            The new attempt id (a UUID).
        """
        _check_trainee_id(trainee_id)
        mode = mode or scenario.mode
        if mode not in MODES:
            raise RecordsError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if status not in ATTEMPT_STATUSES:
            raise RecordsError(
                f"unknown status {status!r}; use one of {', '.join(ATTEMPT_STATUSES)}"
            )
        scenario_hash = scenario.content_hash()
        if log.scenario_id != scenario.id or log.scenario_hash != scenario_hash:
            raise RecordsError(
                f"the log was made with scenario {log.scenario_id!r} ({log.scenario_hash[:12]}) but "
                f"is stored as {scenario.id!r} ({scenario_hash[:12]}); pass the scenario the attempt ran"
            )
        blob = log.to_bytes()
        log_hash = hashlib.sha256(blob).hexdigest()
        if result.scenario_hash != scenario_hash or result.log_hash not in ("", log_hash):
            raise RecordsError(
                "the score was computed for another scenario or log; "
                "score this log with surgsim.scoring.score(log, scenario)"
            )

        values: dict[str, float | None] = {m.name: _finite(m.value) for m in result.metrics}
        params = scenario.metric_params()
        for name in METRICS:  # store every catalogue metric the log supports
            if name not in values:
                try:
                    values[name] = _finite(compute_metrics(log, params, [name])[name])
                except MetricError:
                    continue

        ended = datetime.now(UTC)
        started = (
            _utc(started_at) if started_at is not None else ended - timedelta(seconds=log.duration)
        )
        attempt_id = str(uuid.uuid4())
        row = AttemptRow(
            id=attempt_id,
            trainee_id=trainee_id,
            scenario_id=scenario.id,
            scenario_version=scenario.version,
            scenario_hash=scenario_hash,
            seed=int(log.seed),
            station=station or socket.gethostname(),
            mode=mode,
            started_at=started,
            ended_at=ended,
            status=status,
            score=float(result.total),
            passed=bool(result.passed),
            critical_errors=list(result.critical_errors),
            metrics=values,
            result=result.to_dict(),
            log=blob,
            log_hash=log_hash,
            input_hash=log.input_hash(),
            metric_rows=[
                MetricRow(name=name, value=value, unit=METRICS[name].unit)
                for name, value in values.items()
            ],
        )
        try:
            with self._sessions.begin() as s:
                trainee = s.get(TraineeRow, trainee_id)
                if trainee is None:
                    trainee = TraineeRow(id=trainee_id, created_at=ended, role="trainee")
                    s.add(trainee)
                row.trainee = trainee
                s.add(row)
        except SQLAlchemyError as exc:
            raise RecordsError(
                f"cannot store the attempt in {self.masked_url} (nothing was saved): "
                f"{getattr(exc, 'orig', None) or exc}"
                + (f". {self._what_to_do()}" if isinstance(exc, OperationalError) else "")
            ) from exc
        return attempt_id

    def list_attempts(self, trainee_id: str | None = None) -> list[AttemptSummary]:
        """Attempts (of one trainee, or all), oldest first, without their logs."""
        cols = [getattr(AttemptRow, f) for f in AttemptSummary.__dataclass_fields__]
        stmt = select(*cols).order_by(AttemptRow.started_at, AttemptRow.id)
        if trainee_id is not None:
            stmt = stmt.where(AttemptRow.trainee_id == trainee_id)
        try:
            with self._sessions() as s:
                rows = s.execute(stmt).all()
        except SQLAlchemyError as exc:
            raise RecordsError(f"cannot read attempts from {self.masked_url}: {exc}") from exc
        out = []
        for r in rows:
            d = r._asdict()
            d["started_at"], d["ended_at"] = _utc(d["started_at"]), _utc(d["ended_at"])
            out.append(AttemptSummary(**d))
        return out

    def get_attempt(self, attempt_id: str) -> AttemptRecord:
        """One attempt with its session log.

        Raises
        ------
        RecordsError
            No such attempt, or its stored log does not match its hash (corrupted).
        """
        try:
            with self._sessions() as s:
                row = s.get(AttemptRow, attempt_id)
                if row is None:
                    raise RecordsError(f"no attempt {attempt_id!r} in {self.masked_url}")
                d = {
                    f: getattr(row, f)
                    for f in AttemptRecord.__dataclass_fields__
                    if f not in ("log", "log_bytes")
                }
                blob = bytes(row.log)
        except SQLAlchemyError as exc:
            raise RecordsError(
                f"cannot read attempt {attempt_id!r} from {self.masked_url}: {exc}"
            ) from exc
        if hashlib.sha256(blob).hexdigest() != d["log_hash"]:
            raise RecordsError(
                f"attempt {attempt_id!r} in {self.masked_url}: the stored log does not match its "
                "hash (database corrupted or edited); restore the database from a backup"
            )
        d["started_at"], d["ended_at"] = _utc(d["started_at"]), _utc(d["ended_at"])
        d["critical_errors"] = tuple(d["critical_errors"] or ())
        d["metrics"] = dict(d["metrics"] or {})
        d["result"] = dict(d["result"] or {})
        return AttemptRecord(**d, log_bytes=blob, log=SessionLog.from_bytes(blob))


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL journal, fsync on every commit, and enforced foreign keys."""
    cur = dbapi_connection.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
    finally:
        cur.close()
