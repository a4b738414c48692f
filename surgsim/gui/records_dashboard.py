"""The educator's cohort dashboard: trainees by scenarios (attempts, best score, pass
rate, CUSUM status), the cohort's attempts with a release toggle, debrief notes
and the export buttons.

Cohorts offered are those the signed-in person may see
(:meth:`surgsim.records.Records.list_cohorts`: an educator the cohorts they teach;
an admin or the station all, plus everything they may read). The records layer
enforces it: what it refuses is shown as an error, never bypassed. Reads and
writes run on the records thread (:mod:`surgsim.gui.records_worker`): the
dashboard shows a busy line meanwhile and never freezes on a slow or unreachable
database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from surgsim.gui.records_export import ExportPanel, ExportScope
from surgsim.gui.records_trainee import (
    CUSUM_COLOURS,
    FAIL_COLOUR,
    PASS_COLOUR,
    error_label,
    fmt_score,
    local_time,
    person_label,
    show_error,
)
from surgsim.gui.records_worker import RecordsJobs, busy_label
from surgsim.records.curves import cusum, lc_cusum

ALL = ""  # the cohort combo's entry for "everything you may read"


@dataclass(frozen=True)
class CellSummary:
    """One trainee on one scenario.

    Attributes
    ----------
    attempts : int
        All attempts (interrupted ones included).
    best_score : float or None
    pass_rate : float or None
        Passed / scored attempts (completed or aborted), 0..1.
    cusum : str
        ``"alarm"``, ``"acceptable"`` or ``"undecided"`` (p0=0.2, p1=0.3).
    competent : bool
        LC-CUSUM has declared competence.
    """

    attempts: int
    best_score: float | None
    pass_rate: float | None
    cusum: str
    competent: bool

    def text(self) -> str:
        rate = "n/a" if self.pass_rate is None else f"{100 * self.pass_rate:.0f} %"
        return (
            f"{self.attempts} att., best {fmt_score(self.best_score)}\n"
            f"pass {rate}, CUSUM {self.cusum}" + (", competent" if self.competent else "")
        )


@dataclass(frozen=True)
class DashboardData:
    """What the dashboard reads in one go on the records thread.

    Attributes
    ----------
    users : list of dict
        :meth:`~surgsim.records.Records.list_users` (display names for the labels).
    cohorts : list of CohortInfo
        :meth:`~surgsim.records.Records.list_cohorts`.
    attempts : list of AttemptSummary
        Everything the signed-in person may read, oldest first.
    """

    users: list
    cohorts: list
    attempts: list


def load_dashboard(records, access) -> DashboardData:
    """Read what :class:`CohortDashboard` shows (runs on the records thread)."""
    return DashboardData(
        users=records.list_users(access=access),
        cohorts=records.list_cohorts(access=access),
        attempts=records.list_attempts(access=access),
    )


def summarise(attempts) -> dict[tuple[str, str], CellSummary]:
    """Cell summaries by (trainee id, scenario id) of attempts (oldest first).

    The CUSUM charts are those of :func:`surgsim.records.curves.learning_curve`:
    interrupted attempts are left out, a failure is an attempt that did not pass.
    """
    groups: dict[tuple[str, str], list] = {}
    for a in attempts:
        groups.setdefault((a.trainee_id, a.scenario_id), []).append(a)
    out = {}
    for key, rows in groups.items():
        scored = [a for a in rows if a.status != "interrupted"]
        failures = np.array([0 if a.passed else 1 for a in scored], dtype=int)
        scores = [a.score for a in rows if a.score is not None]
        out[key] = CellSummary(
            attempts=len(rows),
            best_score=max(scores) if scores else None,
            pass_rate=float(1 - failures.mean()) if failures.size else None,
            cusum=cusum(failures, 0.2, 0.3).status,
            competent=lc_cusum(failures, 0.3, 0.2).competent,
        )
    return out


class CohortDashboard(QWidget):
    """Trainees by scenarios, the attempts with release toggles, debrief notes, exports.

    Parameters
    ----------
    records : Records
    access : AccessContext or None
        An educator, an admin, or None (the station of a database without accounts).

    Attributes
    ----------
    cohort_combo : QComboBox
        Cohorts (item data: cohort id; ``""`` for everything the person may read).
    matrix : QTableWidget
        One row per trainee (vertical header data: trainee id), one column per scenario.
    cells : dict of (str, str) to CellSummary
    attempt_table : QTableWidget
        Attempts of the selection; the last column is a checkable "released".
    debrief_edit : QPlainTextEdit
    export : ExportPanel
    jobs : RecordsJobs
        The dashboard's records jobs (:attr:`busy` while one runs).

    Signals
    -------
    trainee_opened(str)
        A trainee's row or cell was double-clicked (their opaque id).
    loaded()
        A refresh finished (shown, or its error shown).
    release_done(str, bool)
        A release toggle was written (attempt id, True) or refused (False, error shown).
    debrief_saved(str, bool)
        Debrief notes were written (attempt id, True) or refused.
    """

    trainee_opened = Signal(str)
    loaded = Signal()
    release_done = Signal(str, bool)
    debrief_saved = Signal(str, bool)
    ATTEMPT_COLUMNS = ("date", "trainee", "scenario", "mode", "status", "score", "pass", "released")
    RELEASED = 7

    def __init__(self, records, access, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("cohort_dashboard")
        self.records = records
        self.access = access
        self.users: dict[str, dict] = {}
        self.trainees: list[str] = []
        self.scenarios: list[str] = []
        self.attempts: list = []
        self.cells: dict[tuple[str, str], CellSummary] = {}
        self.filter: tuple[str | None, str | None] = (None, None)  # (trainee, scenario)
        self.shown: list = []  # attempts in attempt_table
        self.cohorts: list = []  # CohortInfo the person may see
        self._filling = False
        self._wanted_cohort: str | None = None  # asked for before the cohorts were read
        self._debrief_for: str | None = None  # attempt whose notes are being read
        self._refreshes = 0

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Cohort:"))
        self.cohort_combo = QComboBox()
        self.cohort_combo.setObjectName("cohort_combo")
        row.addWidget(self.cohort_combo, stretch=1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setObjectName("refresh")
        self.refresh_button.clicked.connect(self.refresh)
        row.addWidget(self.refresh_button)
        layout.addLayout(row)
        self.summary = QLabel()
        layout.addWidget(self.summary)
        self.error = error_label()
        layout.addWidget(self.error)
        self.busy_label = busy_label()
        layout.addWidget(self.busy_label)
        self.jobs = RecordsJobs(self, self.busy_label, self.error)
        self.jobs.busy_changed.connect(lambda b: self.refresh_button.setEnabled(not b))

        splitter = QSplitter(Qt.Orientation.Vertical)
        self.matrix = QTableWidget(0, 0)
        self.matrix.setObjectName("cohort_matrix")
        self.matrix.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.matrix.setWordWrap(True)
        self.matrix.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.matrix.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.matrix.cellClicked.connect(self._cell_clicked)
        self.matrix.cellDoubleClicked.connect(lambda r, c: self._open_trainee(r))
        self.matrix.verticalHeader().sectionClicked.connect(lambda r: self.set_filter(self._trainee_at(r), None))
        self.matrix.verticalHeader().sectionDoubleClicked.connect(self._open_trainee)
        splitter.addWidget(self.matrix)

        lower = QWidget()
        ll = QVBoxLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        frow = QHBoxLayout()
        self.filter_label = QLabel()
        frow.addWidget(self.filter_label, stretch=1)
        show_all = QPushButton("Show all attempts")
        show_all.clicked.connect(lambda: self.set_filter(None, None))
        frow.addWidget(show_all)
        ll.addLayout(frow)
        self.attempt_table = QTableWidget(0, len(self.ATTEMPT_COLUMNS))
        self.attempt_table.setObjectName("attempt_table")
        self.attempt_table.setHorizontalHeaderLabels(self.ATTEMPT_COLUMNS)
        self.attempt_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.attempt_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.attempt_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.attempt_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.attempt_table.itemChanged.connect(self._item_changed)
        self.attempt_table.itemSelectionChanged.connect(self._attempt_selected)
        ll.addWidget(self.attempt_table, stretch=2)

        self.debrief_title = QLabel("Debrief notes: choose an attempt")
        self.debrief_title.setFont(QFont(self.debrief_title.font().family(), 10, QFont.Weight.Bold))
        ll.addWidget(self.debrief_title)
        drow = QHBoxLayout()
        self.debrief_edit = QPlainTextEdit()
        self.debrief_edit.setObjectName("debrief_edit")
        self.debrief_edit.setPlaceholderText("Notes for the trainee (shown on their page once released)")
        self.debrief_edit.setEnabled(False)
        drow.addWidget(self.debrief_edit, stretch=1)
        self.save_debrief_button = QPushButton("Save notes")
        self.save_debrief_button.setObjectName("save_debrief")
        self.save_debrief_button.setEnabled(False)
        self.save_debrief_button.clicked.connect(self._save_clicked)
        drow.addWidget(self.save_debrief_button, alignment=Qt.AlignmentFlag.AlignTop)
        ll.addLayout(drow, stretch=1)
        splitter.addWidget(lower)
        splitter.setSizes([260, 400])
        layout.addWidget(splitter, stretch=1)

        self.export = ExportPanel(records, access, self.export_scope)
        layout.addWidget(self.export)

        self.cohort_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.refresh()

    # ------------------------------------------------------------ cohorts and data

    @property
    def busy(self) -> bool:
        """True while the dashboard waits for the database."""
        return self.jobs.busy

    def _fill_cohorts(self, cohorts: list) -> None:
        """Offer ``cohorts`` (CohortInfo) and "all", keeping the current choice if still there."""
        current = self._wanted_cohort if self._wanted_cohort is not None else self.cohort_combo.currentData()
        self._wanted_cohort = None
        self.cohorts = list(cohorts)
        self.cohort_combo.blockSignals(True)
        self.cohort_combo.clear()
        for c in self.cohorts:
            name = f" ({c.name})" if c.name and c.name != c.id else ""
            self.cohort_combo.addItem(f"Cohort {c.id}{name}", c.id)
        self.cohort_combo.addItem(
            "All trainees of my cohorts" if self.access is not None and self.access.role == "educator"
            else "All trainees",
            ALL,
        )
        i = self.cohort_combo.findData(current) if current is not None else -1
        self.cohort_combo.setCurrentIndex(max(i, 0))
        self.cohort_combo.blockSignals(False)
        if current and i < 0:
            show_error(self.error, f"no cohort {current!r} visible to you")

    @property
    def cohort_id(self) -> str | None:
        """The cohort shown (None: everything the signed-in person may read)."""
        return self.cohort_combo.currentData() or None

    def select_cohort(self, cohort_id: str | None) -> None:
        """Show a cohort (None: all); remembered when asked before the cohorts are read."""
        if not self.cohorts and self.busy:
            self._wanted_cohort = cohort_id or ALL
            return
        i = self.cohort_combo.findData(cohort_id or ALL)
        if i < 0:
            show_error(self.error, f"no cohort {cohort_id!r} visible to you")
            return
        if i == self.cohort_combo.currentIndex():
            self.refresh()
        else:
            self.cohort_combo.setCurrentIndex(i)

    def refresh(self) -> None:
        """Re-read the cohorts, trainees and attempts (on the records thread); redraw when read."""
        records, access = self.records, self.access
        self._refreshes += 1
        seq = self._refreshes
        self.jobs.run(
            lambda: load_dashboard(records, access),
            lambda data: self._loaded(data, seq),
            "Reading the cohorts and attempts from the lab database...",
            on_error=lambda message: self._failed(message, seq),
        )

    def _failed(self, message: str, seq: int) -> None:
        if seq != self._refreshes:
            return  # a newer refresh follows
        show_error(self.error, message)
        self.summary.setText("The cohorts and attempts could not be read (see the error above).")
        self.loaded.emit()

    def _loaded(self, data: DashboardData, seq: int) -> None:
        if seq != self._refreshes:
            return  # a newer refresh follows: show that one
        show_error(self.error, "")
        self.users = {u["id"]: u for u in data.users}
        self._fill_cohorts(data.cohorts)
        cid = self.cohort_id
        attempts = data.attempts
        if cid:
            info = next((c for c in self.cohorts if c.id == cid), None)
            trainees = list(info.trainees) if info is not None else []
        else:
            trainees = sorted(
                {a.trainee_id for a in attempts}
                | {u["id"] for u in self.users.values() if u["role"] == "trainee"}
            )
        keep = set(trainees)
        self.trainees = trainees
        self.attempts = [a for a in attempts if a.trainee_id in keep]
        self.scenarios = sorted({a.scenario_id for a in self.attempts})
        self.cells = summarise(self.attempts)
        self._fill_matrix()
        released = sum(a.released for a in self.attempts)
        self.summary.setText(
            f"{len(self.trainees)} trainee(s), {len(self.scenarios)} scenario(s), "
            f"{len(self.attempts)} attempt(s), {released} released. Click a cell to see its "
            "attempts, double-click to open the trainee's page."
        )
        t, s = self.filter
        self.set_filter(t if t in keep else None, s if s in self.scenarios else None)
        self.loaded.emit()

    def _label(self, pid: str) -> str:
        return person_label(self.users.get(pid), pid)

    def _trainee_at(self, row: int) -> str | None:
        return self.trainees[row] if 0 <= row < len(self.trainees) else None

    def _fill_matrix(self) -> None:
        m = self.matrix
        m.clear()
        m.setRowCount(len(self.trainees))
        m.setColumnCount(len(self.scenarios))
        m.setHorizontalHeaderLabels(self.scenarios)
        m.setVerticalHeaderLabels([self._label(t) for t in self.trainees])
        for i, tid in enumerate(self.trainees):
            for j, sid in enumerate(self.scenarios):
                cell = self.cells.get((tid, sid))
                item = QTableWidgetItem(cell.text() if cell else "-")
                item.setData(Qt.ItemDataRole.UserRole, (tid, sid))
                if cell is not None:
                    item.setBackground(QBrush(QColor(CUSUM_COLOURS.get(cell.cusum, "#ffffff"))))
                    item.setForeground(QBrush(QColor("#222222")))
                    item.setToolTip(
                        f"{self._label(tid)} on {sid}: CUSUM {cell.cusum} (p0=0.2, p1=0.3); "
                        + ("LC-CUSUM: competent" if cell.competent else "LC-CUSUM: not yet competent")
                    )
                m.setItem(i, j, item)

    def _cell_clicked(self, row: int, col: int) -> None:
        tid = self._trainee_at(row)
        sid = self.scenarios[col] if 0 <= col < len(self.scenarios) else None
        self.set_filter(tid, sid)

    def _open_trainee(self, row: int) -> None:
        tid = self._trainee_at(row)
        if tid:
            self.trainee_opened.emit(tid)

    # ------------------------------------------------------------ attempts

    def set_filter(self, trainee_id: str | None, scenario_id: str | None) -> None:
        """Show the attempts of one trainee and/or one scenario (None: any)."""
        self.filter = (trainee_id, scenario_id)
        self.shown = [
            a for a in self.attempts
            if (trainee_id is None or a.trainee_id == trainee_id)
            and (scenario_id is None or a.scenario_id == scenario_id)
        ]
        what = []
        if trainee_id:
            what.append(self._label(trainee_id))
        if scenario_id:
            what.append(scenario_id)
        self.filter_label.setText(
            f"Attempts of {' on '.join(what)}" if what else "All attempts of the cohort"
        )
        self._fill_attempts()

    def _fill_attempts(self) -> None:
        t = self.attempt_table
        self._filling = True
        try:
            t.clearSelection()
            t.setRowCount(len(self.shown))
            for i, a in enumerate(self.shown):
                cells = [
                    local_time(a.started_at),
                    self._label(a.trainee_id),
                    a.scenario_id,
                    a.mode,
                    a.status,
                    fmt_score(a.score),
                    "pass" if a.passed else "fail",
                ]
                for j, text in enumerate(cells):
                    item = QTableWidgetItem(text)
                    item.setData(Qt.ItemDataRole.UserRole, a.id)
                    if j == 6:
                        item.setForeground(PASS_COLOUR if a.passed else FAIL_COLOUR)
                    t.setItem(i, j, item)
                rel = QTableWidgetItem("released" if a.released else "withheld")
                rel.setData(Qt.ItemDataRole.UserRole, a.id)
                rel.setFlags(
                    Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                )
                rel.setCheckState(Qt.CheckState.Checked if a.released else Qt.CheckState.Unchecked)
                rel.setToolTip("Tick to release the score to the trainee; untick to withdraw it")
                t.setItem(i, self.RELEASED, rel)
        finally:
            self._filling = False
        self._attempt_selected()

    def row_of(self, attempt_id: str) -> int:
        """Row of an attempt in :attr:`attempt_table` (-1 when not shown)."""
        return next((i for i, a in enumerate(self.shown) if a.id == attempt_id), -1)

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != self.RELEASED:
            return
        want = item.checkState() == Qt.CheckState.Checked
        self.set_released(item.data(Qt.ItemDataRole.UserRole), want)

    def set_released(self, attempt_id: str, released: bool) -> None:
        """Release (or withdraw) an attempt's score through the records layer.

        Written on the records thread; :attr:`release_done` says how it went. When the
        records layer refuses, the error is shown and the toggle reverted.
        """
        show_error(self.error, "")
        records, access = self.records, self.access
        word = "Releasing" if released else "Withdrawing"

        def done(_result: object) -> None:
            self.attempts = [replace(a, released=released) if a.id == attempt_id else a for a in self.attempts]
            self.shown = [replace(a, released=released) if a.id == attempt_id else a for a in self.shown]
            self.export.status.setText(
                f"Attempt {attempt_id[:8]}: score {'released to' if released else 'withdrawn from'} the trainee"
            )
            self._show_release(attempt_id)
            self.release_done.emit(attempt_id, True)

        def failed(message: str) -> None:
            show_error(self.error, message)
            self._show_release(attempt_id)
            self.release_done.emit(attempt_id, False)

        self.jobs.run(lambda: records.set_released(attempt_id, released, access=access), done,
                      f"{word} the score of attempt {attempt_id[:8]}...", on_error=failed)

    def _show_release(self, attempt_id: str) -> None:
        """Set the toggle of an attempt to what is known to be stored."""
        row = self.row_of(attempt_id)
        if row >= 0:
            a = self.shown[row]
            item = self.attempt_table.item(row, self.RELEASED)
            self._filling = True
            item.setCheckState(Qt.CheckState.Checked if a.released else Qt.CheckState.Unchecked)
            item.setText("released" if a.released else "withheld")
            self._filling = False

    @property
    def selected_attempt(self) -> str | None:
        """Id of the attempt selected in :attr:`attempt_table`."""
        rows = {i.row() for i in self.attempt_table.selectedItems()}
        return self.shown[min(rows)].id if rows else None

    def select_attempt(self, attempt_id: str) -> None:
        """Select an attempt in the table (shown first if filtered out)."""
        if self.row_of(attempt_id) < 0:
            self.set_filter(None, None)
        row = self.row_of(attempt_id)
        if row >= 0:
            self.attempt_table.selectRow(row)

    def _attempt_selected(self) -> None:
        aid = self.selected_attempt
        self.debrief_edit.setEnabled(False)
        self.save_debrief_button.setEnabled(False)
        self._debrief_for = aid
        if aid is None:
            self.debrief_title.setText("Debrief notes: choose an attempt")
            self.debrief_edit.setPlainText("")
            return
        self.debrief_title.setText("Debrief notes: reading...")
        records, access = self.records, self.access

        def done(rec) -> None:
            if self._debrief_for != aid:
                return  # another attempt was chosen meanwhile
            self.debrief_title.setText(
                f"Debrief notes: {self._label(rec.trainee_id)}, {rec.scenario_id}, {local_time(rec.started_at)}"
                + (f" (critical: {', '.join(rec.critical_errors)})" if rec.critical_errors else "")
            )
            self.debrief_edit.setPlainText(rec.debrief_notes)
            self.debrief_edit.setEnabled(True)
            self.save_debrief_button.setEnabled(True)

        def failed(message: str) -> None:
            if self._debrief_for == aid:
                self.debrief_title.setText("Debrief notes: could not be read")
            show_error(self.error, message)

        self.jobs.run(lambda: records.get_attempt(aid, access=access, with_log=False), done,
                      f"Reading attempt {aid[:8]}...", on_error=failed)

    @property
    def debrief_ready(self) -> bool:
        """True when the notes of the selected attempt are shown and may be edited."""
        return self.save_debrief_button.isEnabled()

    def _save_clicked(self) -> None:
        aid = self.selected_attempt
        if aid is not None:
            self.save_debrief(aid, self.debrief_edit.toPlainText())

    def save_debrief(self, attempt_id: str, notes: str) -> None:
        """Write an attempt's debrief notes through the records layer (on the records thread).

        :attr:`debrief_saved` says how it went; a refusal is shown as an error.
        """
        show_error(self.error, "")
        records, access = self.records, self.access

        def done(_result: object) -> None:
            self.export.status.setText(f"Saved the debrief notes of attempt {attempt_id[:8]}")
            self.debrief_saved.emit(attempt_id, True)

        def failed(message: str) -> None:
            show_error(self.error, message)
            self.debrief_saved.emit(attempt_id, False)

        self.jobs.run(lambda: records.set_debrief(attempt_id, notes, access=access), done,
                      f"Saving the debrief notes of attempt {attempt_id[:8]}...", on_error=failed)

    # ------------------------------------------------------------ exports

    def export_scope(self) -> ExportScope:
        """What the export buttons act on: the filter's trainee, else the cohort."""
        tid, _ = self.filter
        return ExportScope(
            trainee_ids=list(self.trainees),
            trainee_id=tid,
            cohort_id=self.cohort_id,
            attempt_id=self.selected_attempt,
            attempt_ids=[a.id for a in self.shown],
        )
