"""Intubation session: detection geometry, the Session-like interface, physiology and replay."""

from __future__ import annotations

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


def test_latest_is_the_last_recorded_sample_without_copying_the_log():
    s = IntubationSession(_scenario())
    s.apply("blade_vz", -0.03)
    s.step(40)  # 20 records, POGO cast every 10 steps
    log = s.log()
    for k in ("pogo", "cormack_lehane", "spo2", "tube_location", "t"):
        assert s.latest(k) == log.samples[k][-1]
    tip = s.latest("blade_tip")
    assert np.array_equal(tip, log.samples["blade_tip"][-1])
    tip[:] = 0.0  # a copy: the session's record is untouched
    assert not np.array_equal(s.latest("blade_tip"), tip)
    with pytest.raises(KeyError, match="pogo"):
        s.latest("pogoo")
    s.world.close()


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


@pytest.mark.slow
def test_scripted_expert_intubation_places_the_tube_in_the_trachea(expert_run):
    sc, s = expert_run
    log = s.log()
    kinds = [e.kind for e in log.events]
    confirmed = [e for e in log.events if e.kind == "intubation_confirmed"]
    assert len(confirmed) == 1 and confirmed[0].data["location"] == "trachea"
    assert confirmed[0].data["attempt"] == 1 and kinds.count("attempt_started") == 1
    assert 0.21 <= confirmed[0].data["depth_m"] <= 0.23
    assert "tube_in_oesophagus" not in kinds and "oesophageal_intubation" not in kinds
    sm = log.samples
    assert LOCATIONS[sm["tube_location"][-1]] == "trachea" and sm["cuff_below_cords"][-1] == 1
    assert 0.21 <= sm["tube_depth"][-1] <= 0.23
    assert 0.03 < sm["tip_to_carina"][-1] < 0.07  # mid-trachea: 5 +/- 2 cm above the carina
    # a lift along the handle: realistic hand force, no force on the teeth, a good view
    assert 10.0 < sm["blade_hand_force"].max() < 50.0
    assert sm["incisor_force"].max() < 20.0
    assert sm["pogo"].max() > 0.6 and sm["cormack_lehane"].min() <= 2
    # ventilated through the tube: SaO2 stops falling
    assert sm["ventilated"][-1] == 1 and sm["sao2"][-1] >= sm["sao2"][np.argmax(sm["ventilated"])]
    result = s.score()
    assert result.passed and not result.critical_errors


@pytest.mark.slow
def test_scripted_oesophageal_intubation_is_detected_and_fails(oesophageal_run):
    sc, s = oesophageal_run
    log = s.log()
    kinds = [e.kind for e in log.events]
    assert "tube_in_oesophagus" in kinds and "oesophageal_ventilation" in kinds
    assert "intubation_confirmed" not in kinds
    sm = log.samples
    # apnoea throughout: never ventilated, the arterial saturation only falls
    assert sm["ventilated"].max() == 0
    assert np.all(np.diff(sm["sao2"]) <= 1e-12) and sm["sao2"][-1] < sm["sao2"][0]
    assert sm["spo2"][-1] < sm["spo2"][0]
    result = s.score()
    assert not result.passed and "oesophageal_intubation" in result.critical_errors


@pytest.mark.slow
def test_replaying_the_expert_log_gives_the_same_hash(expert_run):
    sc, s = expert_run
    log = s.log()
    assert replay(sc, log).log().hash() == log.hash()


# ---------------------------------------------------------------------- order independence
def _expert_prefix(seconds: float) -> list[InputEvent]:
    """The recorded expert log's first ``seconds`` (blade in, lift, tube at the mouth), then finish."""
    stop = int(round(seconds / DT))
    ev = [e for e in load_inputs(_INPUTS / "airway-adult-normal.expert.yaml") if e.step < stop]
    return ev + [InputEvent(stop, "finish", 0.0)]


def _pollute_bullet_globals() -> None:
    """What another pybullet user in the process may do (the physics benchmark): change Bullet's
    process-wide contact breaking threshold."""
    import pybullet as p

    cid = p.connect(p.DIRECT)
    p.setPhysicsEngineParameter(contactBreakingThreshold=1e-3, physicsClientId=cid)
    p.disconnect(cid)


