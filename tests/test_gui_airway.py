"""The intubation window under Xvfb: keys move the blade and tube, the monitor desaturates, finish scores."""

from __future__ import annotations

import json
import os
import threading
import types

import numpy as np
import pytest

pytestmark = pytest.mark.gui

if not os.environ.get("DISPLAY"):
    pytest.skip("GUI tests need a display: run them through tools/test (Xvfb)", allow_module_level=True)

from PySide6.QtCore import Qt  # noqa: E402

from surgsim.errors import RecordsError  # noqa: E402
from surgsim.gui.airway_window import IntubationWindow, hand_velocities  # noqa: E402
from surgsim.gui.records_worker import UNREACHABLE, wait_for_records_jobs  # noqa: E402
from surgsim.records.db import Records  # noqa: E402
from surgsim.records.journal import read_journal  # noqa: E402


@pytest.fixture(scope="module")
def scenario(airway_scenario):
    return airway_scenario


@pytest.fixture
def window(qtbot, tmp_path, scenario):
    records = Records(f"sqlite:///{tmp_path / 'gui.db'}", journal_dir=tmp_path / "journal")
    win = IntubationWindow(scenario, trainee_id="T-AIR", records=records)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()
    assert wait_for_records_jobs(30000)  # as the app does: the database closes once the saves are done
    records.close()


def _hold(qtbot, window, key, seconds=0.3):
    """Hold a key while the session runs ``seconds`` of simulated time."""
    t0 = window.session.time
    qtbot.keyPress(window.plotter.interactor, key)
    qtbot.waitUntil(lambda: window.session.time > t0 + seconds, timeout=15000)
    qtbot.keyRelease(window.plotter.interactor, key)


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
    # the attempt is stored by the records thread: its id arrives a little later
    qtbot.waitUntil(lambda: window.last_attempt_id is not None, timeout=15000)
    stored = window.records.get_attempt(window.last_attempt_id)
    assert stored.status == "completed" and stored.log.hash() == window.session.log().hash()
    assert window.records_status.text() == "Attempt recorded."
    assert not list(window.records.journal_dir.glob("*.journal")), "a stored attempt leaves no journal"
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
    # where the start-up went: imports, then the window (physics world, anatomy meshes, views), then the frame
    assert 0 < report["imports_done_s"] < report["window_built_s"] <= report["first_frame_s"]
    parts = report["window_session_s"] + report["window_anatomy_s"] + report["window_views_s"]
    assert 0 < parts < report["window_built_s"] - report["imports_done_s"] + 1e-6


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


def test_attempt_is_journalled_while_it_runs_and_saved_off_the_gui_thread(qtbot, window, monkeypatch):
    _hold(qtbot, window, Qt.Key.Key_W)
    path = window.recorder.journal_path
    assert path is not None and path.is_file(), "the inputs go to a journal while the attempt runs"
    window.recorder.poll()  # what the next tick does
    window.recorder.writer.flush()
    _, inputs, _, end = read_journal(path)
    assert end is None and inputs == window.session.inputs
    # the database write (and the log's compression) happens on the records thread, not the GUI's
    release = threading.Event()
    seen = {}
    add_attempt = window.records.add_attempt

    def slow_add_attempt(*args, **kwargs):
        seen["thread"] = threading.current_thread()
        assert release.wait(15), "the test never let the save finish"
        return add_attempt(*args, **kwargs)

    monkeypatch.setattr(window.records, "add_attempt", slow_add_attempt)
    with qtbot.waitSignal(window.attempt_finished, timeout=10000):
        window.finish_attempt()
    assert window.last_result is not None and window.result_table.rowCount() > 0  # the score is shown now
    qtbot.waitUntil(lambda: "thread" in seen, timeout=10000)
    assert seen["thread"] is not threading.main_thread()
    assert window.recorder.busy and window.last_attempt_id is None
    assert "Saving" in window.records_status.text()
    _, _, _, end = read_journal(path)  # the end (log and score) is in the journal before the database
    assert end is not None and end["status"] == "completed"
    with qtbot.waitSignal(window.attempt_recorded, timeout=15000) as got:
        release.set()
    assert got.args[0] == window.last_attempt_id
    assert not path.exists()


def test_unreachable_database_keeps_the_attempt_in_its_journal(qtbot, window, monkeypatch, tmp_path):
    _hold(qtbot, window, Qt.Key.Key_W)

    def down(*args, **kwargs):
        raise RecordsError("cannot write the attempt to postgresql://lab/surgsim: could not connect to "
                           "server: Connection refused; check that the database server is running")

    monkeypatch.setattr(window.records, "add_attempt", down)
    path = window.recorder.journal_path
    window.finish_attempt()
    qtbot.waitUntil(lambda: "not recorded" in window.records_status.text(), timeout=15000)
    message = window.records_status.text()
    assert UNREACHABLE in message and "kept on this station" in message and path.name in message
    assert window.records_status.isVisible() and "b00000" in window.records_status.styleSheet()
    assert window.last_attempt_id is None and window.last_result is not None
    header, inputs, _, end = read_journal(path)
    assert end is not None and end["status"] == "completed" and inputs == window.session.inputs
    monkeypatch.undo()
    # the next records open (the next start of the app) stores it, with the same id and log
    again = Records(f"sqlite:///{tmp_path / 'gui.db'}", journal_dir=tmp_path / "journal")
    try:
        stored = again.get_attempt(header["attempt_id"])
        assert stored.status == "completed" and stored.log.hash() == window.session.log().hash()
        assert not path.exists()
    finally:
        again.close()


