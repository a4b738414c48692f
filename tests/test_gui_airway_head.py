"""The intubation window's head position control under Xvfb: the combo box and H swap the anatomy; locked
while the blade is in the mouth."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.gui

if not os.environ.get("DISPLAY"):
    pytest.skip("GUI tests need a display: run them through tools/test (Xvfb)", allow_module_level=True)

from PySide6.QtCore import Qt  # noqa: E402

from surgsim.gui.airway_window import IntubationWindow, head_choices  # noqa: E402
from surgsim.session.intubation import HEAD_EXTENSION  # noqa: E402


@pytest.fixture(scope="module")
def scenario(airway_scenario):
    return airway_scenario


@pytest.fixture
def window(qtbot, scenario):
    win = IntubationWindow(scenario, trainee_id="T-HEAD", records=None)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def _tissue(window) -> dict:
    return {kind: p.actors[f"{kind}-tissue"].mapper.GetInput()
            for kind, p in (("laryngoscope", window.plotter), ("external", window.external))}


def _kinds(window) -> list[str]:
    return [e.kind for e in window.session.events]


def test_head_choices_follow_the_neck():
    from types import SimpleNamespace

    def fake(limit, current):
        return SimpleNamespace(head_extension=current, head_target=lambda e: round(min(e, limit), 9))

    assert [v for _, v in head_choices(fake(0.6, 0.3))] == [0.0, 0.3, 0.6]
    limited = head_choices(fake(0.15, 0.15))  # the difficult airway: sniffing and full extension coincide
    assert [v for _, v in limited] == [0.0, 0.15] and "neck limit" in limited[1][0]
    assert [v for _, v in head_choices(fake(0.6, 0.2))] == [0.0, 0.2, 0.3, 0.6]  # a scenario's own start


def test_the_combo_box_and_h_reposition_the_head_and_swap_the_anatomy(qtbot, window):
    combo = window.head_combo
    assert combo.isEnabled() and combo.currentText().startswith("sniffing")
    assert [combo.itemData(i) for i in range(combo.count())] == [0.0, HEAD_EXTENSION, 0.6]
    before = _tissue(window)
    cam0 = np.array(window.plotter.camera.position)
    into0 = window.controls.frame[0]
    combo.setCurrentIndex(0)
    combo.activated.emit(0)  # the trainee picks "neutral"
    s = window.session
    assert s.head_extension == 0.0 and "head_repositioned" in _kinds(window)
    after = _tissue(window)
    for kind in before:  # the views draw the new head's meshes
        assert after[kind] is not before[kind], kind
        assert not np.allclose(after[kind].bounds, before[kind].bounds, atol=1e-3), kind
    assert np.linalg.norm(np.array(window.plotter.camera.position) - cam0) > 1e-3  # the eye follows the mouth
    assert not np.allclose(window.controls.frame[0], into0)  # so does the keys' frame
    assert "head         0 deg" in window.hud.text()
    assert len(window.head_change_times) == 1 and window.head_change_times[0] > 0
    assert np.asarray(window.plotter.screenshot(return_img=True)).std() > 10
    # H: the next position
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_H)
    assert s.head_extension == HEAD_EXTENSION and combo.currentText().startswith("sniffing")
    assert [e.value for e in s.inputs if e.action == "head_extension"] == [0.0, HEAD_EXTENSION]
    # the session keeps running in the new anatomy
    t0 = s.time
    qtbot.waitUntil(lambda: s.time > t0 + 0.1, timeout=15000)


def test_the_head_is_locked_while_the_blade_is_in_the_mouth(qtbot, window):
    s = window.session
    combo = window.head_combo
    s.apply("blade_vy", 0.02)
    s.apply("blade_vz", -0.03)
    window.advance(1.2)
    assert s.instruments_in_mouth() == ["blade"]
    assert not combo.isEnabled() and "blade" in window.head_note.text()
    before = _tissue(window)
    qtbot.keyPress(window.plotter.interactor, Qt.Key.Key_H)
    assert s.head_extension == HEAD_EXTENSION
    assert "head_move_refused" in _kinds(window) and "head_repositioned" not in _kinds(window)
    assert "cannot be moved" in window.statusBar().currentMessage()
    assert _tissue(window) == before and combo.currentText().startswith("sniffing")
    # the blade out of the mouth: the control is free again
    s.apply("blade_vy", -0.03)
    s.apply("blade_vz", 0.045)
    window.advance(1.2)
    assert s.instruments_in_mouth() == []
    assert combo.isEnabled() and window.head_note.text() == ""
    # finished: locked for good
    window.finish_attempt()
    window._update_hud()
    assert not combo.isEnabled()
