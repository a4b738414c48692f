"""Debrief after an attempt: score, critical errors, metric table, plots, force-coloured path.

:class:`DebriefPanel` is a widget; call :meth:`DebriefPanel.show_result` with the
:class:`~surgsim.scoring.rubric.ScoreResult`, the attempt's
:class:`~surgsim.scoring.log.SessionLog` and (for the 3D path) the scenario and case.
"""

from __future__ import annotations

import math
import os

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from surgsim.scoring.log import SessionLog
from surgsim.scoring.metrics import CRITICAL_ERRORS

__all__ = ["COLUMNS", "DebriefPanel", "spo2_percent", "tip_speed"]

COLUMNS = ("metric", "value", "unit", "pass", "excellent", "sub-score", "result", "feedback")
PASS_BG = QColor(215, 240, 215)
FAIL_BG = QColor(248, 215, 215)


def tip_speed(log: SessionLog) -> np.ndarray:
    """Tip speed at every sample, m/s ((m,) float; central differences of ``tip`` over ``t``)."""
    t = np.asarray(log.samples["t"], float)
    tip = np.asarray(log.samples["tip"], float).reshape(-1, 3)
    if len(t) < 2:
        return np.zeros(len(t))
    dt = np.diff(t)
    step = np.linalg.norm(np.diff(tip, axis=0), axis=1)
    seg = np.divide(step, dt, out=np.zeros_like(step), where=dt > 0)
    speed = np.empty(len(t))
    speed[0], speed[-1] = seg[0], seg[-1]
    speed[1:-1] = 0.5 * (seg[:-1] + seg[1:])
    return speed


def spo2_percent(log: SessionLog) -> np.ndarray | None:
    """The log's SpO2 channel in percent ((m,) float), or None when the log has none.

    Any channel named ``spo2*`` is used; fractions (all values <= 1) are scaled to %.
    """
    for name in sorted(log.samples):
        if name.lower().startswith("spo2"):
            y = np.asarray(log.samples[name], float)
            if len(y) != len(log.samples["t"]):
                return None
            return y * 100.0 if y.size and np.nanmax(y) <= 1.0 else y
    return None


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.4g}"


