"""surgsim.records: the attempt database (trainees, attempts with their logs, metrics)."""

from surgsim.records.db import (
    ATTEMPT_STATUSES,
    AttemptRecord,
    AttemptSummary,
    Records,
    mask_url,
    new_trainee_id,
)

__all__ = [
    "ATTEMPT_STATUSES",
    "AttemptRecord",
    "AttemptSummary",
    "Records",
    "mask_url",
    "new_trainee_id",
]
