"""Records calls off the GUI thread: the records pages never wait for the database.

Every read, write and export of the records window runs as a job on one background
thread shared by all records pages (jobs run one at a time in the order asked, so
a release toggle is written before the refresh that follows it is read). The
result comes back to the GUI thread, to the page that asked, through a queued
signal; a page closed meanwhile gets nothing. While a page has jobs running it is
*busy*: its busy label says what it is waiting for and its cursor is a busy one.

A database that cannot be reached (server down, network cut, wrong password) is
reported by the records layer as a :class:`~surgsim.errors.RecordsError` naming the
database and what to do; the page shows it in its error label, prefixed by
:data:`UNREACHABLE` when the cause is a connection failure::

    self.jobs = RecordsJobs(self, busy_label)
    self.jobs.run(lambda: records.list_attempts(access=access), self._show, "Reading attempts")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QRunnable, Qt, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QLabel, QWidget

from surgsim.errors import SurgsimError

__all__ = [
    "UNREACHABLE",
    "RecordsJobs",
    "busy_label",
    "describe_error",
    "records_pool",
    "wait_for_records_jobs",
]

#: Prefix of the message of a database that cannot be reached.
UNREACHABLE = "The lab database cannot be reached."
_CONNECTION_WORDS = (
    "connection refused", "could not connect", "connection timed out", "timeout expired",
    "server closed the connection", "no route to host", "name or service not known",
    "could not translate host name", "unable to open database file", "connection is bad",
    "terminating connection", "network is unreachable", "check that the database server is running",
)

_POOL: QThreadPool | None = None
_LIVE: set[_Relay] = set()  # relays waiting for their job (kept alive until delivered)


def records_pool() -> QThreadPool:
    """The application's records thread (a pool of one thread: jobs run in order)."""
    global _POOL
    if _POOL is None or not shiboken6.isValid(_POOL):
        _POOL = QThreadPool(QCoreApplication.instance())
        _POOL.setObjectName("records_pool")
        _POOL.setMaxThreadCount(1)
        _POOL.setExpiryTimeout(-1)  # keep the thread: no start-up cost per job
    return _POOL


def wait_for_records_jobs(timeout_ms: int = 30000) -> bool:
    """Block until every records job has finished (for shutdown and tests); True when idle."""
    done = records_pool().waitForDone(timeout_ms)
    QCoreApplication.processEvents()  # deliver the last results
    return bool(done)


def describe_error(exc: BaseException) -> str:
    """The message a records page shows for a failed job."""
    text = str(exc) if isinstance(exc, SurgsimError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and not isinstance(exc, SurgsimError):
        text = f"cannot read or write a file: {exc}"
    low = text.lower()
    if any(w in low for w in _CONNECTION_WORDS) and not text.startswith(UNREACHABLE):
        text = (
            f"{UNREACHABLE} Nothing was lost: attempts stay on this station until it is back. "
            f"Details: {text}"
        )
    return text


class _Relay(QObject):
    """Carries one job's result from the records thread to the GUI thread."""

    finished = Signal(bool, object)

    def __init__(self, jobs: RecordsJobs, on_done: Callable[[Any], None],
                 on_error: Callable[[str], None] | None) -> None:
        super().__init__()  # made in the GUI thread: the slot runs there
        self.jobs = jobs
        self.on_done = on_done
        self.on_error = on_error
        self.finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @Slot(bool, object)
    def _deliver(self, ok: bool, result: object) -> None:
        _LIVE.discard(self)
        jobs = self.jobs
        self.jobs = None
        if jobs is None or not shiboken6.isValid(jobs) or not shiboken6.isValid(jobs.owner):
            return  # the page was closed meanwhile
        try:
            if ok:
                self.on_done(result)
            elif self.on_error is not None:
                self.on_error(str(result))
            else:
                jobs.show_error(str(result))
        finally:
            jobs._finished()


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.fn = fn
        self.relay = relay
        self.setAutoDelete(True)

    def run(self) -> None:  # noqa: D102 - QRunnable API; runs in the records thread
        try:
            result, ok = self.fn(), True
        except Exception as exc:  # noqa: BLE001 - every failure goes to the page, never lost
            result, ok = describe_error(exc), False
        self.relay.finished.emit(ok, result)


class RecordsJobs(QObject):
    """The background records jobs of one page.

    Parameters
    ----------
    owner : QWidget
        The page (results are dropped once it is deleted; its cursor shows busy).
    busy_label : QLabel, optional
        Shown with the job's message while jobs run.
    error_label : QLabel, optional
        Where a failed job's message goes (unless the job has its own ``on_error``).

    Signals
    -------
    busy_changed(bool)
    """

    busy_changed = Signal(bool)

    def __init__(self, owner: QWidget, busy_label: QLabel | None = None,
                 error_label: QLabel | None = None) -> None:
        super().__init__(owner)
        self.owner = owner
        self.busy_label = busy_label
        self.error_label = error_label
        self.running = 0
        self.jobs_done = 0

    @property
    def busy(self) -> bool:
        """True while a job of this page runs or waits."""
        return self.running > 0

    def run(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None],
        message: str = "Reading the lab database...",
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """Run ``fn()`` on the records thread; then ``on_done(result)`` in the GUI thread.

        ``fn`` must not touch widgets (capture the values it needs first). When it
        raises, ``on_error(message)`` runs instead (default: the error label shows it).
        """
        relay = _Relay(self, on_done, on_error)
        _LIVE.add(relay)
        self.running += 1
        if self.busy_label is not None:
            self.busy_label.setText(message)
            self.busy_label.show()
        if self.running == 1:
            self.owner.setCursor(Qt.CursorShape.BusyCursor)
            self.busy_changed.emit(True)
        records_pool().start(_Job(fn, relay))

    def show_error(self, message: str) -> None:
        if self.error_label is not None:
            self.error_label.setText(message)
            self.error_label.setVisible(bool(message))

    def _finished(self) -> None:
        self.running = max(0, self.running - 1)
        self.jobs_done += 1
        if self.running == 0:
            if self.busy_label is not None:
                self.busy_label.hide()
            self.owner.unsetCursor()
            self.busy_changed.emit(False)


def busy_label() -> QLabel:
    """A grey italic label for :class:`RecordsJobs` (hidden while idle)."""
    label = QLabel()
    label.setObjectName("busy")
    label.setStyleSheet("color: #555; font-style: italic;")
    label.hide()
    return label
