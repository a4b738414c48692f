"""The scenario format: what a training case asks of the trainee and how it is scored.

Scenarios are YAML files validated by the pydantic models below (the JSON
schema in ``scenarios/schema/scenario.schema.json`` is generated from them).
YAML keys carry their unit as a suffix (``_s``, ``_m``, ``_n``, ``_deg``);
angles are converted to radians by properties so that code stays SI.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)

from surgsim.scoring.metrics import CRITICAL_ERRORS, METRICS

__all__ = [
    "SCHEMA_VERSION",
    "CaseSpec",
    "Complications",
    "Instrument",
    "PatientSpec",
    "Rubric",
    "RubricMetric",
    "Scenario",
    "StartSpec",
    "Target",
]

#: Version of the scenario format this code reads (older files are migrated).
SCHEMA_VERSION = 1

Identifier = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        max_length=64,
        description="Lower-case identifier: letters, digits, '-' and '_'.",
    ),
]


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """'; did you mean 'x'?' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseSpec(_Model):
    """The anatomy: exactly one of ``phantom``, ``dicom`` or ``case_id``."""

    phantom: str | None = Field(None, description="Built-in phantom name, e.g. 'default'.")
    dicom: str | None = Field(
        None,
        description="DICOM series folder, relative to the scenario file "
        "(must stay inside the scenario's folder or the repository's assets folder).",
    )
    preset: str | None = Field(
        None, description="Segmentation preset for a DICOM case, e.g. 'vessels'."
    )
    case_id: str | None = Field(None, description="Id of a case imported into the case library.")
    trachea_case_id: str | None = Field(
        None,
        description="Airway phantoms only: id of an airway case (a chest CT imported with "
        "`surgsim case import FOLDER --preset airway`) whose measured trachea and carina replace the phantom's.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CaseSpec:
        given = [k for k in ("phantom", "dicom", "case_id") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'phantom', 'dicom' or 'case_id'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.preset is not None and self.dicom is None:
            raise ValueError("'preset' only applies to a 'dicom' case")
        if self.trachea_case_id is not None and not (self.phantom or "").startswith("airway-"):
            raise ValueError("'trachea_case_id' only applies to an airway phantom (phantom: airway-adult...)")
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_trachea(self, handler) -> dict[str, Any]:
        # without a patient trachea the field is left out, so the content (and content hash) of
        # scenarios written before it existed is unchanged
        out = handler(self)
        if isinstance(out, dict) and "trachea_case_id" in out and out["trachea_case_id"] is None:
            del out["trachea_case_id"]
        return out


class PatientSpec(_Model):
    """Patient physiology."""

    physiology: str = Field("adult", description="Physiology preset name, e.g. 'adult'.")


class Instrument(_Model):
    """A device available in the scenario, from the device catalogue, with overrides."""

    id: Identifier
    device: str = Field(description="Device catalogue key, e.g. 'angled_5fr'.")
    length_m: float | None = Field(None, gt=0.0, le=3.0, description="Working length, metres.")
    n_nodes: int | None = Field(None, ge=2, le=1000, description="Number of rod nodes.")
    tip_angle_deg: float | None = Field(
        None, ge=0.0, le=360.0, description="Tip bend angle, degrees."
    )

    @property
    def tip_angle(self) -> float | None:
        """Tip bend angle override, radians (None: the catalogue's)."""
        return None if self.tip_angle_deg is None else math.radians(self.tip_angle_deg)


class StartSpec(_Model):
    """Where and how the device starts (and, for an intubation, the patient's head)."""

    access: Literal["femoral", "radial", "brachial", "oral", "nasal"] = "femoral"
    initial_depth_m: float = Field(0.0, ge=0.0, le=2.0, description="Inserted length at start, m.")
    hub_rotation_deg: float = Field(0.0, ge=-360.0, le=360.0, description="Hub rotation, deg.")
    head_extension_deg: float | None = Field(
        None,
        ge=0.0,
        le=34.0,
        description="Intubation only: head extension at the atlanto-occipital joint at the start, "
        "degrees (0 neutral, about 17 the sniffing position, 34 full extension; rounded to the "
        "simulator's 0.05 rad steps; it must not exceed what the patient's neck allows). "
        "Default: the sniffing position (0.3 rad, or the neck's limit when less).",
    )

    @property
    def hub_rotation(self) -> float:
        """Initial hub rotation, radians."""
        return math.radians(self.hub_rotation_deg)

    @property
    def head_extension(self) -> float | None:
        """Starting head extension, radians (None: the simulator's default)."""
        return None if self.head_extension_deg is None else math.radians(self.head_extension_deg)

    @model_serializer(mode="wrap")
    def _omit_default_head(self, handler) -> dict[str, Any]:
        # an unset head extension is left out, so the content (and content hash) of scenarios
        # written before the field existed is unchanged
        out = handler(self)
        if isinstance(out, dict) and out.get("head_extension_deg", 0.0) is None:
            del out["head_extension_deg"]
        return out


class Target(_Model):
    """A place the tip must reach: a distance past a labelled vessel's ostium, held."""

    id: Identifier
    label: str = Field(
        description="Anatomy label of the target branch, e.g. 'left_common_carotid'."
    )
    distance_from_ostium_m: float = Field(0.0, ge=0.0, le=0.5)
    tolerance_m: float = Field(0.005, gt=0.0, le=0.1)
    hold_s: float = Field(1.0, ge=0.0, le=60.0)


class Complications(_Model):
    """Force thresholds that define complications."""

    perforation_force_n: float = Field(3.0, gt=0.0, le=100.0)
    wall_hit_force_n: float = Field(0.3, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> Complications:
        if self.wall_hit_force_n >= self.perforation_force_n:
            raise ValueError(
                f"wall_hit_force_n ({self.wall_hit_force_n}) must be below "
                f"perforation_force_n ({self.perforation_force_n})"
            )
        return self


class RubricMetric(_Model):
    """One scored metric with its pass and excellent thresholds (in the metric's unit)."""

    metric: str = Field(
        description="Metric catalogue name.", json_schema_extra={"enum": list(METRICS)}
    )
    weight: float = Field(1.0, gt=0.0, le=100.0)
    pass_: float = Field(alias="pass", description="Value that scores 60.")
    excellent: float = Field(description="Value that scores 100.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(
                f"unknown metric {v!r}{_suggest(v, list(METRICS))} (known: {', '.join(METRICS)})"
            )
        return v

    @model_validator(mode="after")
    def _direction(self) -> RubricMetric:
        m = METRICS[self.metric]
        if not (math.isfinite(self.pass_) and math.isfinite(self.excellent)):
            raise ValueError("'pass' and 'excellent' must be finite numbers")
        worse = self.excellent < self.pass_ if m.higher_is_better else self.excellent > self.pass_
        if worse:
            word = "higher" if m.higher_is_better else "lower"
            raise ValueError(
                f"{self.metric}: {word} is better, so 'excellent' ({self.excellent}) must be "
                f"{'at least' if m.higher_is_better else 'at most'} 'pass' ({self.pass_})"
            )
        if m.kind == "boolean" and not {self.pass_, self.excellent} <= {0.0, 1.0}:
            raise ValueError(f"{self.metric} is 1 or 0: 'pass' and 'excellent' must be 0 or 1")
        return self


class Rubric(_Model):
    """How an attempt is scored."""

    pass_score: float = Field(60.0, ge=0.0, le=100.0)
    metrics: list[RubricMetric] = Field(min_length=1)
    critical_errors: list[str] = Field(
        default_factory=list,
        description="Event kinds that fail the attempt whatever the score.",
        json_schema_extra={"items": {"type": "string", "enum": list(CRITICAL_ERRORS)}},
    )

    @field_validator("metrics")
    @classmethod
    def _unique(cls, v: list[RubricMetric]) -> list[RubricMetric]:
        names = [m.metric for m in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"metric(s) listed more than once: {', '.join(dup)}")
        return v

    @field_validator("critical_errors")
    @classmethod
    def _known_errors(cls, v: list[str]) -> list[str]:
        for kind in v:
            if kind not in CRITICAL_ERRORS:
                raise ValueError(
                    f"unknown critical error {kind!r}{_suggest(kind, list(CRITICAL_ERRORS))} "
                    f"(known: {', '.join(CRITICAL_ERRORS)})"
                )
        return v


class Scenario(_Model):
    """A training scenario (see ``scenarios/catheter-lcca-basic.yaml``)."""

    schema_version: Literal[1] = Field(
        SCHEMA_VERSION,
        description="Scenario format version (files from older versions are migrated).",
    )
    id: Identifier
    title: str = Field(min_length=1, max_length=200)
    version: str = Field(
        pattern=r"^\d+(\.\d+){0,2}$", description="Content version, e.g. '1.0'; bump on any change."
    )
    author: str = ""
    procedure: Literal["endovascular", "intubation"]
    difficulty: int = Field(1, ge=1, le=5)
    description: str = ""
    learning_objectives: list[str] = Field(default_factory=list)
    case: CaseSpec
    patient: PatientSpec = Field(default_factory=PatientSpec)
    instruments: list[Instrument] = Field(min_length=1)
    start: StartSpec = Field(default_factory=StartSpec)
    targets: list[Target] = Field(default_factory=list)
    complications: Complications = Field(default_factory=Complications)
    time_limit_s: float = Field(600.0, gt=0.0, le=24 * 3600.0)
    mode: Literal["practice", "assessment"] = "practice"
    seed: int = Field(0, ge=0, le=2**63 - 1)
    rubric: Rubric
    feedback: dict[str, str] = Field(
        default_factory=dict,
        description="Feedback text per metric or critical error, shown when it was not excellent.",
        json_schema_extra={"propertyNames": {"enum": list(METRICS) + list(CRITICAL_ERRORS)}},
    )

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("instruments", "targets")
    @classmethod
    def _unique_ids(cls, v: list[Any]) -> list[Any]:
        ids = [x.id for x in v]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"id(s) used more than once: {', '.join(dup)}")
        return v

    @field_validator("feedback")
    @classmethod
    def _feedback_keys(cls, v: dict[str, str]) -> dict[str, str]:
        known = list(METRICS) + list(CRITICAL_ERRORS)
        for key in v:
            if key not in known:
                raise ValueError(
                    f"feedback for unknown metric or critical error {key!r}{_suggest(key, known)}"
                )
        return v

    @model_validator(mode="after")
    def _head_only_for_intubation(self) -> Scenario:
        if self.start.head_extension_deg is not None and self.procedure != "intubation":
            raise ValueError(
                "start.head_extension_deg only applies to an intubation scenario "
                f"(this one is {self.procedure!r})"
            )
        return self

    @model_validator(mode="after")
    def _rubric_targets(self) -> Scenario:
        used = {m.metric for m in self.rubric.metrics}
        if used & {"target_reached", "time_to_target_s"} and not self.targets:
            raise ValueError("the rubric scores target metrics but the scenario has no targets")
        return self

    # ------------------------------------------------------------ helpers

    @property
    def source_path(self) -> Path | None:
        """The YAML file this scenario was loaded from (None if built in code)."""
        return self._source

    def canonical_json(self) -> str:
        """The content as canonical JSON (sorted keys, no spaces): what the hash covers."""
        return json.dumps(
            self.model_dump(mode="json", by_alias=True),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def content_hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_json`: identifies the exact scenario content."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def dicom_path(self) -> Path | None:
        """Absolute DICOM folder of a ``{dicom: ...}`` case (None for other cases).

        Relative paths resolve against the scenario file's folder (the current
        folder for a scenario built in code).
        """
        if self.case.dicom is None:
            return None
        base = self._source.parent if self._source is not None else Path.cwd()
        return (base / self.case.dicom).resolve()

    def metric_params(self) -> dict[str, Any]:
        """Parameters for :func:`surgsim.scoring.metrics.compute_metrics` from this scenario."""
        return {
            "wall_hit_force_n": self.complications.wall_hit_force_n,
            "targets": tuple(t.id for t in self.targets),
        }
