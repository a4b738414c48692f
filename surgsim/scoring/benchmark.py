"""Expert-derived benchmarks: rubric thresholds from expert attempts.

Proficiency-based progression sets the benchmark at the mean of experienced
operators on the same task (docs/domain.md section 4); for wall force no
validated threshold in newtons exists, so it is set at the experts' 95th
percentile on this simulator (section 2). The rules, for each rubric metric
given the experts' values ``x`` (n >= 1 attempts, mean ``m``, sample standard
deviation ``sd``, 0 for one attempt):

* continuous metrics: ``excellent = m``; ``pass`` is worse than the mean by
  ``max(SD_MULTIPLE * sd, margin * |m|, ABS_FLOOR[unit])`` (default margin 50 %:
  an attempt 1.5 times the experts' time or path still passes);
* force metrics (:data:`FORCE_METRICS`, lower is better): ``excellent = m``,
  ``pass = max(P95(x), m + max(FORCE_MIN_MARGIN * m, ABS_FLOOR["N"]))``, so
  that with few experts the pass mark is never tighter than 25 % above their
  mean;
* boolean metrics: ``pass = excellent = `` the worst expert value (every expert
  must have reached the target for it to score).

The floors keep ``pass`` distinct from ``excellent`` when the experts agree
exactly (no wall hits at all, say). Values are rounded to three significant
digits. Everything here is pure: the command line (``surgsim benchmark
derive``) runs the attempts and calls :func:`derive_thresholds` and
:func:`rewrite_thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import yaml

from surgsim.errors import ScenarioError
from surgsim.scoring.metrics import METRICS

__all__ = [
    "ABS_FLOOR",
    "DEFAULT_MARGIN",
    "FORCE_METRICS",
    "FORCE_MIN_MARGIN",
    "SD_MULTIPLE",
    "DerivedThreshold",
    "derive_metric",
    "derive_thresholds",
    "format_table",
    "rewrite_thresholds",
]

#: Relative margin between the expert mean (excellent) and the pass mark.
DEFAULT_MARGIN = 0.5
#: The pass mark is at least this many expert standard deviations from the mean.
SD_MULTIPLE = 2.0
#: Force metrics: thresholds at the experts' 95th percentile, at least this far above the mean.
FORCE_MIN_MARGIN = 0.25
#: Metrics whose pass mark is the experts' 95th percentile (docs/domain.md section 2).
FORCE_METRICS: tuple[str, ...] = ("peak_wall_force_n", "mean_wall_force_n", "force_impulse_ns")
#: Smallest gap between excellent and pass, by metric unit (SI).
ABS_FLOOR: dict[str, float] = {
    "s": 1.0,
    "m": 0.01,
    "N": 0.05,
    "N s": 0.05,
    "count": 1.0,
    "1": 0.05,
    "ml": 1.0,
    "Gy m^2": 1e-6,
    "bool": 0.0,
}


@dataclass(frozen=True)
class DerivedThreshold:
    """Thresholds of one rubric metric derived from expert attempts.

    Attributes
    ----------
    metric, unit : str
        Metric catalogue name and unit.
    n : int
        Number of expert attempts.
    mean, sd, p95 : float
        Mean, sample standard deviation (0 for one attempt) and 95th percentile
        (linear interpolation) of the experts' values, in the metric's unit.
    pass_value, excellent : float
        The new thresholds (rounded to three significant digits).
    rule : str
        How they were set: ``"mean+margin"``, ``"p95"`` or ``"boolean"``.
    """

    metric: str
    unit: str
    n: int
    mean: float
    sd: float
    p95: float
    pass_value: float
    excellent: float
    rule: str


def _round3(x: float) -> float:
    """Round to three significant digits (0 stays 0)."""
    if x == 0.0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.3g}")


def derive_metric(name: str, values: Sequence[float], *, margin: float = DEFAULT_MARGIN) -> DerivedThreshold:
    """Pass and excellent thresholds of one metric from the experts' values.

    Parameters
    ----------
    name : str
        Metric catalogue name (:data:`surgsim.scoring.metrics.METRICS`).
    values : sequence of float
        The experts' values in the metric's unit (at least one, all finite).
    margin : float
        Relative gap between the mean and the pass mark of non-force metrics (> 0).

    Returns
    -------
    DerivedThreshold

    Raises
    ------
    ScenarioError
        Unknown metric, no values, or a value that is not finite (an expert
        attempt for which the metric is undefined, such as a target never reached).
    """
    if name not in METRICS:
        raise ScenarioError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    if not (margin > 0.0 and math.isfinite(margin)):
        raise ScenarioError(f"margin must be a positive number, got {margin!r}")
    x = np.asarray(list(values), dtype=float).reshape(-1)
    if x.size == 0:
        raise ScenarioError(f"{name}: no expert values to derive thresholds from")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ScenarioError(
            f"{name}: expert attempt(s) {[int(i) + 1 for i in bad]} have no value (nan); "
            "every expert attempt must complete the task (reach the targets)"
        )
    mdef = METRICS[name]
    n = int(x.size)
    mean = float(np.mean(x))
    sd = float(np.std(x, ddof=1)) if n > 1 else 0.0
    p95 = float(np.percentile(x, 95.0))
    floor = ABS_FLOOR.get(mdef.unit, 0.0)
    if mdef.kind == "boolean":
        worst = float(np.min(x) if mdef.higher_is_better else np.max(x))
        return DerivedThreshold(name, mdef.unit, n, mean, sd, p95, worst, worst, "boolean")
    excellent = _round3(mean)
    if name in FORCE_METRICS and not mdef.higher_is_better:
        pass_value = max(p95, mean + max(FORCE_MIN_MARGIN * abs(mean), floor))
        rule = "p95"
    else:
        gap = max(SD_MULTIPLE * sd, margin * abs(mean), floor)
        pass_value = mean - gap if mdef.higher_is_better else mean + gap
        rule = "mean+margin"
    return DerivedThreshold(
        name, mdef.unit, n, mean, sd, p95, _round3(pass_value), excellent, rule
    )


def derive_thresholds(
    expert_metrics: Sequence[Mapping[str, float]],
    names: Sequence[str],
    *,
    margin: float = DEFAULT_MARGIN,
) -> list[DerivedThreshold]:
    """Derive thresholds of the rubric metrics ``names`` from expert attempts.

    Parameters
    ----------
    expert_metrics : sequence of mapping of str to float
        One metrics dict per expert attempt (from
        :func:`surgsim.scoring.metrics.compute_metrics`).
    names : sequence of str
        The rubric's metrics, in rubric order.
    margin : float
        See :func:`derive_metric`.

    Returns
    -------
    list of DerivedThreshold
        In the order of ``names``.
    """
    if not expert_metrics:
        raise ScenarioError("give at least one expert attempt to derive a benchmark from")
    out = []
    for name in names:
        missing = [i + 1 for i, m in enumerate(expert_metrics) if name not in m]
        if missing:
            raise ScenarioError(f"{name}: missing from expert attempt(s) {missing}")
        out.append(derive_metric(name, [m[name] for m in expert_metrics], margin=margin))
    return out


# ------------------------------------------------------------------ YAML rewrite


def _number(x: float) -> str:
    """Plain YAML number for a threshold: '240', '0.0123', never an exponent."""
    if float(x).is_integer():
        return str(int(x))
    return np.format_float_positional(float(x), trim="-")


def _mapping_get(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def rewrite_thresholds(text: str, derived: Sequence[DerivedThreshold], source: str = "<scenario>") -> str:
    """Write new ``pass``/``excellent`` values into a scenario's YAML text.

    Only the two value scalars of each derived metric's entry under
    ``rubric.metrics`` are replaced, in place: comments, key order, flow or
    block style and every other byte of the file are kept.

    Parameters
    ----------
    text : str
        The scenario file's content.
    derived : sequence of DerivedThreshold
    source : str
        File name for error messages.

    Returns
    -------
    str
        The edited text.

    Raises
    ------
    ScenarioError
        The text is not YAML, has no ``rubric.metrics`` list, or lacks a derived metric.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML ({exc}); fix it before deriving") from exc
    metrics = _mapping_get(_mapping_get(root, "rubric"), "metrics") if root is not None else None
    if not isinstance(metrics, yaml.SequenceNode):
        raise ScenarioError(f"{source}: rubric.metrics: no list of rubric metrics found")
    entries: dict[str, yaml.MappingNode] = {}
    for item in metrics.value:
        name = _mapping_get(item, "metric")
        if isinstance(name, yaml.ScalarNode):
            entries[name.value] = item
    edits: list[tuple[int, int, str]] = []
    for d in derived:
        item = entries.get(d.metric)
        if item is None:
            raise ScenarioError(f"{source}: rubric.metrics: no entry for metric {d.metric!r}")
        for key, value in (("pass", d.pass_value), ("excellent", d.excellent)):
            node = _mapping_get(item, key)
            if not isinstance(node, yaml.ScalarNode):
                raise ScenarioError(f"{source}: rubric.metrics[{d.metric}].{key}: missing or not a number")
            edits.append((node.start_mark.index, node.end_mark.index, _number(value)))
    out = text
    for start, end, new in sorted(edits, reverse=True):
        out = out[:start] + new + out[end:]
    return out


def format_table(
    derived: Sequence[DerivedThreshold], before: Mapping[str, tuple[float, float]] | None = None
) -> str:
    """The before/after table printed by ``surgsim benchmark derive``.

    Parameters
    ----------
    derived : sequence of DerivedThreshold
    before : mapping of metric to (pass, excellent), optional
        The rubric's thresholds before derivation.
    """
    before = before or {}
    head = (
        f"{'metric':<20} {'unit':<6} {'n':>2} {'mean':>9} {'sd':>9} {'p95':>9}  "
        f"{'pass (old -> new)':>22}  {'excellent (old -> new)':>24}  rule"
    )
    lines = [head, "-" * len(head)]
    for d in derived:
        op, oe = before.get(d.metric, (math.nan, math.nan))
        lines.append(
            f"{d.metric:<20} {d.unit:<6} {d.n:>2} {d.mean:>9.4g} {d.sd:>9.3g} {d.p95:>9.4g}  "
            f"{f'{op:.4g} -> {d.pass_value:.4g}':>22}  {f'{oe:.4g} -> {d.excellent:.4g}':>24}  {d.rule}"
        )
    return "\n".join(lines)
