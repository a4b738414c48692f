"""Scenario picker, debrief, scenario editor and replay window under Xvfb (pytest-qt)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

if not os.environ.get("DISPLAY"):
    pytest.skip("GUI tests need a display: run them through tools/test or xvfb-run -a",
                allow_module_level=True)

from surgsim.errors import ReplayMismatchError  # noqa: E402
from surgsim.gui.debrief import COLUMNS, DebriefPanel, tip_speed  # noqa: E402
from surgsim.gui.replay_view import ReplayWindow  # noqa: E402
from surgsim.gui.scenario_editor import ScenarioEditor  # noqa: E402
from surgsim.gui.scenario_picker import ScenarioPicker  # noqa: E402
from surgsim.paths import SCENARIOS_DIR  # noqa: E402
from surgsim.render.replay import GHOST_COLOR, TRAINEE_COLOR, ReplayTrack  # noqa: E402
from surgsim.scenarios.load import SCHEMA_PATH, load_scenario  # noqa: E402
from surgsim.scoring.log import InputEvent  # noqa: E402
from surgsim.scoring.rubric import score  # noqa: E402
from surgsim.session.inputs import load_inputs  # noqa: E402
from surgsim.session.session import Session, play  # noqa: E402

LCCA = SCENARIOS_DIR / "catheter-lcca-basic.yaml"
EXPERT = SCENARIOS_DIR / "inputs" / "catheter-lcca-basic.expert.yaml"


@pytest.fixture(scope="module")
def expert(default_scenario, default_case):
    """The scripted expert attempt at catheter-lcca-basic, played headless (~2.5 s)."""
    return play(Session(default_scenario, default_case), load_inputs(EXPERT))


@pytest.fixture(scope="module")
def short_attempt(default_scenario, default_case):
    """A 3-second straight push (a different attempt to replay against the expert ghost)."""
    inputs = [InputEvent(0, "advance", 0.05), InputEvent(3000, "finish")]
    return play(Session(default_scenario, default_case), inputs)


# ------------------------------------------------------------------ picker


def test_picker_lists_bundled_scenarios_and_emits_a_path(qtbot):
    picker = ScenarioPicker()
    qtbot.addWidget(picker)
    bundled = sorted(SCENARIOS_DIR.glob("*.yaml"))
    assert len(bundled) >= 3
    assert sorted(e.path for e in picker.entries) == bundled
    assert picker.list.count() == len(bundled)
    lcca = load_scenario(LCCA)
    assert picker.select(LCCA)
    html = picker.details.toPlainText()
    assert lcca.title in html and "endovascular" in html.lower()
    for objective in lcca.learning_objectives:
        assert objective in html
    assert picker.open_button.isEnabled()
    with qtbot.waitSignal(picker.chosen, timeout=2000) as blocker:
        picker.open_button.click()
    assert Path(blocker.args[0]) == LCCA


def test_picker_greys_invalid_files_with_their_problems(qtbot, tmp_path):
    shutil.copy(LCCA, tmp_path / "good.yaml")
    bad = LCCA.read_text(encoding="utf-8").replace("time_limit_s: 600", "time_limit_s: -5")
    bad = bad.replace("\ntitle:", "\ntitel:")
    (tmp_path / "bad.yaml").write_text(bad, encoding="utf-8")
    picker = ScenarioPicker(tmp_path)
    qtbot.addWidget(picker)
    assert [e.path.name for e in picker.entries] == ["good.yaml", "bad.yaml"]
    entry = picker.entries[1]
    assert not entry.valid
    assert any("time_limit_s" in p and "greater than 0" in p for p in entry.problems)
    assert any("did you mean 'title'" in p for p in entry.problems)
    item = picker.list.item(1)
    assert item.foreground().color().red() == item.foreground().color().green()  # grey
    assert "time_limit_s" in item.toolTip()
    picker.list.setCurrentRow(1)
    assert "time_limit_s" in picker.details.toPlainText()
    assert not picker.open_button.isEnabled()
    with qtbot.assertNotEmitted(picker.chosen):
        assert picker.open_current() is None


# ------------------------------------------------------------------ debrief


def test_debrief_shows_metrics_plots_and_force_path(qtbot, expert, default_scenario, default_case):
    log = expert.log()
    result = expert.score()
    panel = DebriefPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_result(result, log, default_scenario, default_case)
    assert panel.title.text() == result.summary
    assert not panel.critical.isVisible()
    table = panel.table
    assert table.rowCount() == len(result.metrics) == len(default_scenario.rubric.metrics)
    col = {name: i for i, name in enumerate(COLUMNS)}
    for row, m in enumerate(result.metrics):
        assert table.item(row, col["metric"]).text() == m.name
        assert f"{m.pass_value:.4g}" in table.item(row, col["pass"]).text()
        assert f"{m.excellent:.4g}" in table.item(row, col["excellent"]).text()
        assert table.item(row, col["sub-score"]).text() == f"{m.sub_score:.0f}"
        assert table.item(row, col["feedback"]).text() == m.feedback.strip()
    # the force and speed plots carry the log's samples; no SpO2 plot without SpO2
    t = log.samples["t"]
    (force_line,) = panel.axes["wall_force"].get_lines()[:1]
    assert np.array_equal(force_line.get_xdata(), t)
    assert np.array_equal(force_line.get_ydata(), log.samples["wall_force"])
    speed = panel.axes["tip_speed"].get_lines()[0].get_ydata()
    assert len(speed) == len(t) and speed.max() > 10.0  # mm/s: the expert advances at 50 mm/s
    assert "spo2" not in panel.axes
    # the path on the anatomy, coloured by wall force
    mesh = panel.path_mesh
    assert mesh.n_points == len(t)
    assert np.allclose(mesh.points, log.samples["tip"])
    assert mesh.point_data["wall_force"].max() == pytest.approx(log.samples["wall_force"].max())
    assert panel.plotter is not None and "path" in panel.plotter.actors


def test_debrief_critical_errors_and_spo2(qtbot, expert, default_scenario):
    log = expert.log()
    spo2 = np.linspace(0.98, 0.86, len(log.samples["t"]))
    log2 = replace(log, samples={**log.samples, "spo2": spo2})
    values = {m.metric: m.pass_ for m in default_scenario.rubric.metrics}
    result = score(values, default_scenario, critical_errors=["perforation"])
    panel = DebriefPanel(show_3d=False)
    qtbot.addWidget(panel)
    panel.show()
    panel.show_result(result, log2, default_scenario)
    assert not result.passed
    assert panel.critical.isVisible() and "perforated" in panel.critical.text()
    y = panel.axes["spo2"].get_lines()[0].get_ydata()
    assert y[0] == pytest.approx(98.0) and y[-1] == pytest.approx(86.0)


def test_tip_speed_of_a_uniform_motion(expert):
    log = expert.log()
    n = 50
    t = np.arange(n) * 0.01
    tip = np.stack([0.02 * t, np.zeros(n), np.zeros(n)], axis=1)
    fake = replace(log, samples={"t": t, "tip": tip})
    assert np.allclose(tip_speed(fake), 0.02)


# ------------------------------------------------------------------ editor


def test_editor_round_trips_a_bundled_scenario_unchanged(qtbot):
    editor = ScenarioEditor(LCCA)
    qtbot.addWidget(editor)
    assert editor.problems == []
    assert editor.save_button.isEnabled()
    original = load_scenario(LCCA)
    from surgsim.scenarios.model import Scenario

    assert Scenario.model_validate(editor.data()).content_hash() == original.content_hash()
    assert editor.field("time_limit_s").suffix().strip() == "s"
    assert editor.field("start.initial_depth_m").suffix().strip() == "m"
    assert editor.field("procedure").currentText() == "endovascular"


def test_editor_live_validation_refuses_invalid_and_saves_valid(qtbot, tmp_path):
    editor = ScenarioEditor(LCCA)
    qtbot.addWidget(editor)
    editor.show()
    spin = editor.field("time_limit_s")
    spin.setValue(-5.0)
    qtbot.waitUntil(lambda: editor.problems != [], timeout=3000)  # live, no explicit validate()
    assert len(editor.problems) == 1
    assert "time_limit_s: Input should be greater than 0" in editor.problems[0]
    assert editor.problem_list.count() == 1
    assert "time_limit_s" in editor.problem_list.item(0).text()
    assert "background" in spin.styleSheet()
    assert not editor.save_button.isEnabled()
    out = tmp_path / "lcca-edited.yaml"
    assert editor.save(out) is False
    assert not out.exists()

    # a problem in a table cell names its key path with the row index
    editor.editor("targets").set_cell(0, "tolerance_m", "-0.001")
    problems = editor.validate()
    assert any("targets[0].tolerance_m" in p for p in problems)
    editor.editor("targets").set_cell(0, "tolerance_m", "0.008")

    spin.setValue(420.0)
    qtbot.waitUntil(lambda: editor.problems == [], timeout=3000)
    assert spin.styleSheet() == ""
    with qtbot.waitSignal(editor.saved, timeout=2000):
        assert editor.save(out) is True
    text = out.read_text(encoding="utf-8")
    header = text.splitlines()[0]
    assert header.startswith("# yaml-language-server: $schema=")
    schema = (out.parent / header.split("$schema=", 1)[1]).resolve()
    assert schema == SCHEMA_PATH.resolve()
    saved = load_scenario(out)
    assert saved.time_limit_s == 420.0
    before = load_scenario(LCCA).model_dump(by_alias=True)
    after = saved.model_dump(by_alias=True)
    assert after.pop("time_limit_s") == 420.0 and before.pop("time_limit_s") == 600.0
    assert after == before


# ------------------------------------------------------------------ replay


def test_replay_scrubber_moves_the_tip_and_draws_the_ghost(
    qtbot, short_attempt, expert, default_scenario, default_case
):
    log, ghost_log = short_attempt.log(), expert.log()
    win = ReplayWindow(default_scenario, default_case, log, ghost_log=ghost_log)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    scene = win.scene
    # the timeline covers the longer attempt (the expert's), one slider step per sample
    assert np.array_equal(win.timeline, ghost_log.samples["t"])
    assert win.slider.maximum() == len(ghost_log.samples["t"]) - 1
    k = int(np.searchsorted(win.timeline, 1.5))
    win.slider.setValue(k)
    t = win.timeline[k]
    assert win.time == pytest.approx(t)
    i = int(np.argmin(np.abs(log.samples["t"] - t)))
    tip_marker = scene.trainee.tip_actor.mapper.dataset
    assert np.allclose(tip_marker.center, log.samples["tip"][i], atol=1e-9)
    assert scene.trainee.path_actor.mapper.dataset.n_points == i + 1
    ghost_marker = scene.ghost.tip_actor.mapper.dataset
    assert np.allclose(ghost_marker.center, ghost_log.samples["tip"][k], atol=1e-9)
    assert scene.ghost.path_actor.mapper.dataset.n_points == k + 1
    assert np.allclose(scene.ghost.path_actor.prop.color.float_rgb, GHOST_COLOR, atol=2 / 255)
    assert np.allclose(scene.trainee.path_actor.prop.color.float_rgb, TRAINEE_COLOR, atol=2 / 255)
    assert not np.allclose(ghost_marker.center, tip_marker.center)
    # past the end of the trainee's attempt its tip stays at its last sample
    win.slider.setValue(win.slider.maximum())
    assert np.allclose(scene.trainee.tip_actor.mapper.dataset.center, log.samples["tip"][-1])
    assert np.allclose(ghost_marker.center, ghost_log.samples["tip"][-1])
    # play advances the time, pause stops it
    win.seek(0.0)
    win.play()
    qtbot.waitUntil(lambda: win.time > 0.1, timeout=3000)
    win.pause()
    stopped = win.time
    qtbot.wait(150)
    assert win.time == stopped
    win.close()


def test_resimulated_track_keeps_the_device_shape(short_attempt, default_scenario, default_case):
    log = short_attempt.log()
    track = ReplayTrack.resimulate(default_scenario, default_case, log)
    assert track.shapes.shape[0] == len(log.samples["t"])
    assert np.array_equal(track.shapes[:, 0], log.samples["tip"])  # node 0 is the tip
    state = track.state_at(1.0)
    assert state.shape is not None and state.t == pytest.approx(1.0)
    tampered = replace(log, samples={**log.samples, "tip": log.samples["tip"] + 1e-3})
    with pytest.raises(ReplayMismatchError, match="did not reproduce"):
        ReplayTrack.resimulate(default_scenario, default_case, tampered)
