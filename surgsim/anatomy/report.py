"""Quality report of an anatomy case: closedness, size, lumen radii and difficulty indices.

Everything is returned as a JSON-ready ``dict`` (floats, ints, bools, strings,
lists), in SI units (metres, square metres, cubic metres, radians) with the unit
in the key name, plus degrees where a clinician expects them (``*_deg``).

Difficulty indices
------------------
* **Aortic arch type** (Myla / Madhwal classification): the vertical distance
  from the top of the arch (outer curvature: highest aortic centerline point
  plus the aortic radius there) down to the origin of the brachiocephalic
  trunk (where its centerline leaves the aortic lumen), in units of the left
  common carotid artery diameter: type I below 1 diameter, type II 1 to 2,
  type III 2 or more.
* **Tortuosity index** of a branch: path length / chord length - 1 (0 for a
  straight line).
* **Airway**: trachea length, carina position, the angle of each main
  bronchus from the tracheal axis and the interbronchial angle.
"""

from __future__ import annotations

import math

import numpy as np

from surgsim.anatomy.surface import mesh_quality

#: Arch type thresholds in left common carotid diameters (type I < 1, II < 2, III >= 2).
ARCH_TYPE_LIMITS = (1.0, 2.0)
#: Length of centerline used for a direction (trachea end, bronchus start), metres.
DIRECTION_SPAN = 20e-3


