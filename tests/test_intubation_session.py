"""Intubation session: detection geometry, the Session-like interface, physiology and replay."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim.cases.airway_phantom import design
from surgsim.scenarios.model import Scenario
from surgsim.scoring.log import InputEvent
from surgsim.session.intubation import (
    DT,
    AirwayGeometry,
    IntubationSession,
    parse_inputs,
    replay,
    variant_of,
)
from surgsim.session.session import play


def _scenario(**kw) -> Scenario:
    d = {"id": "airway-test", "title": "t", "version": "1.0", "procedure": "intubation",
         "case": {"phantom": "airway-adult"}, "patient": {"physiology": "adult"},
         "instruments": [{"id": "blade", "device": "macintosh_3"}, {"id": "tube", "device": "ett_7_5"}],
         "time_limit_s": 60, "rubric": {"metrics": [{"metric": "time_s", "pass": 60, "excellent": 30}]}}
    d.update(kw)
    return Scenario.model_validate(d)


@pytest.fixture(scope="module")
def geo():
    return AirwayGeometry(design("adult", 0.3))


def test_tip_locations_from_the_truth(geo):
    t = geo.truth
    n = geo.glottis_normal
    assert geo.locate(geo.glottis + 0.05 * n) == "trachea"
    assert geo.locate(geo.glottis - 0.01 * n) == "pharynx"
    assert geo.locate(t.centerlines["oesophagus"][40]) == "oesophagus"
    assert geo.locate(t.centerlines["right_main_bronchus"][-5]) == "right_main_bronchus"
    assert geo.locate(t.centerlines["left_main_bronchus"][-5]) == "left_main_bronchus"
    assert geo.locate(geo.mouth - 0.02 * geo.into_mouth) == "outside"
    assert geo.tip_to_carina(geo.carina - 0.05 * geo.trachea_axis) == pytest.approx(0.05)


def test_depth_at_the_incisors_of_a_straight_tube(geo):
    marks = np.linspace(0.0, 0.3, 61)
    tip = geo.mouth + 0.08 * geo.into_mouth
    line = tip - marks[:, None] * geo.into_mouth
    assert geo.depth_at_incisors(line, marks) == pytest.approx(0.08, abs=1e-9)
    assert geo.depth_at_incisors(line - 0.1 * geo.into_mouth, marks) == 0.0


def test_incisor_force_splits_into_axial_and_levering(geo):
    a = geo.tooth_axis
    perp = np.cross(a, [1.0, 0, 0])
    axial, lever = geo.incisor_components(30.0 * a + 4.0 * perp / np.linalg.norm(perp))
    assert axial == pytest.approx(30.0) and lever == pytest.approx(4.0)


def test_case_is_chosen_from_the_phantom_name():
    assert variant_of(_scenario()) == "adult"
    assert variant_of(_scenario(case={"phantom": "airway-obese"})) == "obese"
    with pytest.raises(Exception, match="airway phantom"):
        variant_of(_scenario(case={"phantom": "default"}))


def test_input_log_parsing_checks_actions_and_dt():
    ev = parse_inputs({"dt": DT, "inputs": [{"t": 0.4, "action": "blade_vy", "value": 0.01},
                                            {"step": 3, "action": "ventilate", "value": 1}]})
    assert [(e.step, e.action) for e in ev] == [(3, "ventilate"), (100, "blade_vy")]
    with pytest.raises(Exception, match="dt"):
        parse_inputs({"dt": 0.001, "inputs": []})
    with pytest.raises(Exception, match="action"):
        parse_inputs({"inputs": [{"t": 0, "action": "advance"}]})


def test_blade_entry_counts_an_attempt_and_replay_is_identical():
    sc = _scenario()
    inputs = [InputEvent(0, "blade_vy", 0.02), InputEvent(0, "blade_vz", -0.03),
              InputEvent(300, "blade_vy", -0.03), InputEvent(300, "blade_vz", 0.045),
              InputEvent(600, "finish", 0.0)]
    s = play(IntubationSession(sc), inputs)
    log = s.log()
    kinds = [e.kind for e in log.events]
    assert kinds.count("attempt_started") == 1 and "attempt_ended" in kinds
    assert log.samples["blade_past_incisors"].max() == 1
    n = len(log.samples["t"])
    assert all(len(v) == n for v in log.samples.values())
    # apnoea: SaO2 never rises and the displayed SpO2 lags it
    sao2 = log.samples["sao2"]
    assert np.all(np.diff(sao2) <= 1e-12)
    assert replay(sc, log).log().hash() == log.hash()
