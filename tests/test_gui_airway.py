"""The intubation window under Xvfb: keys move the blade and tube, the monitor desaturates, finish scores."""

from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest

pytestmark = pytest.mark.gui

if not os.environ.get("DISPLAY"):
    pytest.skip("GUI tests need a display: run them through tools/test (Xvfb)", allow_module_level=True)

from PySide6.QtCore import Qt  # noqa: E402

from surgsim.gui.airway_window import IntubationWindow, hand_velocities  # noqa: E402
from surgsim.records.db import Records  # noqa: E402


@pytest.fixture(scope="module")
def scenario():
    from surgsim.cli import _scenario_path
    from surgsim.scenarios.load import load_scenario

    return load_scenario(_scenario_path("airway-adult-normal"))


@pytest.fixture
def window(qtbot, tmp_path, scenario):
    records = Records(f"sqlite:///{tmp_path / 'gui.db'}")
    win = IntubationWindow(scenario, trainee_id="T-AIR", records=records)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()
    records.close()


def _pose(window, body):
    w = window.session.world
    return w.pose(getattr(w, body))


def test_window_opens_with_both_views_and_the_monitor(window):
    assert window.scene is not None and set(window.scene.views) == {"laryngoscope", "external"}
    assert window.plotter.renderer is window.scene.views["laryngoscope"].renderer
    assert window.monitor.spo2_label.text().strip() == "100"
    assert int(window.monitor.hr_label.text()) == 75
    assert "attempts  0" in window.hud.text() and "shown after the attempt" in window.hud.text()
    assert "W / S" in window.help.text() and "Space" in window.help.text()
    img = window.plotter.screenshot(return_img=True)
    assert np.asarray(img).std() > 10


def test_keys_move_the_blade_then_the_tube(qtbot, window):
    target = window.plotter.interactor
    blade0, _ = _pose(window, "blade")
    tube0, _ = _pose(window, "tube")
    into, up, _ = window.controls.frame
    qtbot.keyPress(target, Qt.Key.Key_W)
    # the session runs in real time: on a slow display wait until it has run long enough
    qtbot.waitUntil(lambda: window.session.time > 0.4, timeout=15000)
    qtbot.keyRelease(target, Qt.Key.Key_W)
    blade1, _ = _pose(window, "blade")
    assert (blade1 - blade0) @ into > 0.004, blade1 - blade0
    actions = {e.action for e in window.session.inputs}
    assert {"blade_vy", "blade_vz"} <= actions  # "into" lies in the sagittal plane
    # velocities stop when the key is released
    assert all(window.session.commands[f"blade_{a}"] == 0.0 for a in ("vx", "vy", "vz"))
    # Tab: the tube in the hand; R lifts it toward the ceiling
    qtbot.keyPress(target, Qt.Key.Key_Tab)
    assert window.controls.device == "tube" and "tube" in window.device_button.text()
    t_tab = window.session.time
    qtbot.keyPress(target, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: window.session.time > t_tab + 0.4, timeout=15000)
    qtbot.keyRelease(target, Qt.Key.Key_R)
    tube1, _ = _pose(window, "tube")
    assert (tube1 - tube0) @ up > 0.003, tube1 - tube0
    # the scene shows the moved blade
    actor = next(a for a, b in window.scene.views["laryngoscope"].moving if b == "blade")
    assert np.allclose(np.asarray(actor.user_matrix)[:3, 3], _pose(window, "blade")[0], atol=2e-3)


def test_cuff_and_bag_keys(qtbot, window):
    target = window.external.interactor
    qtbot.keyPress(target, Qt.Key.Key_C)
    assert window.session.commands["cuff"] == 1.0 and window.cuff_button.isChecked()
    qtbot.keyPress(target, Qt.Key.Key_Space)
    assert window.session.commands["ventilate"] == 1.0
    qtbot.keyRelease(target, Qt.Key.Key_Space)
    assert window.session.commands["ventilate"] == 0.0
    qtbot.keyPress(target, Qt.Key.Key_C)
    assert window.session.commands["cuff"] == 0.0


def test_monitor_shows_desaturation_and_alarms(window):
    window.advance(0.5)  # the session runs (physics and physiology)
    assert window.session.time >= 0.49
    assert "apnoea 0:00" in window.monitor.apnoea_label.text()
    shown = []
    ox = window.session.oxygen
    for _ in range(14):  # then apnoea passes quickly: 14 x 60 s of the oxygen model alone
        for _ in range(600):
            ox.step(0.1)
        window._update_hud()
        shown.append(float(window.monitor.spo2_label.text()))
    assert shown[-1] < shown[0] - 10, shown
    assert np.all(np.diff(shown) <= 0.5), shown
    assert "SpO2 LOW" in window.monitor.alarms and window.monitor.alarm_label.isVisible()
    assert "SpO2 LOW" in window.monitor.alarm_label.text()
    while ox.state.heart_rate_bpm >= 50.0 and ox.state.t < 3600:
        ox.step(0.5)
    window._update_hud()
    assert "BRADYCARDIA" in window.monitor.alarms


def test_finish_shows_the_score_and_reveals_the_tube(qtbot, window):
    window.advance(0.3)
    with qtbot.waitSignal(window.attempt_finished, timeout=10000):
        qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_Return)
    result = window.last_result
    assert result is not None and window.session.finished
    assert "score" in window.result_title.text().lower()
    assert window.result_table.rowCount() == len(result.metrics) > 0
    assert window.debrief_dock.isVisible() and window.debrief_panel.table.rowCount() == len(result.metrics)
    assert "shown after the attempt" not in window.hud.text() and "outside" in window.hud.text()
    assert window.last_attempt_id is not None
    # keys after the end do nothing; F5 starts a fresh attempt
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_W)
    qtbot.keyRelease(window.plotter.interactor, Qt.Key.Key_W)
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_F5)
    assert not window.session.finished and window.last_result is None
    assert not window.debrief_dock.isVisible()


def test_picker_hand_off_opens_the_intubation_window(qtbot, scenario):
    from surgsim.gui.main_window import MainWindow

    host = types.SimpleNamespace(trainee_id="T-PICK", records=None)
    assert MainWindow.load_scenario_file(host, scenario.source_path) is True
    win = host._intubation_window
    qtbot.addWidget(win)
    assert isinstance(win, IntubationWindow) and win.trainee_id == "T-PICK"
    assert win.isVisible()
    win.close()


def test_app_opens_the_airway_scenario(qtbot, tmp_path, capsys):
    from surgsim.cli import main

    code = main(["app", "--scenario", "airway-adult-normal", "--quit-after", "0.5", "--report-startup",
                 "--db", f"sqlite:///{tmp_path / 'app.db'}"])
    assert code == 0
    report = json.loads([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")][-1])
    assert report["rss_bytes"] > 0


def test_key_mapping_is_the_operator_frame():
    into, left, up = np.eye(3)  # as view_frame: up = into x left
    v, w = hand_velocities({"in": 1, "left": -1}, (into, up, left))
    assert np.allclose(v / np.linalg.norm(v), (into - left) / np.sqrt(2)) and not w.any()
    v, w = hand_velocities({"pitch": 1}, (into, up, left), fine=True)
    tip_motion = np.cross(w, into)  # a point ahead of the hand moves up when the tip pitches up
    assert tip_motion @ up > 0 and not v.any()
    _, w = hand_velocities({"yaw": 1}, (into, up, left))
    assert np.cross(w, into) @ left > 0
    _, w = hand_velocities({"roll": 1}, (into, up, left))
    assert np.cross(w, up) @ left > 0  # anticlockwise as the operator looks along "into"
