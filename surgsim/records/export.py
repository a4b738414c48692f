"""Exports: CSV tables of attempts and metrics, and a JSON bundle of one attempt.

Exports carry opaque person ids only (never display or login names; docs/domain.md
section 6) and only what the requesting :class:`~surgsim.records.auth.AccessContext`
may read.

The bundle holds everything replay needs (the scenario version's exact content,
the session log with its input log and seed) plus the score and metrics, so an
attempt can be replayed, rescored or archived away from the lab database. Since
bundle version 2 the log's sample channels are packed (``"samples_packed"``: base64
of :func:`surgsim.scoring.log.pack_samples`, exact bits; inputs and events stay
readable JSON); version 1 bundles (samples as JSON lists) still load::

    bundle = load_bundle("attempt.json")
    session = replay(bundle.scenario, case, bundle.log)   # surgsim.session.session.replay
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from surgsim.errors import RecordsError
from surgsim.scoring.log import SessionLog

if TYPE_CHECKING:
    from surgsim.records.auth import AccessContext
    from surgsim.records.db import Records
    from surgsim.scenarios.model import Scenario

__all__ = [
    "ATTEMPT_COLUMNS",
    "BUNDLE_FORMAT",
    "Bundle",
    "METRIC_COLUMNS",
    "attempt_bundle",
    "attempts_csv",
    "load_bundle",
    "metrics_csv",
    "write_bundle",
    "write_csv",
]

BUNDLE_FORMAT = "surgsim-attempt-bundle"
BUNDLE_VERSION = 2
#: Bundle versions :func:`load_bundle` reads (1: samples as JSON lists).
BUNDLE_VERSIONS = (1, 2)

ATTEMPT_COLUMNS = (
    "attempt_id",
    "trainee_id",
    "scenario_id",
    "scenario_version",
    "station",
    "mode",
    "started_at",
    "ended_at",
    "duration_s",
    "status",
    "score",
    "passed",
    "critical_errors",
    "released",
)
METRIC_COLUMNS = ("attempt_id", "trainee_id", "scenario_id", "name", "value", "unit")


def _out(path: str | Path) -> Path:
    p = Path(path)
    if not p.parent.is_dir():
        raise RecordsError(
            f"cannot write {p}: the folder {p.parent} does not exist; create it or choose another"
        )
    return p


def attempts_csv(
    records: Records,
    *,
    access: AccessContext | None = None,
    trainee_id: str | None = None,
    scenario_id: str | None = None,
) -> str:
    """The attempts ``access`` may read as CSV text (columns :data:`ATTEMPT_COLUMNS`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ATTEMPT_COLUMNS)
    rows = records.list_attempts(trainee_id, access=access, scenario_id=scenario_id)
    details = records.critical_errors(access=access)
    for a in rows:
        w.writerow(
            [
                a.id,
                a.trainee_id,
                a.scenario_id,
                a.scenario_version,
                a.station,
                a.mode,
                a.started_at.isoformat(),
                a.ended_at.isoformat(),
                f"{(a.ended_at - a.started_at).total_seconds():.3f}",
                a.status,
                "" if a.score is None else repr(float(a.score)),
                int(a.passed),
                ";".join(details[a.id]),
                int(a.released),
            ]
        )
    return buf.getvalue()


def metrics_csv(
    records: Records, *, access: AccessContext | None = None, trainee_id: str | None = None
) -> str:
    """One row per attempt and metric (columns :data:`METRIC_COLUMNS`; SI units)."""
    who = {
        a.id: (a.trainee_id, a.scenario_id)
        for a in records.list_attempts(trainee_id, access=access)
    }
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(METRIC_COLUMNS)
    for aid, name, value, unit in records.metric_rows(access=access, trainee_id=trainee_id):
        if aid in who:
            w.writerow([aid, *who[aid], name, "" if value is None else repr(float(value)), unit])
    return buf.getvalue()


