"""Construct validity of the bundled endovascular scenarios.

For every scenario, every scripted expert log scores higher than every novice
log, and the metrics the literature reports as separating skill levels differ
in its direction (docs/domain.md section 2): experts take less time, move the
tip a shorter distance and load the wall with a lower peak force.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from test_scenario_library import IDS, SCENARIOS, _case, input_logs, library_runs

pytestmark = pytest.mark.slow

TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_catheter_logs.py"


def _tool():
    """tools/make_catheter_logs.py (where the expert logs come from) as a module."""
    import sys

    if "make_catheter_logs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_catheter_logs", TOOL)
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_catheter_logs"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["make_catheter_logs"]


def _split(path):
    runs = library_runs(str(path))
    experts = [r for r in runs if r.kind == "expert"]
    novices = [r for r in runs if r.kind == "novice"]
    assert experts and novices, path.stem
    return experts, novices


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_every_expert_scores_higher_than_every_novice(path):
    experts, novices = _split(path)
    worst_expert = min(experts, key=lambda r: r.total)
    best_novice = max(novices, key=lambda r: r.total)
    print(f"\n{path.stem}: worst expert {worst_expert.total:.1f} ({worst_expert.log.name}), "
          f"best novice {best_novice.total:.1f} ({best_novice.log.name})")
    assert worst_expert.total > best_novice.total


@pytest.mark.parametrize(
    "metric",
    ["time_s", "path_length_m", "peak_wall_force_n"],
)
@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_metrics_differ_in_the_reported_direction(path, metric):
    experts, novices = _split(path)
    # lower is better for all three: every expert below every novice
    worst_expert = max(r.metrics[metric] for r in experts)
    best_novice = min(r.metrics[metric] for r in novices)
    assert worst_expert < best_novice, (path.stem, metric, worst_expert, best_novice)


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_experts_make_fewer_wall_hits(path):
    experts, novices = _split(path)
    mean = lambda runs: sum(r.metrics["wall_hits"] for r in runs) / len(runs)  # noqa: E731
    assert mean(experts) < mean(novices)


def test_perturb_keeps_distances_and_angles():
    from surgsim.scoring.log import InputEvent

    tool = _tool()
    events = [InputEvent(0, "rotate", 2.0), InputEvent(1000, "rotate", 0.0), InputEvent(1000, "advance", 0.05),
              InputEvent(3000, "advance", 0.0), InputEvent(3500, "advance", -0.01), InputEvent(4500, "advance", 0.0),
              InputEvent(6000, "finish")]
    for k in (0.95, 1.05):
        out = tool.perturb(events, k)
        assert [e.action for e in out] == [e.action for e in events]
        moved = {"advance": 0.0, "rotate": 0.0}
        speed = {"advance": 0.0, "rotate": 0.0}
        last = 0
        for e in out:
            for a in moved:
                moved[a] += speed[a] * (e.step - last) * 1e-3
            last = e.step
            if e.action in speed:
                speed[e.action] = e.value
        assert moved["rotate"] == pytest.approx(2.0, rel=1e-3)
        assert moved["advance"] == pytest.approx(0.1 - 0.01, rel=1e-3)
        assert out[-1].step - out[-2].step == 1500  # the closing pause keeps its length


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_expert_logs_reach_the_target_at_5_percent_other_hub_speeds(path):
    """Experts do not sit on a tipping point of the physics: with every hub speed 5 % lower or
    higher (the same hand distances and angles) each expert log still reaches its target and
    passes."""
    from surgsim.scenarios.load import load_scenario
    from surgsim.session.inputs import load_inputs

    tool = _tool()
    scenario = load_scenario(path)
    case = _case(scenario.case.phantom)
    for log in input_logs(scenario.id)["expert"]:
        events = load_inputs(log)
        for k in tool.PERTURBATIONS:
            out = tool.play_log(scenario, case, tool.perturb(events, k))
            assert out.reached and out.passed, (log.name, k, out)
