"""Expert-derived benchmarks: the pure threshold rules and ``surgsim benchmark derive``."""

from __future__ import annotations

import math
import shutil

import pytest
import yaml

from surgsim.errors import ScenarioError
from surgsim.paths import SCENARIOS_DIR
from surgsim.scenarios.model import RubricMetric
from surgsim.scoring.benchmark import (
    DerivedThreshold,
    derive_metric,
    derive_thresholds,
    format_table,
    rewrite_thresholds,
)

# ------------------------------------------------------------------ rules on hand-made numbers


def test_continuous_metric_mean_and_margin():
    d = derive_metric("time_s", [10.0, 12.0, 14.0])
    assert (d.n, d.mean, d.sd) == (3, 12.0, 2.0)
    assert d.excellent == 12.0
    assert d.pass_value == 18.0  # 12 + max(2 sd = 4, 50 % of 12 = 6, 1 s floor)
    assert d.rule == "mean+margin"
    wide = derive_metric("time_s", [10.0, 30.0])  # spread wins over the margin
    assert wide.pass_value == pytest.approx(round(20.0 + 2 * math.sqrt(200.0), 1), abs=0.05)
    tighter = derive_metric("path_length_m", [0.4, 0.4], margin=0.25)
    assert (tighter.excellent, tighter.pass_value) == (0.4, 0.5)


def test_force_metric_at_the_experts_95th_percentile():
    d = derive_metric("peak_wall_force_n", [0.1, 0.2, 0.3, 0.4])
    assert d.rule == "p95" and d.excellent == 0.25
    assert d.p95 == pytest.approx(0.385) and d.pass_value == 0.385
    one = derive_metric("peak_wall_force_n", [0.2])  # one expert: never tighter than mean + 25 %
    assert (one.excellent, one.pass_value) == (0.2, 0.25)


def test_floors_keep_pass_apart_from_excellent():
    d = derive_metric("wall_hits", [0.0, 0.0, 0.0])
    assert (d.excellent, d.pass_value) == (0.0, 1.0)


def test_higher_is_better_metric():
    d = derive_metric("smoothness_ldlj", [-10.0, -12.0])
    assert d.excellent == -11.0 and d.pass_value == -16.5  # 50 % of |mean| below it


def test_boolean_metric_takes_the_worst_expert():
    assert (derive_metric("target_reached", [1.0, 1.0]).pass_value, "boolean") == (1.0, "boolean")
    d = derive_metric("target_reached", [1.0, 0.0])
    assert (d.pass_value, d.excellent) == (0.0, 0.0)


def test_rounding_to_three_significant_digits():
    d = derive_metric("path_length_m", [0.123456])
    assert d.excellent == 0.123 and d.pass_value == 0.185


@pytest.mark.parametrize(
    "name, values, match",
    [
        ("time_s", [], "no expert values"),
        ("time_to_target_s", [12.0, float("nan")], r"attempt\(s\) \[2\]"),
        ("time_z", [1.0], "unknown metric"),
    ],
)
def test_bad_input_is_refused(name, values, match):
    with pytest.raises(ScenarioError, match=match):
        derive_metric(name, values)


def test_derive_thresholds_in_rubric_order_and_valid():
    experts = [
        {"target_reached": 1.0, "time_s": 9.0, "path_length_m": 0.33, "peak_wall_force_n": 0.07, "wall_hits": 0.0},
        {"target_reached": 1.0, "time_s": 11.0, "path_length_m": 0.31, "peak_wall_force_n": 0.09, "wall_hits": 1.0},
    ]
    names = ["target_reached", "time_s", "path_length_m", "wall_hits", "peak_wall_force_n"]
    derived = derive_thresholds(experts, names)
    assert [d.metric for d in derived] == names
    for d in derived:  # every result is a valid rubric entry (direction checked by the model)
        RubricMetric.model_validate({"metric": d.metric, "pass": d.pass_value, "excellent": d.excellent})
    with pytest.raises(ScenarioError, match="missing from expert attempt"):
        derive_thresholds([{"time_s": 1.0}], ["time_s", "path_length_m"])
    with pytest.raises(ScenarioError, match="at least one expert"):
        derive_thresholds([], names)


# ------------------------------------------------------------------ YAML rewrite

TEXT = """\
# a comment that must survive
id: demo   # trailing comment
rubric:
  pass_score: 60
  metrics:
    - {metric: target_reached, weight: 4, pass: 1, excellent: 1}
    # block style, quoted value
    - metric: time_s
      weight: 2
      pass: "240"   # seconds
      excellent: 60
    - {metric: path_length_m, weight: 1, pass: 1.5, excellent: 0.6}
feedback:
  time_s: keep it short
"""


