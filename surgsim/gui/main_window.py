"""The simulator's main window: 3D view, HUD, controls and debrief.

The window owns no simulation logic: a timer asks the session to advance by
the wall time that passed, then syncs the scene and the HUD from its state.
Keys (held): Up/W advance, Down/S retract, Left/A and Right/D rotate the hub,
Shift for fine (slow) motion, Space the fluoroscopy pedal. Keys (pressed): Tab
moves the hand between guidewire and catheter (coaxial scenarios), C
injects 5 ml of contrast, Q/E turn the C-arm 5 degrees RAO/LAO, R/F 5 degrees
cranial/caudal, M toggles the roadmap, V shows or hides the 3D view; Return
finishes the attempt; F5 starts a new one.

Attempts are recorded off the GUI thread (:class:`AttemptRecorder`, shared with
the intubation window): the inputs go to a durable journal while the attempt
runs, and the finished attempt (its log compressed, its metrics) is stored by
the records thread of :mod:`surgsim.gui.records_worker`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QKeyEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from surgsim.gui.fluoro_view import FluoroView
from surgsim.gui.offscreen_view import OffscreenView
from surgsim.render.scene import EndovascularScene
from surgsim.session.controls import ControlFrame, ControlMapper
from surgsim.session.session import Session

#: The 3D view renders this fraction of its pixels along each axis (scaled up when shown).
VIEW_RENDER_SCALE = 0.75
#: Contrast per key press, ml; C-arm step per key press, radians.
INJECT_ML = 5.0
CARM_STEP = 0.0872664626  # 5 degrees

KEYMAP = {
    Qt.Key.Key_Up: ("advance", +1),
    Qt.Key.Key_W: ("advance", +1),
    Qt.Key.Key_Down: ("advance", -1),
    Qt.Key.Key_S: ("advance", -1),
    Qt.Key.Key_Left: ("rotate", -1),
    Qt.Key.Key_A: ("rotate", -1),
    Qt.Key.Key_Right: ("rotate", +1),
    Qt.Key.Key_D: ("rotate", +1),
}


#: Style of the records status label: saving, recorded, and a problem (not recorded yet, or lost).
RECORD_STYLES = {"busy": "color: #555; font-style: italic;", "ok": "color: #1a7f1a;",
                 "error": "color: #b00000; font-weight: bold;"}


class AttemptRecorder(QObject):
    """Journal a window's running attempt and store it off the GUI thread when it ends.

    While an attempt runs, :meth:`poll` (called at every tick) copies its new
    inputs and events into an :class:`~surgsim.records.journal.AttemptWriter`
    journal in the data folder, created at the first input once the window has
    a database; the journal is synced in batches, so an attempt survives a
    crash of the station (the next records open stores it as interrupted).
    :meth:`save` hands the finished attempt to the records thread
    (:func:`surgsim.gui.records_worker.records_pool`): there the journal gets its
    end record (the log, compressed, and the score) and then the attempt goes
    to the database; the GUI thread waits for neither. When the database cannot
    be written, the attempt stays in its journal (stored the next time records
    open) and :attr:`label` says so in red.

    Parameters
    ----------
    label : QLabel
        The window's records status line (also the owner of the records jobs).
    records : callable() -> Records or None
        The window's database, read when needed (the app opens it after the first frame).
    """

    def __init__(self, label: QLabel, records: Callable[[], object]) -> None:
        from surgsim.gui.records_worker import RecordsJobs

        super().__init__(label)
        self.label = label
        self._records = records
        self.jobs = RecordsJobs(label)
        self.session = None
        self.scenario = None
        self.trainee_id = ""
        self.writer = None
        self.journal_error: str | None = None
        self._inputs = self._events = 0
        self._open = False

    @property
    def busy(self) -> bool:
        """True while a save runs or waits on the records thread."""
        return self.jobs.busy

    @property
    def journal_path(self):
        """The running attempt's journal file (None before its first input or without a database)."""
        return None if self.writer is None else self.writer.path

    def start(self, session, scenario, trainee_id: str) -> None:
        """A new attempt begins (a save still running for the previous one carries on)."""
        if self.writer is not None:  # a journalled attempt left without a save: recovered as interrupted
            self.writer.abort()
        self.session, self.scenario, self.trainee_id = session, scenario, trainee_id
        self.writer = None
        self.journal_error = None
        self._inputs = self._events = 0
        self._open = True

    def has_inputs(self) -> bool:
        """True when the running attempt received any trainee input."""
        return bool(self._open and self.session is not None and self.session.inputs)

    def poll(self) -> None:
        """Journal the running attempt's new inputs and events (synced in batches)."""
        s = self.session
        records = self._records()
        if not self._open or s is None or records is None or self.journal_error is not None:
            return
        from surgsim.errors import RecordsError

        try:
            if self.writer is None:
                if not s.inputs:
                    return  # nothing to keep yet
                from surgsim.records.journal import AttemptWriter

                self.writer = AttemptWriter(records, self.trainee_id, self.scenario, seed=s.seed, dt=s.dt)
            for event in s.inputs[self._inputs:]:
                self.writer.add_input(event)
            self._inputs = len(s.inputs)
            for event in s.events[self._events:]:
                self.writer.add_event(event)
            self._events = len(s.events)
        except (RecordsError, OSError) as exc:
            self.journal_error = str(exc)
            self._show(f"This attempt is not journalled ({exc}); it is stored only when it ends "
                       "and the database can be written.", "error")

    def save(self, log, result, status: str = "completed",
             on_saved: Callable[[str], None] | None = None) -> bool:
        """Store the ended attempt on the records thread; ``on_saved(attempt_id)`` runs in the GUI thread.

        Returns False (nothing queued) when the window has no database, or when this attempt
        was already saved.
        """
        if not self._open:
            return False
        self.poll()
        records = self._records()
        self._open = False
        writer, self.writer = self.writer, None
        if records is None:
            return False
        trainee_id, scenario, session = self.trainee_id, self.scenario, self.session
        journal_ok = self.journal_error is None

        def job() -> str:  # on the records thread: compress, journal, write
            from surgsim.errors import RecordsError
            from surgsim.records.journal import AttemptPendingError, AttemptWriter

            w = writer
            if w is None and journal_ok:
                try:  # an attempt ended before its first poll: journal its end first all the same
                    w = AttemptWriter(records, trainee_id, scenario, seed=session.seed, dt=session.dt)
                except RecordsError:
                    w = None
            if w is None:
                return records.add_attempt(trainee_id, scenario, log, result, mode=scenario.mode,
                                           status=status)
            try:
                return w.finish(log, result, status=status)
            except AttemptPendingError as exc:
                raise RecordsError(
                    f"The attempt could not be written to the lab database. It is kept on this station "
                    f"(journal {exc.journal}) and is stored the next time surgsim opens the records. "
                    f"Cause: {exc.__cause__ or exc}") from exc

        def done(attempt_id: str) -> None:
            text = "Attempt recorded." if status == "completed" else f"Previous attempt recorded ({status})."
            self._show(text, "ok")
            if on_saved is not None:
                on_saved(attempt_id)

        def failed(message: str) -> None:
            if writer is None and not journal_ok:
                message = f"{message} This attempt was not journalled either: it is lost."
            self._show(f"Attempt not recorded yet. {message}", "error")

        self._show("Saving the attempt to the lab database...", "busy")
        self.jobs.run(job, done, "Saving the attempt...", on_error=failed)
        return True

    def _show(self, text: str, kind: str) -> None:
        self.label.setText(text)
        self.label.setStyleSheet(RECORD_STYLES[kind])
        self.label.setVisible(bool(text))


