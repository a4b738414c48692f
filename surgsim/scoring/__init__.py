"""surgsim.scoring: session logs, metrics computed from them, and rubric scoring."""

from surgsim.scoring.log import SAMPLE_CHANNELS, Event, InputEvent, SessionLog
from surgsim.scoring.metrics import (
    CRITICAL_ERRORS,
    DEFAULT_PARAMS,
    METRICS,
    MetricDef,
    MetricError,
    compute_metrics,
    critical_errors_in,
)
from surgsim.scoring.rubric import MetricScore, ScoreResult, score, sub_score, worst_value

__all__ = [
    "CRITICAL_ERRORS",
    "DEFAULT_PARAMS",
    "METRICS",
    "SAMPLE_CHANNELS",
    "Event",
    "InputEvent",
    "MetricDef",
    "MetricError",
    "MetricScore",
    "ScoreResult",
    "SessionLog",
    "compute_metrics",
    "critical_errors_in",
    "score",
    "sub_score",
    "worst_value",
]
