"""Metrics on synthetic logs with known answers, and rubric arithmetic."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from surgsim.errors import ScenarioError
from surgsim.paths import SCENARIOS_DIR
from surgsim.scenarios import load_scenario
from surgsim.scoring import (
    METRICS,
    Event,
    InputEvent,
    MetricError,
    SessionLog,
    compute_metrics,
    score,
    sub_score,
    worst_value,
)

FS = 100.0  # record rate of the synthetic logs, Hz


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIOS_DIR / "catheter-lcca-basic.yaml")


def make_log(
    t: np.ndarray,
    tip: np.ndarray | None = None,
    wall_force: np.ndarray | None = None,
    contacts: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    events: list[Event] | None = None,
    scenario_id: str = "catheter-lcca-basic",
    scenario_hash: str = "",
    reference: float = 0.0,
) -> SessionLog:
    m = len(t)
    tip = np.zeros((m, 3)) if tip is None else tip
    wall_force = np.zeros(m) if wall_force is None else wall_force
    samples = {
        "t": np.asarray(t, float),
        "tip": np.asarray(tip, float),
        "depth": np.zeros(m) if depth is None else depth,
        "rotation": np.zeros(m),
        "wall_force": np.asarray(wall_force, float),
        "tip_force": np.zeros(m),
        "contacts": (np.asarray(wall_force) > 0).astype(int) if contacts is None else contacts,
    }
    return SessionLog(
        scenario_id=scenario_id,
        scenario_hash=scenario_hash,
        seed=0,
        dt=1e-3,
        inputs=[InputEvent(0, "advance", 0.02), InputEvent(1000, "finish")],
        samples=samples,
        events=events or [],
        reference_path_length=reference,
    )


def times(duration: float) -> np.ndarray:
    return np.arange(round(duration * FS) + 1) / FS


def path_from_speeds(speeds: np.ndarray) -> np.ndarray:
    """Tip moving along x with the given speed over each sample interval, (m+1, 3)."""
    x = np.concatenate([[0.0], np.cumsum(speeds / FS)])
    return np.stack([x, np.zeros_like(x), np.zeros_like(x)], axis=1)


def force_pulses(
    duration: float, pulses: list[tuple[float, float]], level: float = 0.5
) -> np.ndarray:
    t = times(duration)
    f = np.full(len(t), 0.05)
    for a, b in pulses:
        f[(t >= a - 1e-9) & (t < b - 1e-9)] = level
    return f


# ------------------------------------------------------------------ catalogue


def test_catalogue_entries_are_complete():
    expected = {
        "time_s",
        "path_length_m",
        "economy_of_motion",
        "idle_time_s",
        "wall_hits",
        "peak_wall_force_n",
        "mean_wall_force_n",
        "force_impulse_ns",
        "target_reached",
        "time_to_target_s",
        "smoothness_ldlj",
        "insertion_depth_max_m",
        "fluoroscopy_time_s",
        "contrast_ml",
        "dose_gy_m2",
        # airway (intubation) metrics
        "attempts",
        "first_pass_success",
        "oesophageal_intubation",
        "incisor_peak_force_n",
        "tube_depth_m",
        "tip_to_carina_m",
        "tube_position_error_m",
        "spo2_nadir",
        "time_below_90_s",
        "time_to_intubation_s",
        "best_pogo",
        "cormack_lehane_grade",
    }
    assert set(METRICS) == expected
    for name, m in METRICS.items():
        assert m.name == name and m.unit and m.definition and isinstance(m.higher_is_better, bool)
    assert METRICS["target_reached"].kind == "boolean"
    assert METRICS["smoothness_ldlj"].higher_is_better
    assert not METRICS["wall_hits"].higher_is_better


def test_compute_metrics_returns_every_metric():
    t = times(1.0)
    out = compute_metrics(make_log(t))
    assert list(out) == list(METRICS)
    assert all(isinstance(v, float) for v in out.values())


# ------------------------------------------------------------------ motion


def test_path_length_of_a_straight_line_and_a_zigzag():
    t = times(1.0)
    s = t / t[-1]
    line = np.stack([0.3 * s, 0.4 * s, 0 * s], axis=1)
    assert compute_metrics(make_log(t, line), names=["path_length_m"])[
        "path_length_m"
    ] == pytest.approx(0.5, abs=1e-12)
    zig = np.zeros((5, 3))
    zig[:, 0] = [0, 0.01, 0, 0.01, 0]
    assert compute_metrics(make_log(times(0.04), zig), names=["path_length_m"])[
        "path_length_m"
    ] == pytest.approx(0.04)


def test_economy_of_motion():
    t = times(1.0)
    line = np.stack([0.5 * t, 0 * t, 0 * t], axis=1)
    assert compute_metrics(make_log(t, line, reference=0.25))["economy_of_motion"] == pytest.approx(
        2.0
    )
    assert math.isnan(compute_metrics(make_log(t, line))["economy_of_motion"])


def test_idle_spans():
    # moving at 10 mm/s between: 1 s still, 0.3 s still, 1 s creeping at 0.5 mm/s
    move = np.full(100, 0.01)
    speeds = np.concatenate(
        [
            move,
            np.zeros(100),
            move,
            np.zeros(30),
            move,
            np.full(100, 0.0005),
            move,
        ]
    )
    t = np.arange(len(speeds) + 1) / FS
    log = make_log(t, path_from_speeds(speeds))
    # the 0.3 s pause is too short; the 1 s pause and the 1 s creep (below 1 mm/s) count
    assert compute_metrics(log)["path_length_m"] == pytest.approx(0.0405)
    assert compute_metrics(log)["idle_time_s"] == pytest.approx(2.0, abs=1e-9)
    assert compute_metrics(log, {"idle_min_s": 0.25})["idle_time_s"] == pytest.approx(2.3, abs=1e-9)


def test_time_and_depth():
    t = times(6.0) + 1.0  # the log starts at t = 1 s
    depth = 0.1 * np.sin(np.pi * (t - 1.0) / 6.0)
    log = make_log(t, depth=depth, events=[Event(6.0, "finish")])
    m = compute_metrics(log)
    assert m["time_s"] == pytest.approx(5.0)
    assert m["insertion_depth_max_m"] == pytest.approx(0.1, abs=1e-6)
    assert compute_metrics(make_log(t))["time_s"] == pytest.approx(6.0)  # no finish: last sample


def test_smoothness_ldlj_of_a_minimum_jerk_reach():
    t = times(2.0)
    tau = t / 2.0
    x = 0.1 * (10 * tau**3 - 15 * tau**4 + 6 * tau**5)
    reach = np.stack([x, 0 * x, 0 * x], axis=1)
    analytic = -math.log(204.8)  # 720 / 1.875**2 for any amplitude and duration
    got = compute_metrics(make_log(t, reach))["smoothness_ldlj"]
    assert got == pytest.approx(analytic, abs=0.05)
    # sample noise is filtered out: close to the clean value, far better than unfiltered
    noisy = reach + np.random.default_rng(1).normal(0.0, 2e-5, reach.shape)
    filtered = compute_metrics(make_log(t, noisy))["smoothness_ldlj"]
    raw = compute_metrics(make_log(t, noisy), {"smoothness_cutoff_hz": None})["smoothness_ldlj"]
    assert abs(filtered - analytic) < 1.0 < abs(raw - analytic)
    # two sub-movements with a stop between are less smooth than one reach
    two = np.concatenate([reach[:-1] * 0.5, 0.05 + reach * 0.5])
    t2 = np.arange(len(two)) / FS
    assert compute_metrics(make_log(t2, two))["smoothness_ldlj"] < got - 1.0
    assert math.isnan(compute_metrics(make_log(t))["smoothness_ldlj"])  # never moves


# ------------------------------------------------------------------ forces


@pytest.mark.parametrize(("gap", "hits"), [(0.1, 1), (0.15, 1), (0.5, 2), (1.0, 2)])
def test_wall_hits_are_debounced(gap, hits):
    f = force_pulses(3.0, [(0.5, 0.8), (0.8 + gap, 1.2 + gap)])
    log = make_log(times(3.0), wall_force=f)
    assert compute_metrics(log, {"wall_hit_force_n": 0.3})["wall_hits"] == hits


def test_wall_hits_use_the_scenario_threshold():
    f = force_pulses(3.0, [(0.5, 0.8), (1.5, 1.8)], level=0.5)
    log = make_log(times(3.0), wall_force=f)
    assert compute_metrics(log, {"wall_hit_force_n": 0.3})["wall_hits"] == 2
    assert compute_metrics(log, {"wall_hit_force_n": 0.6})["wall_hits"] == 0
    long_push = make_log(times(3.0), wall_force=force_pulses(3.0, [(0.2, 2.5)]))
    assert compute_metrics(long_push)["wall_hits"] == 1


def test_force_impulse_peak_and_mean():
    t = times(2.0)
    f = np.full(len(t), 0.5)
    m = compute_metrics(make_log(t, wall_force=f))
    assert m["force_impulse_ns"] == pytest.approx(1.0)
    tri = np.interp(t, [0.0, 1.0, 2.0], [0.0, 2.0, 0.0])
    m = compute_metrics(make_log(t, wall_force=tri))
    assert m["force_impulse_ns"] == pytest.approx(2.0)
    assert m["peak_wall_force_n"] == pytest.approx(2.0)
    # mean over samples in contact only: half the time at 0.4 N, half free
    f = np.where(t < 1.0, 0.4, 0.0)
    m = compute_metrics(make_log(t, wall_force=f))
    assert m["mean_wall_force_n"] == pytest.approx(0.4)


# ------------------------------------------------------------------ targets and events


def test_targets_reached_and_time_to_target():
    t = times(10.0)
    events = [
        Event(3.0, "target_reached", {"target": "a"}),
        Event(7.5, "target_reached", {"target": "b"}),
    ]
    log = make_log(t, events=events)
    m = compute_metrics(log, {"targets": ("a", "b")})
    assert m["target_reached"] == 1.0 and m["time_to_target_s"] == pytest.approx(7.5)
    m = compute_metrics(log, {"targets": ("a", "c")})
    assert m["target_reached"] == 0.0 and math.isnan(m["time_to_target_s"])
    m = compute_metrics(log)  # no list: any target
    assert m["target_reached"] == 1.0 and m["time_to_target_s"] == pytest.approx(3.0)
    assert compute_metrics(make_log(t))["target_reached"] == 0.0


def test_bad_logs_and_params_are_refused():
    t = times(1.0)
    log = make_log(t)
    del log.samples["wall_force"]
    with pytest.raises(MetricError, match="wall_force"):
        compute_metrics(log, names=["wall_hits"])
    log = make_log(t)
    log.samples["tip"] = log.samples["tip"][:-1]
    with pytest.raises(MetricError, match="'tip' has 100 samples but 't' has 101"):
        compute_metrics(log, names=["path_length_m"])
    with pytest.raises(MetricError, match="unknown metric parameter"):
        compute_metrics(make_log(t), {"wall_hit_force": 0.3})
    with pytest.raises(MetricError, match="unknown metric"):
        compute_metrics(make_log(t), names=["speed"])


# ------------------------------------------------------------------ rubric


def test_sub_score_anchor_points():
    # lower is better: pass 240, excellent 60, worst 240 + 2 * 180 = 600
    assert worst_value(240, 60) == 600
    kw = {"higher_is_better": False}
    assert sub_score(60, 240, 60, **kw) == 100
    assert sub_score(10, 240, 60, **kw) == 100
    assert sub_score(240, 240, 60, **kw) == 60
    assert sub_score(150, 240, 60, **kw) == pytest.approx(80)
    assert sub_score(420, 240, 60, **kw) == pytest.approx(30)
    assert sub_score(600, 240, 60, **kw) == 0
    assert sub_score(900, 240, 60, **kw) == 0
    # higher is better: pass -8, excellent -6, worst -12
    kw = {"higher_is_better": True}
    assert worst_value(-8, -6) == -12
    assert sub_score(-6, -8, -6, **kw) == 100
    assert sub_score(-7, -8, -6, **kw) == pytest.approx(80)
    assert sub_score(-8, -8, -6, **kw) == 60
    assert sub_score(-10, -8, -6, **kw) == pytest.approx(30)
    assert sub_score(-12, -8, -6, **kw) == 0
    # booleans and undefined values
    assert sub_score(1, 1, 1, higher_is_better=True, boolean=True) == 100
    assert sub_score(0, 1, 1, higher_is_better=True, boolean=True) == 0
    assert sub_score(None, 240, 60, higher_is_better=False) == 0
    assert sub_score(math.nan, 240, 60, higher_is_better=False) == 0


def _metrics(**over: float) -> dict[str, float]:
    base = {
        "target_reached": 1.0,
        "time_s": 240.0,
        "path_length_m": 0.6,
        "wall_hits": 39.0,
        "peak_wall_force_n": 2.0,
    }
    base.update(over)
    return base


def test_total_is_the_weighted_mean(scenario):
    r = score(_metrics(), scenario)
    # weights 4, 1, 1, 1, 1; sub-scores 100, 60, 100, 0, 60
    assert [m.sub_score for m in r.metrics] == [100, 60, 100, 0, 60]
    assert r.total == pytest.approx((400 + 60 + 100 + 0 + 60) / 8)  # 77.5
    assert r.passed and r.critical_errors == ()
    assert [m.passed for m in r.metrics] == [True, True, True, False, True]
    assert r.summary.startswith("PASS: score 77.5/100")
    assert "wall_hits" in r.summary
    hits = r.metric("wall_hits")
    assert hits.feedback == scenario.feedback["wall_hits"].strip()
    assert hits.worst == 39 and hits.unit == "count"
    assert r.metric("path_length_m").feedback == ""  # excellent: nothing to say
    assert r.log_hash == "" and r.scenario_hash == scenario.content_hash()


def test_missing_target_fails_on_score(scenario):
    r = score(_metrics(target_reached=0.0), scenario)
    assert r.total == pytest.approx((60 + 100 + 0 + 60) / 8)  # 27.5
    assert not r.passed
    assert r.summary.startswith("FAIL: score 27.5/100, below the pass mark of 60")


def test_critical_error_fails_whatever_the_score(scenario):
    perfect = _metrics(time_s=30.0, wall_hits=0.0, peak_wall_force_n=0.5)
    assert score(perfect, scenario).total == 100
    r = score(perfect, scenario, critical_errors=["perforation", "desaturation"])
    assert r.total == 100 and not r.passed
    assert r.critical_errors == ("perforation",)  # desaturation is not watched by this rubric
    assert r.critical_feedback == (scenario.feedback["perforation"].strip(),)
    assert r.summary.startswith("FAIL: critical error (perforation)")
    with pytest.raises(MetricError, match="missing"):
        score({"time_s": 1.0}, scenario)


def _attempt_log(scenario, perforate: bool = False) -> SessionLog:
    t = times(90.0)
    rng = np.random.default_rng(7)
    s = t / t[-1]
    tip = np.stack([0.02 * np.sin(6 * s), 0.01 * s, 0.35 * s], axis=1) + rng.normal(
        0, 1e-4, (len(t), 3)
    )
    f = np.abs(rng.normal(0.1, 0.15, len(t)))
    events = [Event(70.0, "target_reached", {"target": "lcca"}), Event(90.0, "finish")]
    if perforate:
        events.insert(0, Event(40.0, "perforation", {"force_n": 3.4}))
    return make_log(
        t,
        tip,
        f,
        depth=0.4 * s,
        events=events,
        scenario_hash=scenario.content_hash(),
        reference=0.3,
    )


def test_scoring_a_log_is_deterministic(scenario):
    log = _attempt_log(scenario)
    a, b = score(log, scenario), score(log, scenario)
    c = score(SessionLog.from_bytes(log.to_bytes()), scenario)
    assert a == b == c
    assert a.log_hash == log.hash()
    text = json.dumps(a.to_dict(), allow_nan=False, sort_keys=True)
    assert json.loads(text)["total"] == a.total
    assert 0.0 <= a.total <= 100.0
    assert a.metric("time_s").value == pytest.approx(90.0)
    assert a.metric("target_reached").value == 1.0


def test_critical_error_from_log_events(scenario):
    r = score(_attempt_log(scenario, perforate=True), scenario)
    assert r.critical_errors == ("perforation",) and not r.passed


def test_log_of_another_scenario_is_refused(scenario):
    log = make_log(times(1.0), scenario_id="other")
    with pytest.raises(ScenarioError, match="'other'"):
        score(log, scenario)


def test_imaging_metrics_from_beam_and_contrast_channels():
    from surgsim.scoring.log import SessionLog
    from surgsim.scoring.metrics import compute_metrics

    t = np.arange(0, 3.001, 0.01)
    beam = ((t > 0.5) & (t <= 1.5)).astype(int)  # 1 s of beam-on
    log = SessionLog("s", "h", 0, 1e-3, samples={
        "t": t, "fluoro": beam, "contrast_ml": np.where(t > 2.0, 8.0, 0.0), "dose": t * 1e-4})
    m = compute_metrics(log, names=["fluoroscopy_time_s", "contrast_ml", "dose_gy_m2"])
    assert m["fluoroscopy_time_s"] == pytest.approx(1.0, abs=1e-9)
    assert m["contrast_ml"] == 8.0
    assert m["dose_gy_m2"] == pytest.approx(3e-4)
    old = SessionLog("s", "h", 0, 1e-3, samples={"t": t})
    assert np.isnan(compute_metrics(old, names=["fluoroscopy_time_s"])["fluoroscopy_time_s"])
