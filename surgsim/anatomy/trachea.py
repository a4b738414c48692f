"""A patient's trachea measured on a chest CT, for endotracheal tube depth.

The airway preset (:func:`surgsim.anatomy.pipeline.build_anatomy` with
``preset="airway"``) segments the trachea and main bronchi and labels their
centerlines. From those, :func:`measure_trachea` takes what tube placement
depends on: the trachea's length to the carina, its lumen radius (equivalent
area radius over its middle part), the carina, and the angle of each main
bronchus from the tracheal axis (the straighter right bronchus is where a tube
pushed too deep goes).

A chest CT usually starts at the thoracic inlet, below the cricoid: the top of
the trachea is cut by the field of view (:attr:`TracheaMeasure.complete` is
``False``) and the measured length is only a lower bound.
:func:`surgsim.cases.patient_airway.patient_airway_params` puts a measured
trachea into the head-and-neck airway phantom (whose upper airway no chest CT shows), so an intubation is
simulated, and the tube's tip judged, against this patient's carina. The
target (:data:`TIP_ABOVE_CARINA_M`) is the tip 5 +/- 2 cm above the carina.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from surgsim.errors import AnatomyError

#: Where the tube tip should lie above the carina, metres (5 +/- 2 cm).
TIP_ABOVE_CARINA_M = 0.05
#: ... and how far from there it may be, metres.
TIP_ABOVE_CARINA_TOLERANCE_M = 0.02
#: Part of the trachea left out at each end when its radius is measured (the cut top, the carina), m.
RADIUS_END_SKIP_M = 0.015
#: The trachea counts as cut by the field of view when its first point is within this many slices
#: of the first or last slice of the scan.
CUT_SLICES = 1.5
#: Plausible adult or child tracheal lumen radius, metres (outside: a failed segmentation).
RADIUS_RANGE_M = (0.003, 0.015)


@dataclass(frozen=True)
class TracheaMeasure:
    """What a chest CT tells about a patient's trachea (metres, radians, LPS).

    Attributes
    ----------
    length_m : float
        Centreline length from the top of the segmented trachea to the carina.
    complete : bool
        ``False`` when the trachea is cut by the scan's field of view at the top:
        ``length_m`` is then a lower bound of the cricoid-to-carina length.
    radius_m : float
        Median equivalent-area lumen radius over the trachea, without
        :data:`RADIUS_END_SKIP_M` at either end.
    carina_m : (3,) float
        The carina (the trachea's last centreline point), LPS metres.
    right_bronchus_angle_rad, left_bronchus_angle_rad : float or None
        Each main bronchus' angle from the downward tracheal axis.
    """

    length_m: float
    complete: bool
    radius_m: float
    carina_m: tuple[float, float, float]
    right_bronchus_angle_rad: float | None = None
    left_bronchus_angle_rad: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "length_m": round(float(self.length_m), 7),
            "complete": bool(self.complete),
            "radius_m": round(float(self.radius_m), 7),
            "carina_m": [round(float(v), 7) for v in self.carina_m],
            "right_bronchus_angle_rad": _round(self.right_bronchus_angle_rad),
            "left_bronchus_angle_rad": _round(self.left_bronchus_angle_rad),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "trachea") -> TracheaMeasure:
        """Read :meth:`to_dict`'s output.

        Raises
        ------
        AnatomyError
            A missing or malformed field (named, with ``where``).
        """
        if not isinstance(data, dict):
            raise AnatomyError(f"{where}: expected a JSON object with the trachea measurements")
        try:
            carina = tuple(float(v) for v in data["carina_m"])
            if len(carina) != 3:
                raise ValueError("carina_m needs three coordinates")
            out = cls(
                length_m=float(data["length_m"]),
                complete=bool(data["complete"]),
                radius_m=float(data["radius_m"]),
                carina_m=carina,  # type: ignore[arg-type]
                right_bronchus_angle_rad=_opt(data.get("right_bronchus_angle_rad")),
                left_bronchus_angle_rad=_opt(data.get("left_bronchus_angle_rad")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AnatomyError(f"{where}: trachea measurements are incomplete or damaged ({exc}); "
                               "re-import the chest CT") from None
        return out

    def summary(self) -> str:
        """One line in millimetres and degrees."""
        text = (f"trachea {self.length_m * 1e3:.1f} mm"
                + ("" if self.complete else " (cut by the scan at the top: at least that long)")
                + f", lumen diameter {2e3 * self.radius_m:.1f} mm")
        for side in ("right", "left"):
            a = getattr(self, f"{side}_bronchus_angle_rad")
            if a is not None:
                text += f", {side} main bronchus {math.degrees(a):.0f} deg"
        return text


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 7)


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def measure_trachea(centerlines, world_from_voxel: np.ndarray | None = None,
                    shape: tuple[int, int, int] | None = None) -> TracheaMeasure:
    """Measure the trachea of labelled airway centerlines.

    Parameters
    ----------
    centerlines : CenterlineGraph
        From the airway preset: ``trachea`` ending at the carina, and the main bronchi.
    world_from_voxel : (4, 4) float, optional
        Grid of the scan, ``(i, j, k, 1)`` -> LPS metres; with ``shape`` it tells
        whether the trachea is cut by the field of view (without them it counts as cut).
    shape : (nk, nj, ni) int, optional

    Raises
    ------
    AnatomyError
        No trachea, or an implausible lumen radius (a failed segmentation).
    """
    from surgsim.anatomy.report import airway_report

    rep = airway_report(centerlines)
    if rep is None:
        raise AnatomyError("airway centerlines have no trachea: the chest CT's airway could not be "
                           "segmented (check the series covers the carina)")
    tr = centerlines.branches["trachea"]
    pts = np.asarray(tr.points, dtype=float)
    radii = np.asarray(tr.radii, dtype=float)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    mid = (s >= RADIUS_END_SKIP_M) & (s <= s[-1] - RADIUS_END_SKIP_M) & np.isfinite(radii)
    if not mid.any():
        mid = np.isfinite(radii)
    if not mid.any():
        raise AnatomyError("trachea: no lumen radius could be measured along its centerline")
    radius = float(np.median(radii[mid]))
    if not RADIUS_RANGE_M[0] <= radius <= RADIUS_RANGE_M[1]:
        raise AnatomyError(
            f"trachea: measured lumen radius {radius * 1e3:.1f} mm is outside "
            f"{RADIUS_RANGE_M[0] * 1e3:.0f}-{RADIUS_RANGE_M[1] * 1e3:.0f} mm: the airway segmentation "
            "failed; give a seed inside the trachea (`--seed x,y,z`) or check the series")
    complete = False
    if world_from_voxel is not None and shape is not None:
        ijk = np.linalg.solve(np.asarray(world_from_voxel, float), np.r_[pts[0], 1.0])[:3]
        nk = int(shape[0])
        complete = CUT_SLICES < ijk[2] < nk - 1 - CUT_SLICES
    return TracheaMeasure(
        length_m=float(rep["trachea_length_m"]),
        complete=bool(complete),
        radius_m=radius,
        carina_m=tuple(float(v) for v in rep["carina_m"]),  # type: ignore[arg-type]
        right_bronchus_angle_rad=rep.get("right_bronchus_angle_rad"),
        left_bronchus_angle_rad=rep.get("left_bronchus_angle_rad"),
    )


def measure_trachea_ct(source: Path | str | Any, series: str | None = None,
                       seed: np.ndarray | None = None, progress=None) -> TracheaMeasure:
    """Segment a chest CT's airway (de-identified, cached) and measure its trachea.

    Parameters
    ----------
    source : Path, Volume or SeriesInfo
        A DICOM folder, a loaded volume or a discovered series.
    series : str, optional
        Series key when the folder holds several.
    seed : (3,) float, metres (LPS), optional
        A point inside the trachea when the automatic seed fails.
    progress : callable(fraction, message), optional
    """
    from surgsim.anatomy.pipeline import build_anatomy

    result = build_anatomy(source, "airway", series_key=series, seed=seed, target_triangles=20_000,
                           progress=progress)
    if result.centerlines is None:
        raise AnatomyError("the airway preset found no centerlines in this series; is it a chest CT "
                           "showing the trachea and carina?")
    shape = None if result.mask is None else result.mask.shape
    return measure_trachea(result.centerlines, result.world_from_voxel, shape)
