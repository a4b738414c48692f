"""The simulator's main window: 3D view, HUD, controls and debrief.

The window owns no simulation logic: a timer asks the session to advance by
the wall time that passed, then syncs the scene and the HUD from its state.
Keys (held): Up/W advance, Down/S retract, Left/A and Right/D rotate the hub,
Shift for fine (slow) motion, Space the fluoroscopy pedal. Keys (pressed): Tab
moves the hand between guidewire and catheter (coaxial scenarios), C
injects 5 ml of contrast, Q/E turn the C-arm 5 degrees RAO/LAO, R/F 5 degrees
cranial/caudal, M toggles the roadmap, V shows or hides the 3D view; Return
finishes the attempt; F5 starts a new one.
"""

from __future__ import annotations

import time

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
from pyvistaqt import QtInteractor

from surgsim.gui.fluoro_view import FluoroView
from surgsim.render.scene import EndovascularScene
from surgsim.session.controls import ControlFrame, ControlMapper
from surgsim.session.session import Session

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

        self.plotter = QtInteractor(self)
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

        self.debrief_title = QLabel("Debrief: finish an attempt to see its score")
        self.debrief_title.setObjectName("debrief_title")
        self.debrief_title.setWordWrap(True)
        self.debrief_title.setFont(QFont(title.font().family(), 11, QFont.Weight.Bold))
        layout.addWidget(self.debrief_title)
        self.debrief = QTableWidget(0, 4)
        self.debrief.setHorizontalHeaderLabels(["metric", "value", "unit", "sub-score"])
        self.debrief.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.debrief, stretch=1)

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
        self.plotter.clear()
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
        """Start a fresh attempt on the same scenario and case."""
        self.session = Session(self.scenario, self.case)
        self.controls = ControlMapper(self.session)  # the keyboard is one input device
        self._pedal = False
        self.last_result = None
        self.last_attempt_id = None
        self._held.clear()
        if self.scene is None:
            self.scene = EndovascularScene(self.plotter, self.session)
        else:
            self.scene.session = self.session
        self.scene.sync()
        self._last_tick = time.perf_counter()
        self._update_hud()
        self.plotter.render()
        self._render_fluoro(force=True)

    def finish_attempt(self) -> None:
        """End the attempt, score it, record it and show the debrief."""
        if self.session is None:
            return
        if not self.session.finished:
            self.session.apply("finish")
        self._show_result()

    def _show_result(self) -> None:
        result = self.session.score()
        self.last_result = result
        if self.records is not None and self.last_attempt_id is None:
            try:
                self.last_attempt_id = self.records.add_attempt(
                    self.trainee_id, self.scenario, self.session.log(), result, mode=self.scenario.mode
                )
            except Exception as exc:  # shown to the user; the debrief still appears
                self.statusBar().showMessage(f"attempt not recorded: {exc}")
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
        self.debrief_panel.show_result(result, self.session.log(), self.scenario, self.case)
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
            if self.plotter.interactor.isVisible():
                self.scene.sync()
                self.plotter.render()
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
        self.plotter.close()
        super().closeEvent(event)
