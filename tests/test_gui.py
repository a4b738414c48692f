"""The main window under Xvfb: drive the catheter with keys, finish, see the debrief."""

from __future__ import annotations

import os
import threading
import time

import pytest

pytestmark = pytest.mark.gui

if not os.environ.get("DISPLAY"):
    pytest.skip("GUI tests need a display: run them through tools/test (Xvfb)", allow_module_level=True)

from PySide6.QtCore import Qt  # noqa: E402

from surgsim.errors import RecordsError  # noqa: E402
from surgsim.gui.main_window import MainWindow  # noqa: E402
from surgsim.gui.records_worker import UNREACHABLE, wait_for_records_jobs  # noqa: E402
from surgsim.records.db import Records  # noqa: E402
from surgsim.records.journal import read_journal  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path, default_scenario, default_case):
    records = Records(f"sqlite:///{tmp_path / 'gui.db'}", journal_dir=tmp_path / "journal")
    win = MainWindow(default_scenario, default_case, trainee_id="T-GUI", records=records)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()
    assert wait_for_records_jobs(30000)  # as the app does: the database closes once the saves are done
    records.close()


def _advance_a_little(qtbot, window):
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_Up)
    qtbot.wait(300)
    qtbot.keyRelease(window.plotter.interactor, Qt.Key.Key_Up)


def test_keys_drive_the_catheter(qtbot, window):
    target = window.plotter.interactor
    depth0 = window.session.rod.state().depth
    qtbot.keyPress(target, Qt.Key.Key_Up)
    qtbot.wait(700)
    qtbot.keyRelease(target, Qt.Key.Key_Up)
    depth1 = window.session.rod.state().depth
    assert depth1 > depth0 + 0.005, (depth0, depth1)
    angle0 = window.session.rod.state().hub_angle
    qtbot.keyPress(target, Qt.Key.Key_Right)
    qtbot.wait(400)
    qtbot.keyRelease(target, Qt.Key.Key_Right)
    assert window.session.rod.state().hub_angle > angle0 + 0.2
    # the inputs went into the session's input log with step indices
    actions = [e.action for e in window.session.inputs]
    assert actions.count("advance") >= 2 and actions.count("rotate") >= 2
    assert "depth" in window.hud.text()


def test_finish_shows_the_debrief_and_records(qtbot, window):
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_Up)
    qtbot.wait(300)
    qtbot.keyRelease(window.plotter.interactor, Qt.Key.Key_Up)
    with qtbot.waitSignal(window.attempt_finished, timeout=5000):
        qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_Return)
    assert window.last_result is not None
    assert "score" in window.debrief_title.text().lower()
    assert window.debrief.rowCount() == len(window.last_result.metrics) > 0
    qtbot.waitUntil(lambda: window.last_attempt_id is not None, timeout=15000)  # stored by the records thread
    (row,) = window.records.list_attempts("T-GUI")
    assert row.id == window.last_attempt_id and row.status == "completed"
    assert "recorded" in window.records_status.text()
    window.finish_attempt()  # Return again: the debrief again, but the attempt is not stored twice
    assert wait_for_records_jobs()
    assert len(window.records.list_attempts("T-GUI")) == 1


def test_view_is_not_blank(qtbot, window):
    import numpy as np

    window.plotter.redraw()
    image = np.asarray(window.plotter.screenshot(return_img=True))
    assert image.std() > 5, "the 3D view rendered a flat image"


def test_fluoroscopy_pedal_contrast_and_carm(qtbot, window):
    import numpy as np

    qtbot.waitUntil(lambda: window.fluoro is not None, timeout=30000)
    first = window.fluoro_view.frame
    assert first is not None and first.std() > 5, "fluoroscopy image is blank"
    target = window.plotter.interactor
    qtbot.keyPress(target, Qt.Key.Key_E)  # LAO 5 degrees
    assert window.session.imaging.lao > 0.08
    qtbot.keyPress(target, Qt.Key.Key_Space)
    qtbot.keyPress(target, Qt.Key.Key_C)  # contrast
    qtbot.wait(600)
    qtbot.keyRelease(target, Qt.Key.Key_Space)
    imaging = window.session.imaging
    assert imaging.fluoro_time > 0.2
    assert imaging.contrast_ml > 0
    assert not np.array_equal(window.fluoro_view.frame, first)
    actions = {e.action for e in window.session.inputs}
    assert {"pedal", "inject", "carm_lao"} <= actions
    assert "fluoro" in window.hud.text()


def test_v_hides_and_shows_the_3d_view(qtbot, window):
    visible = window.plotter.interactor.isVisible()
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_V)
    assert window.plotter.interactor.isVisible() != visible


def test_import_wizard_opens_from_the_menu(qtbot, window):
    wizard = window.open_import_wizard()
    qtbot.addWidget(wizard)
    assert wizard.isVisible()
    wizard.close()


