"""Intubation session: detection geometry, the Session-like interface, physiology and replay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from surgsim.cases.airway_phantom import design
from surgsim.scenarios.model import Scenario
from surgsim.scoring.log import InputEvent
from surgsim.session.intubation import (
    DT,
    LOCATIONS,
    AirwayGeometry,
    IntubationSession,
    load_inputs,
    parse_inputs,
    replay,
    scripted_attempt,
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


# ---------------------------------------------------------------------- scripted placements (recorded logs)
_ROOT = Path(__file__).resolve().parents[1]
_ADULT = _ROOT / "scenarios" / "airway-adult-normal.yaml"
_INPUTS = _ROOT / "scenarios" / "inputs"


def _run_recorded(kind: str):
    from surgsim.scenarios.load import load_scenario

    sc = load_scenario(_ADULT)
    inputs = load_inputs(_INPUTS / f"airway-adult-normal.{kind}.yaml")
    # hands only: held velocities and the cuff / bag switches, never a pose
    assert {e.action for e in inputs} <= {*(f"{d}_{a}" for d in ("blade", "tube")
                                           for a in ("vx", "vy", "vz", "wx", "wy", "wz")),
                                          "cuff", "ventilate", "finish"}
    return sc, play(IntubationSession(sc), inputs)


@pytest.fixture(scope="module")
def expert_run():
    return _run_recorded("expert")


@pytest.fixture(scope="module")
def oesophageal_run():
    return _run_recorded("oesophageal")


@pytest.mark.slow
def test_recorded_expert_log_is_the_scripted_attempt():
    recorded = load_inputs(_INPUTS / "airway-adult-normal.expert.yaml")
    scripted = sorted(scripted_attempt("adult", "expert"), key=lambda e: e.step)
    assert [(e.step, e.action, e.value) for e in recorded] == [(e.step, e.action, e.value) for e in scripted]


def _isolated(name: str) -> bool:
    """Run test ``name`` of this file in a fresh interpreter (returns True in the parent).

    The scripted placements pass alone but failed once after the whole suite in one
    process: some process-wide state (suspect: VTK's SMP backend chosen by whichever
    module imported VTK first, which changes the airway wall mesh) is not yet pinned
    down. Until it is, these two run isolated so the suite stays meaningful.
    """
    if os.environ.get("SURGSIM_ISOLATED_TEST") == name:
        return False
    env = dict(os.environ, SURGSIM_ISOLATED_TEST=name)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{__file__}::{name}"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return True


@pytest.mark.slow
def test_scripted_expert_intubation_places_the_tube_in_the_trachea(request):
    if _isolated("test_scripted_expert_intubation_places_the_tube_in_the_trachea"):
        return
    sc, s = request.getfixturevalue("expert_run")
    log = s.log()
    kinds = [e.kind for e in log.events]
    confirmed = [e for e in log.events if e.kind == "intubation_confirmed"]
    assert len(confirmed) == 1 and confirmed[0].data["location"] == "trachea"
    assert confirmed[0].data["attempt"] == 1 and kinds.count("attempt_started") == 1
    assert 0.21 <= confirmed[0].data["depth_m"] <= 0.23
    assert "tube_in_oesophagus" not in kinds and "oesophageal_intubation" not in kinds
    sm = log.samples
    assert LOCATIONS[sm["tube_location"][-1]] == "trachea" and sm["cuff_below_cords"][-1] == 1
    assert 0.0 < sm["tip_to_carina"][-1] < 0.07
    # ventilated through the tube: SaO2 stops falling
    assert sm["ventilated"][-1] == 1 and sm["sao2"][-1] >= sm["sao2"][np.argmax(sm["ventilated"])]
    result = s.score()
    assert result.passed and not result.critical_errors


@pytest.mark.slow
def test_scripted_oesophageal_intubation_is_detected_and_fails(request):
    if _isolated("test_scripted_oesophageal_intubation_is_detected_and_fails"):
        return
    sc, s = request.getfixturevalue("oesophageal_run")
    log = s.log()
    kinds = [e.kind for e in log.events]
    assert "tube_in_oesophagus" in kinds and "oesophageal_ventilation" in kinds
    assert "intubation_confirmed" not in kinds
    sm = log.samples
    # apnoea throughout: never ventilated, the arterial saturation only falls
    assert sm["ventilated"].max() == 0
    assert np.all(np.diff(sm["sao2"]) <= 1e-12) and sm["sao2"][-1] < sm["sao2"][0]
    result = s.score()
    assert not result.passed and "oesophageal_intubation" in result.critical_errors


@pytest.mark.slow
def test_replaying_the_expert_log_gives_the_same_hash(expert_run):
    sc, s = expert_run
    log = s.log()
    assert replay(sc, log).log().hash() == log.hash()
