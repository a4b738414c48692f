"""A whole headless session on the default case: play, score, record, replay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surgsim.cli import main
from surgsim.paths import SCENARIOS_DIR
from surgsim.records.db import Records
from surgsim.session.inputs import load_inputs
from surgsim.session.session import Session, play, replay

EXPERT_LOG = SCENARIOS_DIR / "inputs" / "catheter-lcca-basic.expert.yaml"
NOVICE_LOG = SCENARIOS_DIR / "inputs" / "catheter-lcca-basic.novice.yaml"


@pytest.fixture(scope="module")
def expert_session(default_scenario, default_case):
    return play(Session(default_scenario, default_case), load_inputs(EXPERT_LOG))


def test_expert_log_reaches_the_left_common_carotid(expert_session):
    kinds = [e.kind for e in expert_session.events]
    assert "target_reached" in kinds, kinds
    result = expert_session.score()
    assert result.passed, result.summary
    log = expert_session.log()
    # the tip really is in the left common carotid, near the target point
    target = expert_session.targets[0]
    tip = log.samples["tip"][-1]
    assert np.linalg.norm(tip - target.point) < 2 * target.tolerance


def test_device_stays_in_the_lumen(expert_session, default_case):
    state = expert_session.rod.state()
    inside = state.positions[state.inside]
    phi = default_case.distance.sample(inside)
    assert phi.max() < 1.0e-3, f"a node is {phi.max() * 1e3:.2f} mm outside the lumen"


def test_novice_log_scores_lower(default_scenario, default_case, expert_session):
    novice = play(Session(default_scenario, default_case), load_inputs(NOVICE_LOG))
    assert novice.score().total < expert_session.score().total


def test_replay_reproduces_log_and_score(default_scenario, default_case, expert_session):
    log = expert_session.log()
    again = replay(default_scenario, default_case, log)
    assert again.log().hash() == log.hash()
    assert again.score().to_dict() == expert_session.score().to_dict()


def test_cli_run_records_identical_scores(tmp_path, capsys, default_case):
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    args = ["run", "catheter-lcca-basic", "--inputs", str(EXPERT_LOG), "--trainee", "T-0001",
            "--db", db, "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["total"] == second["total"]
    assert first["log_hash"] == second["log_hash"]
    assert first["attempt_id"] != second["attempt_id"]
    records = Records(db)
    try:
        attempts = records.list_attempts("T-0001")
    finally:
        records.close()
    assert len(attempts) == 2
    assert main(["replay", first["attempt_id"], "--db", db]) == 0
    assert "identical" in capsys.readouterr().out
    bundle = tmp_path / "attempt.json"
    assert main(["records", "export", "--format", "json", "--attempt", first["attempt_id"],
                 "--db", db, "-o", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["replay", str(bundle)]) == 0
    assert "identical" in capsys.readouterr().out


def test_imaging_inputs_are_logged_scored_and_replayed(default_scenario, default_case):
    from surgsim.scoring.log import InputEvent

    inputs = [
        InputEvent(0, "advance", 0.05),
        InputEvent(1000, "pedal", 1.0),
        InputEvent(1500, "carm_lao", 0.5),
        InputEvent(2000, "inject", 6.0),
        InputEvent(3500, "pedal", 0.0),
        InputEvent(4000, "finish"),
    ]
    session = play(Session(default_scenario, default_case), inputs)
    result = session.score()
    log = session.log()
    from surgsim.scoring.metrics import compute_metrics

    m = compute_metrics(log, names=["fluoroscopy_time_s", "contrast_ml"])
    assert m["fluoroscopy_time_s"] == pytest.approx(2.5, abs=0.011)
    assert m["contrast_ml"] == pytest.approx(6.0)
    assert session.imaging.lao == pytest.approx(0.5)
    assert {"injection", "fluoro_on", "fluoro_off"} <= {e.kind for e in log.events}
    again = replay(default_scenario, default_case, log)
    assert again.log().hash() == log.hash()
    assert again.score().to_dict() == result.to_dict()


def test_chunking_does_not_change_the_result(default_scenario, default_case):
    """The GUI steps by wall time in odd chunks; the log must equal the replay's."""
    a = Session(default_scenario, default_case)
    a.apply("advance", 0.05)
    a.apply("pedal", 1.0)
    for n in (33, 17, 1, 250, 7, 692):
        a.step(n)
    a.apply("finish")
    b = replay(default_scenario, default_case, a.log())
    assert b.log().hash() == a.log().hash()


def test_coaxial_wire_and_catheter_session(default_scenario, default_case):
    """Two instruments (catheter + guidewire): the hand moves between them, replay is exact."""
    from surgsim.scenarios.model import Instrument
    from surgsim.scoring.log import InputEvent

    scenario = default_scenario.model_copy(update={"instruments": [
        Instrument(id="catheter", device="angled_5fr"), Instrument(id="wire", device="guidewire_035")]})
    inputs = [
        InputEvent(0, "select_device", 1.0),  # wire leads
        InputEvent(0, "advance", 0.05),
        InputEvent(2000, "select_device", 0.0),  # catheter follows over it
        InputEvent(2000, "advance", 0.05),
        InputEvent(3500, "finish"),
    ]
    session = play(Session(scenario, default_case), inputs)
    drive = session.rod
    state = drive.solver.state()
    assert drive.selected == "catheter"
    assert state.wire.depth == pytest.approx(0.04 + 0.1, abs=0.01)  # 2 s at 5 cm/s
    assert state.catheter.depth == pytest.approx(0.02 + 0.075, abs=0.01)  # 1.5 s
    assert state.wire.depth > state.catheter.depth  # the wire still leads
    inside = state.positions[state.inside]
    assert default_case.distance.sample(inside).max() < 1e-3
    again = replay(scenario, default_case, session.log())
    assert again.log().hash() == session.log().hash()
