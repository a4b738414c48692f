"""surgsim.records: the attempt database (people, cohorts, attempts with their logs,
metrics, events), access by role, durable journals, exports, learning curves and reports.

Modules beyond :mod:`~surgsim.records.db` import lazily (``from surgsim.records.xapi
import ...``) so that opening the database stays light.
"""

from surgsim.records.auth import AccessContext, AccessDeniedError
from surgsim.records.db import (
    ATTEMPT_STATUSES,
    AttemptRecord,
    AttemptSummary,
    CohortInfo,
    Records,
    mask_url,
    new_person_id,
    new_trainee_id,
)
from surgsim.records.journal import AttemptPendingError, AttemptWriter

__all__ = [
    "ATTEMPT_STATUSES",
    "AccessContext",
    "AccessDeniedError",
    "AttemptPendingError",
    "AttemptRecord",
    "AttemptSummary",
    "AttemptWriter",
    "CohortInfo",
    "Records",
    "mask_url",
    "new_person_id",
    "new_trainee_id",
]