def test_a_session_does_not_depend_on_what_ran_before_it():
    """A, B, A in one process (with another pybullet client changing Bullet's globals between
    them) give identical logs: a session is a function of (scenario, variant, seed, inputs)."""
    from surgsim.scenarios.load import load_scenario

    sc = load_scenario(_ADULT)
    a_inputs = _expert_prefix(4.0)
    b_inputs = [InputEvent(0, "blade_vy", 0.03), InputEvent(0, "blade_wx", -0.4),
                InputEvent(400, "tube_vz", -0.02), InputEvent(800, "finish", 0.0)]
    first = play(IntubationSession(sc), a_inputs).log()
    assert first.samples["blade_hand_force"].max() > 5.0  # the blade was in contact
    _pollute_bullet_globals()
    other = play(IntubationSession(sc), b_inputs).log()
    _pollute_bullet_globals()
    again = play(IntubationSession(sc), a_inputs).log()
    assert other.hash() != first.hash()
    assert again.hash() == first.hash()


@pytest.mark.slow
def test_recorded_placements_in_any_order_give_the_same_logs(expert_run):
    """Expert, oesophageal, expert in one process: the expert log is the same both times."""
    sc, s = expert_run
    expert_hash = s.log().hash()
    _pollute_bullet_globals()
    _, oes = _run_recorded("oesophageal")
    _, again = _run_recorded("expert")
    assert again.log().hash() == expert_hash and oes.log().hash() != expert_hash


# ---------------------------------------------------------------------- glottic view (POGO)
def _blade_only(variant: str, kind: str, until_s: float, hold_s: float = 1.0) -> IntubationSession:
    """Play the blade inputs of a scripted attempt up to ``until_s``, then hold the blade still."""
    stop = int(round(until_s / DT))
    ev = [e for e in scripted_attempt(variant, kind) if e.step < stop and e.action.startswith("blade")]
    ev += [InputEvent(stop, f"blade_{a}", 0.0) for a in ("vx", "vy", "vz", "wx", "wy", "wz")]
    ev.append(InputEvent(stop + int(round(hold_s / DT)), "finish", 0.0))
    return play(IntubationSession(_scenario(case={"phantom": f"airway-{variant}"})), ev)


def test_cormack_lehane_grade_follows_pogo():
    from surgsim.session.intubation import cormack_lehane

    assert cormack_lehane(1.0, True) == 1 and cormack_lehane(0.5, True) == 2
    assert cormack_lehane(0.0, True) == 3 and cormack_lehane(0.0, False) == 4


def test_glottis_samples_fill_the_opening(geo):
    pts = geo.glottis_samples()
    assert len(pts) > 30
    assert np.abs((pts - geo.glottis) @ geo.glottis_normal).max() < 1e-9
    assert np.linalg.norm(pts - geo.glottis, axis=1).max() < 0.012


@pytest.fixture(scope="module")
def lifted_view():
    """Adult, head extended, blade in the vallecula and lifted along the handle (the expert's view)."""
    return _blade_only("adult", "laryngoscopy", 4.5).log()


def test_pogo_is_high_with_the_blade_lifting_and_the_head_extended(lifted_view):
    from surgsim.scoring.metrics import compute_metrics

    m = compute_metrics(lifted_view, names=["best_pogo", "cormack_lehane_grade"])
    assert m["best_pogo"] > 0.6 and m["cormack_lehane_grade"] <= 2
    assert lifted_view.samples["pogo"][0] == 0.0  # before the blade: the tongue hides the glottis


def test_pogo_is_low_without_a_lift_and_in_the_difficult_airway(lifted_view):
    from surgsim.scoring.metrics import compute_metrics

    names = ["best_pogo", "cormack_lehane_grade"]
    no_lift = compute_metrics(_blade_only("adult", "laryngoscopy", 3.0).log(), names=names)
    assert no_lift["best_pogo"] < 0.1 and no_lift["cormack_lehane_grade"] >= 3
    difficult = compute_metrics(_blade_only("difficult", "laryngoscopy", 4.5).log(), names=names)
    assert difficult["best_pogo"] < 0.75 * compute_metrics(lifted_view, names=names)["best_pogo"]


def test_a_video_blade_sees_from_its_camera():
    sc = _scenario(instruments=[{"id": "blade", "device": "video_mac_3"}, {"id": "tube", "device": "ett_7_5"}])
    s = IntubationSession(sc)
    pos, rot = s.world.pose(s.world.blade)
    cam, _ = s.blade_spec.camera()
    assert np.allclose(s.view_origin(), pos + rot @ cam)
    assert not np.allclose(s.view_origin(), s.geometry.operator_eye())
