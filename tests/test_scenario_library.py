"""Every bundled endovascular scenario runs headless with each of its input logs.

As SOFA runs every example scene, this plays every ``scenarios/*.yaml`` of
procedure ``endovascular`` with each of its logs ``scenarios/inputs/<id>.<kind>[n].yaml``
(``kind`` expert or novice) on the phantom case it names, and checks that the
library is complete: learning objectives, a rubric, at least one expert log
that reaches the target and passes, at least one novice log that scores lower.
The results are cached per test run so that ``test_construct_validity.py``
reuses them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from surgsim.paths import SCENARIOS_DIR

pytestmark = pytest.mark.slow

LOG_NAME = re.compile(r"^(?P<id>[a-z0-9][a-z0-9_-]*)\.(?P<kind>expert|novice)(?P<n>\d*)\.ya?ml$")


@dataclass(frozen=True)
class Run:
    """One input log played through its scenario."""

    scenario_id: str
    log: Path
    kind: str  # "expert" or "novice"
    metrics: dict
    total: float
    passed: bool
    critical_errors: tuple
    reached: bool
    max_outside_m: float  # deepest node outside the lumen at the end (m, <= 0 inside)


def endovascular_scenarios() -> list[Path]:
    """Bundled scenario files of procedure endovascular."""
    import yaml

    out = []
    for path in sorted(SCENARIOS_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("procedure") == "endovascular":
            out.append(path)
    return out


def input_logs(scenario_id: str) -> dict[str, list[Path]]:
    """The scenario's input logs by kind: {"expert": [...], "novice": [...]}."""
    logs: dict[str, list[Path]] = {"expert": [], "novice": []}
    for path in sorted((SCENARIOS_DIR / "inputs").glob(f"{scenario_id}.*")):
        m = LOG_NAME.match(path.name)
        if m and m["id"] == scenario_id:
            logs[m["kind"]].append(path)
    return logs


@functools.cache
def _case(variant: str):
    from surgsim.cases.build import phantom_vessel_case

    return phantom_vessel_case(variant)


@functools.cache
def library_runs(scenario_path: str) -> tuple[Run, ...]:
    """Play every log of one scenario (cached for the test run)."""
    from surgsim.scenarios.load import load_scenario
    from surgsim.scoring.metrics import compute_metrics
    from surgsim.session.inputs import load_inputs
    from surgsim.session.session import Session, play

    scenario = load_scenario(scenario_path)
    case = _case(scenario.case.phantom)
    runs = []
    for kind, paths in input_logs(scenario.id).items():
        for path in paths:
            session = play(Session(scenario, case), load_inputs(path))
            log = session.log()
            result = session.score()
            state = session.rod.state()
            phi = case.distance.sample(state.positions[state.inside])
            runs.append(
                Run(
                    scenario_id=scenario.id,
                    log=path,
                    kind=kind,
                    metrics=compute_metrics(log, scenario.metric_params()),
                    total=result.total,
                    passed=result.passed,
                    critical_errors=result.critical_errors,
                    reached=bool(session.reached),
                    max_outside_m=float(np.max(phi)),
                )
            )
    return tuple(runs)


SCENARIOS = endovascular_scenarios()
IDS = [p.stem for p in SCENARIOS]


def test_the_library_has_the_required_scenarios():
    from surgsim.scenarios.load import load_scenario

    assert len(SCENARIOS) >= 3
    loaded = {p.stem: load_scenario(p) for p in SCENARIOS}
    by_target = {(s.case.phantom, s.instruments[0].device, s.targets[0].label) for s in loaded.values()}
    assert ("default", "angled_5fr", "left_common_carotid") in by_target
    assert ("default", "angled_5fr", "left_subclavian") in by_target
    assert ("default", "angled_5fr", "brachiocephalic") in by_target
    assert ("type3-arch", "simmons_5fr", "brachiocephalic") in by_target
    for sid, s in loaded.items():
        assert s.id == sid, "the file name is the scenario id"
        assert len(s.learning_objectives) >= 2, sid
        assert s.description.strip() and s.targets and s.rubric.metrics, sid
        assert "target_reached" in {m.metric for m in s.rubric.metrics}, sid


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_every_log_runs_headless(path):
    logs = input_logs(path.stem)
    assert logs["expert"], f"{path.stem}: no expert input log in scenarios/inputs"
    assert logs["novice"], f"{path.stem}: no novice input log in scenarios/inputs"
    runs = library_runs(str(path))
    assert len(runs) == len(logs["expert"]) + len(logs["novice"])
    for run in runs:
        name = run.log.name
        assert np.isfinite(run.total) and 0.0 <= run.total <= 100.0, name
        assert run.metrics["time_s"] > 0 and run.metrics["path_length_m"] > 0, name
        # the device never leaves the lumen by more than its radius
        assert run.max_outside_m < 1.0e-3, f"{name}: a node ends {run.max_outside_m * 1e3:.2f} mm outside"
        print(
            f"\n{name:<40} {run.kind:<6} score {run.total:5.1f} {'PASS' if run.passed else 'FAIL'} "
            f"T {run.metrics['time_s']:5.1f} s  L {run.metrics['path_length_m']:.3f} m  "
            f"Fpk {run.metrics['peak_wall_force_n']:.2f} N  hits {run.metrics['wall_hits']:.0f}"
            + (f"  critical {','.join(run.critical_errors)}" if run.critical_errors else "")
        )


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_experts_reach_the_target_and_pass(path):
    for run in library_runs(str(path)):
        if run.kind == "expert":
            assert run.reached and run.metrics["target_reached"] == 1.0, run.log.name
            assert run.passed and not run.critical_errors, (run.log.name, run.total)


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_novices_do_not_pass(path):
    for run in library_runs(str(path)):
        if run.kind == "novice":
            assert not run.passed, (run.log.name, run.total)
