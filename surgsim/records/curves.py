"""Learning curves: standard CUSUM and LC-CUSUM of a trainee's failures on a scenario.

Definitions (docs/domain.md section 4), with x_n = 1 for a failed attempt:

- **Standard CUSUM** (acceptable failure rate p0, unacceptable p1, errors alpha, beta):
  P = ln(p1/p0), Q = ln((1-p0)/(1-p1)), s = Q/(P+Q); S_n = S_(n-1) + x_n - s with
  S_0 = 0; alarm line h1 = ln((1-beta)/alpha)/(P+Q) (performance unacceptable when
  S_n >= h1), acceptable line h0 = -ln((1-alpha)/beta)/(P+Q) (acceptable when S_n <= h0).
- **LC-CUSUM** (Biau): starts from "not yet competent"; with p0 the unacceptable
  and p1 the acceptable failure rate, S_t = max(0, S_(t-1) + W_t), W_t = ln(p1/p0) on
  a failure and ln((1-p1)/(1-p0)) on a success; competence is declared when S_t
  reaches h, chosen by simulation (:func:`lc_cusum_limit`) so that a trainee whose
  true failure rate is p0 is declared competent with at most 5 % probability.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from surgsim.errors import RecordsError

if TYPE_CHECKING:
    from surgsim.records.auth import AccessContext
    from surgsim.records.db import Records

__all__ = [
    "CusumResult",
    "LcCusumResult",
    "LearningCurve",
    "cusum",
    "lc_cusum",
    "lc_cusum_limit",
    "learning_curve",
]


def _failures(x: Sequence[int] | np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=float).reshape(-1)
    if a.size and not np.isin(a, (0.0, 1.0)).all():
        raise RecordsError("failure indicators must be 0 (success) or 1 (failure)")
    return a


def _rates(p0: float, p1: float, name0: str, name1: str) -> None:
    for n, p in ((name0, p0), (name1, p1)):
        if not 0.0 < p < 1.0:
            raise RecordsError(f"{n} = {p} must be strictly between 0 and 1")


@dataclass(frozen=True)
class CusumResult:
    """Standard CUSUM of a failure sequence.

    Attributes
    ----------
    s : (n,) float
        S_1..S_n.
    step : float
        s, subtracted at each attempt.
    h0, h1 : float
        Acceptable (lower, negative) and alarm (upper) lines.
    first_alarm, first_acceptable : int or None
        0-based index of the first attempt with S_n >= h1 (or S_n <= h0).
    """

    s: np.ndarray
    step: float
    h0: float
    h1: float
    first_alarm: int | None
    first_acceptable: int | None

    @property
    def status(self) -> str:
        """``"alarm"``, ``"acceptable"`` or ``"undecided"`` at the last attempt."""
        if not self.s.size:
            return "undecided"
        if self.s[-1] >= self.h1:
            return "alarm"
        if self.s[-1] <= self.h0:
            return "acceptable"
        return "undecided"


def cusum(
    failures: Sequence[int] | np.ndarray,
    p0: float = 0.2,
    p1: float = 0.3,
    alpha: float = 0.05,
    beta: float = 0.2,
) -> CusumResult:
    """Standard CUSUM (see the module docstring).

    Parameters
    ----------
    failures : (n,) int
        1 for a failed attempt, 0 for a success, in order.
    p0, p1 : float
        Acceptable and unacceptable failure rates (p0 < p1).
    alpha, beta : float
        Type I and II errors.
    """
    _rates(p0, p1, "p0", "p1")
    _rates(alpha, beta, "alpha", "beta")
    if not p0 < p1:
        raise RecordsError(f"CUSUM needs the acceptable rate p0={p0} below the unacceptable p1={p1}")
    x = _failures(failures)
    P = math.log(p1 / p0)
    Q = math.log((1 - p0) / (1 - p1))
    step = Q / (P + Q)
    s = np.cumsum(x - step)
    h1 = math.log((1 - beta) / alpha) / (P + Q)
    h0 = -math.log((1 - alpha) / beta) / (P + Q)
    alarm = np.flatnonzero(s >= h1)
    ok = np.flatnonzero(s <= h0)
    return CusumResult(
        s=s,
        step=step,
        h0=h0,
        h1=h1,
        first_alarm=int(alarm[0]) if alarm.size else None,
        first_acceptable=int(ok[0]) if ok.size else None,
    )


@dataclass(frozen=True)
class LcCusumResult:
    """LC-CUSUM of a failure sequence.

    Attributes
    ----------
    s : (n,) float
        S_1..S_n (never below 0).
    h : float
        Decision limit.
    competent_at : int or None
        0-based index of the first attempt with S_t >= h.
    """

    s: np.ndarray
    h: float
    competent_at: int | None

    @property
    def competent(self) -> bool:
        return self.competent_at is not None


def _lc_weights(p0: float, p1: float) -> tuple[float, float]:
    return math.log(p1 / p0), math.log((1 - p1) / (1 - p0))


@functools.lru_cache(maxsize=64)
def lc_cusum_limit(
    p0: float = 0.3,
    p1: float = 0.2,
    n: int = 50,
    false_signal: float = 0.05,
    *,
    simulations: int = 20000,
    seed: int = 0,
) -> float:
    """Decision limit h of the LC-CUSUM, by simulation.

    The smallest h such that a trainee whose failure rate stays at the unacceptable
    p0 reaches h within ``n`` attempts with probability at most ``false_signal``.

    Parameters
    ----------
    p0, p1 : float
        Unacceptable and acceptable failure rates (p1 < p0).
    n : int
        Attempts monitored.
    """
    _rates(p0, p1, "p0", "p1")
    if not p1 < p0:
        raise RecordsError(f"LC-CUSUM needs the acceptable rate p1={p1} below the unacceptable p0={p0}")
    w_fail, w_ok = _lc_weights(p0, p1)
    rng = np.random.default_rng(seed)
    fails = rng.random((simulations, max(1, int(n)))) < p0
    s = np.zeros(simulations)
    peak = np.zeros(simulations)
    for j in range(fails.shape[1]):
        s = np.maximum(0.0, s + np.where(fails[:, j], w_fail, w_ok))
        np.maximum(peak, s, out=peak)
    values = np.unique(np.round(peak, 9))
    for v in values:  # smallest attainable level reached by at most false_signal of runs
        if v > 0 and np.mean(peak >= v - 1e-9) <= false_signal:
            return float(v)
    return float(values[-1] + w_ok)


def lc_cusum(
    failures: Sequence[int] | np.ndarray,
    p0: float = 0.3,
    p1: float = 0.2,
    h: float | None = None,
    *,
    n_for_limit: int = 50,
) -> LcCusumResult:
    """LC-CUSUM (see the module docstring).

    Parameters
    ----------
    failures : (n,) int
        1 for a failed attempt, 0 for a success, in order.
    p0, p1 : float
        Unacceptable and acceptable failure rates (p1 < p0).
    h : float, optional
        Decision limit (default :func:`lc_cusum_limit` over ``n_for_limit`` attempts).
    """
    _rates(p0, p1, "p0", "p1")
    if not p1 < p0:
        raise RecordsError(f"LC-CUSUM needs the acceptable rate p1={p1} below the unacceptable p0={p0}")
    x = _failures(failures)
    w_fail, w_ok = _lc_weights(p0, p1)
    if h is None:
        h = lc_cusum_limit(p0, p1, max(n_for_limit, x.size))
    s = np.empty(x.size)
    acc = 0.0
    for i, xi in enumerate(x):
        acc = max(0.0, acc + (w_fail if xi else w_ok))
        s[i] = acc
    hit = np.flatnonzero(s >= h - 1e-12)
    return LcCusumResult(s=s, h=float(h), competent_at=int(hit[0]) if hit.size else None)


@dataclass(frozen=True)
class LearningCurve:
    """One trainee's attempts at one scenario and their CUSUM charts.

    Attributes
    ----------
    trainee_id, scenario_id : str
    attempt_ids : list of str
        Completed or aborted attempts, oldest first (interrupted ones are left out).
    scores : (n,) float
        Scores 0..100 (nan for an aborted attempt without one).
    failures : (n,) int
        1 where the attempt did not pass.
    cusum : CusumResult
    lc_cusum : LcCusumResult
    """

    trainee_id: str
    scenario_id: str
    attempt_ids: list[str]
    scores: np.ndarray
    failures: np.ndarray
    cusum: CusumResult
    lc_cusum: LcCusumResult


def learning_curve(
    records: Records,
    trainee_id: str,
    scenario_id: str,
    *,
    access: AccessContext | None = None,
    cusum_rates: tuple[float, float] = (0.2, 0.3),
    lc_rates: tuple[float, float] = (0.3, 0.2),
) -> LearningCurve:
    """The learning curve of a trainee on a scenario, from the attempts ``access`` may read."""
    rows = [
        a
        for a in records.list_attempts(trainee_id, access=access, scenario_id=scenario_id)
        if a.status != "interrupted"
    ]
    failures = np.array([0 if a.passed else 1 for a in rows], dtype=int)
    scores = np.array([np.nan if a.score is None else a.score for a in rows], dtype=float)
    return LearningCurve(
        trainee_id=trainee_id,
        scenario_id=scenario_id,
        attempt_ids=[a.id for a in rows],
        scores=scores,
        failures=failures,
        cusum=cusum(failures, *cusum_rates),
        lc_cusum=lc_cusum(failures, *lc_rates),
    )