class DebriefPanel(QWidget):
    """Score, critical errors, metric table, time plots and the path on the anatomy.

    Attributes
    ----------
    title : QLabel
        Score and PASS/FAIL.
    critical : QLabel
        Critical errors with their feedback (hidden when none).
    table : QTableWidget
        One row per rubric metric, columns :data:`COLUMNS`.
    figure : matplotlib.figure.Figure, canvas : FigureCanvasQTAgg
        Wall force, tip speed and (when logged) SpO2 against time.
    axes : dict of str to Axes
        ``"wall_force"``, ``"tip_speed"``, ``"spo2"`` (only when the log has SpO2).
    plotter : pyvistaqt.QtInteractor or None
        The path on the anatomy (created on the first result with a case).
    path_mesh : pyvista.PolyData or None
        The drawn tip path, point data ``wall_force`` in newtons.
    """

    def __init__(self, parent=None, show_3d: bool = True) -> None:
        super().__init__(parent)
        self.show_3d = show_3d
        self.result = None
        self.log = None
        self.axes: dict = {}
        self.plotter = None
        self.path_mesh = None

        self.title = QLabel("Debrief: finish an attempt to see its score")
        self.title.setObjectName("debrief_title")
        self.title.setWordWrap(True)
        self.title.setFont(QFont(self.title.font().family(), 12, QFont.Weight.Bold))
        self.critical = QLabel()
        self.critical.setObjectName("debrief_critical")
        self.critical.setWordWrap(True)
        self.critical.setStyleSheet("color: #b00000; font-weight: bold")
        self.critical.hide()

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)

        self.figure = Figure(figsize=(5, 4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.canvas, "Over time")
        self._path_tab = QWidget()
        self._path_layout = QVBoxLayout(self._path_tab)
        self._path_layout.setContentsMargins(0, 0, 0, 0)
        self._path_note = QLabel("The tip path appears here after an attempt.")
        self._path_layout.addWidget(self._path_note)
        if show_3d:
            self.tabs.addTab(self._path_tab, "Path on the anatomy")

        splitter = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.title)
        tl.addWidget(self.critical)
        tl.addWidget(self.table, stretch=1)
        splitter.addWidget(top)
        splitter.addWidget(self.tabs)
        splitter.setSizes([300, 400])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    # ------------------------------------------------------------------ content
    def show_result(self, result, log: SessionLog, scenario=None, case=None) -> None:
        """Show one attempt's debrief.

        Parameters
        ----------
        result : ScoreResult
            From :func:`surgsim.scoring.rubric.score` (or ``Session.score()``).
        log : SessionLog
            The attempt's log (plots and path).
        scenario : Scenario, optional
            For threshold lines on the force plot (wall hit and perforation forces).
        case : VesselCase, optional
            For the path on the anatomy (no 3D view without it).
        """
        self.result = result
        self.log = log
        self.title.setText(result.summary)  # "PASS: score 99.0/100 (pass mark 60); ..."
        self.title.setStyleSheet(f"color: {'#1a7f1a' if result.passed else '#b00000'}")
        if result.critical_errors:
            lines = []
            for i, kind in enumerate(result.critical_errors):
                text = CRITICAL_ERRORS.get(kind, kind)
                fb = result.critical_feedback[i] if i < len(result.critical_feedback) else ""
                lines.append(f"Critical error: {text}." + (f" {fb.strip()}" if fb else ""))
            self.critical.setText("\n".join(lines))
            self.critical.show()
        else:
            self.critical.setText("")
            self.critical.hide()
        self._fill_table(result)
        self._plot(log, scenario)
        if self.show_3d and case is not None:
            self._draw_path(log, case)

    def _fill_table(self, result) -> None:
        self.table.setRowCount(len(result.metrics))
        for row, m in enumerate(result.metrics):
            arrow = "≥" if m.higher_is_better else "≤"
            cells = [m.name, _fmt(m.value), m.unit, f"{arrow} {_fmt(m.pass_value)}",
                     f"{arrow} {_fmt(m.excellent)}", f"{m.sub_score:.0f}",
                     "pass" if m.passed else "below pass", m.feedback.strip()]
            bg = QBrush(PASS_BG if m.passed else FAIL_BG)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == COLUMNS.index("result"):
                    item.setBackground(bg)
                if col == COLUMNS.index("feedback") and text:
                    item.setToolTip(text)
                self.table.setItem(row, col, item)
        self.table.resizeRowsToContents()

    def _plot(self, log: SessionLog, scenario) -> None:
        self.figure.clear()
        self.axes = {}
        t = np.asarray(log.samples["t"], float)
        spo2 = spo2_percent(log)
        n = 3 if spo2 is not None else 2
        ax = self.figure.add_subplot(n, 1, 1)
        ax.plot(t, np.asarray(log.samples["wall_force"], float), color="tab:red", lw=1)
        if scenario is not None:
            c = scenario.complications
            ax.axhline(c.wall_hit_force_n, color="tab:orange", ls="--", lw=0.8, label="wall hit")
            ax.axhline(c.perforation_force_n, color="black", ls=":", lw=0.8, label="perforation")
            ax.legend(loc="upper right", fontsize=7)
        ax.set_ylabel("wall force (N)")
        self.axes["wall_force"] = ax
        ax2 = self.figure.add_subplot(n, 1, 2, sharex=ax)
        ax2.plot(t, tip_speed(log) * 1000.0, color="tab:blue", lw=1)
        ax2.set_ylabel("tip speed (mm/s)")
        self.axes["tip_speed"] = ax2
        if spo2 is not None:
            ax3 = self.figure.add_subplot(n, 1, 3, sharex=ax)
            ax3.plot(t, spo2, color="tab:purple", lw=1)
            ax3.axhline(90.0, color="tab:red", ls="--", lw=0.8)
            ax3.set_ylabel("SpO2 (%)")
            self.axes["spo2"] = ax3
        list(self.axes.values())[-1].set_xlabel("time (s)")
        self.canvas.draw_idle()

    def _draw_path(self, log: SessionLog, case) -> None:
        os.environ.setdefault("QT_API", "pyside6")
        from pyvistaqt import QtInteractor

        from surgsim.render.replay import force_path
        from surgsim.render.scene import LUMEN_COLOR

        if self.plotter is None:
            self._path_note.hide()
            self.plotter = QtInteractor(self._path_tab)
            self._path_layout.addWidget(self.plotter.interactor)
        p = self.plotter
        p.clear()
        p.set_background((0.08, 0.08, 0.1))
        p.add_mesh(case.mesh, color=LUMEN_COLOR, opacity=0.25, smooth_shading=True, name="lumen")
        self.path_mesh = force_path(log)
        fmax = float(np.max(self.path_mesh.point_data["wall_force"])) if self.path_mesh.n_points else 0.0
        p.add_mesh(self.path_mesh, scalars="wall_force", cmap="RdYlGn_r", line_width=4,
                   clim=(0.0, max(fmax, 1e-3)), name="path",
                   scalar_bar_args={"title": "wall force (N)", "vertical": True})
        b = case.mesh.bounds
        center = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2])
        size = max(b[1] - b[0], b[5] - b[4])
        p.camera_position = [tuple(center - np.array([0, 2.2 * size, 0])), tuple(center), (0, 0, 1)]
        p.render()

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        if self.plotter is not None:
            self.plotter.close()
        super().closeEvent(event)
