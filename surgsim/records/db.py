"""The attempt database: people, cohorts, scenario versions, attempts (with their
full session log), metrics and events.

SQLAlchemy 2 with SQLite by default (:func:`surgsim.paths.default_db_url`, in WAL
mode with ``synchronous=FULL`` so a stored attempt survives a power cut) or any
SQLAlchemy URL (e.g. ``postgresql+psycopg://user:pw@host/surgsim``). The schema is
managed by Alembic (``surgsim/records/migrations``): opening a database upgrades it
to the newest revision, under a lock so that several stations may open it at once.

People are stored by an opaque id (``T-3f9a...`` or one the lab gives); a display
name and a login name may be kept in this database for the lab, but never leave it
(exports, statements and reports carry the opaque id only; docs/domain.md section 6).

Reading through an :class:`~surgsim.records.auth.AccessContext` enforces roles: a
trainee reads only their own released attempts, an educator the attempts of the
trainees of their cohorts (and their own), an admin everything.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)
from sqlalchemy.pool import NullPool

from surgsim.errors import RecordsError
from surgsim.paths import data_dir, default_db_url
from surgsim.scoring.log import SessionLog
from surgsim.scoring.metrics import METRICS, MetricError, compute_metrics

if TYPE_CHECKING:
    from surgsim.records.auth import AccessContext
    from surgsim.scenarios.model import Scenario
    from surgsim.scoring.rubric import ScoreResult

__all__ = [
    "ATTEMPT_STATUSES",
    "AttemptRecord",
    "AttemptSummary",
    "CohortInfo",
    "MODES",
    "ROLES",
    "Records",
    "mask_url",
    "new_person_id",
    "new_trainee_id",
]

ATTEMPT_STATUSES = ("completed", "aborted", "interrupted")
MODES = ("practice", "assessment")
ROLES = ("trainee", "educator", "admin")
COHORT_ROLES = ("trainee", "educator")
_TRAINEE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_PG_MIGRATION_LOCK = 0x5_0A6_517  # pg_advisory_lock key of the schema migration
_MAX_RETRIES = 12

T = TypeVar("T")


# ------------------------------------------------------------------ tables


class Base(DeclarativeBase):
    pass


class PersonRow(Base):
    """A person of the lab: opaque id, role, and the lab-only display and login names."""

    __tablename__ = "people"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    role: Mapped[str] = mapped_column(String(16), default="trainee")
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    username: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    attempts: Mapped[list[AttemptRow]] = relationship(back_populates="trainee")


TraineeRow = PersonRow  # the name of the first schema


class CohortRow(Base):
    __tablename__ = "cohorts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CohortMemberRow(Base):
    __tablename__ = "cohort_members"

    cohort_id: Mapped[str] = mapped_column(ForeignKey("cohorts.id"), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))


class ScenarioVersionRow(Base):
    """The exact content of a scenario version, by content hash."""

    __tablename__ = "scenario_versions"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    scenario_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AttemptRow(Base):
    __tablename__ = "attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    trainee_id: Mapped[str] = mapped_column(ForeignKey("people.id"), index=True)
    scenario_id: Mapped[str] = mapped_column(String(64), index=True)
    scenario_version: Mapped[str] = mapped_column(String(32))
    scenario_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    station: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    critical_errors: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, float | None]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    log: Mapped[bytes] = mapped_column(LargeBinary)
    log_hash: Mapped[str] = mapped_column(String(64))
    input_hash: Mapped[str] = mapped_column(String(64))
    released: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    debrief_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    debrief_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    debrief_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    case_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    trainee: Mapped[PersonRow] = relationship(back_populates="attempts")
    metric_rows: Mapped[list[MetricRow]] = relationship(
        back_populates="attempt", cascade="all, delete-orphan"
    )
    event_rows: Mapped[list[AttemptEventRow]] = relationship(cascade="all, delete-orphan")


class MetricRow(Base):
    __tablename__ = "metrics"

    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(16))

    attempt: Mapped[AttemptRow] = relationship(back_populates="metric_rows")


class AttemptEventRow(Base):
    __tablename__ = "attempt_events"

    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    t: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class AttemptSummary:
    """One attempt without its log (what lists show). ``score`` is None when interrupted."""

    id: str
    trainee_id: str
    scenario_id: str
    scenario_version: str
    mode: str
    status: str
    station: str
    started_at: datetime
    ended_at: datetime
    score: float | None
    passed: bool
    released: bool = False


@dataclass(frozen=True)
class CohortInfo:
    """A cohort as :meth:`Records.list_cohorts` shows it.

    Attributes
    ----------
    id, name : str
        Opaque cohort id and its name in the lab.
    created_at : datetime
        UTC.
    trainees, educators : tuple of str
        Opaque ids of the members in each cohort role, sorted (what the reader may
        see: a trainee sees only themselves).
    """

    id: str
    name: str
    created_at: datetime
    trainees: tuple[str, ...] = ()
    educators: tuple[str, ...] = ()


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
    debrief_notes: str = ""
    debrief_by: str | None = None
    case_id: str | None = None
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


def new_person_id(role: str = "trainee") -> str:
    """A new opaque person id: ``T-`` (trainee), ``E-`` (educator) or ``A-`` (admin) and 12 hex digits."""
    return {"trainee": "T-", "educator": "E-", "admin": "A-"}.get(role, "P-") + uuid.uuid4().hex[:12]


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


def _retryable(exc: SQLAlchemyError) -> bool:
    """A transient conflict between concurrent writers (worth retrying the transaction)."""
    if isinstance(exc, IntegrityError):
        return True  # two stations created the same person or scenario version at once
    if not isinstance(exc, OperationalError):
        return False
    text = str(getattr(exc, "orig", exc)).lower()
    return any(
        w in text for w in ("locked", "busy", "deadlock", "serializ", "could not serialize")
    )


def _sqlite_connect(foreign_keys: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        """WAL journal, fsync on every commit, enforced foreign keys, explicit transactions."""
        dbapi_connection.isolation_level = None  # SQLAlchemy's begin event emits BEGIN
        cur = dbapi_connection.cursor()
        try:
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
        finally:
            cur.close()

    return on_connect


def _sqlite_begin(conn: Any) -> None:
    """BEGIN IMMEDIATE for writes (takes the write lock up front: no upgrade deadlock)."""
    conn.exec_driver_sql(
        "BEGIN IMMEDIATE" if conn.get_execution_options().get("surgsim_write") else "BEGIN"
    )


# kept for callers of the first version
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    _sqlite_connect(True)(dbapi_connection, connection_record)


def _make_engine(url: str, *, foreign_keys: bool = True, nullpool: bool = False) -> Engine:
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = 10
        kwargs["pool_pre_ping"] = True
    elif parsed.get_backend_name() == "sqlite":
        connect_args["timeout"] = 30.0
    if nullpool:
        kwargs["poolclass"] = NullPool
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect(foreign_keys))
        event.listen(engine, "begin", _sqlite_begin)
    return engine


# ------------------------------------------------------------------ migrations

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


_HEAD: str | None = None


def schema_head() -> str:
    """The newest schema revision (what :class:`Records` upgrades to)."""
    global _HEAD
    if _HEAD is None:
        from alembic.script import ScriptDirectory

        _HEAD = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    return _HEAD


def current_revision(engine: Engine) -> str | None:
    """The schema revision of a database (None: empty or made before migrations)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: SQLite's own locks serialise DDL
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade (or downgrade) a database's schema, one process at a time.

    A database made before migrations existed (tables but no ``alembic_version``)
    is stamped as revision ``0001`` first. SQLite migrates under a file lock beside
    the database with foreign keys off (tables are rebuilt by copy); PostgreSQL under
    an advisory lock.
    """
    from alembic import command
    from sqlalchemy import inspect, text

    engine = _make_engine(url, foreign_keys=False, nullpool=True)
    try:
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            lock: contextlib.AbstractContextManager[None] = _file_lock(
                Path(f"{engine.url.database}.migrate-lock")
            )
        else:
            lock = contextlib.nullcontext()
        with lock, engine.connect() as conn:
            pg = engine.dialect.name == "postgresql"
            if pg:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
            try:
                cfg = _alembic_config()
                cfg.attributes["connection"] = conn
                tables = set(inspect(conn).get_table_names())
                conn.commit()
                if "alembic_version" not in tables and "attempts" in tables:
                    command.stamp(cfg, "0001")
                    conn.commit()
                if revision == "head" or _is_newer(conn, revision):
                    command.upgrade(cfg, revision)
                else:
                    command.downgrade(cfg, revision)
                conn.commit()
            finally:
                if pg:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                    conn.commit()
    finally:
        engine.dispose()


def _is_newer(conn: Any, revision: str) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = MigrationContext.configure(conn).get_current_revision()
    conn.commit()
    if current is None:
        return True
    script = ScriptDirectory.from_config(_alembic_config())
    ancestors = {r.revision for r in script.iterate_revisions(revision, "base")}
    return current in ancestors


# ------------------------------------------------------------------ the store


class Records:
    """The attempt database.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy database URL (default :func:`surgsim.paths.default_db_url`).
    journal_dir : path, optional
        Folder of the attempt journals (default: ``journal`` in the data folder).
    recover : bool
        Store the attempts that journals in ``journal_dir`` hold for this database
        (after a crash: as ``interrupted``; after the database was unreachable:
        as they finished). See :meth:`recover`.

    Raises
    ------
    RecordsError
        The database cannot be opened or its schema upgraded; the message names the
        URL (password masked) and what to do.

    Attributes
    ----------
    retries : int
        Transactions retried after a conflict with another writer (since opening).
    recovered : list of (str, str)
        ``(attempt id, status)`` of the attempts recovered when opening.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        journal_dir: str | os.PathLike[str] | None = None,
        recover: bool = True,
    ) -> None:
        self.url = url or default_db_url()
        self.masked_url = mask_url(self.url)
        self.retries = 0
        self._journal_dir = Path(journal_dir) if journal_dir is not None else None
        try:
            self.engine: Engine = _make_engine(self.url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise RecordsError(
                f"cannot use the attempt database URL {self.masked_url}: {exc}. "
                "Give a SQLAlchemy URL such as sqlite:///path/to/surgsim.db (install the "
                "database driver for other databases), or set SURGSIM_DB_URL"
            ) from exc
        try:
            if current_revision(self.engine) != schema_head():
                upgrade(self.url)
        except (SQLAlchemyError, OSError) as exc:
            self.engine.dispose()
            raise RecordsError(
                f"cannot open the attempt database {self.masked_url}: "
                f"{getattr(exc, 'orig', None) or exc}. {self._what_to_do()}"
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(surgsim_write=True), expire_on_commit=False
        )
        self.recovered: list[tuple[str, str]] = self.recover() if recover else []

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

    @property
    def journal_dir(self) -> Path:
        """Folder of the attempt journals (created when needed)."""
        path = self._journal_dir if self._journal_dir is not None else data_dir() / "journal"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------ context manager

    def __enter__(self) -> Records:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------ transactions

    def _write(self, what: str, fn: Callable[[Session], T], *, saved_note: bool = True) -> T:
        """Run ``fn`` in one write transaction, retried on conflicts with other writers."""
        for attempt in range(_MAX_RETRIES + 1):
            try:
                with self._write_sessions.begin() as s:
                    return fn(s)
            except SQLAlchemyError as exc:
                limit = 1 if isinstance(exc, IntegrityError) else _MAX_RETRIES
                if _retryable(exc) and attempt < limit:
                    self.retries += 1
                    time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
                    continue
                raise RecordsError(
                    f"cannot {what} in {self.masked_url}"
                    + (" (nothing was saved)" if saved_note else "")
                    + f": {getattr(exc, 'orig', None) or exc}"
                    + (f". {self._what_to_do()}" if isinstance(exc, OperationalError) else "")
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, what: str, fn: Callable[[Session], T]) -> T:
        try:
            with self._sessions() as s:
                return fn(s)
        except SQLAlchemyError as exc:
            raise RecordsError(
                f"cannot {what} from {self.masked_url}: {getattr(exc, 'orig', None) or exc}"
                + (f". {self._what_to_do()}" if isinstance(exc, OperationalError) else "")
            ) from exc

    # ------------------------------------------------------------ people

    def ensure_trainee(self, trainee_id: str, role: str = "trainee") -> None:
        """Create the person if it does not exist (an existing one is left as is).

        Raises
        ------
        RecordsError
            The id looks like a name or e-mail, the role is unknown, or the write failed.
        """
        _check_trainee_id(trainee_id)
        if role not in ROLES:
            raise RecordsError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")

        def write(s: Session) -> None:
            if s.get(PersonRow, trainee_id) is None:
                s.add(PersonRow(id=trainee_id, created_at=datetime.now(UTC), role=role))

        self._write(f"write trainee {trainee_id!r}", write, saved_note=False)

    ensure_person = ensure_trainee

    # accounts and cohorts live in auth.py; bound here as methods
    def add_user(self, *args: Any, **kwargs: Any) -> str:
        """See :func:`surgsim.records.auth.add_user`."""
        from surgsim.records.auth import add_user

        return add_user(self, *args, **kwargs)

    def login(self, username: str, password: str) -> AccessContext:
        """See :func:`surgsim.records.auth.login`."""
        from surgsim.records.auth import login

        return login(self, username, password)

    def list_users(self, *, access: AccessContext | None = None) -> list[dict[str, Any]]:
        """See :func:`surgsim.records.auth.list_users`."""
        from surgsim.records.auth import list_users

        return list_users(self, access=access)

    def has_accounts(self) -> bool:
        """True when at least one person can sign in (then the CLI asks for one)."""
        return self._read(
            "read accounts",
            lambda s: s.execute(
                select(func.count()).select_from(PersonRow).where(PersonRow.password_hash.is_not(None))
            ).scalar_one()
            > 0,
        )

    def add_cohort(
        self, cohort_id: str, name: str | None = None, *, access: AccessContext | None = None
    ) -> None:
        """Create a cohort (an admin's job); an existing one keeps its name."""
        from surgsim.records.auth import require_role

        require_role(access, "admin", "create cohorts")
        _check_trainee_id(cohort_id)

        def write(s: Session) -> None:
            if s.get(CohortRow, cohort_id) is None:
                s.add(CohortRow(id=cohort_id, name=name or cohort_id, created_at=datetime.now(UTC)))

        self._write(f"create cohort {cohort_id!r}", write)

    def add_to_cohort(
        self,
        cohort_id: str,
        person_id: str,
        role: str = "trainee",
        *,
        access: AccessContext | None = None,
    ) -> None:
        """Make a person a trainee or an educator of a cohort (created if new)."""
        from surgsim.records.auth import require_role

        require_role(access, "admin", "change cohorts")
        if role not in COHORT_ROLES:
            raise RecordsError(f"unknown cohort role {role!r}; use one of {', '.join(COHORT_ROLES)}")
        _check_trainee_id(cohort_id)

        def write(s: Session) -> None:
            if s.get(PersonRow, person_id) is None:
                raise RecordsError(f"no person {person_id!r} in {self.masked_url}; add them first")
            if s.get(CohortRow, cohort_id) is None:
                s.add(CohortRow(id=cohort_id, name=cohort_id, created_at=datetime.now(UTC)))
                s.flush()
            row = s.get(CohortMemberRow, (cohort_id, person_id))
            if row is None:
                s.add(CohortMemberRow(cohort_id=cohort_id, person_id=person_id, role=role))
            else:
                row.role = role

        self._write(f"add {person_id!r} to cohort {cohort_id!r}", write)

    def cohort_members(
        self, cohort_id: str, role: str | None = "trainee", *, access: AccessContext | None = None
    ) -> list[str]:
        """Opaque ids of a cohort's members (trainees by default), sorted."""
        from surgsim.records.auth import can_see_cohort

        if not can_see_cohort(self, access, cohort_id):
            raise RecordsError(f"no cohort {cohort_id!r} visible to you in {self.masked_url}")
        stmt = select(CohortMemberRow.person_id).where(CohortMemberRow.cohort_id == cohort_id)
        if role is not None:
            stmt = stmt.where(CohortMemberRow.role == role)
        return sorted(self._read("read cohorts", lambda s: list(s.execute(stmt).scalars())))

    def list_cohorts(self, *, access: AccessContext | None = None) -> list[CohortInfo]:
        """The cohorts ``access`` may see, with their members, sorted by id.

        An admin (and the station itself, ``access=None``) sees every cohort; an
        educator the cohorts they teach (with all members); a trainee the cohorts
        they belong to, with themselves as the only member shown (other trainees'
        ids are not theirs to read).
        """
        role = None if access is None else access.role
        if role not in (None, "admin", "educator", "trainee"):
            raise RecordsError(f"unknown role {role!r} in the access context")
        stmt = select(CohortRow.id, CohortRow.name, CohortRow.created_at).order_by(CohortRow.id)
        if role in ("educator", "trainee"):
            stmt = stmt.where(
                CohortRow.id.in_(
                    select(CohortMemberRow.cohort_id).where(
                        CohortMemberRow.person_id == access.person_id, CohortMemberRow.role == role
                    )
                )
            )
        members = select(CohortMemberRow.cohort_id, CohortMemberRow.person_id, CohortMemberRow.role)
        if role == "trainee":
            members = members.where(CohortMemberRow.person_id == access.person_id)

        def read(s: Session) -> tuple[list[Any], list[Any]]:
            return s.execute(stmt).all(), s.execute(members).all()

        cohorts, rows = self._read("read cohorts", read)
        by_cohort: dict[str, dict[str, list[str]]] = {}
        for cid, pid, mrole in rows:
            by_cohort.setdefault(cid, {"trainee": [], "educator": []}).setdefault(mrole, []).append(pid)
        out = []
        for cid, name, created in cohorts:
            m = by_cohort.get(cid, {})
            out.append(
                CohortInfo(
                    id=cid,
                    name=name,
                    created_at=_utc(created),
                    trainees=tuple(sorted(m.get("trainee", []))),
                    educators=tuple(sorted(m.get("educator", []))),
                )
            )
        return out

    # ------------------------------------------------------------ scenario versions

    def scenario_content(self, scenario_hash: str) -> str | None:
        """The canonical JSON of a stored scenario version (None if unknown)."""
        return self._read(
            "read scenario versions",
            lambda s: s.execute(
                select(ScenarioVersionRow.content).where(ScenarioVersionRow.hash == scenario_hash)
            ).scalar_one_or_none(),
        )

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
        attempt_id: str | None = None,
        released: bool | None = None,
        case_id: str | None = None,
        log_bytes: bytes | None = None,
    ) -> str:
        """Store one attempt (trainee created if new) in one durable transaction.

        Parameters
        ----------
        trainee_id : str
            Opaque trainee id.
        scenario : Scenario
            The scenario the attempt ran (id, version, content hash and the content
            itself are stored).
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
        attempt_id : str, optional
            A UUID chosen beforehand (by :class:`~surgsim.records.journal.AttemptWriter`).
        released : bool, optional
            Whether the trainee may see it (default: practice attempts yes, assessments
            only once an educator releases them).
        case_id : str, optional
            De-identified case id.
        log_bytes : bytes, optional
            ``log.to_bytes()`` when the caller has it already (a 30-minute log takes
            about 2 s to compress); it must decode to ``log``.

        Returns
        -------
        str
            The attempt id (a UUID).
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
        blob = log.to_bytes() if log_bytes is None else bytes(log_bytes)
        log_hash = log.hash()
        if log_bytes is not None and SessionLog.from_bytes(blob).hash() != log_hash:
            raise RecordsError("log_bytes are not the bytes of this log; pass log.to_bytes()")
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
        return self._store_attempt(
            attempt_id=attempt_id or str(uuid.uuid4()),
            trainee_id=trainee_id,
            scenario=_scenario_info(scenario),
            log=log,
            blob=blob,
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
            released=(mode == "practice") if released is None else bool(released),
            case_id=case_id,
        )

    def _store_attempt(
        self,
        *,
        attempt_id: str,
        trainee_id: str,
        scenario: dict[str, str],
        log: SessionLog,
        blob: bytes,
        station: str,
        mode: str,
        started_at: datetime,
        ended_at: datetime,
        status: str,
        score: float | None,
        passed: bool,
        critical_errors: list[str],
        metrics: dict[str, float | None],
        result: dict[str, Any],
        released: bool,
        case_id: str | None = None,
    ) -> str:
        """Insert one attempt with its metrics, events, person and scenario version."""
        _check_trainee_id(trainee_id)
        log_hash = log.hash()

        def write(s: Session) -> str:
            trainee = s.get(PersonRow, trainee_id)
            if trainee is None:
                trainee = PersonRow(id=trainee_id, created_at=ended_at, role="trainee")
                s.add(trainee)
            if scenario.get("content") and s.get(ScenarioVersionRow, scenario["hash"]) is None:
                s.add(
                    ScenarioVersionRow(
                        hash=scenario["hash"],
                        scenario_id=scenario["id"],
                        version=scenario["version"],
                        title=scenario.get("title", "")[:200],
                        content=scenario["content"],
                        created_at=ended_at,
                    )
                )
            row = AttemptRow(
                id=attempt_id,
                scenario_id=scenario["id"],
                scenario_version=scenario["version"],
                scenario_hash=scenario["hash"],
                seed=int(log.seed),
                station=station[:255],
                mode=mode,
                started_at=started_at,
                ended_at=ended_at,
                status=status,
                score=score,
                passed=passed,
                critical_errors=critical_errors,
                metrics=metrics,
                result=result,
                log=blob,
                log_hash=log_hash,
                input_hash=log.input_hash(),
                released=released,
                released_at=ended_at if released else None,
                case_id=case_id,
                metric_rows=[
                    MetricRow(name=name, value=value, unit=METRICS[name].unit if name in METRICS else "")
                    for name, value in metrics.items()
                ],
                event_rows=[
                    AttemptEventRow(seq=i, t=float(e.t), kind=e.kind[:64], data=_jsonable(e.data))
                    for i, e in enumerate(log.events)
                ],
            )
            row.trainee = trainee
            s.add(row)
            return attempt_id

        return self._write("store the attempt", write)

    def has_attempt(self, attempt_id: str) -> bool:
        """True when the attempt is stored (whoever may read it)."""
        return self._read(
            "read attempts",
            lambda s: s.execute(select(AttemptRow.id).where(AttemptRow.id == attempt_id)).first()
            is not None,
        )

    def _visible(self, stmt: Any, access: AccessContext | None) -> Any:
        """Restrict a select on attempts to what ``access`` may read."""
        if access is None or access.role == "admin":
            return stmt
        if access.role == "educator":
            mine = select(CohortMemberRow.cohort_id).where(
                CohortMemberRow.person_id == access.person_id, CohortMemberRow.role == "educator"
            )
            taught = select(CohortMemberRow.person_id).where(CohortMemberRow.cohort_id.in_(mine))
            return stmt.where(
                or_(AttemptRow.trainee_id.in_(taught), AttemptRow.trainee_id == access.person_id)
            )
        if access.role == "trainee":
            return stmt.where(
                AttemptRow.trainee_id == access.person_id, AttemptRow.released.is_(True)
            )
        raise RecordsError(f"unknown role {access.role!r} in the access context")

    def list_attempts(
        self,
        trainee_id: str | None = None,
        *,
        access: AccessContext | None = None,
        scenario_id: str | None = None,
        status: str | None = None,
    ) -> list[AttemptSummary]:
        """Attempts (of one trainee, or all ``access`` may read), oldest first, without logs.

        ``access=None`` is the station itself (everything); a signed-in person only
        gets what their role allows (see the module docstring).
        """
        cols = [getattr(AttemptRow, f) for f in AttemptSummary.__dataclass_fields__]
        stmt = select(*cols).order_by(AttemptRow.started_at, AttemptRow.id)
        if trainee_id is not None:
            stmt = stmt.where(AttemptRow.trainee_id == trainee_id)
        if scenario_id is not None:
            stmt = stmt.where(AttemptRow.scenario_id == scenario_id)
        if status is not None:
            stmt = stmt.where(AttemptRow.status == status)
        stmt = self._visible(stmt, access)
        rows = self._read("read attempts", lambda s: s.execute(stmt).all())
        out = []
        for r in rows:
            d = r._asdict()
            d["started_at"], d["ended_at"] = _utc(d["started_at"]), _utc(d["ended_at"])
            d["released"] = bool(d["released"])
            out.append(AttemptSummary(**d))
        return out

    def get_attempt(
        self, attempt_id: str, *, access: AccessContext | None = None, with_log: bool = True
    ) -> AttemptRecord:
        """One attempt with its session log.

        ``with_log=False`` leaves the log out (``log`` None, ``log_bytes`` empty): what
        a screen showing the score, result or debrief notes needs, without reading
        and decoding a log of several MB.

        Raises
        ------
        RecordsError
            No such attempt (or not one ``access`` may read: the message is the same,
            so that ids of others' attempts cannot be probed), or its stored log does
            not match its hash (corrupted).
        """
        fields = [
            f for f in AttemptRecord.__dataclass_fields__ if f not in ("log", "log_bytes")
        ]
        cols = [getattr(AttemptRow, f) for f in fields] + ([AttemptRow.log] if with_log else [])
        stmt = self._visible(select(*cols).where(AttemptRow.id == attempt_id), access)
        row = self._read(f"read attempt {attempt_id!r}", lambda s: s.execute(stmt).first())
        if row is None:
            raise RecordsError(
                f"no attempt {attempt_id!r} in {self.masked_url}"
                + (" that you may read" if access is not None else "")
            )
        d = {f: row[i] for i, f in enumerate(fields)}
        blob = bytes(row[-1]) if with_log else b""
        stored_log = None
        if with_log:
            try:
                stored_log = SessionLog.from_bytes(blob)
            except Exception:  # undecodable: reported as corruption below
                stored_log = None
            if stored_log is None or stored_log.hash() != d["log_hash"]:
                raise RecordsError(
                    f"attempt {attempt_id!r} in {self.masked_url}: the stored log does not match "
                    "its hash (database corrupted or edited); restore the database from a backup"
                )
        d["started_at"], d["ended_at"] = _utc(d["started_at"]), _utc(d["ended_at"])
        d["critical_errors"] = tuple(d["critical_errors"] or ())
        d["metrics"] = dict(d["metrics"] or {})
        d["result"] = dict(d["result"] or {})
        d["released"] = bool(d["released"])
        d["debrief_notes"] = d["debrief_notes"] or ""
        return AttemptRecord(**d, log_bytes=blob, log=stored_log)

    def metric_rows(
        self, *, access: AccessContext | None = None, trainee_id: str | None = None
    ) -> list[tuple[str, str, float | None, str]]:
        """``(attempt id, metric name, value, unit)`` of every attempt ``access`` may read."""
        ids = select(AttemptRow.id)
        if trainee_id is not None:
            ids = ids.where(AttemptRow.trainee_id == trainee_id)
        ids = self._visible(ids, access)
        stmt = (
            select(MetricRow.attempt_id, MetricRow.name, MetricRow.value, MetricRow.unit)
            .where(MetricRow.attempt_id.in_(ids))
            .order_by(MetricRow.attempt_id, MetricRow.name)
        )
        return [tuple(r) for r in self._read("read metrics", lambda s: s.execute(stmt).all())]

    def critical_errors(self, *, access: AccessContext | None = None) -> dict[str, list[str]]:
        """Critical errors of every attempt ``access`` may read, by attempt id."""
        stmt = self._visible(select(AttemptRow.id, AttemptRow.critical_errors), access)
        rows = self._read("read attempts", lambda s: s.execute(stmt).all())
        return {aid: list(errs or ()) for aid, errs in rows}

    def attempt_events(
        self, attempt_id: str, *, access: AccessContext | None = None
    ) -> list[tuple[float, str, dict[str, Any]]]:
        """``(t, kind, data)`` of an attempt's events, in order."""
        self.get_attempt(attempt_id, access=access, with_log=False)  # raises when not readable
        stmt = (
            select(AttemptEventRow.t, AttemptEventRow.kind, AttemptEventRow.data)
            .where(AttemptEventRow.attempt_id == attempt_id)
            .order_by(AttemptEventRow.seq)
        )
        return [tuple(r) for r in self._read("read events", lambda s: s.execute(stmt).all())]

    def set_released(
        self, attempt_id: str, released: bool = True, *, access: AccessContext | None = None
    ) -> None:
        """Release an attempt's score to its trainee (or withdraw it): educators and admins."""
        from surgsim.records.auth import require_role

        require_role(access, ("educator", "admin"), "release scores")
        self.get_attempt(attempt_id, access=access, with_log=False)  # raises when not theirs

        def write(s: Session) -> None:
            row = s.get(AttemptRow, attempt_id)
            row.released = bool(released)
            row.released_at = datetime.now(UTC) if released else None

        self._write(f"release attempt {attempt_id!r}", write)

    def set_debrief(
        self, attempt_id: str, notes: str, *, access: AccessContext | None = None
    ) -> None:
        """Write the debrief notes of an attempt: educators and admins."""
        from surgsim.records.auth import require_role

        require_role(access, ("educator", "admin"), "write debrief notes")
        self.get_attempt(attempt_id, access=access, with_log=False)

        def write(s: Session) -> None:
            row = s.get(AttemptRow, attempt_id)
            row.debrief_notes = str(notes)
            row.debrief_by = access.person_id if access is not None else None
            row.debrief_at = datetime.now(UTC)

        self._write(f"write the debrief of attempt {attempt_id!r}", write)

    # ------------------------------------------------------------ crash recovery

    def recover(self) -> list[tuple[str, str]]:
        """Store what the journals of dead writers hold for this database.

        A journal whose writer died mid-attempt becomes an ``interrupted`` attempt
        with every input and event it had synced; one whose attempt finished while
        the database was unreachable is stored as it finished. Journals of writers
        still running (locked) and of other databases are left alone.

        Returns
        -------
        list of (str, str)
            ``(attempt id, status)`` of the attempts stored.
        """
        from surgsim.records.journal import recover_journals

        return recover_journals(self)


def _scenario_info(scenario: Scenario) -> dict[str, str]:
    return {
        "id": scenario.id,
        "version": scenario.version,
        "hash": scenario.content_hash(),
        "title": scenario.title,
        "content": scenario.canonical_json(),
    }


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=_json_default))


def _json_default(x: Any) -> Any:
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(x)