def test_a_new_attempt_records_the_abandoned_one_as_aborted(qtbot, window):
    window.new_attempt()  # no input yet: nothing to keep
    wait_for_records_jobs()
    assert window.records.list_attempts("T-AIR") == []
    _hold(qtbot, window, Qt.Key.Key_W)
    inputs = list(window.session.inputs)
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_F5)
    assert not window.session.finished and window.session.time < 0.5
    assert wait_for_records_jobs()
    (row,) = window.records.list_attempts("T-AIR")
    assert row.status == "aborted"
    stored = window.records.get_attempt(row.id)
    assert stored.log.inputs[:len(inputs)] == inputs and stored.log.inputs[-1].action == "finish"
    assert window.last_attempt_id is None  # it was not the current attempt


def test_laryngoscope_view_has_the_benchmark_size_and_keeps_its_shape(qtbot, window):
    from surgsim.render.airway import LARYNGOSCOPE_VIEW_SIZE

    assert tuple(window.plotter.ren_win.GetSize()) == LARYNGOSCOPE_VIEW_SIZE  # what the bench renders
    window.resize(1200, 700)
    qtbot.waitUntil(lambda: window.width() == 1200, timeout=5000)
    qtbot.wait(50)
    w, h = window.plotter.interactor.width(), window.plotter.interactor.height()
    assert abs(w / h - 4 / 3) < 0.02 and w <= LARYNGOSCOPE_VIEW_SIZE[0], (w, h)
    view = window.plotter.interactor.geometry()
    assert window.monitor.isVisible() and window.monitor.geometry().top() >= view.bottom()  # below the view


def test_views_are_redrawn_only_when_the_scene_changed(window):
    window.timer.stop()
    window._render()  # the views lag the physics by one tick (it runs while they render): catch up
    n = window.frames_rendered
    window._render()
    window._render()
    assert window.frames_rendered == n, "nothing moved: no redraw"
    s = window.session
    s.apply("blade_vy", 0.05)
    s.step(25)
    window._render()
    assert window.frames_rendered == n + 1
    actor = next(a for a, b in window.scene.views["laryngoscope"].moving if b == "blade")
    assert np.allclose(np.asarray(actor.user_matrix)[:3, 3], _pose(window, "blade")[0], atol=1e-9)


@pytest.mark.slow
def test_bench_measures_the_window_view_rendered_once_per_frame():
    """``surgsim bench intubation`` times the view as the window draws it: its size, one render per frame."""
    from surgsim.bench_intubation import bench_gui_render
    from surgsim.render.airway import LARYNGOSCOPE_VIEW_SIZE

    out = bench_gui_render(frames=4)
    assert "gui_skipped" not in out, out
    assert out["gui_view_size"] == list(LARYNGOSCOPE_VIEW_SIZE)
    assert out["gui_vtk_renders_per_frame"] == 1.0  # QtInteractor.render() would make it 2
    assert out["gui_frames_per_s"] > 0 and out["gui_frame_cpu_ms"] > 0


def test_the_real_time_loop_steps_the_physics_beside_the_render_and_replays_exactly(qtbot, window, scenario):
    """The tick steps the physics on a worker thread while the views render; the attempt is still a
    pure function of its inputs: replayed headless it gives the same log."""
    from surgsim.session.intubation import IntubationSession
    from surgsim.session.loop import play

    threads = set()
    step = window.session.step

    def recording_step(n, _step=step):
        threads.add(threading.current_thread().name)
        return _step(n)

    window.session.step = recording_step
    _hold(qtbot, window, Qt.Key.Key_W, 0.4)
    _hold(qtbot, window, Qt.Key.Key_I, 0.2)
    _hold(qtbot, window, Qt.Key.Key_R, 0.2)
    qtbot.waitUntil(lambda: window.frames_rendered > 5, timeout=10000)
    with qtbot.waitSignal(window.attempt_finished, timeout=10000):
        qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_Return)
    assert any(t.startswith("surgsim-physics") for t in threads), threads
    live = window.session.log()
    again = play(IntubationSession(scenario), list(live.inputs)).log()
    assert again.hash() == live.hash()
    assert np.array_equal(again.samples["blade_tip"], live.samples["blade_tip"])
