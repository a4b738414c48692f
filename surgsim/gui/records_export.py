"""Export buttons of the records window: CSV, JSON bundle, xAPI (file and statement queue)
and HTML/PDF reports, written into a folder chosen in a path field (or a dialog).

Every export goes through the signed-in person's
:class:`~surgsim.records.auth.AccessContext`: the records layer refuses what they
may not read. Exports carry opaque ids only (the records layer's exporters).

Exports run on the records thread (:mod:`surgsim.gui.records_worker`): the panel
shows a busy line and disables its buttons meanwhile; :attr:`ExportPanel.exported`
or an error follows. xAPI statements are always written to
``xapi-statements.json``; when an LRS endpoint is given they are also put in the
durable :class:`~surgsim.records.queue.StatementQueue` and a drain runs in a
worker thread (an unreachable LRS never blocks the window; the statements wait in
the queue; statements the LRS rejects for good are kept as failed, see
``surgsim records xapi``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QThread, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from surgsim.errors import RecordsError, SurgsimError
from surgsim.gui.records_trainee import error_label, show_error
from surgsim.gui.records_worker import RecordsJobs, busy_label
from surgsim.paths import data_dir

DEFAULT_HOME_PAGE = "https://surgsim.org/lab"
EXPORTS = ("csv", "json", "xapi", "report")


@dataclass
class ExportScope:
    """What the export buttons act on (set by the page that owns the panel).

    Attributes
    ----------
    trainee_ids : list of str or None
        Trainees whose attempts go into CSV and xAPI (None: all the signed-in person may read).
    trainee_id : str or None
        One trainee (their report; else the cohort's).
    cohort_id : str or None
        The cohort shown (its report when no trainee is chosen).
    attempt_id : str or None
        The chosen attempt (the JSON bundle).
    attempt_ids : list of str
        The attempts in view (xAPI).
    """

    trainee_ids: list[str] | None = None
    trainee_id: str | None = None
    cohort_id: str | None = None
    attempt_id: str | None = None
    attempt_ids: list[str] = field(default_factory=list)


class DrainThread(QThread):
    """Drains the statement queue to one LRS in a worker thread (own SQLite connection).

    Owned by the application (not by a panel), so closing the window while a slow
    LRS answers never destroys a running thread; it deletes itself when done.
    """

    report = Signal(object, int, int)  # DrainReport or an error string; added; total

    def __init__(self, queue_path: Path, client, added: int, total: int) -> None:
        super().__init__(QCoreApplication.instance())
        self.queue_path = queue_path
        self.client = client
        self.added = added
        self.total = total
        self.finished.connect(self.deleteLater)

    def run(self) -> None:  # noqa: D102 - QThread API
        from surgsim.records.queue import StatementQueue

        try:
            with StatementQueue(self.queue_path) as queue:
                result = queue.drain(self.client, ignore_backoff=True)
        except SurgsimError as exc:
            result = str(exc)
        self.report.emit(result, self.added, self.total)


def _scoped_csv(fn, records, access, trainee_ids: list[str] | None) -> str:
    """CSV text of ``fn`` (attempts_csv or metrics_csv) for some trainees (one header)."""
    if trainee_ids is None:
        return fn(records, access=access)
    parts = [fn(records, access=access, trainee_id=t) for t in trainee_ids]
    if not parts:
        return fn(records, access=access, trainee_id="-").splitlines(keepends=True)[0]
    return parts[0] + "".join(p.split("\n", 1)[1] for p in parts[1:])


class ExportPanel(QGroupBox):
    """Folder field, export buttons, LRS settings and a status line.

    Parameters
    ----------
    records : Records
    access : AccessContext or None
    scope : callable returning ExportScope
        Asked at each click.
    exports : tuple of str
        Which buttons to show (of ``"csv", "json", "xapi", "report"``).

    Signals
    -------
    exported(list)
        Paths written by a successful export.
    export_failed(str)
        An export failed (the message is also shown in the error label).
    xapi_sent(object)
        The :class:`~surgsim.records.queue.DrainReport` of a drain (or an error string).
    """

    exported = Signal(list)
    export_failed = Signal(str)
    xapi_sent = Signal(object)

    def __init__(
        self,
        records,
        access,
        scope: Callable[[], ExportScope],
        exports: tuple[str, ...] = EXPORTS,
        parent=None,
    ) -> None:
        super().__init__("Export", parent)
        self.setObjectName("export_panel")
        self.records = records
        self.access = access
        self.scope = scope
        self.queue_path: Path | None = None  # None: the data folder's xapi-queue.db
        layout = QVBoxLayout(self)

        row = QHBoxLayout()
        row.addWidget(QLabel("Folder:"))
        self.folder_edit = QLineEdit(str(data_dir() / "exports"))
        self.folder_edit.setObjectName("export_folder")
        row.addWidget(self.folder_edit, stretch=1)
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row.addWidget(browse)
        layout.addLayout(row)

        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        labels = {
            "csv": ("CSV", self.export_csv),
            "json": ("JSON bundle", self.export_json),
            "xapi": ("xAPI", self.export_xapi),
            "report": ("Report (HTML + PDF)", self.export_report),
        }
        for key in exports:
            text, slot = labels[key]
            b = QPushButton(text)
            b.setObjectName(f"export_{key}")
            b.clicked.connect(lambda _=False, s=slot: s())
            buttons.addWidget(b)
            self.buttons[key] = b
        buttons.addStretch(1)
        layout.addLayout(buttons)

        self.lrs_box = QWidget()
        grid = QGridLayout(self.lrs_box)
        grid.setContentsMargins(0, 0, 0, 0)
        self.lrs_edit = QLineEdit(os.environ.get("SURGSIM_LRS_URL", ""))
        self.lrs_edit.setPlaceholderText("https://lrs.example.org/xapi/ (empty: file only)")
        self.lrs_user_edit = QLineEdit(os.environ.get("SURGSIM_LRS_USER", ""))
        self.lrs_password_edit = QLineEdit(os.environ.get("SURGSIM_LRS_PASSWORD", ""))
        self.lrs_password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.home_page_edit = QLineEdit(os.environ.get("SURGSIM_XAPI_HOME_PAGE", DEFAULT_HOME_PAGE))
        for i, (text, edit) in enumerate((
            ("xAPI LRS endpoint:", self.lrs_edit),
            ("Lab home page:", self.home_page_edit),
            ("LRS key:", self.lrs_user_edit),
            ("LRS secret:", self.lrs_password_edit),
        )):
            grid.addWidget(QLabel(text), i // 2, 2 * (i % 2))
            grid.addWidget(edit, i // 2, 2 * (i % 2) + 1)
        grid.setColumnStretch(1, 2)
        grid.setColumnStretch(3, 1)
        self.lrs_box.setVisible("xapi" in exports)
        layout.addWidget(self.lrs_box)

        self.status = QLabel()
        self.status.setObjectName("export_status")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.error = error_label()
        layout.addWidget(self.error)
        self.busy_label = busy_label()
        layout.addWidget(self.busy_label)
        self.jobs = RecordsJobs(self, self.busy_label, self.error)
        self.jobs.busy_changed.connect(self._set_buttons)

    # ------------------------------------------------------------ helpers

    @property
    def busy(self) -> bool:
        """True while an export runs."""
        return self.jobs.busy

    def _set_buttons(self, busy: bool) -> None:
        for b in self.buttons.values():
            b.setEnabled(not busy)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def folder(self) -> Path:
        """The export folder typed in the field (not created here; see :func:`_make_folder`)."""
        text = self.folder_edit.text().strip()
        if not text:
            raise RecordsError("choose an export folder first (type a path or use Browse...)")
        return Path(text).expanduser()

    def _run(self, prepare: Callable[[], Callable[[], list[Path]]], what: str,
             then: Callable[[list[Path]], None] | None = None) -> None:
        """Read the panel in the GUI thread (``prepare``), export on the records thread.

        ``prepare`` returns the export work (a function of nothing, touching no widget)
        or raises a :class:`SurgsimError` shown at once.
        """
        show_error(self.error, "")
        self.status.setText("")
        try:
            work = prepare()
        except SurgsimError as exc:
            self._failed(str(exc))
            return

        def done(paths: list[Path]) -> None:
            self.status.setText("Wrote " + ", ".join(str(p) for p in paths))
            self.exported.emit(paths)
            if then is not None:
                then(paths)

        self.jobs.run(work, done, f"Exporting {what}...", on_error=self._failed)

    def _failed(self, message: str) -> None:
        show_error(self.error, message)
        self.export_failed.emit(message)

    # ------------------------------------------------------------ exports

    def export_csv(self) -> None:
        """Write ``attempts.csv`` and ``metrics.csv`` of the scope's trainees (on the records thread)."""
        from surgsim.records.export import attempts_csv, metrics_csv

        def prepare() -> Callable[[], list[Path]]:
            folder, scope = self.folder(), self.scope()
            ids = [scope.trainee_id] if scope.trainee_id else scope.trainee_ids
            records, access = self.records, self.access

            def work() -> list[Path]:
                _make_folder(folder)
                out = []
                for name, fn in (("attempts.csv", attempts_csv), ("metrics.csv", metrics_csv)):
                    p = folder / name
                    p.write_text(_scoped_csv(fn, records, access, ids), encoding="utf-8")
                    out.append(p)
                return out

            return work

        self._run(prepare, "CSV")

    def export_json(self) -> None:
        """Write the chosen attempt's bundle (``attempt-<id>.json``, replayable)."""
        from surgsim.records.export import write_bundle

        def prepare() -> Callable[[], list[Path]]:
            folder, scope = self.folder(), self.scope()
            if not scope.attempt_id:
                raise RecordsError("choose an attempt in the table first: a bundle holds one attempt")
            records, access, aid = self.records, self.access, scope.attempt_id

            def work() -> list[Path]:
                _make_folder(folder)
                return [write_bundle(records, aid, folder / f"attempt-{aid}.json", access=access)]

            return work

        self._run(prepare, "the attempt bundle")

    def export_xapi(self) -> None:
        """Write the attempts' xAPI statements; queue and send them when an LRS is set."""
        from surgsim.records.xapi import LRSClient, statements_for_attempt

        sending: dict[str, object] = {}

        def prepare() -> Callable[[], list[Path]]:
            folder, scope = self.folder(), self.scope()
            if not scope.attempt_ids:
                raise RecordsError("no attempts in view to export as xAPI statements")
            home = self.home_page_edit.text().strip() or DEFAULT_HOME_PAGE
            endpoint = self.lrs_edit.text().strip()
            client = None
            if endpoint:
                client = LRSClient(
                    endpoint, self.lrs_user_edit.text(), self.lrs_password_edit.text(), timeout=5.0
                )
            records, access, ids, qpath = self.records, self.access, list(scope.attempt_ids), self.queue_path

            def work() -> list[Path]:
                _make_folder(folder)
                statements = []
                for aid in ids:
                    rec = records.get_attempt(aid, access=access, with_log=False)
                    statements += statements_for_attempt(rec, home_page=home)
                path = folder / "xapi-statements.json"
                path.write_text(json.dumps(statements, indent=1), encoding="utf-8")
                if client is not None:
                    from surgsim.records.queue import StatementQueue, default_queue_path

                    queue_file = qpath or default_queue_path()
                    with StatementQueue(queue_file) as queue:
                        added = queue.enqueue(client.endpoint, statements)
                    sending.update(qpath=queue_file, client=client, added=added, total=len(statements))
                return [path]

            return work

        def then(_paths: list[Path]) -> None:
            if sending:
                self._drain(sending["qpath"], sending["client"], sending["added"], sending["total"])

        self._run(prepare, "xAPI statements", then)

    def _drain(self, qpath: Path, client, added: int, total: int) -> None:
        thread = DrainThread(qpath, client, added, total)
        thread.report.connect(self._drained)  # queued: runs in the GUI thread
        wrote = self.status.text().split("\n")[0]
        self.status.setText((wrote + "\n" if wrote.startswith("Wrote") else "")
                            + f"xAPI: sending to {client.masked} ...")
        thread.start()

    def _drained(self, report, added: int, total: int) -> None:
        if isinstance(report, str):
            show_error(self.error, report)
        else:
            wrote = self.status.text().split("\n")[0]
            self.status.setText(
                (wrote + "\n" if wrote.startswith("Wrote") else "")
                + f"xAPI: {total} statement(s), {added} new in the queue; "
                f"sent {report.sent}, {report.pending} waiting"
                + (f", {report.failed} rejected by the LRS (kept as failed)" if report.failed else "")
            )
            if report.error and report.failed and report.error.startswith("the learning record store rejected"):
                show_error(self.error, report.error)
            elif report.error:
                show_error(
                    self.error,
                    f"{report.error} ({report.pending} statement(s) wait in the queue "
                    "and go out with the next xAPI export)",
                )
        self.xapi_sent.emit(report)

    def export_report(self) -> None:
        """Write the trainee's report (or the cohort's) as HTML and PDF."""
        from surgsim.records.report import cohort_report, trainee_report

        def prepare() -> Callable[[], list[Path]]:
            folder, scope = self.folder(), self.scope()
            records, access = self.records, self.access
            if scope.trainee_id:
                tid = scope.trainee_id

                def work() -> list[Path]:
                    _make_folder(folder)
                    stem = folder / f"report-{tid}"
                    out = trainee_report(records, tid, stem.with_suffix(".html"),
                                         pdf_path=stem.with_suffix(".pdf"), access=access)
                    return [out["html"], out["pdf"]]

                return work
            if scope.cohort_id:
                cid = scope.cohort_id

                def work() -> list[Path]:
                    _make_folder(folder)
                    stem = folder / f"cohort-{cid}"
                    out = cohort_report(records, cid, stem.with_suffix(".html"),
                                        pdf_path=stem.with_suffix(".pdf"), access=access)
                    return [out["html"], out["pdf"]]

                return work
            raise RecordsError("choose a cohort or a trainee first: a report is of one trainee or one cohort")

        self._run(prepare, "the report")


def _make_folder(path: Path) -> Path:
    """Create the export folder (on the records thread)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordsError(f"cannot create the export folder {path}: {exc}; choose another") from exc
    return path