def records_status_label() -> QLabel:
    """The records status line of a simulator window (hidden until an attempt is saved)."""
    label = QLabel()
    label.setObjectName("records_status")
    label.setWordWrap(True)
    label.hide()
    return label


def add_score_section(window, layout, heading: str, object_name: str, font_family: str
                      ) -> tuple[QLabel, QTableWidget]:
    """Add a simulator window's score heading, records status line and metric table to ``layout``.

    Sets ``window.records_status`` and ``window.recorder`` (an :class:`AttemptRecorder`
    saving to ``window.records``); returns the heading label and the metric table.
    """
    heading_label = QLabel(heading)
    heading_label.setObjectName(object_name)
    heading_label.setWordWrap(True)
    heading_label.setFont(QFont(font_family, 11, QFont.Weight.Bold))
    layout.addWidget(heading_label)
    window.records_status = records_status_label()
    layout.addWidget(window.records_status)
    window.recorder = AttemptRecorder(window.records_status, lambda: window.records)
    table = QTableWidget(0, 4)
    table.setHorizontalHeaderLabels(["metric", "value", "unit", "sub-score"])
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    layout.addWidget(table, stretch=1)
    return heading_label, table


class _KeyFilter(QObject):
    """Routes the simulator's keys to the window wherever the focus is."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window

    def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
        if event.type() in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            if self.window.handle_key(event):
                return True
        return False


class MainWindow(QMainWindow):
    """Main simulator window for one trainee and one scenario.

    Parameters
    ----------
    scenario : Scenario
    case : VesselCase
    trainee_id : str
        Opaque trainee id the attempts are recorded under.
    records : Records or None
        Where finished attempts go (None: not recorded).
    """

    attempt_finished = Signal(object)  # ScoreResult

    def __init__(self, scenario, case, trainee_id: str = "guest", records=None, parent=None):
        super().__init__(parent)
        self.scenario = scenario
        self.case = case
        self.trainee_id = trainee_id
        self.records = records
        self.last_result = None
        self.last_attempt_id: str | None = None
        self.setWindowTitle(f"surgsim: {scenario.title}")
        self.resize(1400, 900)

        # rendered off-screen and shown as an image (drawn by the tick, and on mouse drags): a Qt OpenGL
        # widget would make Qt compose the whole window through (software) OpenGL at every frame,
        # fluoroscopy frames included (gui/offscreen_view.py)
        # (the 3D view is the secondary one beside fluoroscopy: it renders 3/4 of the pixels along each axis,
        # scaled up when shown, as a software renderer's cost follows the pixel count)
        self.plotter = OffscreenView(self, size=(700, 600), interactive=True, render_scale=VIEW_RENDER_SCALE)
        self.fluoro_view = FluoroView()
        self.fluoro = None  # FluoroRenderer, built after the first frame
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.plotter.interactor)
        splitter.addWidget(self.fluoro_view)
        splitter.setSizes([700, 500])
        self.setCentralWidget(splitter)
        self._build_side_panel()
        self._build_debrief_dock()
        self._build_menus()
        # assessment mode navigates by fluoroscopy alone, as in the angiosuite
        self.plotter.interactor.setVisible(scenario.mode != "assessment")

        self._held: dict[str, int] = {}
        self._fine = False
        self._pedal = False
        self.session: Session | None = None
        self.scene: EndovascularScene | None = None
        self.new_attempt()

        self._filter = _KeyFilter(self)
        self.plotter.interactor.installEventFilter(self._filter)
        self.installEventFilter(self._filter)

        self._last_tick = time.perf_counter()
        QTimer.singleShot(0, self._build_fluoro)
        self.timer = QTimer(self)
        self.timer.setInterval(16)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    # ------------------------------------------------------------------ layout
    def _build_side_panel(self) -> None:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        title = QLabel(self.scenario.title)
        self.scenario_title = title
        title.setWordWrap(True)
        title.setFont(QFont(title.font().family(), 12, QFont.Weight.Bold))
        layout.addWidget(title)
        objectives = "\n".join(f"• {o}" for o in self.scenario.learning_objectives)
        obj = QLabel(objectives)
        self.objectives = obj
        obj.setWordWrap(True)
        layout.addWidget(obj)

        self.hud = QLabel()
        self.hud.setFont(QFont("monospace", 11))
        self.hud.setObjectName("hud")
        layout.addWidget(self.hud)

        help_text = QLabel(
            "Up/Down: advance/retract  Left/Right: rotate  Shift: fine\n"
            "Space (hold): fluoroscopy  C: inject 5 ml  M: roadmap\n"
            "Q/E: C-arm RAO/LAO  R/F: cranial/caudal  V: 3D view\n"
            "Tab: guidewire / catheter\n"
            "Return: finish  F5: new attempt"
        )
        help_text.setWordWrap(True)
        layout.addWidget(help_text)

        self.finish_button = QPushButton("Finish attempt")
        self.finish_button.clicked.connect(self.finish_attempt)
        self.finish_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.finish_button)
        self.restart_button = QPushButton("New attempt")
        self.restart_button.clicked.connect(self.new_attempt)
        self.restart_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.restart_button)

        self.debrief_title, self.debrief = add_score_section(
            self, layout, "Debrief: finish an attempt to see its score", "debrief_title", title.font().family())

        dock = QDockWidget("Procedure", self)
        dock.setWidget(panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _build_debrief_dock(self) -> None:
        # the full debrief (plots, a second 3D view) is built when the first attempt
        # ends: it would cost start-up time for nothing
        self.debrief_panel = None
        self.debrief_dock = QDockWidget("Debrief", self)
        self.debrief_dock.setObjectName("debrief_dock")
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.debrief_dock)
        self.debrief_dock.hide()  # shown when an attempt ends

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction("&Import DICOM case...", self.open_import_wizard)
        file_menu.addAction("&New attempt", self.new_attempt)
        file_menu.addSeparator()
        file_menu.addAction("&Quit", self.close)
        attempt_menu = bar.addMenu("&Attempt")
        attempt_menu.addAction("&Finish and debrief", self.finish_attempt)
        attempt_menu.addAction("&Replay last attempt beside the expert", self.open_replay)
        scenario_menu = bar.addMenu("&Scenarios")
        scenario_menu.addAction("&Choose scenario...", self.open_scenario_picker)
        scenario_menu.addAction("&Edit scenario...", self.open_scenario_editor)
        self.records_menu = bar.addMenu("&Records")
        self.records_menu.addAction("&Sign in and open records...", self.open_records)

    def open_scenario_picker(self):
        """List the bundled scenarios; choosing one loads it here."""
        from surgsim.gui.scenario_picker import ScenarioPicker

        self._picker = ScenarioPicker()
        self._picker.chosen.connect(self.load_scenario_file)
        self._picker.show()
        return self._picker

    def open_scenario_editor(self, path=None):
        """The educator's scenario editor (forms, live validation, save as YAML)."""
        from surgsim.gui.scenario_editor import ScenarioEditor

        self._editor = ScenarioEditor(path if path is not None else self.scenario.source_path)
        self._editor.show()
        return self._editor

    def load_scenario_file(self, path) -> bool:
        """Switch to the scenario in ``path`` (building its anatomy case if needed)."""
        from surgsim.cli import load_case_for
        from surgsim.errors import SurgsimError
        from surgsim.scenarios.load import load_scenario

        try:
            scenario = load_scenario(path)
            if scenario.procedure == "intubation":  # its own window: laryngoscope, monitor, airway
                from surgsim.gui.airway_window import IntubationWindow

                self._intubation_window = IntubationWindow(scenario, self.trainee_id, records=self.records)
                self._intubation_window.show()
                return True
            if scenario.procedure != "endovascular":
                raise SurgsimError(f"{path}: {scenario.procedure} scenarios have no window yet")
            case = load_case_for(scenario)
        except SurgsimError as exc:
            self.statusBar().showMessage(str(exc))
            return False
        self.scenario, self.case = scenario, case
        self.setWindowTitle(f"surgsim: {scenario.title}")
        self.scenario_title.setText(scenario.title)
        self.objectives.setText("\n".join(f"• {o}" for o in scenario.learning_objectives))
        self.plotter.plotter.clear()
        self.scene = None
        self.fluoro = None
        self.new_attempt()
        self._build_fluoro()
        return True

    def expert_log(self):
        """The bundled expert attempt of this scenario (re-simulated headless), or None."""
        from surgsim.paths import SCENARIOS_DIR
        from surgsim.session.inputs import load_inputs
        from surgsim.session.session import play

        path = SCENARIOS_DIR / "inputs" / f"{self.scenario.id}.expert.yaml"
        if not path.is_file():
            return None
        return play(Session(self.scenario, self.case), load_inputs(path)).log()

    def open_replay(self):
        """Replay the last attempt with a timeline, the bundled expert attempt as a ghost."""
        from surgsim.gui.replay_view import ReplayWindow

        self._replay = ReplayWindow(self.scenario, self.case, self.session.log(), ghost_log=self.expert_log())
        self._replay.show()
        return self._replay

    def open_import_wizard(self):
        """Open the DICOM import wizard (builds a case from a patient's series)."""
        from surgsim.gui.import_wizard import ImportWizard

        self._wizard = ImportWizard()
        self._wizard.show()
        return self._wizard

    def open_records(self):
        """Sign in and open the records window (history, learning curves, cohort dashboard)."""
        if self.records is None:
            self.statusBar().showMessage("no attempt database is open")
            return None
        from surgsim.gui.records_view import open_records_window

        self._records_window = open_records_window(self.records, parent=None)
        return self._records_window

    def _build_fluoro(self) -> None:
        """Build the fluoroscopy renderer (needs the case's CT) and show a first image."""
        if self.fluoro is not None:
            return
        if self.case.volume is None or self.case.lumen_mask is None:
            self.fluoro_view.setText("Fluoroscopy unavailable: this case has no CT volume")
            return
        from surgsim.render.fluoro import FluoroRenderer

        self.fluoro = FluoroRenderer(self.case.volume, self.case.lumen_mask, self.case.centerlines)
        self._render_fluoro(force=True)

    def _render_fluoro(self, force: bool = False) -> None:
        if self.fluoro is None:
            return
        imaging = self.session.imaging
        if force or imaging.live:
            from surgsim.render.fluoro import device_from_rod

            frame = self.fluoro.frame([device_from_rod(self.session.rod, self.session.spec)], imaging)
            self.fluoro_view.show_frame(frame)

    # ------------------------------------------------------------------ attempts
    def new_attempt(self) -> None:
        """Start a fresh attempt on the same scenario and case (an unfinished one is recorded as aborted)."""
        self._abandon_attempt()
        self.session = Session(self.scenario, self.case)
        self.recorder.start(self.session, self.scenario, self.trainee_id)
        self.controls = ControlMapper(self.session)  # the keyboard is one input device
        self._pedal = False
        self.last_result = None
        self.last_attempt_id = None
        self._held.clear()
        if self.scene is None:
            self.scene = EndovascularScene(self.plotter.plotter, self.session)
        else:
            self.scene.session = self.session
        self.scene.sync()
        self._last_tick = time.perf_counter()
        self._update_hud()
        self.plotter.redraw()
        self._render_fluoro(force=True)

    def finish_attempt(self) -> None:
        """End the attempt, score it, record it and show the debrief."""
        if self.session is None:
            return
        if not self.session.finished:
            self.session.apply("finish")
        self._show_result()

    def _abandon_attempt(self) -> None:
        """The trainee leaves a running attempt (new attempt, other scenario, window closed): one with
        inputs is finished and recorded as ``aborted``, so no practice is lost; one without is dropped."""
        s = self.session
        if s is None or s.finished or not self.recorder.has_inputs():
            return
        s.apply("finish")
        self.recorder.save(s.log(), s.score(), status="aborted")

    def _record(self, log, result) -> None:
        """Store the finished attempt on the records thread (``last_attempt_id`` is set when it is in)."""
        session = self.session

        def saved(attempt_id: str) -> None:
            if self.session is session:
                self.last_attempt_id = attempt_id

        self.recorder.save(log, result, on_saved=saved)

    def _show_result(self) -> None:
        result = self.session.score()
        self.last_result = result
        log = self.session.log()
        self._record(log, result)  # once per attempt: the recorder ignores a second save
        self.debrief_title.setText(result.summary)
        self.debrief.setRowCount(len(result.metrics))
        for row, m in enumerate(result.metrics):
            value = "n/a" if m.value is None else f"{m.value:.4g}"
            for col, text in enumerate([m.name, value, m.unit, f"{m.sub_score:.0f}"]):
                self.debrief.setItem(row, col, QTableWidgetItem(text))
        self.debrief.resizeColumnsToContents()
        if self.debrief_panel is None:
            from surgsim.gui.debrief import DebriefPanel

            self.debrief_panel = DebriefPanel()
            self.debrief_dock.setWidget(self.debrief_panel)
        self.debrief_panel.show_result(result, log, self.scenario, self.case)
        self.debrief_dock.show()
        self.attempt_finished.emit(result)

    # ------------------------------------------------------------------ input
    def handle_key(self, event: QKeyEvent) -> bool:
        """Handle a simulator key; returns True when the event was used."""
        key = event.key()
        press = event.type() == QEvent.Type.KeyPress
        if key == Qt.Key.Key_Shift:
            self._fine = press
            self._send_commands()
            return True
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._pedal = press
                self._send_commands()
            return True
        if press and not event.isAutoRepeat() and self._handle_press(key):
            return True
        if key in KEYMAP:
            if event.isAutoRepeat():
                return True
            action, sign = KEYMAP[key]
            if press:
                self._held[action] = sign
            elif self._held.get(action) == sign:
                del self._held[action]
            self._send_commands()
            return True
        if press and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.finish_attempt()
            return True
        if press and key == Qt.Key.Key_F5:
            self.new_attempt()
            return True
        return False

    def _apply(self, action: str, value: float = 0.0) -> None:
        self.controls.press(action, value)

    def _handle_press(self, key) -> bool:
        """One-shot keys: contrast, C-arm, roadmap, 3D view."""
        imaging = self.session.imaging if self.session else None
        if imaging is None:
            return False
        if key == Qt.Key.Key_C:
            self._apply("inject", INJECT_ML)
        elif key in (Qt.Key.Key_Q, Qt.Key.Key_E):
            self._apply("carm_lao", imaging.lao + (CARM_STEP if key == Qt.Key.Key_E else -CARM_STEP))
        elif key in (Qt.Key.Key_R, Qt.Key.Key_F):
            self._apply("carm_cran", imaging.cran + (CARM_STEP if key == Qt.Key.Key_R else -CARM_STEP))
        elif key == Qt.Key.Key_M:
            self._apply("roadmap", 0.0 if imaging.roadmap_enabled else 1.0)
        elif key == Qt.Key.Key_Tab:  # hand on the other device (wire <-> catheter)
            on_wire = getattr(self.session.rod, "selected", "catheter") == "guidewire"
            self._apply("select_device", 0.0 if on_wire else 1.0)
        elif key == Qt.Key.Key_V:
            self.plotter.interactor.setVisible(not self.plotter.interactor.isVisible())
        else:
            return False
        return True

    def _send_commands(self) -> None:
        """Report the keyboard's held keys as a device frame (only changes become inputs)."""
        if self.session is None:
            return
        self.controls.update(ControlFrame(
            advance=self._held.get("advance", 0),
            rotate=self._held.get("rotate", 0),
            fine=self._fine,
            buttons={"pedal"} if self._pedal else set(),
        ))

    # ------------------------------------------------------------------ loop
    def tick(self) -> None:
        """Advance the session by the wall time since the last tick and redraw."""
        now = time.perf_counter()
        elapsed = min(now - self._last_tick, 0.1)  # never try to catch up more than 0.1 s
        self._last_tick = now
        s = self.session
        if s is None:
            return
        if not s.finished:
            s.advance_time(elapsed)
            self.recorder.poll()
            if self.plotter.interactor.isVisible():
                self.scene.sync()
                self.plotter.redraw()
            self._render_fluoro()
            if s.finished and self.last_result is None:
                self._show_result()
        self._update_hud()

    def _update_hud(self) -> None:
        s = self.session
        state = s.rod.state()
        force = float(state.contact_force.max()) if state.contact_force.size else 0.0
        reached = ", ".join(sorted(s.reached)) or "-"
        img = s.imaging.hud()
        beam = "ON" if s.imaging.live else "off"
        self.hud.setText(
            f"time      {s.time:7.1f} s\n"
            f"device    {s.rod.spec.name}\n"
            f"depth     {state.depth * 1000:7.1f} mm\n"
            f"rotation  {state.hub_angle * 57.29578:7.0f} deg\n"
            f"tip force {force:7.2f} N  {'#' * min(int(force / 0.25), 20)}\n"
            f"X-ray     {beam:>7}\n"
            f"fluoro    {img['fluoro_time_s']:7.1f} s\n"
            f"contrast  {img['contrast_ml']:7.1f} ml\n"
            f"C-arm     {img['lao_deg']:+4.0f} LAO {img['cran_deg']:+4.0f} CRA\n"
            f"target    {reached}"
        )

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.timer.stop()
        self._abandon_attempt()
        self.plotter.close()
        super().closeEvent(event)
