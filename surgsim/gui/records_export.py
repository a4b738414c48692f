"""Export buttons of the records window: CSV, JSON bundle, xAPI (file and statement queue)
and HTML/PDF reports, written into a folder chosen in a path field (or a dialog).

Every export goes through the signed-in person's
:class:`~surgsim.records.auth.AccessContext`: the records layer refuses what they
may not read. Exports carry opaque ids only (the records layer's exporters).

xAPI statements are always written to ``xapi-statements.json``; when an LRS
endpoint is given they are also put in the durable
:class:`~surgsim.records.queue.StatementQueue` and a drain runs in a worker thread
(an unreachable LRS never blocks the window; the statements wait in the queue).
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
    xapi_sent(object)
        The :class:`~surgsim.records.queue.DrainReport` of a drain (or an error string).
    """

    exported = Signal(list)
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

    # ------------------------------------------------------------ helpers

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def folder(self) -> Path:
        """The export folder (created if missing)."""
        text = self.folder_edit.text().strip()
        if not text:
            raise RecordsError("choose an export folder first (type a path or use Browse...)")
        path = Path(text).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordsError(f"cannot create the export folder {path}: {exc}; choose another") from exc
        return path

    def _run(self, fn: Callable[[], list[Path]]) -> list[Path]:
        show_error(self.error, "")
        self.status.setText("")
        try:
            paths = fn()
        except SurgsimError as exc:
            show_error(self.error, str(exc))
            return []
        except OSError as exc:
            show_error(self.error, f"cannot write the export: {exc}")
            return []
        self.status.setText("Wrote " + ", ".join(str(p) for p in paths))
        self.exported.emit(paths)
        return paths

    # ------------------------------------------------------------ exports

    def export_csv(self) -> list[Path]:
        """Write ``attempts.csv`` and ``metrics.csv`` of the scope's trainees."""
        from surgsim.records.export import attempts_csv, metrics_csv

        def run() -> list[Path]:
            folder, scope = self.folder(), self.scope()
            ids = [scope.trainee_id] if scope.trainee_id else scope.trainee_ids
            out = []
            for name, fn in (("attempts.csv", attempts_csv), ("metrics.csv", metrics_csv)):
                p = folder / name
                p.write_text(_scoped_csv(fn, self.records, self.access, ids), encoding="utf-8")
                out.append(p)
            return out

        return self._run(run)

    def export_json(self) -> list[Path]:
        """Write the chosen attempt's bundle (``attempt-<id>.json``, replayable)."""
        from surgsim.records.export import write_bundle

        def run() -> list[Path]:
            folder, scope = self.folder(), self.scope()
            if not scope.attempt_id:
                raise RecordsError("choose an attempt in the table first: a bundle holds one attempt")
            path = folder / f"attempt-{scope.attempt_id}.json"
            return [write_bundle(self.records, scope.attempt_id, path, access=self.access)]

        return self._run(run)

    def export_xapi(self) -> list[Path]:
        """Write the attempts' xAPI statements; queue and send them when an LRS is set."""
        from surgsim.records.xapi import LRSClient, statements_for_attempt

        def run() -> list[Path]:
            folder, scope = self.folder(), self.scope()
            if not scope.attempt_ids:
                raise RecordsError("no attempts in view to export as xAPI statements")
            home = self.home_page_edit.text().strip() or DEFAULT_HOME_PAGE
            statements = []
            for aid in scope.attempt_ids:
                rec = self.records.get_attempt(aid, access=self.access)
                statements += statements_for_attempt(rec, home_page=home)
            path = folder / "xapi-statements.json"
            path.write_text(json.dumps(statements, indent=1), encoding="utf-8")
            endpoint = self.lrs_edit.text().strip()
            if endpoint:
                from surgsim.records.queue import StatementQueue, default_queue_path

                client = LRSClient(
                    endpoint, self.lrs_user_edit.text(), self.lrs_password_edit.text(), timeout=5.0
                )
                qpath = self.queue_path or default_queue_path()
                with StatementQueue(qpath) as queue:
                    added = queue.enqueue(client.endpoint, statements)
                self._drain(qpath, client, added, len(statements))
            return [path]

        return self._run(run)

    def _drain(self, qpath: Path, client, added: int, total: int) -> None:
        thread = DrainThread(qpath, client, added, total)
        thread.report.connect(self._drained)  # queued: runs in the GUI thread
        self.status.setText(f"xAPI: sending to {client.masked} ...")
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
            )
            if report.error:
                show_error(
                    self.error,
                    f"{report.error} ({report.pending} statement(s) wait in the queue "
                    "and go out with the next xAPI export)",
                )
        self.xapi_sent.emit(report)

    def export_report(self) -> list[Path]:
        """Write the trainee's report (or the cohort's) as HTML and PDF."""
        from surgsim.records.report import cohort_report, trainee_report

        def run() -> list[Path]:
            folder, scope = self.folder(), self.scope()
            if scope.trainee_id:
                stem = folder / f"report-{scope.trainee_id}"
                out = trainee_report(self.records, scope.trainee_id, stem.with_suffix(".html"),
                                     pdf_path=stem.with_suffix(".pdf"), access=self.access)
            elif scope.cohort_id:
                stem = folder / f"cohort-{scope.cohort_id}"
                out = cohort_report(self.records, scope.cohort_id, stem.with_suffix(".html"),
                                    pdf_path=stem.with_suffix(".pdf"), access=self.access)
            else:
                raise RecordsError(
                    "choose a cohort or a trainee first: a report is of one trainee or one cohort"
                )
            return [out["html"], out["pdf"]]

        return self._run(run)
