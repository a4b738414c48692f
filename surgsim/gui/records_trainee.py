"""A trainee's page: attempt history, learning curves (score, CUSUM, LC-CUSUM), metric
trends and the last debrief notes.

Everything is read through the signed-in person's
:class:`~surgsim.records.auth.AccessContext`, so the records layer decides what is
shown: a trainee gets only their own released attempts; an educator or an admin
looking at a trainee also sees unreleased attempts (the table then has a
"released" column). The reading runs on the records thread
(:mod:`surgsim.gui.records_worker`); the page shows a busy line meanwhile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from surgsim.gui.records_worker import RecordsJobs, busy_label
from surgsim.records.curves import LearningCurve, learning_curve
from surgsim.records.report import TREND_METRICS

PASS_COLOUR = QColor("#1a7f37")
FAIL_COLOUR = QColor("#b42318")
#: Attempts searched (newest first) for the last debrief notes (each read decodes a log).
DEBRIEF_LOOKBACK = 20
CUSUM_COLOURS = {"alarm": "#f8d7da", "acceptable": "#d1f2d9", "undecided": "#fff3cd"}


def local_time(dt) -> str:
    """A stored (UTC) datetime as local ``YYYY-MM-DD HH:MM``."""
    return dt.astimezone().strftime("%Y-%m-%d %H:%M")


def fmt_score(score: float | None) -> str:
    return "n/a" if score is None or not math.isfinite(score) else f"{score:.1f}"


def person_label(user: dict | None, person_id: str) -> str:
    """``Display name (T-...)`` when the lab database knows a name, else the opaque id."""
    name = (user or {}).get("display_name") or (user or {}).get("username")
    return f"{name} ({person_id})" if name else person_id


def error_label() -> QLabel:
    """A red, word-wrapped label for errors from the records layer (hidden when empty)."""
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet("color: #b42318; font-weight: bold;")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.hide()
    return label


def show_error(label: QLabel, message: str) -> None:
    label.setText(message)
    label.setVisible(bool(message))


def draw_learning_curve(fig: Figure, curve: LearningCurve, pass_score: float | None) -> None:
    """Draw score history, CUSUM (with h0 and h1) and LC-CUSUM (with h) on ``fig``."""
    fig.clear()
    axes = fig.subplots(1, 3)
    n = np.arange(1, len(curve.attempt_ids) + 1)
    ax = axes[0]
    ax.plot(n, curve.scores, "o-", color="#1f77b4", label="score")
    if pass_score is not None:
        ax.axhline(pass_score, color="#888", ls="--", label=f"pass mark {pass_score:g}")
    ax.set(title="Score", xlabel="attempt", ylabel="score (0-100)", ylim=(0, 105))
    ax.legend(loc="lower right", fontsize=7)
    c = curve.cusum
    ax = axes[1]
    ax.plot(n, c.s, "o-", color="#d62728", label="S_n")
    ax.axhline(c.h1, color="#b42318", ls="--", label=f"alarm h1={c.h1:.2f}")
    ax.axhline(c.h0, color="#1a7f37", ls="--", label=f"acceptable h0={c.h0:.2f}")
    ax.axhline(0.0, color="#ccc", lw=0.8)
    ax.set(title=f"CUSUM: {c.status}", xlabel="attempt", ylabel="S_n")
    ax.legend(loc="best", fontsize=7)
    lc = curve.lc_cusum
    ax = axes[2]
    ax.plot(n, lc.s, "o-", color="#9467bd", label="S_t")
    ax.axhline(lc.h, color="#1a7f37", ls="--", label=f"competence h={lc.h:.2f}")
    title = "LC-CUSUM: " + (
        f"competent at attempt {lc.competent_at + 1}" if lc.competent else "not yet competent"
    )
    ax.set(title=title, xlabel="attempt", ylabel="S_t")
    ax.legend(loc="best", fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    fig.tight_layout()


def draw_trends(
    fig: Figure, attempt_ids: list[str], values: dict[str, dict[str, float]], units: dict[str, str]
) -> list[str]:
    """Draw one small plot per metric (value over attempts); the metric names drawn."""
    fig.clear()
    names = [m for m in TREND_METRICS if values.get(m)]
    if not names:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no metrics recorded", ha="center", va="center", color="#888")
        ax.set_axis_off()
        return []
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names, strict=True):
        xs = [i + 1 for i, a in enumerate(attempt_ids) if a in values[name]]
        ys = [values[name][a] for a in attempt_ids if a in values[name]]
        ax.plot(xs, ys, "o-", color="#2ca02c")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("attempt", fontsize=7)
        ax.set_ylabel(units.get(name, ""), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return names


@dataclass
class TraineeData:
    """What a trainee page shows, read in one go on the records thread.

    Attributes
    ----------
    attempts : list of AttemptSummary
        Oldest first.
    curves : dict of str to (LearningCurve, float or None)
        By scenario id: the learning curve and the pass mark of its last attempt.
    values : dict of str to dict of str to float
        Metric values by metric name, then attempt id.
    units : dict of str to str
    debrief_title, debrief_notes : str
        The newest debrief notes among the last :data:`DEBRIEF_LOOKBACK` attempts.
    """

    attempts: list = field(default_factory=list)
    curves: dict[str, tuple[LearningCurve, float | None]] = field(default_factory=dict)
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    debrief_title: str = "Last debrief: none yet"
    debrief_notes: str = ""


def load_trainee(records, access, trainee_id: str) -> TraineeData:
    """Read everything a :class:`TraineePage` shows (runs on the records thread)."""
    data = TraineeData(attempts=records.list_attempts(trainee_id, access=access))
    for sid in sorted({a.scenario_id for a in data.attempts}):
        curve = learning_curve(records, trainee_id, sid, access=access)
        pass_score = None
        if curve.attempt_ids:
            rec = records.get_attempt(curve.attempt_ids[-1], access=access, with_log=False)
            v = rec.result.get("pass_score")
            pass_score = float(v) if v is not None else None
        data.curves[sid] = (curve, pass_score)
    for aid, name, value, unit in records.metric_rows(access=access, trainee_id=trainee_id):
        if value is not None:
            data.values.setdefault(name, {})[aid] = value
            data.units[name] = unit
    for a in list(reversed(data.attempts))[:DEBRIEF_LOOKBACK]:
        rec = records.get_attempt(a.id, access=access, with_log=False)
        if rec.debrief_notes:
            data.debrief_title = f"Last debrief: attempt of {local_time(rec.started_at)} on {rec.scenario_id}"
            data.debrief_notes = rec.debrief_notes
            break
    else:
        if len(data.attempts) > DEBRIEF_LOOKBACK:
            data.debrief_title = f"Last debrief: none in the last {DEBRIEF_LOOKBACK} attempts"
    return data


class TraineePage(QWidget):
    """One trainee's history, learning curves, metric trends and last debrief.

    Parameters
    ----------
    records : Records
    access : AccessContext or None
        Who is looking (None: the station itself, no accounts).
    trainee_id : str
        Opaque id of the trainee shown (a trainee may only pass their own).
    label : str, optional
        Heading (default: the opaque id).

    Attributes
    ----------
    history : QTableWidget
        Date, scenario, mode, score, pass, status (and released, for educators).
    attempts : list of AttemptSummary
        What the history shows, oldest first.
    curve : LearningCurve or None
        The curve drawn for the scenario chosen in :attr:`scenario_combo`.
    curve_canvas, trend_canvas : FigureCanvasQTAgg
    debrief_view : QPlainTextEdit
        The newest debrief notes (read-only).
    jobs : RecordsJobs
        The page's records jobs (:attr:`busy` while one runs).

    Signals
    -------
    loaded()
        A refresh finished (shown, or its error shown).
    """

    loaded = Signal()
    COLUMNS = ("date", "scenario", "mode", "score", "pass", "status")

    def __init__(self, records, access, trainee_id: str, label: str | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("trainee_page")
        self.records = records
        self.access = access
        self.trainee_id = trainee_id
        self.show_released = access is None or access.role in ("educator", "admin")
        self.attempts = []
        self.curve: LearningCurve | None = None
        self.trend_metrics: list[str] = []

        layout = QVBoxLayout(self)
        self.heading = QLabel(f"Attempts of {label or trainee_id}")
        self.heading.setFont(QFont(self.heading.font().family(), 13, QFont.Weight.Bold))
        layout.addWidget(self.heading)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.error = error_label()
        layout.addWidget(self.error)
        self.busy_label = busy_label()
        layout.addWidget(self.busy_label)
        self.jobs = RecordsJobs(self, self.busy_label, self.error)
        self.data = TraineeData()

        splitter = QSplitter(Qt.Orientation.Vertical)
        cols = list(self.COLUMNS) + (["released"] if self.show_released else [])
        self.history = QTableWidget(0, len(cols))
        self.history.setObjectName("history")
        self.history.setHorizontalHeaderLabels(cols)
        self.history.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.history.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.history.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.history.horizontalHeader().setStretchLastSection(True)
        splitter.addWidget(self.history)

        charts = QWidget()
        cl = QVBoxLayout(charts)
        cl.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Scenario:"))
        self.scenario_combo = QComboBox()
        self.scenario_combo.setObjectName("scenario_combo")
        self.scenario_combo.currentTextChanged.connect(self._draw_scenario)
        row.addWidget(self.scenario_combo, stretch=1)
        self.curve_status = QLabel()
        row.addWidget(self.curve_status, stretch=2)
        cl.addLayout(row)
        tabs = QTabWidget()
        self.curve_figure = Figure(figsize=(9, 2.8))
        self.curve_canvas = FigureCanvasQTAgg(self.curve_figure)
        self.curve_canvas.setObjectName("curve_canvas")
        tabs.addTab(self.curve_canvas, "Learning curve")
        self.trend_figure = Figure(figsize=(9, 2.4))
        self.trend_canvas = FigureCanvasQTAgg(self.trend_figure)
        self.trend_canvas.setObjectName("trend_canvas")
        tabs.addTab(self.trend_canvas, "Metric trends")
        cl.addWidget(tabs, stretch=1)
        splitter.addWidget(charts)

        debrief = QWidget()
        dl = QVBoxLayout(debrief)
        dl.setContentsMargins(0, 0, 0, 0)
        self.debrief_title = QLabel("Last debrief")
        self.debrief_title.setFont(QFont(self.debrief_title.font().family(), 10, QFont.Weight.Bold))
        dl.addWidget(self.debrief_title)
        self.debrief_view = QPlainTextEdit()
        self.debrief_view.setObjectName("debrief_view")
        self.debrief_view.setReadOnly(True)
        dl.addWidget(self.debrief_view)
        splitter.addWidget(debrief)
        splitter.setSizes([220, 330, 120])
        layout.addWidget(splitter, stretch=1)
        self.refresh()

    # ------------------------------------------------------------ data

    @property
    def busy(self) -> bool:
        """True while the page waits for the database."""
        return self.jobs.busy

    def set_label(self, label: str) -> None:
        """Change the heading's name of the trainee."""
        self.heading.setText(f"Attempts of {label}")

    def refresh(self) -> None:
        """Re-read the trainee's attempts (on the records thread); redraw when they arrive."""
        records, access, tid = self.records, self.access, self.trainee_id
        self.jobs.run(
            lambda: load_trainee(records, access, tid),
            self._loaded,
            f"Reading the attempts of {tid} from the lab database...",
            on_error=self._failed,
        )

    def _failed(self, message: str) -> None:
        show_error(self.error, message)
        self.summary.setText("The attempts could not be read (see the error above).")
        self.loaded.emit()

    def _loaded(self, data: TraineeData) -> None:
        show_error(self.error, "")
        self.data = data
        self.attempts = data.attempts
        self._fill_history()
        scenarios = sorted(data.curves)
        current = self.scenario_combo.currentText()
        self.scenario_combo.blockSignals(True)
        self.scenario_combo.clear()
        self.scenario_combo.addItems(scenarios)
        if current in scenarios:
            self.scenario_combo.setCurrentText(current)
        self.scenario_combo.blockSignals(False)
        n_rel = sum(a.released for a in self.attempts)
        if not self.attempts:
            self.summary.setText(
                "No attempts to show yet."
                + ("" if self.show_released else " Assessment scores appear once an educator releases them.")
            )
        else:
            passed = sum(a.passed for a in self.attempts)
            self.summary.setText(
                f"{len(self.attempts)} attempt(s) on {len(scenarios)} scenario(s), {passed} passed"
                + (f"; {n_rel} released to the trainee" if self.show_released else "")
                + "."
            )
        self._draw_scenario(self.scenario_combo.currentText())
        self.debrief_title.setText(data.debrief_title)
        self.debrief_view.setPlainText(data.debrief_notes)
        self.loaded.emit()

    def _fill_history(self) -> None:
        t = self.history
        t.setRowCount(len(self.attempts))
        for i, a in enumerate(self.attempts):
            cells = [
                local_time(a.started_at),
                a.scenario_id,
                a.mode,
                fmt_score(a.score),
                "pass" if a.passed else "fail",
                a.status,
            ]
            if self.show_released:
                cells.append("yes" if a.released else "no")
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, a.id)
                if j == 4:
                    item.setForeground(PASS_COLOUR if a.passed else FAIL_COLOUR)
                t.setItem(i, j, item)

    def _draw_scenario(self, scenario_id: str) -> None:
        """Draw the learning curve and trends of a scenario from what was read."""
        self.curve = None
        if not scenario_id or scenario_id not in self.data.curves:
            self.curve_figure.clear()
            self.trend_figure.clear()
            self.curve_status.setText("")
            self.trend_metrics = []
            self.curve_canvas.draw_idle()
            self.trend_canvas.draw_idle()
            return
        curve, pass_score = self.data.curves[scenario_id]
        wanted = set(curve.attempt_ids)
        values = {
            name: {a: v for a, v in by_attempt.items() if a in wanted}
            for name, by_attempt in self.data.values.items()
        }
        self.curve = curve
        draw_learning_curve(self.curve_figure, curve, pass_score)
        self.trend_metrics = draw_trends(self.trend_figure, curve.attempt_ids, values, self.data.units)
        lc = curve.lc_cusum
        self.curve_status.setText(
            f"CUSUM <b>{curve.cusum.status}</b>; LC-CUSUM "
            + (f"<b>competent</b> from attempt {lc.competent_at + 1}" if lc.competent else "<b>not yet competent</b>")
        )
        self.curve_canvas.draw_idle()
        self.trend_canvas.draw_idle()
