"""The intubation window: laryngoscope and external views, patient monitor, HUD, keys, debrief.

The window owns no simulation logic: a timer steps the
:class:`~surgsim.session.intubation.IntubationSession` by the wall time that
passed (real time), then syncs the :class:`~surgsim.render.airway.AirwayScene`
and the monitor from its public state. Keys move the device in the hand (the
laryngoscope or the tube) in the operator's frame, which is the frame of the
laryngoscope view: *into* the mouth toward the glottis, *up* on the view (toward
the patient's front), *left* (the patient's and the operator's left).

Held keys: W/S (or Up/Down) in/out, A/D (or Left/Right) left/right, R/F up/down,
I/K tip up/down, J/L tip left/right, U/O roll anticlockwise/clockwise, Shift fine
(a quarter speed), Space bag ventilation. Pressed keys: Tab (or 1/2) blade / tube
in the hand, C cuff, H next head position, Return finish, F5 new attempt.

The head position (neutral, sniffing, full extension; the side panel's combo box
or H) can be changed while neither the blade nor the tube is in the mouth: the
session rebuilds the airway for the new head, the views swap their anatomy and
both instruments wait at the new mouth. With an instrument in the mouth the
control is disabled (H is logged and refused by the session).

The laryngoscope view keeps the 4:3 shape of :data:`~surgsim.render.airway.LARYNGOSCOPE_VIEW_SIZE`
(its size at the window's default size, what ``surgsim bench intubation`` renders), with the
patient monitor below it. The views are redrawn only when the scene changed
(:meth:`~surgsim.render.airway.AirwayScene.sync`). Attempts are recorded off the GUI thread
(:class:`~surgsim.gui.main_window.AttemptRecorder`: a durable journal while the attempt runs,
the database write on the records thread when it ends).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

os.environ.setdefault("QT_API", "pyside6")

from PySide6.QtCore import QEvent, QObject, QPointF, QSize, Qt, QTimer, Signal  # noqa: E402
from PySide6.QtGui import QColor, QFont, QKeyEvent, QPainter, QPen, QPolygonF  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QComboBox,
    QDockWidget,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from surgsim.gui.main_window import add_score_section  # noqa: E402
from surgsim.gui.offscreen_view import OffscreenView  # noqa: E402
from surgsim.render.airway import LARYNGOSCOPE_VIEW_SIZE, AirwayScene, build_anatomy, view_frame  # noqa: E402

#: Hand speeds at a held key: linear m/s, angular rad/s; Shift multiplies by FINE.
LINEAR_SPEED = 0.03
ANGULAR_SPEED = 0.5
FINE = 0.25
#: Monitor alarms: SpO2 below this fraction, heart rate below this (bpm).
SPO2_ALARM = 0.90
BRADYCARDIA_BPM = 50.0
#: Longest wall time one tick catches up (a software renderer may take 0.1-0.2 s per frame: the
#: session stays in real time down to 4 frames/s, and pauses instead of jumping after a stall).
MAX_CATCH_UP_S = 0.25
#: The external view is redrawn every this many ticks (the laryngoscope view at every tick).
EXTERNAL_EVERY = 4
#: The external view renders this fraction of its pixels along each axis (scaled up when shown):
#: with a software renderer its cost follows the pixel count.
EXTERNAL_RENDER_SCALE = 0.75
#: Seconds between reads of the optional log channels (POGO, Cormack-Lehane) for the HUD.
OPTIONAL_READ_S = 0.5
#: Optional sample channels shown on the HUD when the session records them.
OPTIONAL_CHANNELS = {"pogo": "POGO", "cormack_lehane": "Cormack-Lehane", "cl_grade": "Cormack-Lehane"}

AXES = ("in", "up", "left", "pitch", "yaw", "roll")
KEYMAP = {
    Qt.Key.Key_W: ("in", +1), Qt.Key.Key_Up: ("in", +1),
    Qt.Key.Key_S: ("in", -1), Qt.Key.Key_Down: ("in", -1),
    Qt.Key.Key_A: ("left", +1), Qt.Key.Key_Left: ("left", +1),
    Qt.Key.Key_D: ("left", -1), Qt.Key.Key_Right: ("left", -1),
    Qt.Key.Key_R: ("up", +1), Qt.Key.Key_F: ("up", -1),
    Qt.Key.Key_I: ("pitch", +1), Qt.Key.Key_K: ("pitch", -1),
    Qt.Key.Key_J: ("yaw", +1), Qt.Key.Key_L: ("yaw", -1),
    Qt.Key.Key_U: ("roll", +1), Qt.Key.Key_O: ("roll", -1),
}

HELP_HTML = """<b>Keys</b> (the device in the hand moves in the laryngoscope view's frame)<br>
<table cellspacing=2>
<tr><td><b>W / S</b> or &uarr;/&darr;</td><td>into the mouth / out</td></tr>
<tr><td><b>A / D</b> or &larr;/&rarr;</td><td>to the patient's left / right</td></tr>
<tr><td><b>R / F</b></td><td>up (lift, toward the ceiling) / down</td></tr>
<tr><td><b>I / K</b></td><td>tip up / tip down (pitch)</td></tr>
<tr><td><b>J / L</b></td><td>tip left / tip right (yaw)</td></tr>
<tr><td><b>U / O</b></td><td>roll anticlockwise / clockwise</td></tr>
<tr><td><b>Shift</b></td><td>fine motion (quarter speed)</td></tr>
<tr><td><b>Tab</b>, <b>1</b>, <b>2</b></td><td>hand on: switch / blade / tube</td></tr>
<tr><td><b>C</b></td><td>cuff inflate / deflate</td></tr>
<tr><td><b>H</b></td><td>head: next position (blade and tube out of the mouth)</td></tr>
<tr><td><b>Space</b> (hold)</td><td>bag ventilation</td></tr>
<tr><td><b>Return</b></td><td>finish the attempt</td></tr>
<tr><td><b>F5</b></td><td>new attempt</td></tr>
</table>
Lift along the handle (R with W), do not lever on the teeth (I).
The external view turns with the mouse."""


# ---------------------------------------------------------------------- controls (no Qt state)


def hand_velocities(held: dict[str, int], frame: tuple[np.ndarray, np.ndarray, np.ndarray],
                    fine: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """World velocity (3,) m/s and angular velocity (3,) rad/s of the hand for the held axes.

    Parameters
    ----------
    held : dict of axis name (:data:`AXES`) to -1, 0 or +1
    frame : (into, up, left), each (3,) unit, world LPS (:func:`surgsim.render.airway.view_frame`)
    fine : bool
        Quarter speed.
    """
    into, up, left = (np.asarray(a, float) for a in frame)
    k = FINE if fine else 1.0
    v = LINEAR_SPEED * k * (held.get("in", 0) * into + held.get("up", 0) * up + held.get("left", 0) * left)
    # pitch +1 tips the tip up: about -left; yaw +1 tips it left: about up; roll +1 anticlockwise
    # as the operator sees it: about -into
    w = ANGULAR_SPEED * k * (-held.get("pitch", 0) * left + held.get("yaw", 0) * up
                             - held.get("roll", 0) * into)
    return v, w


class AirwayControls:
    """Turn the held axes of the device in the hand into session actions (only changes are sent).

    Parameters
    ----------
    session : IntubationSession
        ``apply``, ``commands``, ``finished``, ``geometry``.
    """

    DEVICES = ("blade", "tube")

    def __init__(self, session) -> None:
        self.session = session
        self.frame = view_frame(session.geometry)
        self.device = "blade"
        self.held: dict[str, int] = {}
        self.fine = False

    def _targets(self) -> dict[str, float]:
        v, w = hand_velocities(self.held, self.frame, self.fine)
        out = {}
        for dev in self.DEVICES:
            vv, ww = (v, w) if dev == self.device else (np.zeros(3), np.zeros(3))
            for name, val in zip(("vx", "vy", "vz", "wx", "wy", "wz"), (*vv, *ww), strict=True):
                out[f"{dev}_{name}"] = float(round(val, 9))
        return out

    def update(self) -> list[tuple[str, float]]:
        """Send the actions the current held axes imply; returns them."""
        sent = []
        if self.session.finished:
            return sent
        for action, value in self._targets().items():
            if self.session.commands.get(action, 0.0) != value:
                self.session.apply(action, value)
                sent.append((action, value))
        return sent

    def hold(self, axis: str, sign: int, pressed: bool) -> None:
        """A key of ``axis`` in direction ``sign`` went down (``pressed``) or up."""
        if pressed:
            self.held[axis] = sign
        elif self.held.get(axis) == sign:
            del self.held[axis]
        self.update()

    def select(self, device: str | None = None) -> str:
        """Put ``device`` (or the other one) in the hand; the held keys move it from now on."""
        self.device = device if device in self.DEVICES else \
            self.DEVICES[1 - self.DEVICES.index(self.device)]
        self.update()
        return self.device

    def set_fine(self, fine: bool) -> None:
        self.fine = bool(fine)
        self.update()

    def release_all(self) -> None:
        self.held.clear()
        self.update()


def head_choices(session) -> list[tuple[str, float]]:
    """The head positions the window offers for a session: (label, extension radians), by extension.

    The named positions of :data:`~surgsim.session.intubation.HEAD_POSITIONS` as the
    session would set them (quantised, limited by the neck: a limited one says so;
    duplicates dropped), plus the current extension when it is none of them.
    """
    from surgsim.session.intubation import HEAD_POSITIONS, quantise_extension

    out: dict[float, str] = {}
    for name, ext in HEAD_POSITIONS.items():
        value = session.head_target(ext)
        if value in out:
            continue
        limited = value < quantise_extension(ext) - 1e-9
        out[value] = f"{name}{': neck limit' if limited else ''} ({np.degrees(value):.0f}\N{DEGREE SIGN})"
    current = round(float(session.head_extension), 9)
    if current not in out:
        out[current] = f"start ({np.degrees(current):.0f}\N{DEGREE SIGN})"
    return [(label, value) for value, label in sorted(out.items())]


# ---------------------------------------------------------------------- widgets


class PatientMonitor(QWidget):
    """SpO2 (the oximeter's lagged reading), heart rate, apnoea time, a SpO2 trend and visual alarms.

    Attributes
    ----------
    alarms : list of str
        Active alarms (``"SpO2 LOW"``, ``"BRADYCARDIA"``).
    """

    TREND_S = 120.0

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("patient_monitor")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("#patient_monitor { background: #050608; } QLabel { color: #d8d8d8; }")
        self.alarms: list[str] = []
        self.spo2 = float("nan")
        self.heart_rate = float("nan")
        self._trend: list[tuple[float, float]] = []
        big = QFont("monospace", 26, QFont.Weight.Bold)
        self.spo2_label = QLabel("--")
        self.spo2_label.setObjectName("spo2")
        self.spo2_label.setFont(big)
        self.spo2_label.setStyleSheet("color: #38d9ff")
        self.hr_label = QLabel("--")
        self.hr_label.setObjectName("heart_rate")
        self.hr_label.setFont(big)
        self.hr_label.setStyleSheet("color: #45e070")
        self.apnoea_label = QLabel("apnoea --")
        self.apnoea_label.setObjectName("apnoea")
        self.apnoea_label.setFont(QFont("monospace", 12))
        self.alarm_label = QLabel("")
        self.alarm_label.setObjectName("alarm")
        self.alarm_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.alarm_label.setFont(QFont("sans", 12, QFont.Weight.Bold))
        self.alarm_label.hide()
        self.trend = _Trend(self)
        grid = QGridLayout(self)
        grid.addWidget(QLabel("SpO2 %"), 0, 0)
        grid.addWidget(QLabel("HR /min"), 0, 1)
        grid.addWidget(self.spo2_label, 1, 0)
        grid.addWidget(self.hr_label, 1, 1)
        grid.addWidget(self.apnoea_label, 2, 0, 1, 2)
        grid.addWidget(self.trend, 3, 0, 1, 2)
        grid.addWidget(self.alarm_label, 4, 0, 1, 2)
        grid.setRowStretch(3, 1)  # room to spare goes to the trend

    def update_values(self, t: float, spo2: float, heart_rate: float, apnoea_s: float) -> None:
        """Show one reading: time (s), SpO2 (0-1, displayed value), heart rate (bpm), apnoea time (s)."""
        self.spo2, self.heart_rate = float(spo2), float(heart_rate)
        self.spo2_label.setText(f"{spo2 * 100:3.0f}")
        self.hr_label.setText(f"{heart_rate:3.0f}")
        self.apnoea_label.setText(f"apnoea {int(apnoea_s // 60):d}:{int(apnoea_s % 60):02d}")
        if not self._trend or t < self._trend[-1][0]:
            self._trend = []
        self._trend.append((t, spo2))
        while self._trend and self._trend[0][0] < t - self.TREND_S:
            self._trend.pop(0)
        alarms = []
        if spo2 < SPO2_ALARM:
            alarms.append("SpO2 LOW")
        if heart_rate < BRADYCARDIA_BPM:
            alarms.append("BRADYCARDIA")
        self.alarms = alarms
        if alarms:
            flash = int(t * 2) % 2 == 0  # 1 Hz flashing, as a monitor's high-priority alarm
            bg = "#d01010" if flash else "#600000"
            _set_style(self.alarm_label, f"background: {bg}; color: white; padding: 4px")
            self.alarm_label.setText("  ".join(alarms))
            self.alarm_label.show()
            _set_style(self.spo2_label, "color: #ff4040" if "SpO2 LOW" in alarms else "color: #38d9ff")
        else:
            self.alarm_label.hide()
            _set_style(self.spo2_label, "color: #38d9ff")
        self.trend.update()

    def reset(self) -> None:
        self._trend = []
        self.alarms = []
        self.alarm_label.hide()


class _Trend(QWidget):
    """SpO2 over the last two minutes (60-100 %), with the 90 % alarm line."""

    def __init__(self, monitor: PatientMonitor):
        super().__init__(monitor)
        self.monitor = monitor
        self.setMinimumHeight(60)

    def paintEvent(self, event):  # noqa: N802 (Qt API)
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor("#0b0d12"))

        def y_of(s: float) -> float:
            return h - (min(max(s, 0.6), 1.0) - 0.6) / 0.4 * (h - 4) - 2

        p.setPen(QPen(QColor("#802020"), 1, Qt.PenStyle.DashLine))
        p.drawLine(0, int(y_of(SPO2_ALARM)), w, int(y_of(SPO2_ALARM)))
        trend = self.monitor._trend
        if len(trend) >= 2:
            t_end = trend[-1][0]
            pts = QPolygonF([QPointF(w - (t_end - t) / PatientMonitor.TREND_S * w, y_of(s)) for t, s in trend])
            p.setPen(QPen(QColor("#38d9ff"), 2))
            p.drawPolyline(pts)
        p.end()


# ---------------------------------------------------------------------- the window


class _KeyFilter(QObject):
    """Routes the simulator's keys to the window wherever the focus is; the 3D views get none."""

    def __init__(self, window: IntubationWindow, views: tuple):
        super().__init__(window)
        self.window = window
        self.views = views

    def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
        if event.type() in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            if self.window.handle_key(event):
                return True
            return obj in self.views  # VTK's own keys (q, e, w, s, ...) would quit or restyle the view
        return False


class _ViewColumn(QWidget):
    """A titled 3D view kept at a fixed aspect (letterboxed at the top), and a widget in the room below."""

    def __init__(self, title: str, view: QWidget, below: QWidget, size: tuple[int, int]):
        super().__init__()
        self.setObjectName("view_column")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("#view_column { background: #050608; }")
        self.title = QLabel(title, self)
        self.title.setFont(QFont(self.title.font().family(), 10, QFont.Weight.Bold))
        self.title.setStyleSheet("color: #d8d8d8; padding: 1px 4px;")
        self.view, self.below = view, below
        view.setParent(self)
        below.setParent(self)
        self.size_px = size
        self.aspect = size[0] / size[1]
        self.setMinimumWidth(320)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        th = self.title.sizeHint().height()
        return QSize(self.size_px[0], th + self.size_px[1] + self.below.sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        th = self.title.sizeHint().height()
        return QSize(320, th + 240 + self.below.minimumSizeHint().height())

    def resizeEvent(self, event):  # noqa: N802 (Qt API)
        w, h = self.width(), self.height()
        th = self.title.sizeHint().height()
        room = max(h - th - self.below.minimumSizeHint().height(), 120)
        vw = max(min(w, int(room * self.aspect)), 1)
        vh = max(int(round(vw / self.aspect)), 1)
        self.title.setGeometry(0, 0, w, th)
        self.view.setGeometry((w - vw) // 2, th, vw, vh)
        self.below.setGeometry(0, th + vh, w, max(h - th - vh, 0))
        super().resizeEvent(event)


class IntubationWindow(QMainWindow):
    """Intubation window for one trainee and one intubation scenario.

    Parameters
    ----------
    scenario : Scenario
        ``procedure: intubation``.
    trainee_id : str
    records : Records or None
        Where finished attempts go (None: not recorded).
    progress : callable(fraction, message), optional
        Start-up progress (building the anatomy).

    Attributes
    ----------
    startup_times : dict of str to float
        Seconds the first attempt took to build: ``session_s`` (physics world),
        ``anatomy_s`` (static meshes, from the disk cache after the first run),
        ``views_s`` (the two views' actors).
    """

    attempt_finished = Signal(object)  # ScoreResult
    attempt_recorded = Signal(str)  # attempt id, once the records thread has stored it

    def __init__(self, scenario, trainee_id: str = "guest", records=None, parent=None, progress=None):
        super().__init__(parent)
        self.scenario = scenario
        self.trainee_id = trainee_id
        self.records = records
        self.last_result = None
        self.last_attempt_id: str | None = None
        self._progress = progress or (lambda fraction, message: None)
        self.setWindowTitle(f"surgsim: {scenario.title}")
        self.resize(1500, 900)

        self.startup_times: dict[str, float] = {}
        #: seconds each head repositioning took (session rebuild and anatomy meshes), in order
        self.head_change_times: list[float] = []
        self.frames_rendered = 0  # laryngoscope view renders (it is redrawn only when the scene changed)
        self._external_dirty = True
        # no multisampling (a software renderer pays it on every pixel); rendered by the tick only
        # both views render off-screen and are shown as images: a QOpenGLWidget would make Qt compose
        # the whole window through (software) OpenGL at every frame (gui/offscreen_view.py)
        self.plotter = OffscreenView(self, size=LARYNGOSCOPE_VIEW_SIZE)  # the laryngoscope view
        self.external = OffscreenView(self, size=(800, 600), interactive=True, render_scale=EXTERNAL_RENDER_SCALE)
        self.monitor = PatientMonitor()
        views = QSplitter(Qt.Orientation.Horizontal)
        self.view_column = _ViewColumn("Laryngoscope view", self.plotter.interactor, self.monitor,
                                       LARYNGOSCOPE_VIEW_SIZE)
        views.addWidget(self.view_column)
        views.addWidget(self._titled("External view (sagittal cut-away, from the patient's right)",
                                     self.external.interactor))
        views.setStretchFactor(0, 0)  # a wider window widens the external view
        views.setStretchFactor(1, 1)
        self.views_splitter = views
        self._views_sized = False
        self.setCentralWidget(views)
        self._build_side_panel()
        self._build_debrief_dock()
        self._build_menus()

        self.session = None
        self.scene: AirwayScene | None = None
        self.controls: AirwayControls | None = None
        self.new_attempt()

        self._filter = _KeyFilter(self, (self.plotter.interactor, self.external.interactor))
        for w in (self, self.plotter.interactor, self.external.interactor):
            w.installEventFilter(self._filter)
        self._last_tick = time.perf_counter()
        #: steps the physics while the views render (tick)
        self._physics = ThreadPoolExecutor(max_workers=1, thread_name_prefix="surgsim-physics")
        self.timer = QTimer(self)
        self.timer.setInterval(16)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    # ------------------------------------------------------------------ layout
    def showEvent(self, event):  # noqa: N802 (Qt API)
        super().showEvent(event)
        if not self._views_sized:  # the laryngoscope view at its size, the external view the rest
            self._views_sized = True
            total = sum(self.views_splitter.sizes())
            if total > 0:
                left = min(LARYNGOSCOPE_VIEW_SIZE[0], max(total - 240, 320))
                self.views_splitter.setSizes([left, total - left])

    @staticmethod
    def _titled(title: str, widget: QWidget) -> QWidget:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        label = QLabel(title)
        label.setFont(QFont(label.font().family(), 10, QFont.Weight.Bold))
        label.setWordWrap(True)  # a long title must not widen the view
        lay.addWidget(label)
        lay.addWidget(widget, stretch=1)
        return box

    def _build_side_panel(self) -> None:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        title = QLabel(self.scenario.title)
        title.setWordWrap(True)
        title.setFont(QFont(title.font().family(), 12, QFont.Weight.Bold))
        self.scenario_title = title
        layout.addWidget(title)

        force_row = QHBoxLayout()
        force_row.addWidget(QLabel("incisor force"))
        self.force_bar = QProgressBar()
        self.force_bar.setObjectName("incisor_force")
        self.force_bar.setRange(0, 600)  # 0.1 N units, up to 60 N
        self.force_bar.setFormat("%v")
        self.force_bar.setTextVisible(True)
        force_row.addWidget(self.force_bar, stretch=1)
        layout.addLayout(force_row)
        self.hud = QLabel()
        self.hud.setObjectName("hud")
        self.hud.setFont(QFont("monospace", 10))
        layout.addWidget(self.hud)

        buttons = QHBoxLayout()
        self.cuff_button = QPushButton("Cuff (C)")
        self.cuff_button.setCheckable(True)
        self.cuff_button.clicked.connect(lambda checked: self.set_cuff(checked))
        self.bag_button = QPushButton("Bag (hold Space)")
        self.bag_button.pressed.connect(lambda: self.set_ventilation(True))
        self.bag_button.released.connect(lambda: self.set_ventilation(False))
        self.device_button = QPushButton("Hand: blade (Tab)")
        self.device_button.clicked.connect(lambda: self.select_device())
        for b in (self.cuff_button, self.bag_button, self.device_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(b)
        layout.addLayout(buttons)
        buttons2 = QHBoxLayout()
        self.finish_button = QPushButton("Finish attempt (Return)")
        self.finish_button.clicked.connect(self.finish_attempt)
        self.restart_button = QPushButton("New attempt (F5)")
        self.restart_button.clicked.connect(self.new_attempt)
        for b in (self.finish_button, self.restart_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons2.addWidget(b)
        layout.addLayout(buttons2)

        head_row = QHBoxLayout()
        head_row.addWidget(QLabel("Head (H)"))
        self.head_combo = QComboBox()
        self.head_combo.setObjectName("head_position")
        self.head_combo.setToolTip("Head extension at the atlanto-occipital joint; take the blade and the "
                                   "tube out of the mouth to change it")
        self.head_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.head_combo.activated.connect(self._head_chosen)  # the trainee's choice, not setCurrentIndex
        head_row.addWidget(self.head_combo, stretch=1)
        layout.addLayout(head_row)
        self.head_note = QLabel("")
        self.head_note.setObjectName("head_note")
        self.head_note.setWordWrap(True)
        self.head_note.setStyleSheet("color: #b06000")
        layout.addWidget(self.head_note)

        self.help = QLabel(HELP_HTML)
        self.help.setObjectName("help")
        self.help.setWordWrap(True)
        layout.addWidget(self.help)

        self.result_title, self.result_table = add_score_section(
            self, layout, "Score: finish the attempt to see it", "result_title", title.font().family())

        dock = QDockWidget("Patient and procedure", self)
        dock.setWidget(panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _build_debrief_dock(self) -> None:
        self.debrief_panel = None
        self.debrief_dock = QDockWidget("Debrief", self)
        self.debrief_dock.setObjectName("debrief_dock")
        self.debrief_dock.setMinimumHeight(320)  # the plots need room
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.debrief_dock)
        self.debrief_dock.hide()

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction("&New attempt", self.new_attempt)
        file_menu.addSeparator()
        file_menu.addAction("&Quit", self.close)
        attempt = bar.addMenu("&Attempt")
        attempt.addAction("&Finish and debrief", self.finish_attempt)
        scenarios = bar.addMenu("&Scenarios")
        scenarios.addAction("&Choose scenario...", self.open_scenario_picker)

    def open_scenario_picker(self):
        """List the bundled scenarios; an intubation one loads here, another opens its own window."""
        from surgsim.gui.scenario_picker import ScenarioPicker

        self._picker = ScenarioPicker()
        self._picker.chosen.connect(self.load_scenario_file)
        self._picker.show()
        return self._picker

    def load_scenario_file(self, path) -> bool:
        """Switch to the intubation scenario in ``path``, or open the main window for another procedure."""
        from surgsim.errors import SurgsimError
        from surgsim.scenarios.load import load_scenario

        try:
            scenario = load_scenario(path)
            if scenario.procedure != "intubation":
                from surgsim.cli import load_case_for
                from surgsim.gui.main_window import MainWindow

                self._other = MainWindow(scenario, load_case_for(scenario), trainee_id=self.trainee_id,
                                         records=self.records)
                self._other.show()
                return True
            old = self.scenario
            self.scenario = scenario
            self.new_attempt()
        except SurgsimError as exc:
            self.scenario = locals().get("old", self.scenario)
            self.statusBar().showMessage(str(exc))
            return False
        self.setWindowTitle(f"surgsim: {scenario.title}")
        self.scenario_title.setText(scenario.title)
        return True

    # ------------------------------------------------------------------ attempts
    def new_attempt(self) -> None:
        """Start a fresh attempt on the scenario (a new patient, devices outside the mouth).

        A running attempt with inputs is finished and recorded as ``aborted``; one without is dropped.
        """
        from surgsim.session.intubation import IntubationSession

        self._abandon_attempt()
        old = self.session
        if old is not None and not old.finished:
            old.world.close()
        self._progress(0.1, "Building the airway and the devices...")
        t0 = time.perf_counter()
        self.session = IntubationSession(self.scenario)
        self.recorder.start(self.session, self.scenario, self.trainee_id)
        self._progress(0.6, "Building the anatomy surfaces...")
        t1 = time.perf_counter()
        self.controls = AirwayControls(self.session)
        anatomy = build_anatomy(self.session.design)
        t2 = time.perf_counter()
        same = (self.scene is not None and self.scene.anatomy is anatomy
                and self.scene.session.blade_spec == self.session.blade_spec
                and self.scene.session.tube_spec == self.session.tube_spec)
        if not same:
            for p in (self.plotter, self.external):
                p.plotter.clear()
            self.scene = AirwayScene(self.session, anatomy)
            self.scene.add_view(self.plotter.plotter, "laryngoscope")
            self.scene.add_view(self.external.plotter, "external")
            kind = "video laryngoscope" if self.session.blade_spec.video else "direct, operator's eye"
            self.plotter.plotter.add_text(f"{self.session.blade_spec.name} ({kind})", font_size=9, name="title",
                                  color="white")
        else:
            self.scene.set_session(self.session)
        if not self.startup_times:
            self.startup_times = {"session_s": t1 - t0, "anatomy_s": t2 - t1,
                                  "views_s": time.perf_counter() - t2}
        self._progress(1.0, "Ready")
        self._fill_head_combo()
        self._head_movable: bool | None = None
        self.last_result = None
        self.last_attempt_id = None
        self._debt = 0.0
        self._last_ventilated = 0.0
        self._peak_force = 0.0
        self._force = 0.0
        self._ventilating = False
        self._optional: dict[str, float] = {}
        self._optional_read = -1e9
        self._final: dict | None = None
        self.monitor.reset()
        self.cuff_button.setChecked(False)
        self.device_button.setText("Hand: blade (Tab)")
        self.result_title.setText("Score: finish the attempt to see it")
        self.result_table.setRowCount(0)
        self.debrief_dock.hide()
        self._last_tick = time.perf_counter()
        self._external_dirty = True
        self._read_state()
        self._update_hud()
        self._render(force=True)

    def finish_attempt(self) -> None:
        """End the attempt, score it, record it and show the score and debrief."""
        s = self.session
        if s is None:
            return
        if not s.finished:
            self._read_state()
            s.apply("finish")
        self._show_result()

    def _abandon_attempt(self) -> None:
        """The trainee leaves a running attempt (new attempt, window closed): one with inputs is
        finished and recorded as ``aborted``, so no practice is lost; one without is dropped."""
        s = self.session
        if s is None or s.finished or not self.recorder.has_inputs():
            return
        s.apply("finish")
        self.recorder.save(s.log(), s.score(), status="aborted")

    def _show_result(self) -> None:
        if self.last_result is not None:
            return
        s = self.session
        log = s.log()
        result = s.score()
        self.last_result = result
        from surgsim.session.intubation import LOCATIONS

        loc = log.samples["tube_location"]
        self._final = {"location": LOCATIONS[int(loc[-1])] if len(loc) else "outside",
                       "depth": float(log.samples["tube_depth"][-1]) if len(loc) else 0.0}

        def saved(attempt_id: str) -> None:  # in the GUI thread, once the records thread has stored it
            if self.session is s:
                self.last_attempt_id = attempt_id
            self.attempt_recorded.emit(attempt_id)

        # the log is compressed, journalled and written on the records thread: the score shows now
        self.recorder.save(log, result, on_saved=saved)
        self.result_title.setText(result.summary)
        self.result_title.setStyleSheet(f"color: {'#1a7f1a' if result.passed else '#b00000'}")
        self.result_table.setRowCount(len(result.metrics))
        for row, m in enumerate(result.metrics):
            value = "n/a" if m.value is None else f"{m.value:.4g}"
            for col, text in enumerate([m.name, value, m.unit, f"{m.sub_score:.0f}"]):
                self.result_table.setItem(row, col, QTableWidgetItem(text))
        self.result_table.resizeColumnsToContents()
        if self.debrief_panel is None:
            from surgsim.gui.debrief import DebriefPanel

            self.debrief_panel = DebriefPanel(show_3d=False)
            self.debrief_dock.setWidget(self.debrief_panel)
        # no scenario: its wall-hit and perforation lines are catheter thresholds, not the tube's
        self.debrief_panel.show_result(result, log, None)
        self.debrief_dock.show()
        self._update_hud()
        self.attempt_finished.emit(result)

    # ------------------------------------------------------------------ input
    def select_device(self, device: str | None = None) -> str:
        """Put the blade or the tube (default: the other one) in the hand."""
        dev = self.controls.select(device)
        self.device_button.setText(f"Hand: {dev} (Tab)")
        self._update_hud()
        return dev

    def set_cuff(self, inflated: bool) -> None:
        if not self.session.finished:
            self.session.apply("cuff", 1.0 if inflated else 0.0)
        self.cuff_button.setChecked(bool(inflated))

    # ------------------------------------------------------------------ head position
    def _fill_head_combo(self) -> None:
        """List the session's head positions and select the current one (no signal: not a choice)."""
        combo = self.head_combo
        combo.blockSignals(True)
        combo.clear()
        for label, value in head_choices(self.session):
            combo.addItem(label, value)
        self._select_head_item()
        combo.blockSignals(False)

    def _select_head_item(self) -> None:
        combo = self.head_combo
        values = [combo.itemData(i) for i in range(combo.count())]
        current = round(float(self.session.head_extension), 9)
        if current not in values:
            self._fill_head_combo()
            return
        combo.blockSignals(True)
        combo.setCurrentIndex(values.index(current))
        combo.blockSignals(False)

    def _head_chosen(self, index: int) -> None:
        value = self.head_combo.itemData(index)
        if value is not None:
            self.set_head_position(float(value))

    def cycle_head(self) -> bool:
        """Move the head to the next position of the combo box (after the last: the first)."""
        values = [float(self.head_combo.itemData(i)) for i in range(self.head_combo.count())]
        current = float(self.session.head_extension)
        following = [v for v in values if v > current + 1e-9]
        return self.set_head_position(following[0] if following else values[0])

    def set_head_position(self, extension: float) -> bool:
        """Reposition the head (extension, radians); returns whether the head is now there.

        With the blade or the tube in the mouth the session logs and refuses the
        request (the status bar says why). Otherwise the session rebuilds the airway
        and the views swap their anatomy, under a busy cursor (the first build of an
        extension takes a few seconds, later ones come from the caches); the time it
        took is appended to :attr:`head_change_times`.
        """
        from surgsim.errors import SurgsimError
        from surgsim.session.intubation import quantise_extension

        s = self.session
        if s is None or s.finished:
            return False
        target = s.head_target(extension)
        if abs(target - s.head_extension) < 1e-9:
            self._select_head_item()
            return True
        inside = s.instruments_in_mouth()
        if inside:
            s.apply("head_extension", extension)  # logged; the session records the refusal
            self.statusBar().showMessage(f"The head cannot be moved with the {' and the '.join(inside)} in the "
                                         "mouth: take it out first.", 6000)
            self._select_head_item()
            return False
        timer = getattr(self, "timer", None)
        if timer is not None:
            timer.stop()  # no tick while the airway is rebuilt
        self.statusBar().showMessage("Repositioning the head: building the airway...")
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        QApplication.processEvents()  # show the message and the cursor before the build
        t0 = time.perf_counter()
        try:
            s.apply("head_extension", extension)
            self.scene.refresh_anatomy(build_anatomy(s.design))
        except SurgsimError as exc:
            self.statusBar().showMessage(f"The head could not be repositioned: {exc}")
            return False
        finally:
            QApplication.restoreOverrideCursor()
            self._last_tick = time.perf_counter()  # the build time is not simulated time
            if timer is not None:
                timer.start()
        took = time.perf_counter() - t0
        self.head_change_times.append(took)
        self.controls.frame = view_frame(s.geometry)  # the operator's frame follows the new mouth
        self.controls.update()
        self._select_head_item()
        limited = s.head_extension < quantise_extension(extension) - 1e-9
        self.statusBar().showMessage(
            f"Head at {np.degrees(s.head_extension):.0f}\N{DEGREE SIGN} extension"
            f"{' (the neck allows no more)' if limited else ''}; blade and tube wait at the mouth "
            f"({took:.1f} s)", 6000)
        self._read_state()
        self._update_hud()
        self._render(force=True)
        return True

    def _update_head_control(self) -> None:
        """Enable the head control only while no instrument is in the mouth (and the attempt runs)."""
        s = self.session
        inside = [] if s.finished else s.instruments_in_mouth()
        movable = not s.finished and not inside
        if movable == self._head_movable:
            return
        self._head_movable = movable
        self.head_combo.setEnabled(movable)
        if inside:
            self.head_note.setText(f"Head locked: the {' and the '.join(inside)} is in the mouth.")
        else:
            self.head_note.setText("")

    def set_ventilation(self, on: bool) -> None:
        """Squeeze the bag (held) or stop."""
        self._ventilating = bool(on)
        if not self.session.finished and self.session.commands.get("ventilate", 0.0) != float(on):
            self.session.apply("ventilate", 1.0 if on else 0.0)

    def handle_key(self, event: QKeyEvent) -> bool:
        """Handle a simulator key; returns True when the event was used."""
        key = event.key()
        press = event.type() == QEvent.Type.KeyPress
        if key == Qt.Key.Key_Shift:
            self.controls.set_fine(press)
            return True
        if key in KEYMAP:
            if not event.isAutoRepeat():
                axis, sign = KEYMAP[key]
                self.controls.hold(axis, sign, press)
            return True
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self.set_ventilation(press)
            return True
        if not press:
            return key in (Qt.Key.Key_Tab, Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_C, Qt.Key.Key_H,
                           Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_F5)
        if event.isAutoRepeat():
            return True
        if key == Qt.Key.Key_Tab:
            self.select_device()
        elif key in (Qt.Key.Key_1, Qt.Key.Key_2):
            self.select_device("blade" if key == Qt.Key.Key_1 else "tube")
        elif key == Qt.Key.Key_C:
            self.set_cuff(self.session.commands.get("cuff", 0.0) < 0.5)
        elif key == Qt.Key.Key_H:
            self.cycle_head()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.finish_attempt()
        elif key == Qt.Key.Key_F5:
            self.new_attempt()
        else:
            return False
        return True

    # ------------------------------------------------------------------ loop
    def tick(self) -> None:
        """Advance the session by the wall time since the last tick (real time) and redraw."""
        now = time.perf_counter()
        elapsed = min(now - self._last_tick, MAX_CATCH_UP_S)
        self._last_tick = now
        s = self.session
        if s is None:
            return
        if not s.finished:
            self._debt += elapsed
            n = int(self._debt / s.dt + 1e-9)
            self._debt -= n * s.dt
            # the views show the state the last tick left while this tick's physics runs on a
            # worker thread: VTK releases the GIL while it renders, so the second core steps the
            # physics (one frame of latency). Inputs only arrive between ticks (Qt events), after
            # the step has been joined: the session sees the same inputs at the same steps.
            changed = self.scene.sync()
            stepping = self._physics.submit(s.step, n) if n else None
            try:
                self._draw(changed, external=self._external_due())
            finally:
                if stepping is not None:
                    stepping.result()  # re-raises what the physics raised
            self.recorder.poll()  # the new inputs go to the attempt's journal
            if s.finished:  # the time limit ended it
                self._show_result()
                self._render(external=True)
            else:
                self._read_state()
        self._update_hud()

    def advance(self, seconds: float) -> None:
        """Run the session ``seconds`` of simulated time now (as fast as it goes) and redraw."""
        s = self.session
        if not s.finished:
            s.advance_time(seconds)
            self.recorder.poll()
            if s.finished:
                self._show_result()
            else:
                self._read_state()
            self._render()
        self._update_hud()

    def _render(self, external: bool = True, force: bool = False) -> None:
        """Redraw the views whose picture changed (the external one only when ``external``)."""
        self._draw(self.scene.sync(), external, force)

    def _draw(self, changed: set[str], external: bool = True, force: bool = False) -> None:
        """Redraw the views in ``changed`` (from ``scene.sync()``; the external one only when ``external``)."""
        self._external_dirty = self._external_dirty or "external" in changed
        if force or "laryngoscope" in changed:
            _redraw(self.plotter)
            self.frames_rendered += 1
        if (external or force) and (self._external_dirty or force):
            _redraw(self.external)
            self._external_dirty = False

    def _external_due(self) -> bool:
        """The external view is redrawn at a third of the tick rate (it is the secondary view)."""
        self._ticks = getattr(self, "_ticks", 0) + 1
        return self._ticks % EXTERNAL_EVERY == 0

    def _read_state(self) -> None:
        """Read what the monitor and the HUD show while the physics world is open."""
        s = self.session
        if s.finished:
            return
        w = s.world
        f, _ = w.contact_force(w.blade, w.upper_teeth)
        self._force = float(np.linalg.norm(f))
        self._peak_force = max(self._peak_force, self._force)
        self._tube = s.tube_state()
        if s.oxygen.airway == "ventilated":
            self._last_ventilated = s.time
        self._read_optional()

    def _read_optional(self) -> None:
        from surgsim.session.intubation import SAMPLE_KEYS

        present = [k for k in OPTIONAL_CHANNELS if k in SAMPLE_KEYS]
        if not present or self.session.time - self._optional_read < OPTIONAL_READ_S:
            return
        self._optional_read = self.session.time
        for k in present:  # the last recorded value of each channel, without copying the log
            v = self.session.latest(k)
            if v is not None:
                self._optional[k] = float(np.ravel(v)[0])

    def _update_hud(self) -> None:
        s = self.session
        self._update_head_control()
        ox = s.oxygen.state
        apnoea = max(s.time - self._last_ventilated, 0.0)
        self.monitor.update_values(s.time, ox.displayed_spo2, ox.heart_rate_bpm, apnoea)
        self.force_bar.setValue(int(round(min(self._force, 60.0) * 10)))
        self.force_bar.setFormat(f"{self._force:.1f} N (peak {self._peak_force:.1f} N)")
        warn, excellent = _force_thresholds(self.scenario)
        color = "#2a9d2a" if self._force <= excellent else ("#d9a000" if self._force <= warn else "#d01010")
        _set_style(self.force_bar, f"QProgressBar::chunk {{ background: {color}; }}")
        tube = getattr(self, "_tube", {"depth": 0.0})
        if self._final is not None:
            where = f"{self._final['location'].replace('_', ' ')}"
            depth = self._final["depth"]
        else:
            where = "shown after the attempt"
            depth = tube["depth"]
        lines = [
            f"time      {s.time:6.1f} s of {self.scenario.time_limit_s:.0f} s",
            f"hand      {self.controls.device}",
            f"attempts  {s.attempts}",
            f"head      {np.degrees(s.head_extension):4.0f} deg extension",
            f"depth     {depth * 100:6.1f} cm at the incisors",
            f"cuff      {'inflated' if s.commands.get('cuff', 0.0) >= 0.5 else 'down'}",
            f"bag       {'squeezing' if self._ventilating else '-'}",
            f"tube tip  {where}",
        ]
        for k, v in self._optional.items():
            label = OPTIONAL_CHANNELS[k]
            lines.append(f"{label:<9} {v * 100:5.0f} %" if k == "pogo" else f"{label:<9} {v:5.0f}")
        self.hud.setText("\n".join(lines))

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.timer.stop()
        self._physics.shutdown(wait=True)
        self._abandon_attempt()
        if self.session is not None and not self.session.finished:
            self.session.world.close()
        self.plotter.close()
        self.external.close()
        if self.debrief_panel is not None:
            self.debrief_panel.close()
        super().closeEvent(event)


def _redraw(view: OffscreenView) -> None:
    """Draw a 3D view now (rendered off-screen, shown at the window's next paint)."""
    view.redraw()


def _set_style(widget: QWidget, sheet: str) -> None:
    """Set a style sheet only when it changes (every call re-polishes the widget)."""
    if widget.styleSheet() != sheet:
        widget.setStyleSheet(sheet)


def _force_thresholds(scenario) -> tuple[float, float]:
    """(pass, excellent) incisor force thresholds (N) of the scenario's rubric, else (40, 10)."""
    for m in getattr(scenario.rubric, "metrics", []):
        if getattr(m, "metric", "") == "incisor_peak_force_n":
            try:
                return float(m.pass_), float(m.excellent)
            except (AttributeError, TypeError, ValueError):
                break
    return 40.0, 10.0


__all__ = ["AXES", "AirwayControls", "IntubationWindow", "KEYMAP", "PatientMonitor", "hand_velocities"]