def write_csv(
    records: Records,
    folder: str | Path,
    *,
    access: AccessContext | None = None,
    trainee_id: str | None = None,
) -> tuple[Path, Path]:
    """Write ``attempts.csv`` and ``metrics.csv`` into ``folder`` (created if missing)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordsError(f"cannot create the export folder {folder}: {exc}") from exc
    a, m = folder / "attempts.csv", folder / "metrics.csv"
    a.write_text(attempts_csv(records, access=access, trainee_id=trainee_id), encoding="utf-8")
    m.write_text(metrics_csv(records, access=access, trainee_id=trainee_id), encoding="utf-8")
    return a, m


# ------------------------------------------------------------------ bundles


def attempt_bundle(
    records: Records, attempt_id: str, *, access: AccessContext | None = None
) -> dict[str, Any]:
    """The JSON-compatible bundle of one attempt (see the module docstring)."""
    rec = records.get_attempt(attempt_id, access=access)
    content = records.scenario_content(rec.scenario_hash)
    if content is None:
        raise RecordsError(
            f"attempt {attempt_id}: the content of scenario {rec.scenario_id} "
            f"{rec.scenario_version} ({rec.scenario_hash[:12]}) is not in {records.masked_url} "
            "(recorded before scenario versions were kept); it cannot be bundled for replay"
        )
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "attempt": {
            "id": rec.id,
            "trainee_id": rec.trainee_id,
            "station": rec.station,
            "mode": rec.mode,
            "status": rec.status,
            "started_at": rec.started_at.isoformat(),
            "ended_at": rec.ended_at.isoformat(),
            "score": rec.score,
            "passed": rec.passed,
            "critical_errors": list(rec.critical_errors),
            "released": rec.released,
            "case_id": rec.case_id,
            "debrief_notes": rec.debrief_notes,
        },
        "scenario": {
            "id": rec.scenario_id,
            "version": rec.scenario_version,
            "hash": rec.scenario_hash,
            "content": json.loads(content),
        },
        "log": rec.log.to_dict(packed_samples=True) if rec.log is not None else None,
        "log_hash": rec.log_hash,
        "input_hash": rec.input_hash,
        "metrics": rec.metrics,
        "result": rec.result,
    }


def write_bundle(
    records: Records, attempt_id: str, path: str | Path, *, access: AccessContext | None = None
) -> Path:
    """Write one attempt's bundle as JSON; the path written."""
    out = _out(path)
    out.write_text(json.dumps(attempt_bundle(records, attempt_id, access=access)), encoding="utf-8")
    return out


@dataclass(frozen=True)
class Bundle:
    """What replay needs from an attempt bundle.

    Attributes
    ----------
    scenario : Scenario
        The exact scenario version the attempt ran (its content hash is checked).
    log : SessionLog
        The recorded log (seed, input log, samples, events; its hash is checked).
    attempt : dict
        Attempt fields (id, opaque trainee id, status, score, ...).
    metrics : dict of str to float or None
    result : dict
        The stored :class:`~surgsim.scoring.rubric.ScoreResult` as a dict.
    """

    scenario: Scenario
    log: SessionLog
    attempt: dict[str, Any]
    metrics: dict[str, float | None]
    result: dict[str, Any]

    @property
    def attempt_id(self) -> str:
        return str(self.attempt["id"])

    @property
    def score(self) -> float | None:
        return self.attempt.get("score")


def load_bundle(path: str | Path) -> Bundle:
    """Read and check an attempt bundle written by :func:`write_bundle`.

    Raises
    ------
    RecordsError
        Not a bundle, an unknown bundle version, or its scenario or log does not
        match the hash it carries (edited or damaged); the message names the file.
    """
    from pydantic import ValidationError

    from surgsim.scenarios.model import Scenario

    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordsError(f"cannot read the attempt bundle {p}: {exc}") from exc
    if not isinstance(d, dict) or d.get("format") != BUNDLE_FORMAT:
        raise RecordsError(
            f"{p} is not a surgsim attempt bundle (no \"format\": \"{BUNDLE_FORMAT}\"); "
            "write one with `surgsim records export --format json --attempt ID`"
        )
    if d.get("version") not in BUNDLE_VERSIONS:
        raise RecordsError(
            f"{p}: bundle version {d.get('version')!r} is not supported (this surgsim reads "
            f"{', '.join(map(str, BUNDLE_VERSIONS))}); export it again or update surgsim"
        )
    try:
        sc = d["scenario"]
        scenario = Scenario.model_validate(sc["content"])
        log = SessionLog.from_dict(d["log"])
    except (KeyError, TypeError, ValueError, ValidationError, RecordsError) as exc:
        raise RecordsError(f"{p}: damaged attempt bundle ({exc})") from exc
    if scenario.content_hash() != sc.get("hash") or log.scenario_hash != sc.get("hash"):
        raise RecordsError(
            f"{p}: the scenario content does not match its hash {str(sc.get('hash'))[:12]} "
            "(edited or damaged bundle)"
        )
    if log.hash() != d.get("log_hash"):
        raise RecordsError(
            f"{p}: the session log does not match its hash (edited or damaged bundle)"
        )
    return Bundle(
        scenario=scenario,
        log=log,
        attempt=dict(d.get("attempt", {})),
        metrics=dict(d.get("metrics", {})),
        result=dict(d.get("result", {})),
    )
