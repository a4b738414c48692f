"""Scoring an attempt against its scenario's rubric.

Each rubric metric gets a sub-score from 0 to 100: 100 at or beyond
``excellent``, 60 at ``pass``, linear in between; below ``pass`` it falls
linearly to 0 at the metric's worst value ``worst = pass + 2 * (pass - excellent)``
(the same formula for either direction). Boolean metrics score 0 or 100. The
total is the weighted mean of the sub-scores; an attempt passes when the total
reaches the rubric's ``pass_score`` and none of its critical errors occurred
(docs/domain.md section 4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from surgsim.errors import ScenarioError
from surgsim.scoring.log import SessionLog
from surgsim.scoring.metrics import METRICS, MetricError, compute_metrics, critical_errors_in

if TYPE_CHECKING:  # scenarios imports scoring.metrics; keep this import one-way at runtime
    from surgsim.scenarios.model import Scenario

__all__ = ["MetricScore", "ScoreResult", "score", "sub_score", "worst_value"]


@dataclass(frozen=True)
class MetricScore:
    """One line of the score breakdown.

    Attributes
    ----------
    name, unit : str
        Metric catalogue name and its unit.
    value : float or None
        The metric (None when undefined, e.g. time to a target never reached).
    weight, pass_value, excellent, worst : float
        Rubric weight and thresholds (``worst`` scores 0).
    higher_is_better : bool
        Direction of the metric.
    sub_score : float
        0..100.
    passed : bool
        The value meets the ``pass`` threshold.
    feedback : str
        The scenario's feedback text when the metric was not excellent, else "".
    """

    name: str
    value: float | None
    unit: str
    weight: float
    pass_value: float
    excellent: float
    worst: float
    higher_is_better: bool
    sub_score: float
    passed: bool
    feedback: str


@dataclass(frozen=True)
class ScoreResult:
    """The score of one attempt (deterministic: the same log gives an equal result).

    Attributes
    ----------
    scenario_id, scenario_version, scenario_hash : str
        The scenario scored against.
    log_hash : str
        SHA-256 of the scored log ("" when scored from a metrics dict).
    total : float
        Weighted mean of the sub-scores, 0..100.
    pass_score : float
        The rubric's pass mark.
    passed : bool
        ``total >= pass_score`` and no critical error.
    critical_errors : tuple of str
        Critical errors that occurred, in order of first occurrence.
    critical_feedback : tuple of str
        The scenario's feedback texts for those critical errors.
    metrics : tuple of MetricScore
        Per-metric breakdown in rubric order.
    summary : str
        One line for the trainee.
    """

    scenario_id: str
    scenario_version: str
    scenario_hash: str
    log_hash: str
    total: float
    pass_score: float
    passed: bool
    critical_errors: tuple[str, ...]
    critical_feedback: tuple[str, ...]
    metrics: tuple[MetricScore, ...]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (tuples as lists)."""
        d = asdict(self)
        d["critical_errors"] = list(self.critical_errors)
        d["critical_feedback"] = list(self.critical_feedback)
        d["metrics"] = [asdict(m) for m in self.metrics]
        return d

    def metric(self, name: str) -> MetricScore:
        """The breakdown line of one metric (KeyError if the rubric does not score it)."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(
            f"metric {name!r} is not in this rubric; scored: {[m.name for m in self.metrics]}"
        )


def worst_value(pass_value: float, excellent: float) -> float:
    """The value that scores 0: ``pass + 2 * (pass - excellent)``."""
    return pass_value + 2.0 * (pass_value - excellent)


def sub_score(
    value: float | None,
    pass_value: float,
    excellent: float,
    *,
    higher_is_better: bool,
    boolean: bool = False,
) -> float:
    """Sub-score of one metric value, 0..100.

    Parameters
    ----------
    value : float or None
        The metric value (None or nan scores 0).
    pass_value, excellent : float
        Thresholds scoring 60 and 100.
    higher_is_better : bool
        Direction of the metric.
    boolean : bool
        0/1 metric: 100 when the value meets ``excellent``, else 0.
    """
    if value is None or not math.isfinite(value):
        return 0.0
    s = 1.0 if higher_is_better else -1.0
    g, gp, ge = s * value, s * pass_value, s * excellent
    if boolean:
        return 100.0 if g >= ge else 0.0
    if g >= ge:
        return 100.0
    if g >= gp:  # here ge > gp
        return 60.0 + 40.0 * (g - gp) / (ge - gp)
    gw = s * worst_value(pass_value, excellent)
    if g <= gw:
        return 0.0
    return 60.0 * (g - gw) / (gp - gw)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _default_feedback(name: str, pass_value: float, excellent: float, unit: str) -> str:
    m = METRICS[name]
    word = "or more" if m.higher_is_better else "or less"
    u = "" if unit in ("1", "bool", "count") else f" {unit}"
    return f"{name}: aim for {excellent:g}{u} {word} (pass: {pass_value:g}{u})."


def score(
    log_or_metrics: SessionLog | Mapping[str, float],
    scenario: Scenario,
    *,
    critical_errors: Sequence[str] | None = None,
) -> ScoreResult:
    """Score an attempt against the scenario's rubric.

    Parameters
    ----------
    log_or_metrics : SessionLog or mapping of str to float
        The attempt's log (metrics and critical errors are computed from it), or
        already computed metric values (then critical errors come from
        ``critical_errors``).
    scenario : Scenario
        Gives the rubric, metric parameters and feedback texts.
    critical_errors : sequence of str, optional
        Critical errors that occurred (only with a metrics mapping).

    Returns
    -------
    ScoreResult
    """
    rubric = scenario.rubric
    names = [m.metric for m in rubric.metrics]
    if isinstance(log_or_metrics, SessionLog):
        log = log_or_metrics
        if critical_errors is not None:
            raise TypeError(
                "critical_errors is read from the log; pass it only with a metrics dict"
            )
        if log.scenario_id != scenario.id:
            raise ScenarioError(
                f"the log is of scenario {log.scenario_id!r} but is scored with {scenario.id!r}; "
                "load the scenario the attempt was run with"
            )
        values = compute_metrics(log, scenario.metric_params(), names=names)
        found = critical_errors_in(log, list(rubric.critical_errors))
        log_hash = log.hash()
    else:
        values = {k: float(v) if v is not None else math.nan for k, v in log_or_metrics.items()}
        missing = [n for n in names if n not in values]
        if missing:
            raise MetricError(
                f"metrics {missing} scored by {scenario.id!r} are missing; "
                "compute them with surgsim.scoring.compute_metrics"
            )
        watched = set(rubric.critical_errors)
        found = []
        for kind in critical_errors or ():
            if kind in watched and kind not in found:
                found.append(kind)
        log_hash = ""

    lines: list[MetricScore] = []
    for rm in rubric.metrics:
        mdef = METRICS[rm.metric]
        v = values[rm.metric]
        value = v if math.isfinite(v) else None
        sub = sub_score(
            value,
            rm.pass_,
            rm.excellent,
            higher_is_better=mdef.higher_is_better,
            boolean=mdef.kind == "boolean",
        )
        if value is None:
            passed = False
        elif mdef.higher_is_better:
            passed = value >= rm.pass_
        else:
            passed = value <= rm.pass_
        feedback = ""
        if sub < 100.0:
            feedback = scenario.feedback.get(rm.metric) or _default_feedback(
                rm.metric, rm.pass_, rm.excellent, mdef.unit
            )
        lines.append(
            MetricScore(
                name=rm.metric,
                value=value,
                unit=mdef.unit,
                weight=float(rm.weight),
                pass_value=float(rm.pass_),
                excellent=float(rm.excellent),
                worst=float(worst_value(rm.pass_, rm.excellent)),
                higher_is_better=mdef.higher_is_better,
                sub_score=float(sub),
                passed=bool(passed),
                feedback=feedback.strip(),
            )
        )

    total_weight = sum(m.weight for m in lines)
    total = sum(m.weight * m.sub_score for m in lines) / total_weight
    total = min(100.0, max(0.0, total))
    passed_all = total >= rubric.pass_score and not found
    critical_feedback = tuple(scenario.feedback[k].strip() for k in found if k in scenario.feedback)

    weak = sorted((m for m in lines if m.sub_score < 100.0), key=lambda m: m.sub_score)[:2]
    work_on = ", ".join(f"{m.name} {_fmt(m.value)} ({m.sub_score:.0f})" for m in weak)
    if found:
        summary = f"FAIL: critical error ({', '.join(found)}); score {total:.1f}/100"
    elif not passed_all:
        summary = f"FAIL: score {total:.1f}/100, below the pass mark of {rubric.pass_score:g}" + (
            f"; work on {work_on}" if work_on else ""
        )
    else:
        summary = f"PASS: score {total:.1f}/100 (pass mark {rubric.pass_score:g})" + (
            f"; work on {work_on}" if work_on else "; every metric excellent"
        )

    return ScoreResult(
        scenario_id=scenario.id,
        scenario_version=scenario.version,
        scenario_hash=scenario.content_hash(),
        log_hash=log_hash,
        total=float(total),
        pass_score=float(rubric.pass_score),
        passed=bool(passed_all),
        critical_errors=tuple(found),
        critical_feedback=critical_feedback,
        metrics=tuple(lines),
        summary=summary,
    )