def test_records_window_opens_from_the_menu(qtbot, window):
    records_window = window.open_records()
    qtbot.addWidget(records_window)
    assert records_window.isVisible()
    records_window.close()


def test_switch_scenario_and_replay_beside_the_expert(qtbot, window):
    from surgsim.paths import SCENARIOS_DIR

    assert window.load_scenario_file(SCENARIOS_DIR / "catheter-lsa-basic.yaml")
    assert window.session.scenario.id == "catheter-lsa-basic"
    assert "subclavian" in window.windowTitle().lower()
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_Up)
    qtbot.wait(300)
    qtbot.keyRelease(window.plotter.interactor, Qt.Key.Key_Up)
    window.finish_attempt()
    assert window.debrief_dock.isVisible()
    replay = window.open_replay()
    qtbot.addWidget(replay)
    assert replay.isVisible()
    replay.close()
    picker = window.open_scenario_picker()
    qtbot.addWidget(picker)
    editor = window.open_scenario_editor()
    qtbot.addWidget(editor)
    picker.close()
    editor.close()


def test_attempt_is_saved_on_the_records_thread(qtbot, window, monkeypatch):
    _advance_a_little(qtbot, window)
    window.recorder.poll()
    path = window.recorder.journal_path
    assert path is not None and path.is_file()
    seen = {}
    add_attempt = window.records.add_attempt

    def spy(*args, **kwargs):
        seen["thread"] = threading.current_thread()
        return add_attempt(*args, **kwargs)

    monkeypatch.setattr(window.records, "add_attempt", spy)
    window.finish_attempt()
    assert window.debrief_dock.isVisible()  # the debrief does not wait for the database
    qtbot.waitUntil(lambda: window.last_attempt_id is not None, timeout=15000)
    assert seen["thread"] is not threading.main_thread()
    stored = window.records.get_attempt(window.last_attempt_id)
    assert stored.log.inputs == window.session.inputs and not path.exists()


def test_unreachable_database_message_and_recovery(qtbot, window, monkeypatch, tmp_path):
    _advance_a_little(qtbot, window)

    def down(*args, **kwargs):
        raise RecordsError("cannot write the attempt: connection refused (is the server running?)")

    monkeypatch.setattr(window.records, "add_attempt", down)
    window.finish_attempt()
    qtbot.waitUntil(lambda: "not recorded" in window.records_status.text(), timeout=15000)
    message = window.records_status.text()
    assert UNREACHABLE in message and "kept on this station" in message
    (journal,) = window.records.journal_dir.glob("*.journal")
    header, inputs, _, end = read_journal(journal)
    assert end is not None and inputs == window.session.inputs
    monkeypatch.undo()
    again = Records(f"sqlite:///{tmp_path / 'gui.db'}", journal_dir=tmp_path / "journal")
    try:
        assert again.get_attempt(header["attempt_id"]).status == "completed"
    finally:
        again.close()


def test_app_closes_the_database_only_once_the_records_thread_is_idle(qtbot):
    from PySide6.QtWidgets import QLabel

    from surgsim.gui.app import _close_records
    from surgsim.gui.records_worker import RecordsJobs

    owner = QLabel()
    qtbot.addWidget(owner)
    order = []

    class FakeRecords:
        def close(self):
            order.append("close")

    def save():
        time.sleep(0.4)
        order.append("saved")
        return "A-1"

    RecordsJobs(owner).run(save, lambda _: order.append("delivered"))
    assert _close_records(FakeRecords()) is True
    assert order == ["saved", "delivered", "close"]


def test_app_leaves_the_database_open_when_a_save_outlasts_the_wait(qtbot, monkeypatch, capsys):
    from PySide6.QtWidgets import QLabel

    from surgsim.gui import app
    from surgsim.gui.records_worker import RecordsJobs

    monkeypatch.setattr(app, "RECORDS_SHUTDOWN_TIMEOUT_S", 0.1)
    owner = QLabel()
    qtbot.addWidget(owner)
    closed = []

    class FakeRecords:
        def close(self):
            closed.append(True)

    RecordsJobs(owner).run(lambda: time.sleep(0.8), lambda _: None)
    assert app._close_records(FakeRecords()) is False
    assert closed == [] and "stays in its journal" in capsys.readouterr().err
    assert wait_for_records_jobs()


@pytest.mark.slow
def test_bench_measures_the_window_in_real_time():
    """``surgsim bench app`` runs the window on the default case: both views draw, the physics keeps time."""
    from surgsim.bench import bench_window

    r = bench_window(2.0)
    assert "window_skipped" not in r, r
    assert r["window_frames_per_s"] > 2.0 and r["window_fluoro_frames_per_s"] > 2.0
    assert 0.8 < r["window_sim_ratio"] < 1.1
    assert r["window_frames_vs_goal"] == pytest.approx(r["window_frames_per_s"] / 30.0)
