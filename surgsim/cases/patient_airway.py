"""Airway phantoms with a patient's trachea (measured on a chest CT) for intubation scenarios.

No chest CT shows the mouth, pharynx and larynx, so the head-and-neck phantom
(:mod:`surgsim.cases.airway_phantom`) keeps them; the trachea and main bronchi
take the patient's measurements (:mod:`surgsim.anatomy.trachea`), so the tube's
depth is judged against this patient's carina. A scenario asks for it with
``case: {phantom: airway-adult, trachea_case_id: case-...}`` (an airway case of
the library, :func:`surgsim.cases.library.load_trachea`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from surgsim.anatomy.trachea import TracheaMeasure

__all__ = ["lower_trachea_diameter_m", "patient_airway_params", "phantom_trachea_length_m", "scenario_airway_params"]


def patient_airway_params(measure: TracheaMeasure, base="adult", source: str = "patient"):
    """Airway phantom parameters with a patient's trachea.

    The phantom keeps its head, mouth, pharynx and larynx (no chest CT shows
    them); the trachea below the cricoid takes the patient's lumen radius and
    main bronchus angles, and the patient's length when the scan shows the whole trachea. A
    trachea cut by the scan is at least as long as measured: the phantom's
    length is kept unless the measured part is already longer.

    Parameters
    ----------
    measure : TracheaMeasure
    base : str or AirwayParams
        The phantom variant to start from.
    source : str
        Recorded in the parameters (e.g. the library case id; nothing identifying).

    Returns
    -------
    params : AirwayParams
    notes : list of str
        What was taken from the patient and what was kept.
    """
    from surgsim.cases.airway_phantom import PARAMS, AirwayParams, design

    P = PARAMS[base] if isinstance(base, str) else base
    if not isinstance(P, AirwayParams):
        raise TypeError(f"base must be a variant name or AirwayParams, not {type(base).__name__}")
    phantom_len = phantom_trachea_length_m(design(P, 0.0))
    notes = [f"lumen radius {measure.radius_m * 1e3:.1f} mm from the CT"]
    if measure.complete:
        length = measure.length_m
        notes.append(f"trachea {length * 1e3:.1f} mm from the CT")
    elif measure.length_m > phantom_len:
        length = measure.length_m
        notes.append(f"trachea cut by the scan at {length * 1e3:.1f} mm, longer than the phantom's "
                     f"{phantom_len * 1e3:.1f} mm: the measured part used")
    else:
        length = phantom_len
        notes.append(f"trachea cut by the scan at {measure.length_m * 1e3:.1f} mm: the phantom's "
                     f"{phantom_len * 1e3:.1f} mm kept")
    changes: dict[str, Any] = {
        "lower_trachea_radius_mm": round(measure.radius_m * 1e3 / P.scale, 4),
        "trachea_length_mm": round(length * 1e3 / P.scale, 4),
        "source": source,
    }
    for side in ("right", "left"):
        a = getattr(measure, f"{side}_bronchus_angle_rad")
        if a is not None:
            changes[f"{side}_bronchus_deg"] = round(math.degrees(a), 4)
            notes.append(f"{side} main bronchus {math.degrees(a):.0f} deg from the CT")
    return replace(P, **changes), notes


def phantom_trachea_length_m(design) -> float:
    """Cricoid-to-carina length (m) of an airway design's trachea."""
    pts = design.centerlines_mm["trachea"][0]
    return float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1))) / 1000.0


def scenario_airway_params(case_spec, variant: str):
    """The airway parameters a scenario's ``case`` asks for, and notes on them.

    ``case.trachea_case_id`` (an airway case of the library) puts that patient's
    trachea into the ``variant`` phantom; without it, the variant's own parameters.

    Raises
    ------
    AnatomyError
        The trachea case is unknown, not an airway case or damaged.
    """
    from surgsim.cases.airway_phantom import PARAMS
    from surgsim.cases.library import load_trachea

    case_id = getattr(case_spec, "trachea_case_id", None)
    if not case_id:
        return PARAMS[variant], []
    return patient_airway_params(load_trachea(case_id), base=variant, source=case_id)


def lower_trachea_diameter_m(params) -> float:
    """Lumen diameter (m) of the trachea below the cricoid of airway parameters."""
    r = params.lower_trachea_radius_mm if params.lower_trachea_radius_mm is not None else params.trachea_radius_mm
    return 2.0 * r * params.scale / 1000.0
