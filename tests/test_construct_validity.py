"""Construct validity of the bundled endovascular scenarios.

For every scenario, every scripted expert log scores higher than every novice
log, and the metrics the literature reports as separating skill levels differ
in its direction (docs/domain.md section 2): experts take less time, move the
tip a shorter distance and load the wall with a lower peak force.
"""

from __future__ import annotations

import pytest
from test_scenario_library import IDS, SCENARIOS, library_runs

pytestmark = pytest.mark.slow


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
