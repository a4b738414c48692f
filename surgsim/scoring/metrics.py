"""Performance metrics: pure functions of a :class:`~surgsim.scoring.log.SessionLog`.

Every metric is computed afterwards from the recorded samples and events (never
from live state), so a score can always be recomputed from a stored log.
Definitions follow docs/domain.md sections 1, 2 and 4.

Metric functions take ``(log, params)``; ``params`` carries the per-scenario
settings (see :data:`DEFAULT_PARAMS`), e.g. ``wall_hit_force_n`` from the
scenario's ``complications`` block and ``targets``, the target ids that must be
reached. A metric that is undefined for a log (time to a target never reached,
smoothness of a log too short) is ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from surgsim.errors import SurgsimError
from surgsim.scoring.log import SessionLog

__all__ = [
    "CRITICAL_ERRORS",
    "DEFAULT_PARAMS",
    "METRICS",
    "MetricDef",
    "MetricError",
    "compute_metrics",
    "critical_errors_in",
]


class MetricError(SurgsimError, ValueError):
    """A session log lacks what a metric needs (missing or mismatched channel)."""


#: Settings metrics read from ``params`` when the caller does not give them.
DEFAULT_PARAMS: dict[str, Any] = {
    "wall_hit_force_n": 0.3,  # F_hit, newtons (scenario complications.wall_hit_force_n)
    "hit_debounce_s": 0.2,  # hits closer than this merge into one episode, seconds
    "idle_speed_m_s": 1e-3,  # tip speed below this is idle, m/s
    "idle_min_s": 0.5,  # only idle spans at least this long count, seconds
    "smoothness_cutoff_hz": 6.0,  # low-pass on the tip path before jerk, Hz (None: off)
    "targets": (),  # target ids that must all be reached (empty: any target)
}

#: Critical errors: event kinds that fail an attempt whatever its score.
CRITICAL_ERRORS: dict[str, str] = {
    "perforation": "vessel wall perforated (wall force above the scenario's perforation force)",
    "oesophageal_intubation": "tube left in the oesophagus at the first breath (unrecognised)",
    "desaturation": "SpO2 fell below 90 % without aborting to ventilate",
}

_EPS_T = 1e-9  # tolerance on sums of sample intervals, seconds


@dataclass(frozen=True)
class MetricDef:
    """One entry of the metric catalogue.

    Attributes
    ----------
    name : str
        Catalogue key, with its unit as suffix (``time_s``, ``path_length_m``).
    unit : str
        Display unit (SI): ``"s"``, ``"m"``, ``"N"``, ``"N s"``, ``"count"``, ``"1"``, ``"bool"``.
    definition : str
        What is measured, in one or two sentences.
    higher_is_better : bool
        Direction used by the rubric.
    fn : callable
        ``fn(log, params) -> float``.
    kind : {"continuous", "boolean"}
        Boolean metrics are 1.0 or 0.0 and score 0 or 100.
    """

    name: str
    unit: str
    definition: str
    higher_is_better: bool
    fn: Callable[[SessionLog, Mapping[str, Any]], float]
    kind: Literal["continuous", "boolean"] = "continuous"


# ---------------------------------------------------------------- helpers


def _param(params: Mapping[str, Any], key: str) -> Any:
    return params.get(key, DEFAULT_PARAMS[key])


def _t(log: SessionLog) -> np.ndarray:
    """Sample times, (m,) float seconds (empty when the log has no samples)."""
    t = log.samples.get("t")
    if t is None:
        if log.samples:
            raise MetricError(
                f"session log of {log.scenario_id!r} has samples but no 't' channel; "
                "record the sample times (seconds) as samples['t']"
            )
        return np.zeros(0)
    t = np.asarray(t, dtype=float).reshape(-1)
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise MetricError(
            f"session log of {log.scenario_id!r}: samples['t'] must increase strictly"
        )
    return t


def _channel(log: SessionLog, name: str, ndim: int = 1) -> np.ndarray:
    """A sample channel as float array, checked against the length of ``t``."""
    t = _t(log)
    if name not in log.samples:
        if t.size == 0:
            return np.zeros((0, 3) if ndim == 2 else 0)
        raise MetricError(
            f"session log of {log.scenario_id!r} lacks the sample channel {name!r} "
            f"(needed by a metric); channels present: {sorted(log.samples)}"
        )
    x = np.asarray(log.samples[name], dtype=float)
    if ndim == 2:
        x = x.reshape(-1, 3) if x.size else np.zeros((0, 3))
    else:
        x = x.reshape(-1)
    if len(x) != len(t):
        raise MetricError(
            f"session log of {log.scenario_id!r}: channel {name!r} has {len(x)} samples "
            f"but 't' has {len(t)}; every channel must have one value per sample"
        )
    return x


def _start(log: SessionLog) -> float:
    t = _t(log)
    return float(t[0]) if t.size else 0.0


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in ``mask`` as (first, last) inclusive index pairs."""
    if mask.size == 0:
        return []
    m = np.concatenate([[False], mask.astype(bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _integral(y: np.ndarray, t: np.ndarray) -> float:
    """Trapezoid integral of samples ``y`` over times ``t``."""
    if len(t) < 2:
        return 0.0
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(t)))


def _target_times(log: SessionLog) -> dict[str, float]:
    """First time each target was reached: {target id: seconds}."""
    out: dict[str, float] = {}
    for e in log.events:
        if e.kind == "target_reached":
            key = str(e.data.get("target", ""))
            out.setdefault(key, float(e.t))
    return out


def _time_targets_done(log: SessionLog, params: Mapping[str, Any]) -> float | None:
    """Time at which every required target had been reached, or None."""
    times = _target_times(log)
    required = [str(x) for x in (_param(params, "targets") or ())]
    if not required:
        return min(times.values()) if times else None
    if any(r not in times for r in required):
        return None
    return max(times[r] for r in required)


# ---------------------------------------------------------------- metrics


def time_s(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Seconds from the first sample to the first ``finish`` event (or the last sample)."""
    finish = next((e.t for e in log.events if e.kind == "finish"), None)
    end = float(finish) if finish is not None else log.duration
    return max(0.0, end - _start(log))


def path_length_m(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Sum of |p[i+1] - p[i]| over tip positions, metres."""
    tip = _channel(log, "tip", ndim=2)
    if len(tip) < 2:
        return 0.0
    return float(np.sum(np.linalg.norm(np.diff(tip, axis=0), axis=1)))


def economy_of_motion(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Tip path length over the reference (centreline) length; nan without a reference."""
    ref = float(log.reference_path_length)
    if not (ref > 0.0 and math.isfinite(ref)):
        return math.nan
    return path_length_m(log, params) / ref


def idle_time_s(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Total length of spans of at least ``idle_min_s`` with tip speed below ``idle_speed_m_s``."""
    t = _t(log)
    tip = _channel(log, "tip", ndim=2)
    if len(t) < 2:
        return 0.0
    dt = np.diff(t)
    speed = np.linalg.norm(np.diff(tip, axis=0), axis=1) / dt
    idle = speed < float(_param(params, "idle_speed_m_s"))
    min_span = float(_param(params, "idle_min_s"))
    total = 0.0
    for a, b in _runs(idle):
        span = float(t[b + 1] - t[a])
        if span >= min_span - _EPS_T:
            total += span
    return total


def wall_hits(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Number of episodes with wall force above ``wall_hit_force_n``, debounced.

    An episode is a maximal run of samples with ``wall_force > F_hit``; runs whose
    gap (from the last sample above to the next sample above) is shorter than
    ``hit_debounce_s`` merge into one hit. A device resting on the wall below
    F_hit never counts; one long push above F_hit counts once.
    """
    t = _t(log)
    f = _channel(log, "wall_force")
    runs = _runs(f > float(_param(params, "wall_hit_force_n")))
    if not runs:
        return 0.0
    debounce = float(_param(params, "hit_debounce_s"))
    hits = 1
    for (_, prev_end), (start, _) in zip(runs[:-1], runs[1:], strict=True):
        if t[start] - t[prev_end] >= debounce - _EPS_T:
            hits += 1
    return float(hits)


def peak_wall_force_n(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Largest wall force over the attempt, newtons (0 without samples)."""
    f = _channel(log, "wall_force")
    return float(np.max(f)) if f.size else 0.0


def mean_wall_force_n(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Mean wall force over the samples in wall contact, newtons (0 if never in contact).

    In contact means ``contacts > 0`` (or ``wall_force > 0`` when the log has no
    ``contacts`` channel).
    """
    f = _channel(log, "wall_force")
    if "contacts" in log.samples:
        touching = _channel(log, "contacts") > 0
    else:
        touching = f > 0.0
    return float(np.mean(f[touching])) if np.any(touching) else 0.0


def force_impulse_ns(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Integral of the wall force over time (trapezoid rule), newton seconds."""
    return _integral(_channel(log, "wall_force"), _t(log))


def target_reached(log: SessionLog, params: Mapping[str, Any]) -> float:
    """1.0 if every required target was reached (any target if none listed), else 0.0."""
    return 1.0 if _time_targets_done(log, params) is not None else 0.0


def time_to_target_s(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Seconds from the first sample until the required targets were all reached (nan if not)."""
    done = _time_targets_done(log, params)
    return math.nan if done is None else max(0.0, done - _start(log))


def _lowpass(x: np.ndarray, t: np.ndarray, cutoff_hz: float | None) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth low-pass along axis 0 (skipped when not applicable)."""
    if cutoff_hz is None or len(t) < 16:
        return x
    fs = 1.0 / float(np.median(np.diff(t)))
    if cutoff_hz >= 0.4 * fs:
        return x
    from scipy.signal import butter, filtfilt

    b, a = butter(2, cutoff_hz / (0.5 * fs))
    padlen = min(3 * max(len(a), len(b)), len(t) - 1)
    return filtfilt(b, a, x, axis=0, padlen=padlen)


def smoothness_ldlj(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Log dimensionless jerk of the tip speed, LDLJ = -ln|DJ| (higher is smoother).

    DJ = -(T^3 / v_peak^2) * integral((d2v/dt2)^2 dt), v the tip speed, T the
    duration. The tip path is low-passed first (``smoothness_cutoff_hz``, zero
    phase) so that sample noise does not dominate the jerk. nan when the log has
    fewer than 5 samples or the tip never moves. A minimum-jerk reach scores
    -ln(204.8) = -5.32; longer, jerkier attempts score lower.
    """
    t = _t(log)
    tip = _channel(log, "tip", ndim=2)
    if len(t) < 5:
        return math.nan
    tip = _lowpass(tip, t, _param(params, "smoothness_cutoff_hz"))
    v = np.linalg.norm(np.gradient(tip, t, axis=0), axis=1)
    v_peak = float(np.max(v))
    if not v_peak > 0.0:
        return math.nan
    jerk = np.gradient(np.gradient(v, t), t)
    duration = float(t[-1] - t[0])
    dj = duration**3 / v_peak**2 * _integral(jerk**2, t)
    return -math.log(max(dj, np.finfo(float).tiny))


def insertion_depth_max_m(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Deepest insertion of the active device, metres (0 without samples)."""
    d = _channel(log, "depth")
    return float(np.max(d)) if d.size else 0.0


def fluoroscopy_time_s(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Beam-on time (fluoroscopy pedal or cine), seconds: each sample's beam state over
    the interval that ends at it (the imaging state advances in whole sample intervals)."""
    if "fluoro" not in log.samples:
        return float("nan")  # a log recorded without imaging
    t = _t(log)
    beam = _channel(log, "fluoro")
    if t.size < 2:
        return 0.0
    return float(np.sum((beam[1:] > 0.5) * np.diff(t)))


def contrast_ml(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Contrast injected during the attempt, millilitres."""
    if "contrast_ml" not in log.samples:
        return float("nan")
    c = _channel(log, "contrast_ml")
    return float(c[-1] - c[0]) if c.size else 0.0


def dose_gy_m2(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Dose-area product of the attempt (fluoroscopy and cine), Gy m^2."""
    if "dose" not in log.samples:
        return float("nan")
    d = _channel(log, "dose")
    return float(d[-1] - d[0]) if d.size else 0.0


def _def(
    fn: Callable[[SessionLog, Mapping[str, Any]], float],
    unit: str,
    higher_is_better: bool,
    definition: str,
    kind: Literal["continuous", "boolean"] = "continuous",
) -> MetricDef:
    return MetricDef(fn.__name__, unit, definition, higher_is_better, fn, kind)


#: The metric catalogue: name -> definition. Rubrics may only use these names.
METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        _def(time_s, "s", False, "Time from the first sample to the finish event."),
        _def(path_length_m, "m", False, "Distance travelled by the device tip."),
        _def(
            economy_of_motion,
            "1",
            False,
            "Tip path length divided by the centreline length from access to target.",
        ),
        _def(
            idle_time_s,
            "s",
            False,
            "Total time in spans of at least 0.5 s with tip speed below 1 mm/s.",
        ),
        _def(
            wall_hits,
            "count",
            False,
            "Episodes with wall force above the scenario's wall-hit force, debounced by 0.2 s.",
        ),
        _def(peak_wall_force_n, "N", False, "Largest normal wall force on any node."),
        _def(mean_wall_force_n, "N", False, "Mean normal wall force while in wall contact."),
        _def(force_impulse_ns, "N s", False, "Integral of the normal wall force over time."),
        _def(
            target_reached,
            "bool",
            True,
            "1 if every target was reached and held, else 0.",
            kind="boolean",
        ),
        _def(time_to_target_s, "s", False, "Time from the first sample to reaching the target(s)."),
        _def(fluoroscopy_time_s, "s", False, "Sum of beam-on time (pedal or cine)."),
        _def(contrast_ml, "ml", False, "Contrast volume injected (report it; it seldom separates skill)."),
        _def(dose_gy_m2, "Gy m^2", False, "Dose-area product of fluoroscopy and cine."),
        _def(
            smoothness_ldlj,
            "1",
            True,
            "Log dimensionless jerk of the tip speed (higher is smoother).",
        ),
        _def(insertion_depth_max_m, "m", False, "Deepest insertion of the active device."),
    )
}


def compute_metrics(
    log: SessionLog, params: Mapping[str, Any] | None = None, names: list[str] | None = None
) -> dict[str, float]:
    """Compute catalogue metrics of a session log.

    Parameters
    ----------
    log : SessionLog
        The attempt's log.
    params : mapping, optional
        Metric settings (keys of :data:`DEFAULT_PARAMS`); missing keys take the default.
    names : list of str, optional
        Metrics to compute (default: the whole catalogue, in catalogue order).

    Returns
    -------
    dict of str to float
        Metric values in SI units (nan where undefined).
    """
    params = dict(params or {})
    unknown = [k for k in params if k not in DEFAULT_PARAMS]
    if unknown:
        raise MetricError(f"unknown metric parameter(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    names = list(METRICS) if names is None else list(names)
    out: dict[str, float] = {}
    for name in names:
        if name not in METRICS:
            raise MetricError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
        out[name] = float(METRICS[name].fn(log, params))
    return out


def critical_errors_in(
    log: SessionLog, watched: list[str] | tuple[str, ...] | None = None
) -> list[str]:
    """Critical-error event kinds present in a log, in order of first occurrence.

    Parameters
    ----------
    watched : list of str, optional
        Kinds to look for (default: every kind in :data:`CRITICAL_ERRORS`).
    """
    kinds = set(CRITICAL_ERRORS if watched is None else watched)
    out: list[str] = []
    for e in sorted(log.events, key=lambda e: e.t):
        if e.kind in kinds and e.kind not in out:
            out.append(e.kind)
    return out


# ---------------------------------------------------------------- airway (intubation) metrics
# Each returns nan when its airway channel is missing from the log (endovascular logs still score).


def _airway(log: SessionLog, name: str) -> np.ndarray | None:
    """An intubation sample channel, or None when the log does not have it."""
    if name not in log.samples:
        return None
    return _channel(log, name)


def _kinds(log: SessionLog) -> list[str]:
    return [e.kind for e in sorted(log.events, key=lambda e: e.t)]


def attempts(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Laryngoscopy attempts: times the blade tip passed the incisors."""
    if _airway(log, "blade_past_incisors") is None:
        return math.nan
    return float(_kinds(log).count("attempt_started"))


def first_pass_success(log: SessionLog, params: Mapping[str, Any]) -> float:
    """1 if the tube was confirmed in the trachea on the first attempt, without oesophageal placement."""
    if _airway(log, "tube_location") is None:
        return math.nan
    kinds = _kinds(log)
    if "oesophageal_intubation" in kinds:
        return 0.0
    for e in log.events:
        if e.kind == "intubation_confirmed":
            return float(e.data.get("attempt") == 1 and e.data.get("location") == "trachea")
    return 0.0


def oesophageal_intubation(log: SessionLog, params: Mapping[str, Any]) -> float:
    """1 if the tube was ventilated or left in the oesophagus."""
    if _airway(log, "tube_location") is None:
        return math.nan
    return float("oesophageal_intubation" in _kinds(log))


def incisor_peak_force_n(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Largest blade-on-upper-incisor contact force, newtons."""
    f = _airway(log, "incisor_force")
    if f is None:
        return math.nan
    return float(f.max()) if f.size else 0.0


def tube_depth_m(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Tube depth mark at the incisors at the end, metres."""
    d = _airway(log, "tube_depth")
    if d is None or d.size == 0:
        return math.nan
    return float(d[-1])


def tip_to_carina_m(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Tube tip above the carina at the end (negative below it), metres; nan unless in the airway."""
    d = _airway(log, "tip_to_carina")
    loc = _airway(log, "tube_location")
    if d is None or loc is None or d.size == 0:
        return math.nan
    # tube_location indices 2..4: trachea, right and left main bronchus
    return float(d[-1]) if 2 <= int(loc[-1]) <= 4 else math.nan


def tube_position_error_m(log: SessionLog, params: Mapping[str, Any]) -> float:
    """How far the tube tip ended from 5 cm above the carina (the middle of 3-7 cm), metres.

    nan unless the tip is in the trachea or a main bronchus (a bronchial tip is
    below the carina: more than 5 cm off).
    """
    from surgsim.anatomy.trachea import TIP_ABOVE_CARINA_M

    d = tip_to_carina_m(log, params)
    return abs(d - TIP_ABOVE_CARINA_M) if math.isfinite(d) else math.nan


def spo2_nadir(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Lowest displayed SpO2 (fraction 0-1)."""
    s = _airway(log, "spo2")
    if s is None or s.size == 0:
        return math.nan
    return float(s.min())


def time_below_90_s(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Total time with displayed SpO2 below 90 %, seconds."""
    s = _airway(log, "spo2")
    if s is None:
        return math.nan
    t = _t(log)
    if t.size < 2:
        return 0.0
    return float(np.sum(np.diff(t)[s[:-1] < 0.90]))


def _during_laryngoscopy(log: SessionLog, x: np.ndarray) -> np.ndarray:
    """The samples of ``x`` taken while the blade was past the incisors (all of them if never)."""
    past = _airway(log, "blade_past_incisors")
    if past is None or not np.any(past > 0):
        return x
    return x[past > 0]


def best_pogo(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Best percentage of glottic opening seen during laryngoscopy (fraction 0-1)."""
    p = _airway(log, "pogo")
    if p is None or p.size == 0:
        return math.nan
    return float(_during_laryngoscopy(log, p).max())


def cormack_lehane_grade(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Cormack-Lehane grade (1-4) of the best view during laryngoscopy."""
    g = _airway(log, "cormack_lehane")
    if g is None or g.size == 0:
        return math.nan
    return float(_during_laryngoscopy(log, g).min())


def time_to_intubation_s(log: SessionLog, params: Mapping[str, Any]) -> float:
    """Time from the start to the first breath through a tube confirmed in the trachea, seconds."""
    if _airway(log, "tube_location") is None:
        return math.nan
    for e in sorted(log.events, key=lambda e: e.t):
        if e.kind == "intubation_confirmed" and e.data.get("location") == "trachea":
            return float(e.t - _start(log))
    return math.nan


METRICS.update(
    {
        m.name: m
        for m in (
            _def(attempts, "count", False, "Laryngoscopy attempts (blade tip past the incisors)."),
            _def(
                first_pass_success,
                "bool",
                True,
                "1 if the tube was confirmed in the trachea on the first attempt, else 0.",
                kind="boolean",
            ),
            _def(
                oesophageal_intubation,
                "bool",
                False,
                "1 if the tube was ventilated or left in the oesophagus, else 0.",
                kind="boolean",
            ),
            _def(incisor_peak_force_n, "N", False, "Largest blade force on the upper incisors."),
            _def(tube_depth_m, "m", False, "Tube depth mark at the incisors at the end."),
            _def(tip_to_carina_m, "m", True, "Tube tip above the carina at the end (in the airway)."),
            _def(tube_position_error_m, "m", False,
                 "Distance of the tube tip from 5 cm above the carina at the end (target 3-7 cm)."),
            _def(spo2_nadir, "1", True, "Lowest displayed SpO2 (fraction)."),
            _def(time_below_90_s, "s", False, "Time with displayed SpO2 below 90 %."),
            _def(time_to_intubation_s, "s", False, "Time to the first breath through a tracheal tube."),
            _def(best_pogo, "1", True,
                 "Best percentage of glottic opening (fraction) seen from the eye or video camera."),
            _def(cormack_lehane_grade, "grade", False, "Cormack-Lehane grade (1-4) of the best view."),
        )
    }
)
