"""Construct validity of the airway scenarios: scripted expert logs outscore scripted novice logs.

Plays every shipped airway input log (``scenarios/inputs/airway-*.{expert,novice,oesophageal}*.yaml``,
written by tools/make_airway_logs.py) headless and checks the differences the literature
reports (docs/domain.md section 3): experts intubate faster, on the first attempt, with less
force on the upper incisors; an oesophageal tube is detected and the patient desaturates.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "scenarios" / "inputs"

pytestmark = pytest.mark.slow  # each log is a full physics session (15-60 s of simulated time)


def _logs() -> dict[str, dict[str, list[Path]]]:
    """{scenario id: {kind: [log paths]}} for every airway scenario with shipped logs."""
    out: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(INPUTS.glob("airway-*.yaml")):
        scenario_id, kind = path.name.split(".")[:2]
        kind = kind.rstrip("0123456789")
        out.setdefault(scenario_id, {}).setdefault(kind, []).append(path)
    return out


LOGS = _logs()


@pytest.fixture(scope="module")
def played():
    """{(scenario id, log name): (session log, score result)} of every shipped airway log."""
    from surgsim.scenarios.load import load_scenario
    from surgsim.session.intubation import IntubationSession, load_inputs
    from surgsim.session.session import play

    out = {}
    for scenario_id, kinds in LOGS.items():
        sc = load_scenario(ROOT / "scenarios" / f"{scenario_id}.yaml")
        for paths in kinds.values():
            for path in paths:
                s = play(IntubationSession(sc), load_inputs(path))
                out[(scenario_id, path.name)] = (s.log(), s.score())
    return out


def _metric(log, name: str) -> float:
    from surgsim.scoring.metrics import compute_metrics

    return compute_metrics(log, names=[name])[name]


def test_the_adult_scenario_ships_expert_novice_and_oesophageal_logs():
    kinds = LOGS.get("airway-adult-normal", {})
    assert {"expert", "novice", "oesophageal"} <= set(kinds)


def test_every_bundled_airway_scenario_ships_expert_and_novice_logs():
    scenarios = sorted(p.stem for p in (ROOT / "scenarios").glob("airway-*.yaml"))
    assert "airway-obese-difficult" in scenarios
    for scenario_id in scenarios:
        assert {"expert", "novice"} <= set(LOGS.get(scenario_id, {})), scenario_id


@pytest.mark.parametrize("scenario_id", sorted(LOGS))
def test_every_expert_outscores_every_novice(played, scenario_id):
    kinds = LOGS[scenario_id]
    experts = [played[(scenario_id, p.name)] for p in kinds.get("expert", [])]
    novices = [played[(scenario_id, p.name)] for p in kinds.get("novice", [])]
    assert experts and novices
    for e_log, e in experts:
        assert e.passed and not e.critical_errors
        for n_log, n in novices:
            assert e.total > n.total
            # the literature's direction: faster, fewer attempts, less force on the teeth
            assert _metric(e_log, "time_to_intubation_s") < _metric(n_log, "time_to_intubation_s")
            assert _metric(e_log, "attempts") < _metric(n_log, "attempts")
            assert _metric(e_log, "incisor_peak_force_n") < _metric(n_log, "incisor_peak_force_n")
            assert _metric(n_log, "incisor_peak_force_n") > 25.0  # the novice levers on the teeth
            if scenario_id == "airway-adult-normal":  # Bucx: 36-58 N peak axial, normal airways
                assert _metric(n_log, "incisor_peak_force_n") > 36.0
            assert _metric(e_log, "first_pass_success") == 1.0 and _metric(n_log, "first_pass_success") == 0.0
            # a longer apnoea: the novice's patient desaturates further
            assert _metric(n_log, "spo2_nadir") < _metric(e_log, "spo2_nadir")


@pytest.mark.parametrize("scenario_id", sorted(LOGS))
def test_expert_places_the_tube_in_the_trachea_at_21_to_23_cm(played, scenario_id):
    for path in LOGS[scenario_id].get("expert", []):
        log, _ = played[(scenario_id, path.name)]
        kinds = [e.kind for e in log.events]
        confirmed = [e for e in log.events if e.kind == "intubation_confirmed"]
        assert confirmed and confirmed[0].data["location"] == "trachea"
        assert 0.21 <= confirmed[0].data["depth_m"] <= 0.23
        assert 0.21 <= _metric(log, "tube_depth_m") <= 0.23
        assert "tube_in_oesophagus" not in kinds and "oesophageal_intubation" not in kinds
        assert 0.03 <= _metric(log, "tip_to_carina_m") <= 0.07


@pytest.mark.parametrize("scenario_id", sorted(LOGS))
def test_oesophageal_placement_is_detected_and_the_patient_desaturates(played, scenario_id):
    for path in LOGS[scenario_id].get("oesophageal", []):
        log, result = played[(scenario_id, path.name)]
        kinds = [e.kind for e in log.events]
        assert "tube_in_oesophagus" in kinds and "oesophageal_intubation" in kinds
        assert not result.passed and "oesophageal_intubation" in result.critical_errors
        sm = log.samples
        assert sm["ventilated"].max() == 0  # an oesophageal tube is apnoea
        assert sm["spo2"][-1] < sm["spo2"][0] and sm["sao2"][-1] < sm["sao2"][0]
        assert math.isnan(_metric(log, "time_to_intubation_s"))


def test_novice_recognises_the_oesophageal_tube_before_ventilating(played):
    for path in LOGS["airway-adult-normal"].get("novice", []):
        log, result = played[("airway-adult-normal", path.name)]
        kinds = [e.kind for e in log.events]
        assert "tube_in_oesophagus" in kinds and "oesophageal_intubation" not in kinds
        assert kinds.count("attempt_started") == 2
        assert not result.critical_errors
        assert np.max(log.samples["incisor_lever"]) > 10.0


def test_shipped_logs_are_what_the_tool_writes():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_airway_logs
    finally:
        sys.path.pop(0)
    for scenario_id, kind in make_airway_logs.LOGS:
        path = INPUTS / f"{scenario_id}.{kind}.yaml"
        assert path.read_text(encoding="utf-8") == make_airway_logs.log_text(scenario_id, kind), path