def _cumlen(points: np.ndarray) -> np.ndarray:
    if len(points) < 2:
        return np.zeros(len(points))
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def _fl(x: float | np.floating | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def tortuosity(points: np.ndarray) -> float | None:
    """Tortuosity index of a polyline: length / chord - 1.

    Parameters
    ----------
    points : (n, 3) float, metres

    Returns
    -------
    float or None
        Dimensionless; ``None`` when the chord is (nearly) zero.
    """
    pts = np.asarray(points, dtype=float)
    if len(pts) < 2:
        return None
    chord = float(np.linalg.norm(pts[-1] - pts[0]))
    length = float(_cumlen(pts)[-1])
    if chord < 1e-9:
        return None
    return length / chord - 1.0


def _branch_radii(c, distance=None) -> np.ndarray:
    """Lumen radii of a branch: its own (cross-section) radii, else the distance field's."""
    pts = np.asarray(c.points, dtype=float)
    radii = np.asarray(c.radii, dtype=float) if c.radii is not None else np.zeros(0)
    if len(radii) == len(pts) and len(pts):
        return radii
    if distance is not None:
        return np.maximum(-np.asarray(distance.sample(pts), dtype=float), 0.0)
    return np.full(len(pts), np.nan)


def _min_radius(c, radii: np.ndarray) -> dict:
    """Narrowest point, leaving out one median radius at each end (tapered tips, junction)."""
    pts = np.asarray(c.points, dtype=float)
    s = _cumlen(pts)
    if len(pts) == 0 or not np.isfinite(radii).all():
        return {"min_radius_m": None, "min_radius_at_m": None, "min_radius_point_m": None}
    margin = float(np.median(radii)) if len(radii) else 0.0
    inner = (s >= margin) & (s <= s[-1] - margin)
    idx = np.flatnonzero(inner) if inner.any() else np.arange(len(pts))
    i = int(idx[np.argmin(radii[idx])])
    return {
        "min_radius_m": float(radii[i]),
        "min_radius_at_m": float(s[i]),
        "min_radius_point_m": [float(v) for v in pts[i]],
    }


def branch_report(c, distance=None) -> dict:
    """Figures of one centerline branch.

    Parameters
    ----------
    c : Centerline
    distance : DistanceField, optional
        When given, ``min_clearance_m`` is added: the smallest distance from the
        centerline to the wall (the largest sphere that passes), ends excluded.

    Returns
    -------
    dict
        ``parent``, ``length_m``, ``chord_m``, ``tortuosity``, ``mean_radius_m``,
        ``min_radius_m`` (lumen radius from the centerline's cross-sections; one
        median radius at each end excluded), ``min_radius_at_m`` (arc length
        from the branch start) and ``min_radius_point_m`` (LPS).
    """
    pts = np.asarray(c.points, dtype=float)
    radii = _branch_radii(c)
    out = {
        "parent": c.parent,
        "n_points": int(len(pts)),
        "length_m": float(_cumlen(pts)[-1]) if len(pts) else 0.0,
        "chord_m": float(np.linalg.norm(pts[-1] - pts[0])) if len(pts) else 0.0,
        "tortuosity": _fl(tortuosity(pts)),
        "mean_radius_m": _fl(np.mean(radii)) if len(radii) else None,
    }
    out.update(_min_radius(c, radii))
    if distance is not None and len(pts):
        clearance = np.maximum(-np.asarray(distance.sample(pts), dtype=float), 0.0)
        out["min_clearance_m"] = _min_radius(c, clearance)["min_radius_m"]
    return out


# --------------------------------------------------------------------------- arch type


def _ostium(branch_pts: np.ndarray, aorta_pts: np.ndarray, aorta_r: np.ndarray) -> tuple[np.ndarray, int]:
    """First point of a side branch outside the aortic lumen (distance to the aorta axis > radius)."""
    for n, p in enumerate(branch_pts):
        d = np.linalg.norm(aorta_pts - p, axis=1)
        i = int(np.argmin(d))
        if d[i] >= aorta_r[i]:
            return p.copy(), n
    return branch_pts[-1].copy(), len(branch_pts) - 1


def arch_type(centerlines, distance=None) -> dict | None:
    """Aortic arch type from labelled centerlines.

    Parameters
    ----------
    centerlines : CenterlineGraph
        Needs ``aorta``, ``brachiocephalic`` and ``left_common_carotid``.
    distance : DistanceField, optional
        Used only for branches without radii.

    Returns
    -------
    dict or None
        ``type`` ("I", "II" or "III"), ``drop_m`` (vertical distance from the top
        of the arch to the brachiocephalic origin), ``lcca_diameter_m``,
        ``drop_in_lcca_diameters``, ``arch_top_m`` and
        ``brachiocephalic_origin_m`` (LPS points); ``None`` when a branch is missing.
    """
    b = centerlines.branches
    if not all(k in b for k in ("aorta", "brachiocephalic", "left_common_carotid")):
        return None
    aorta = b["aorta"]
    apts = np.asarray(aorta.points, dtype=float)
    ar = _branch_radii(aorta, distance)
    top_i = int(np.argmax(apts[:, 2]))
    top = apts[top_i].copy()
    top[2] += ar[top_i]  # outer curvature
    bct = np.asarray(b["brachiocephalic"].points, dtype=float)
    origin, _ = _ostium(bct, apts, ar)
    lcca = b["left_common_carotid"]
    lpts = np.asarray(lcca.points, dtype=float)
    lr = _branch_radii(lcca, distance)
    _, n0 = _ostium(lpts, apts, ar)
    s = _cumlen(lpts)
    # the vessel beyond its ostium, leaving the tapered free end out
    sel = (s >= s[n0]) & (s <= s[-1] - float(np.median(lr)))
    if sel.sum() < 3:
        sel = s >= s[n0]
    diameter = 2.0 * float(np.median(lr[sel]))
    if diameter <= 0:
        return None
    drop = float(top[2] - origin[2])
    ratio = drop / diameter
    kind = "I" if ratio < ARCH_TYPE_LIMITS[0] else ("II" if ratio < ARCH_TYPE_LIMITS[1] else "III")
    return {
        "type": kind,
        "drop_m": drop,
        "lcca_diameter_m": diameter,
        "drop_in_lcca_diameters": ratio,
        "arch_top_m": [float(v) for v in top],
        "brachiocephalic_origin_m": [float(v) for v in origin],
        "definition": "vertical distance from the top of the arch (outer curvature) to the "
        "brachiocephalic origin, in left common carotid diameters: I < 1, II 1-2, III > 2",
    }


# --------------------------------------------------------------------------- airway


def _direction(points: np.ndarray, from_start: bool, span: float = DIRECTION_SPAN,
               skip: float = 0.0) -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    s = _cumlen(pts)
    if from_start:
        seg = pts[(s >= skip) & (s <= skip + span)]
    else:
        seg = pts[s >= s[-1] - span]
    if len(seg) < 2:
        seg = pts
    d = seg[-1] - seg[0]
    n = np.linalg.norm(d)
    return d / n if n > 0 else d


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(math.acos(float(np.clip(np.dot(a, b), -1.0, 1.0))))


def airway_report(centerlines) -> dict | None:
    """Trachea length, carina position and main bronchus angles.

    Returns
    -------
    dict or None
        ``trachea_length_m``, ``carina_m`` (LPS point), for each main bronchus
        ``<side>_bronchus_angle_rad`` / ``_deg`` (between the bronchus direction
        over 20 mm after the carina region, one tracheal radius, and the
        downward tracheal axis over its last 20 mm),
        ``interbronchial_angle_rad`` / ``_deg``; ``None`` without a trachea.
    """
    b = centerlines.branches
    if "trachea" not in b:
        return None
    tr = np.asarray(b["trachea"].points, dtype=float)
    out: dict = {"trachea_length_m": float(_cumlen(tr)[-1]), "carina_m": [float(v) for v in tr[-1]]}
    axis = _direction(tr, from_start=False)  # pointing down the trachea, toward the carina
    tr_r = np.asarray(b["trachea"].radii, dtype=float)
    skip = float(np.median(tr_r)) if len(tr_r) else 0.0
    dirs = {}
    for side in ("right", "left"):
        c = b.get(f"{side}_main_bronchus")
        if c is None:
            continue
        # skip the carina region (one tracheal radius), where the centerline still bends
        d = _direction(np.asarray(c.points, dtype=float), from_start=True, skip=skip)
        dirs[side] = d
        ang = _angle(axis, d)
        out[f"{side}_bronchus_length_m"] = float(c.length)
        out[f"{side}_bronchus_angle_rad"] = ang
        out[f"{side}_bronchus_angle_deg"] = math.degrees(ang)
    if len(dirs) == 2:
        ang = _angle(dirs["right"], dirs["left"])
        out["interbronchial_angle_rad"] = ang
        out["interbronchial_angle_deg"] = math.degrees(ang)
    return out


# --------------------------------------------------------------------------- report


def quality_report(mesh=None, centerlines=None, distance=None) -> dict:
    """Quality report of a case (JSON-ready).

    Parameters
    ----------
    mesh : pyvista.PolyData, optional
        Triangle surface, metres (LPS).
    centerlines : CenterlineGraph, optional
        Labelled centerlines (vessels or airway).
    distance : DistanceField, optional
        Lumen signed distance; adds ``min_clearance_m`` per branch.

    Returns
    -------
    dict
        Surface figures at the top level: ``watertight``, ``manifold``,
        ``n_triangles``, ``n_points``, ``boundary_edges``, ``nonmanifold_edges``,
        ``volume_m3`` (enclosed volume), ``area_m2``;
        ``branches``: per label see :func:`branch_report`; ``difficulty``:
        ``arch`` (:func:`arch_type`), ``tortuosity`` per branch and
        ``aorta_tortuosity``; ``airway`` (:func:`airway_report`). Sections
        that do not apply are left out.
    """
    report: dict = {}
    if mesh is not None:
        q = mesh_quality(mesh)
        q["volume_m3"] = float(abs(q["volume_m3"]))
        report.update(q)
    if centerlines is not None and centerlines.branches:
        branches = {label: branch_report(c, distance) for label, c in centerlines.branches.items()}
        report["branches"] = branches
        difficulty: dict = {"tortuosity": {k: v["tortuosity"] for k, v in branches.items()}}
        if "aorta" in branches:
            difficulty["aorta_tortuosity"] = branches["aorta"]["tortuosity"]
        arch = arch_type(centerlines, distance)
        if arch is not None:
            difficulty["arch"] = arch
        report["difficulty"] = difficulty
        airway = airway_report(centerlines)
        if airway is not None:
            report["airway"] = airway
        narrowest = min(
            ((k, v["min_radius_m"]) for k, v in branches.items() if v["min_radius_m"] is not None),
            key=lambda t: t[1], default=None,
        )
        if narrowest is not None:
            report["min_lumen_radius_m"] = narrowest[1]
            report["min_lumen_radius_branch"] = narrowest[0]
    return report


def format_report(report: dict) -> str:
    """Short human-readable summary of :func:`quality_report` (millimetres, degrees)."""
    lines = []
    m = report
    if "n_triangles" in m:
        lines.append(
            f"surface: {'watertight' if m['watertight'] else 'OPEN'}, "
            f"{'manifold' if m['manifold'] else 'NON-MANIFOLD'}, {m['n_triangles']:,} triangles, "
            f"volume {m['volume_m3'] * 1e6:.1f} ml, area {m['area_m2'] * 1e4:.1f} cm^2"
        )
    for label, b in report.get("branches", {}).items():
        mr = b.get("min_radius_m")
        tort = b.get("tortuosity")
        lines.append(
            f"  {label:<24} length {b['length_m'] * 1e3:6.1f} mm"
            + (f", min radius {mr * 1e3:4.1f} mm at {b['min_radius_at_m'] * 1e3:5.1f} mm" if mr is not None else "")
            + (f", tortuosity {tort:.3f}" if tort is not None else "")
        )
    arch = report.get("difficulty", {}).get("arch")
    if arch:
        lines.append(
            f"aortic arch type {arch['type']} (brachiocephalic origin {arch['drop_m'] * 1e3:.1f} mm "
            f"below the top = {arch['drop_in_lcca_diameters']:.2f} LCCA diameters)"
        )
    aw = report.get("airway")
    if aw:
        c = aw["carina_m"]
        text = (f"airway: trachea {aw['trachea_length_m'] * 1e3:.1f} mm, carina at "
                f"({c[0] * 1e3:.1f}, {c[1] * 1e3:.1f}, {c[2] * 1e3:.1f}) mm")
        for side in ("right", "left"):
            if f"{side}_bronchus_angle_deg" in aw:
                text += f", {side} bronchus {aw[f'{side}_bronchus_angle_deg']:.0f} deg"
        if "interbronchial_angle_deg" in aw:
            text += f", interbronchial {aw['interbronchial_angle_deg']:.0f} deg"
        lines.append(text)
    return "\n".join(lines)