def _d(metric, p, e):
    return DerivedThreshold(metric, "", 1, e, 0.0, e, p, e, "mean+margin")


def test_rewrite_changes_only_the_threshold_values():
    out = rewrite_thresholds(TEXT, [_d("time_s", 18.0, 12.0), _d("path_length_m", 0.482, 0.3215)])
    expected = (
        TEXT.replace('pass: "240"   # seconds', "pass: 18   # seconds")
        .replace("excellent: 60", "excellent: 12")
        .replace("pass: 1.5, excellent: 0.6", "pass: 0.482, excellent: 0.3215")
    )
    assert out == expected
    data = yaml.safe_load(out)
    assert data["rubric"]["metrics"][1]["pass"] == 18
    assert data["rubric"]["metrics"][2] == {"metric": "path_length_m", "weight": 1, "pass": 0.482, "excellent": 0.3215}


def test_rewrite_errors():
    with pytest.raises(ScenarioError, match="no entry for metric 'wall_hits'"):
        rewrite_thresholds(TEXT, [_d("wall_hits", 1.0, 0.0)])
    with pytest.raises(ScenarioError, match="rubric.metrics"):
        rewrite_thresholds("id: x\n", [_d("time_s", 1.0, 0.5)])
    with pytest.raises(ScenarioError, match="not valid YAML"):
        rewrite_thresholds("a: [1,\n", [_d("time_s", 1.0, 0.5)])


def test_table_shows_before_and_after():
    table = format_table([derive_metric("time_s", [10.0, 12.0, 14.0])], {"time_s": (240.0, 60.0)})
    assert "240 -> 18" in table and "60 -> 12" in table and "mean+margin" in table


# ------------------------------------------------------------------ the command line


@pytest.mark.slow
def test_cli_derives_and_writes_the_thresholds(tmp_path, capsys, default_case):
    from surgsim.cli import main
    from surgsim.scenarios.load import load_scenario

    src = SCENARIOS_DIR / "catheter-lsa-basic.yaml"
    copy = tmp_path / "lsa.yaml"
    shutil.copy(src, copy)
    original = copy.read_text(encoding="utf-8")
    experts = sorted(str(p) for p in (SCENARIOS_DIR / "inputs").glob("catheter-lsa-basic.expert*.yaml"))
    assert len(experts) >= 2

    # a dry run prints the table and leaves the file alone
    assert main(["benchmark", "derive", "--scenario", str(copy), *experts, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "pass (old -> new)" in out and "dry run" in out
    assert copy.read_text(encoding="utf-8") == original

    # derive from the experts (a comment added to the file must survive)
    copy.write_text(original.replace("rubric:\n", "# benchmark below\nrubric:\n"), encoding="utf-8")
    assert main(["benchmark", "derive", "--scenario", str(copy), *experts, "--margin", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "wrote 5 thresholds from" in out
    text = copy.read_text(encoding="utf-8")
    assert "# benchmark below" in text and text.startswith("# yaml-language-server")
    scenario = load_scenario(copy)
    rubric = {m.metric: m for m in scenario.rubric.metrics}
    # recompute from the expert runs: excellent = mean, pass = mean + 40 % (force: p95 / +25 %)
    times = [float(line.split("time_s ")[1].split(",")[0]) for line in out.splitlines() if line.startswith("expert ")]
    mean_t = sum(times) / len(times)
    assert rubric["time_s"].excellent == pytest.approx(mean_t, rel=5e-3)
    assert rubric["time_s"].pass_ >= rubric["time_s"].excellent + max(0.4 * mean_t, 1.0) - 0.05
    assert rubric["peak_wall_force_n"].pass_ >= 1.25 * rubric["peak_wall_force_n"].excellent * 0.99
    # every expert passes the derived benchmark
    from surgsim.session.inputs import load_inputs
    from surgsim.session.session import Session, play

    for log in experts:
        assert play(Session(scenario, default_case), load_inputs(log)).score().passed, log


@pytest.mark.slow
def test_cli_refuses_a_failed_expert_attempt(tmp_path, capsys, default_case):
    from surgsim.cli import main

    copy = tmp_path / "lsa.yaml"
    shutil.copy(SCENARIOS_DIR / "catheter-lsa-basic.yaml", copy)
    before = copy.read_text(encoding="utf-8")
    novice = SCENARIOS_DIR / "inputs" / "catheter-lsa-basic.novice.yaml"  # never reaches the target
    assert main(["benchmark", "derive", "--scenario", str(copy), str(novice)]) == 2
    err = capsys.readouterr().err
    assert "novice.yaml" in err and "did not reach" in err
    assert copy.read_text(encoding="utf-8") == before
