"""Bundled digital phantom: a synthetic torso CT (neck to upper abdomen).

The phantom is built analytically, so its ground truth (vessel and airway
centerlines, radii, landmarks) is exact. It is the default case: a
contrast-enhanced aorta with its arch branches for catheter navigation, and
the trachea and main bronchi for airway work.

Geometry is designed in millimetres in the DICOM patient frame (LPS: +x the
patient's left, +y posterior, +z superior) and converted to metres at the API
edge (:class:`PhantomTruth` and ``Volume.world_from_voxel``). The nominal
field of view is x in [-178.5, 178.5] mm, y in [-139.3, 139.3] mm and z in
[-250, 150] mm; the grid is fitted inside it for any spacing, and the truth
does not depend on the spacing.

Guarantees other modules rely on (checked by ``tests/test_phantom.py``):

* contrast lumen (about 350 HU) is one connected component under a 150..600 HU
  threshold and stays more than 8 mm from any bone;
* apart from the vessels, only cancellous bone (inside a cortical shell above
  600 HU) falls in 150..600 HU;
* the air of the trachea and bronchi is connected, walled, and never touches
  the air outside the body (the trachea leaves through the superior face);
* the descending aorta leaves the volume through the inferior face (the
  catheter's femoral access);
* generation is deterministic: the same call gives identical arrays and
  byte-identical DICOM files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline

from surgsim.dicom.volume import Volume
from surgsim.errors import DicomSeriesError

#: Bump when the generated image or DICOM content changes (cached cases regenerate).
GENERATOR_VERSION = 1

VARIANTS: tuple[str, ...] = ("default", "type2-arch", "type3-arch")

#: Default voxel size (column, row, slice), metres.
DEFAULT_SPACING: tuple[float, float, float] = (1.4e-3, 1.4e-3, 2.0e-3)

#: Hounsfield units of the tissues.
HU_AIR = -1000.0
HU_FAT = -100.0
HU_SOFT = 40.0
HU_LIVER = 60.0
HU_LUNG = -850.0
HU_CONTRAST = 350.0
HU_CORTICAL = 1000.0
HU_CANCELLOUS = 300.0
HU_DISC = 80.0
NOISE_SIGMA_HU = 10.0

#: Contrast window other modules threshold the vessels with (HU).
CONTRAST_RANGE_HU: tuple[float, float] = (150.0, 600.0)

#: Minimum clearance between contrast lumen and bone the phantom guarantees (metres).
MIN_VESSEL_BONE_CLEARANCE = 8e-3

# Nominal field of view, millimetres (LPS).
_X_HALF = 178.5
_Y_HALF = 139.3
_Z_MIN = -250.0
_Z_MAX = 150.0

_VESSEL_WALL = 2.0  # mm of soft tissue around a contrast lumen
_AIRWAY_WALL = 3.0  # mm of soft tissue around the trachea and bronchi
_LUNG_SLEEVE = 4.0  # extra mm of mediastinal tissue between a wall and the lung
_BIG = 1.0e4  # "far away" signed distance, mm

_UID_PREFIX = "1.2.826.0.1.3680043.8.498."
_UID_SEED = "surgsim-phantom"

VESSEL_LABELS = ("aorta", "brachiocephalic", "left_common_carotid", "left_subclavian")
AIRWAY_LABELS = ("trachea", "right_main_bronchus", "left_main_bronchus")
BRANCH_LABELS = VESSEL_LABELS[1:]


@dataclass(frozen=True)
class PhantomTruth:
    """Exact geometry of the phantom.

    Attributes
    ----------
    centerlines : dict[str, (n, 3) float]
        Metres, LPS, ordered proximal -> distal, sampled every <= 1 mm. Keys:
        ``aorta`` (aortic root -> descending aorta at the inferior face),
        ``brachiocephalic``, ``left_common_carotid``, ``left_subclavian``
        (each from its branch point on the aorta's centerline to its distal
        end), ``trachea`` (superior face -> carina), ``right_main_bronchus``,
        ``left_main_bronchus`` (carina -> blind end in the lung).
    radii : dict[str, (n,) float]
        Lumen radius at each centerline point, metres.
    landmarks : dict[str, (3,) float]
        Metres, LPS: ``access`` (descending aorta centerline at the inferior
        face), ``access_direction`` (unit vector into the body along the
        descending aorta, +z), ``carina``, ``aortic_root``, and
        ``<branch>_ostium`` for the three arch branches: where the branch
        centerline crosses the aortic lumen wall.
    """

    centerlines: dict[str, np.ndarray]
    radii: dict[str, np.ndarray]
    landmarks: dict[str, np.ndarray]


# --------------------------------------------------------------------------- curves


def _curve(
    ctrl: Sequence[Sequence[float]],
    radii: Sequence[float],
    start_dir: Sequence[float] | None = None,
    end_dir: Sequence[float] | None = None,
    ds: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense cubic spline through control points (mm), radius interpolated along it.

    Returns ``(points (n, 3) mm, radii (n,) mm)`` sampled about every ``ds`` mm.
    """
    c = np.asarray(ctrl, dtype=float)
    t = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])

    def bc(d: Sequence[float] | None) -> tuple[int, np.ndarray]:
        if d is None:
            return (2, np.zeros(3))
        v = np.asarray(d, dtype=float)
        return (1, v / np.linalg.norm(v))

    spline = CubicSpline(t, c, bc_type=(bc(start_dir), bc(end_dir)))
    tt = np.linspace(0.0, t[-1], int(np.ceil(t[-1] / ds)) + 1)
    return spline(tt), np.interp(tt, t, np.asarray(radii, dtype=float))


def _line(a: Sequence[float], b: Sequence[float], ra: float, rb: float, ds: float = 0.2):
    """Dense straight segment a -> b (mm) with a linear radius."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n = int(np.ceil(np.linalg.norm(b - a) / ds)) + 1
    s = np.linspace(0.0, 1.0, n)
    return a + s[:, None] * (b - a), ra + s * (rb - ra)


def _join(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate dense curves, dropping each joint's duplicate point."""
    pts = [parts[0][0]] + [p[1:] for p, _ in parts[1:]]
    rad = [parts[0][1]] + [r[1:] for _, r in parts[1:]]
    return np.concatenate(pts), np.concatenate(rad)


def _arclength(pts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])


def _resample(pts: np.ndarray, rad: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a curve at equal arc-length steps of at most ``step`` (mm), ends kept."""
    s = _arclength(pts)
    n = max(1, int(np.ceil(s[-1] / step - 1e-9)))
    q = np.linspace(0.0, s[-1], n + 1)
    out = np.stack([np.interp(q, s, pts[:, d]) for d in range(3)], axis=1)
    return out, np.interp(q, s, rad)


def _clip_z(pts: np.ndarray, rad: np.ndarray, zmin: float, zmax: float):
    """Keep the part of a curve inside zmin <= z <= zmax (the curve crosses each plane once).

    The crossing points are interpolated so the clipped curve ends exactly on the plane.
    """
    inside = (pts[:, 2] >= zmin) & (pts[:, 2] <= zmax)
    idx = np.flatnonzero(inside)
    i0, i1 = idx[0], idx[-1]
    out_p = [pts[i0 : i1 + 1]]
    out_r = [rad[i0 : i1 + 1]]
    for i_in, i_out, where in ((i0, i0 - 1, 0), (i1, i1 + 1, 1)):
        if 0 <= i_out < len(pts):
            zp = zmin if pts[i_out, 2] < zmin else zmax
            f = (zp - pts[i_in, 2]) / (pts[i_out, 2] - pts[i_in, 2])
            p = pts[i_in] + f * (pts[i_out] - pts[i_in])
            r = rad[i_in] + f * (rad[i_out] - rad[i_in])
            if where == 0:
                out_p.insert(0, p[None])
                out_r.insert(0, np.array([r]))
            else:
                out_p.append(p[None])
                out_r.append(np.array([r]))
    return np.concatenate(out_p), np.concatenate(out_r)


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --------------------------------------------------------------------------- design


Point = tuple[float, float, float]


@dataclass(frozen=True)
class _ArchSpec:
    """Shape of the aortic arch and where its branches leave it (millimetres, LPS).

    ``ctrl`` and ``radii`` are the arch's spline control points (aortic root to
    the top of the descending aorta) and lumen radii; ``branch_s`` the arc
    lengths from the root of the brachiocephalic, left common carotid and left
    subclavian junctions on the aortic centerline. Each branch leaves its
    junction along ``*_dir`` through the point ``junction + *_lead`` and the
    ``*_via`` points before joining the common distal course of every variant.
    """

    ctrl: tuple[Point, ...]
    radii: tuple[float, ...]
    branch_s: tuple[float, float, float]
    bct_lead: Point = (0.0, 0.0, 18.0)
    bct_via: tuple[Point, ...] = ((-16.0, -30.0, 70.0),)
    bct_dir: Point = (0.0, 0.0, 1.0)
    lcca_lead: Point = (0.0, 0.0, 14.0)
    lcca_via: tuple[Point, ...] = ((20.0, -24.0, 80.0),)
    lcca_dir: Point = (0.0, 0.0, 1.0)
    lsa_lead: Point = (0.0, 0.0, 12.0)
    lsa_via: tuple[Point, ...] = ((42.0, -6.0, 64.0),)
    lsa_dir: Point = (0.0, 0.0, 1.0)


_DESC_XY = (42.0, 38.0)

#: Arch shapes by variant. Arch type (Myla's classification) is the height of
#: the brachiocephalic origin below the top of the arch's outer curvature, in
#: left common carotid diameters (9 mm here): type I below 1, type II 1 to 2,
#: type III above 2. The harder arches are elongated: the arch rises higher
#: above the great-vessel origins, which come off its ascending limb.
_ARCHES: dict[str, _ArchSpec] = {
    # type I: the three branches leave the top of the arch
    "default": _ArchSpec(
        ctrl=(
            (2.0, -16.0, -64.0),
            (-3.0, -33.0, -30.0),
            (-6.0, -40.0, 0.0),
            (-3.0, -39.0, 22.0),
            (7.0, -33.0, 36.0),
            (22.0, -24.0, 41.0),
            (34.0, -6.0, 37.0),
            (40.0, 14.0, 27.0),
            (42.0, 30.0, 11.0),
            (_DESC_XY[0], _DESC_XY[1], -8.0),
        ),
        radii=(15.0, 14.0, 14.0, 13.5, 13.0, 13.0, 12.5, 12.0, 12.0, 12.0),
        branch_s=(112.0, 136.0, 160.0),
    ),
    # type II: the arch top about 14 mm higher; the brachiocephalic leaves the
    # upper ascending limb, 1.5 carotid diameters below the top
    "type2-arch": _ArchSpec(
        ctrl=(
            (2.0, -16.0, -64.0),
            (-3.0, -33.0, -30.0),
            (-6.0, -40.0, 0.0),
            (-4.5, -40.0, 26.0),
            (5.0, -36.0, 44.0),
            (21.0, -27.5, 52.0),
            (34.0, -7.0, 48.0),
            (40.0, 13.0, 36.0),
            (42.0, 30.0, 16.0),
            (_DESC_XY[0], _DESC_XY[1], -8.0),
        ),
        radii=(15.0, 14.0, 14.0, 13.5, 13.0, 13.0, 12.5, 12.0, 12.0, 12.0),
        branch_s=(104.0, 134.0, 164.0),
        bct_lead=(-4.0, -2.0, 18.0),
        bct_dir=(-0.3, -0.1, 1.0),
    ),
    # type III: an elongated arch about 25 mm higher; the brachiocephalic leaves
    # the ascending aorta well below the top, the left common carotid its upper part
    "type3-arch": _ArchSpec(
        ctrl=(
            (2.0, -16.0, -64.0),
            (-3.0, -33.0, -30.0),
            (-6.0, -40.0, 0.0),
            (-5.0, -41.0, 28.0),
            (3.0, -39.0, 50.0),
            (20.0, -31.0, 62.0),
            (34.0, -10.0, 59.0),
            (40.0, 13.0, 46.0),
            (42.0, 30.0, 22.0),
            (_DESC_XY[0], _DESC_XY[1], -8.0),
        ),
        radii=(15.0, 14.0, 14.0, 13.5, 13.0, 13.0, 12.5, 12.0, 12.0, 12.0),
        branch_s=(106.0, 134.0, 162.0),
        bct_lead=(-10.0, -4.0, 16.0),
        bct_dir=(-0.6, -0.2, 1.0),
        lcca_lead=(-2.0, 0.0, 14.0),
        lcca_dir=(-0.2, 0.0, 1.0),
        lsa_lead=(0.0, 0.0, 14.0),
        lsa_via=((44.0, -4.0, 74.0),),
    ),
}



@dataclass
class _Design:
    vessels: list[tuple[np.ndarray, np.ndarray]]  # stamping polylines (mm)
    airways: list[tuple[np.ndarray, np.ndarray]]
    bone_tubes: list[tuple[np.ndarray, np.ndarray]]
    truth_mm: dict[str, tuple[np.ndarray, np.ndarray]]
    landmarks_mm: dict[str, np.ndarray]


# Spine: vertebral bodies repeat every _VERT_PERIOD mm with a disc of _DISC mm.
_VERT_PERIOD = 24.0
_DISC = 5.0
_VERT_PHASE = -250.0  # a disc starts here
_CORTEX = 2.0  # cortical shell thickness, mm


def _spine_params(z):
    """Vertebral body centre y and semi-axes (rx, ry), mm, as functions of z (mm).

    Cervical above z = 110, thoracic below z = 40 (y = 55 mm, posterior),
    widening toward the lumbar spine at the inferior face.
    """
    s_neck = _smoothstep((z - 40.0) / 70.0)
    s_lumb = _smoothstep((-150.0 - z) / 100.0)
    yc = 55.0 + (20.0 - 55.0) * s_neck
    rx = 19.0 + (13.0 - 19.0) * s_neck + 3.0 * s_lumb
    ry = 14.0 + (9.0 - 14.0) * s_neck + 2.0 * s_lumb
    return yc, rx, ry


def _body_params(z):
    """Skin ellipse (a, b, cy), mm: torso 160 x 110 narrowing to a 60 x 55 neck above z = 80."""
    s = _smoothstep((z - 80.0) / 35.0)
    return 160.0 + (60.0 - 160.0) * s, 110.0 + (55.0 - 110.0) * s, 10.0 * s


def _design(variant: str) -> _Design:
    if variant not in VARIANTS:
        raise ValueError(f"unknown phantom variant {variant!r}; choose one of {VARIANTS}")

    # ---- aorta: root in the heart, ascending anterior, the arch curving
    # posteriorly and to the left around the trachea, descending straight down.
    spec = _ARCHES[variant]
    desc_xy = _DESC_XY
    arch, arch_r = _curve(
        spec.ctrl,
        spec.radii,
        start_dir=(-0.25, -0.45, 1.0),
        end_dir=(0.0, 0.0, -1.0),
    )
    desc = _line(arch[-1], (desc_xy[0], desc_xy[1], _Z_MIN - 12.0), 12.0, 11.0)
    aorta_p, aorta_r = _join((arch, arch_r), desc)
    aorta_s = _arclength(aorta_p)

    def on_aorta(s: float) -> np.ndarray:
        """Aortic centerline point at arc length ``s`` (mm) from the root."""
        return aorta_p[int(np.searchsorted(aorta_s, s))]

    # ---- arch branches, proximal -> distal along the arch.
    c1 = on_aorta(spec.branch_s[0])
    c2 = on_aorta(spec.branch_s[1])
    c3 = on_aorta(spec.branch_s[2])
    bct = _curve(
        [
            c1,
            c1 + spec.bct_lead,
            *spec.bct_via,
            (-23.0, -20.0, 105.0),
            (-27.0, -9.0, 135.0),
            (-28.0, -6.0, _Z_MAX + 14.0),
        ],
        [6.5, 6.5, *([6.3] * len(spec.bct_via)), 5.5, 5.0, 5.0],
        start_dir=spec.bct_dir,
    )
    lcca = _curve(
        [
            c2,
            c2 + spec.lcca_lead,
            *spec.lcca_via,
            (25.0, -14.0, 115.0),
            (27.0, -8.0, _Z_MAX + 14.0),
        ],
        [4.5, 4.5, *([4.3] * len(spec.lcca_via)), 4.0, 4.0],
        start_dir=spec.lcca_dir,
    )
    lsa = _curve(
        [
            c3,
            c3 + spec.lsa_lead,
            *spec.lsa_via,
            (60.0, -2.0, 78.0),
            (82.0, 3.0, 82.0),
            (100.0, 6.0, 80.0),
        ],
        [5.0, 5.0, *([4.8] * len(spec.lsa_via)), 4.5, 4.3, 4.0],
        start_dir=spec.lsa_dir,
    )

    # ---- airway: trachea from the neck (leaving through the superior face) to
    # the carina at z = -20 mm; right main bronchus 25 deg from vertical toward
    # -x, left main bronchus 45 deg toward +x, both ending blind in the lungs.
    trachea = _curve(
        [
            (0.0, -22.0, _Z_MAX + 12.0),
            (0.0, -16.0, 100.0),
            (0.0, -8.0, 60.0),
            (-1.0, 0.0, 20.0),
            (-3.0, 8.0, -20.0),
        ],
        [9.0, 9.0, 9.0, 9.0, 9.0],
    )
    carina = trachea[0][-1].copy()
    a_r, a_l = np.radians(25.0), np.radians(45.0)
    rmb = _line(carina, carina + 40.0 * np.array([-np.sin(a_r), 0.0, -np.cos(a_r)]), 7.0, 7.0)
    lmb = _line(carina, carina + 50.0 * np.array([np.sin(a_l), 0.0, -np.cos(a_l)]), 6.0, 6.0)

    # ---- bone tubes: ribs 1-10 and clavicles.
    bone_tubes: list[tuple[np.ndarray, np.ndarray]] = []
    for n in range(10):
        z_post = 52.0 - _VERT_PERIOD * n
        a, b, cy = _body_params(z_post)
        ea, eb = a - 11.0, b - 11.0
        phi_end = 2.5 if n < 7 else 2.1
        phi = np.linspace(0.35, phi_end, 12)
        zz = z_post - 40.0 * (phi - phi[0]) / (phi_end - phi[0])
        yc, rx, _ = _spine_params(z_post)
        for side in (-1.0, 1.0):
            ring = np.stack([side * ea * np.sin(phi), cy + eb * np.cos(phi), zz], axis=1)
            head = np.array([[side * (rx + 5.0), yc + 10.0, z_post + 2.0]])
            ctrl = np.concatenate([head, ring])
            bone_tubes.append(_curve(ctrl, np.full(len(ctrl), 4.5), ds=0.5))
    for side in (-1.0, 1.0):
        ctrl = [
            (side * 18.0, -92.0, 72.0),
            (side * 60.0, -86.0, 80.0),
            (side * 100.0, -62.0, 86.0),
            (side * 128.0, -35.0, 88.0),
        ]
        bone_tubes.append(_curve(ctrl, [6.0, 5.5, 5.5, 6.0], ds=0.5))

    truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, (p, r) in (
        ("aorta", (aorta_p, aorta_r)),
        ("brachiocephalic", bct),
        ("left_common_carotid", lcca),
        ("left_subclavian", lsa),
        ("trachea", trachea),
        ("right_main_bronchus", rmb),
        ("left_main_bronchus", lmb),
    ):
        p, r = _clip_z(p, r, _Z_MIN, _Z_MAX)
        truth[label] = _resample(p, r, 1.0)

    landmarks: dict[str, np.ndarray] = {
        "access": truth["aorta"][0][-1].copy(),
        "access_direction": np.array([0.0, 0.0, 1.0]),
        "carina": carina,
        "aortic_root": truth["aorta"][0][0].copy(),
    }
    for label in BRANCH_LABELS:
        bp, _ = truth[label]
        # first branch point outside the aortic lumen: the ostium on the wall
        d = np.linalg.norm(bp[:, None, :] - aorta_p[None, ::5, :], axis=2)
        j = np.argmin(d, axis=1)
        outside = d[np.arange(len(bp)), j] > aorta_r[::5][j]
        landmarks[f"{label}_ostium"] = bp[int(np.argmax(outside))].copy()

    # Stamping polylines: coarser steps on straight parts keep generation fast.
    vessels = [
        _resample(*_join((arch, arch_r)), 2.0),
        _resample(*desc, 10.0),
        _resample(*bct, 2.0),
        _resample(*lcca, 2.0),
        _resample(*lsa, 2.0),
    ]
    airways = [_resample(*trachea, 2.0), _resample(*rmb, 10.0), _resample(*lmb, 10.0)]
    bone_tubes = [_resample(p, r, 6.0) for p, r in bone_tubes]
    return _Design(vessels, airways, bone_tubes, truth, landmarks)


# --------------------------------------------------------------------------- painting


class _Segments:
    """Capsule segments of a set of tubes, for signed-distance stamping (mm)."""

    def __init__(self, tubes: list[tuple[np.ndarray, np.ndarray]], margin: float):
        a, b, ra, rb = [], [], [], []
        for p, r in tubes:
            a.append(p[:-1])
            b.append(p[1:])
            ra.append(r[:-1])
            rb.append(r[1:])
        self.a = np.concatenate(a)
        self.b = np.concatenate(b)
        self.ra = np.concatenate(ra)
        self.rb = np.concatenate(rb)
        reach = np.maximum(self.ra, self.rb)[:, None] + margin
        self.lo = np.minimum(self.a, self.b) - reach
        self.hi = np.maximum(self.a, self.b) + reach

    def sdf(self, grid: _Grid, k0: int, k1: int) -> np.ndarray:
        """Signed distance (mm, negative inside) to the tubes on slices k0..k1-1.

        Values beyond the margin given at construction are ``_BIG``.
        """
        out = np.full((k1 - k0, grid.nj, grid.ni), _BIG, dtype=np.float32)
        zlo = grid.z0 + k0 * grid.sz
        zhi = grid.z0 + (k1 - 1) * grid.sz
        sel = np.flatnonzero((self.hi[:, 2] >= zlo) & (self.lo[:, 2] <= zhi))
        if sel.size == 0:
            return out
        lo_i = np.ceil((self.lo[sel] - grid.origin) / grid.step).astype(int)
        hi_i = np.floor((self.hi[sel] - grid.origin) / grid.step).astype(int) + 1
        lo_i = np.maximum(lo_i, (0, 0, k0))
        hi_i = np.minimum(hi_i, (grid.ni, grid.nj, k1))
        gx, gy, gz = grid.x, grid.y, grid.z
        for n, s in enumerate(sel):
            i0, j0, kk0 = lo_i[n]
            i1, j1, kk1 = hi_i[n]
            if i1 <= i0 or j1 <= j0 or kk1 <= kk0:
                continue
            a = self.a[s]
            ab = self.b[s] - a
            dx = (gx[i0:i1] - a[0])[None, None, :]
            dy = (gy[j0:j1] - a[1])[None, :, None]
            dz = (gz[kk0:kk1] - a[2])[:, None, None]
            t = (dx * ab[0] + dy * ab[1] + dz * ab[2]) * (1.0 / float(ab @ ab))
            np.clip(t, 0.0, 1.0, out=t)
            d = np.sqrt((dx - t * ab[0]) ** 2 + (dy - t * ab[1]) ** 2 + (dz - t * ab[2]) ** 2)
            d -= self.ra[s] + t * (self.rb[s] - self.ra[s])
            view = out[kk0 - k0 : kk1 - k0, j0:j1, i0:i1]
            np.minimum(view, d, out=view)
        return out


@dataclass(frozen=True)
class _Grid:
    ni: int
    nj: int
    nk: int
    sx: float  # mm
    sy: float
    sz: float
    x0: float
    y0: float
    z0: float

    @property
    def origin(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.z0])

    @property
    def step(self) -> np.ndarray:
        return np.array([self.sx, self.sy, self.sz])

    @property
    def x(self) -> np.ndarray:
        return (self.x0 + self.sx * np.arange(self.ni)).astype(np.float32)

    @property
    def y(self) -> np.ndarray:
        return (self.y0 + self.sy * np.arange(self.nj)).astype(np.float32)

    @property
    def z(self) -> np.ndarray:
        return (self.z0 + self.sz * np.arange(self.nk)).astype(np.float32)

    def world_from_voxel(self) -> np.ndarray:
        m = np.diag([self.sx, self.sy, self.sz, 1000.0]) / 1000.0
        m[:3, 3] = self.origin / 1000.0
        return m


def _grid(spacing: tuple[float, float, float]) -> _Grid:
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be three positive numbers in metres, got {spacing!r}")
    sx, sy, sz = (float(v) for v in sp * 1000.0)
    if min(sx, sy, sz) < 0.3 or max(sx, sy, sz) > 10.0:
        raise ValueError(
            f"spacing {spacing!r} m is outside 0.3..10 mm; pass metres, e.g. (1.4e-3, 1.4e-3, 2e-3)"
        )
    ni = int(np.floor(2 * _X_HALF / sx + 1e-6)) + 1
    nj = int(np.floor(2 * _Y_HALF / sy + 1e-6)) + 1
    nk = int(np.floor((_Z_MAX - _Z_MIN) / sz + 1e-6)) + 1
    # round the origin to nanometres so the DICOM strings (6 decimals of mm) are exact
    x0 = round(-(ni - 1) * sx / 2.0, 6)
    y0 = round(-(nj - 1) * sy / 2.0, 6)
    return _Grid(ni, nj, nk, sx, sy, sz, x0, y0, _Z_MIN)


def _ellipse_sd(x, y, a, b):
    """Approximate signed distance (mm, negative inside) to the ellipse (x/a)^2 + (y/b)^2 = 1."""
    u = x / a
    v = y / b
    rho = np.sqrt(u * u + v * v)
    g = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-9
    return (rho - 1.0) * rho / g


def _ellipsoid_sd(x, y, z, c, r):
    u = (x - c[0]) / r[0]
    v = (y - c[1]) / r[1]
    w = (z - c[2]) / r[2]
    rho = np.sqrt(u * u + v * v + w * w)
    g = np.sqrt((u / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2) + 1e-9
    return (rho - 1.0) * rho / g


def _height_sd(z, x, y, z_top, k, xc, yc, below: bool):
    """Signed distance to the paraboloid z = z_top - k ((|x|-xc)^2 + (y-yc)^2).

    Negative below it when ``below`` (else negative above it).
    """
    dx = np.abs(x) - xc
    dy = y - yc
    f = z_top - k * (dx * dx + dy * dy)
    g = np.sqrt(1.0 + (2.0 * k) ** 2 * (dx * dx + dy * dy))
    sd = (z - f) / g
    return sd if below else -sd


def _paint_slab(grid: _Grid, k0: int, k1: int, design_segs, width: float) -> np.ndarray:
    """HU (float32, without noise) on slices k0..k1-1."""
    vessel_segs, airway_segs, bone_segs = design_segs
    x = grid.x[None, None, :]
    y = grid.y[None, :, None]
    z = grid.z[k0:k1, None, None]
    inv_w = np.float32(1.0 / width)

    def alpha(sd):
        return np.clip(0.5 - sd * inv_w, 0.0, 1.0)

    def blend(hu, sd, value):
        a = alpha(sd)
        hu += a * (np.float32(value) - hu)

    # body: subcutaneous fat then soft tissue
    a_b, b_b, cy = _body_params(z)
    sd_body = _ellipse_sd(x, y - cy, a_b, b_b).astype(np.float32)
    fat = np.float32(15.0) - np.float32(7.0) * _smoothstep((z - 80.0) / 35.0).astype(np.float32)
    hu = np.full(sd_body.shape, HU_FAT, dtype=np.float32)
    blend(hu, sd_body + fat, HU_SOFT)
    hu = HU_AIR + alpha(sd_body) * (hu - HU_AIR)

    vessel = vessel_segs.sdf(grid, k0, k1)
    airway = airway_segs.sdf(grid, k0, k1)
    wall_v = vessel - _VESSEL_WALL
    wall_a = airway - _AIRWAY_WALL

    # liver under the right hemidiaphragm
    if grid.z[k0] < -110.0:
        sd_liver = np.maximum(
            _ellipsoid_sd(x, y, z, (-55.0, 5.0, -215.0), (95.0, 85.0, 90.0)),
            np.maximum(_height_sd(z, x, y, -128.0, 0.006, 65.0, 0.0, True) + 4.0, sd_body + 18.0),
        )
        sd_liver = np.maximum(sd_liver, x + 10.0)
        blend(hu, sd_liver.astype(np.float32), HU_LIVER)

    # lungs: inside the chest wall, below the apices, above the diaphragm, and
    # clear of the mediastinum, heart, spine and every vessel or airway wall
    yc, rx, ry = _spine_params(z)
    heart = _ellipsoid_sd(x, y, z, (18.0, -28.0, -95.0), (58.0, 45.0, 50.0))
    if grid.z[k0] < 95.0 and grid.z[k1 - 1] > -250.0:
        dome_right = _height_sd(z, x, y, -125.0, 0.006, 65.0, 0.0, False)
        dome_left = _height_sd(z, x, y, -140.0, 0.006, 65.0, 0.0, False)
        sd_lung = np.maximum(
            _ellipse_sd(x, y - cy, a_b - 18.0, b_b - 18.0),
            _height_sd(z, x, y, 88.0, 0.012, 55.0, 15.0, True),
        )
        sd_lung = np.maximum(sd_lung, np.where(x < 0, dome_right, dome_left))
        sd_lung = np.maximum(sd_lung, 12.0 - np.abs(x))  # mediastinum, anterior junction
        sd_lung = np.maximum(sd_lung, 6.0 - heart)
        paraspinal = np.maximum(np.abs(x) - (rx + 22.0), (yc - 8.0) - y)
        sd_lung = np.maximum(sd_lung, -paraspinal)
        sd_lung = np.maximum(sd_lung, _LUNG_SLEEVE - wall_v)
        sd_lung = np.maximum(sd_lung, _LUNG_SLEEVE - wall_a)
        blend(hu, sd_lung.astype(np.float32), HU_LUNG)

    # epicardial fat outlines the heart; vessel and airway walls are soft tissue
    blend(hu, np.maximum(heart, -heart - 3.0).astype(np.float32), HU_FAT)
    blend(hu, wall_v, HU_SOFT)
    blend(hu, wall_a, HU_SOFT)
    blend(hu, vessel, HU_CONTRAST)
    blend(hu, airway, HU_AIR)

    # bone (binary: no partial volume, so no bone edge falls in the contrast range)
    u = np.mod(z - _VERT_PHASE, _VERT_PERIOD)  # position within a vertebra period
    half = 0.5 * (_VERT_PERIOD - _DISC)
    sd_zbody = np.abs(u - (_DISC + half)) - half
    sd_xy = _ellipse_sd(x, y - yc, rx, ry)
    sd_vb = np.maximum(sd_xy, sd_zbody)
    s_neck = _smoothstep((z - 40.0) / 70.0)
    canal_y = yc + ry + 8.0
    d_canal = np.sqrt(x * x + (y - canal_y) ** 2)
    ring = np.maximum(d_canal - 13.0, 8.0 - d_canal)
    spin_len = 18.0 - 8.0 * s_neck
    spinous = np.maximum(
        np.abs(x) - 3.5, np.abs(y - (canal_y + 10.0 + spin_len / 2)) - spin_len / 2
    )
    transverse = np.maximum(np.abs(np.abs(x) - 24.0) - 12.0, np.abs(y - canal_y) - 4.0)
    sd_post = np.maximum(np.minimum(np.minimum(ring, spinous), transverse), sd_zbody)
    # sternum
    sd_stern = np.maximum(
        np.maximum(np.abs(x) - 15.0, np.abs(y + b_b - 14.0) - 7.0), np.abs(z + 40.0) - 95.0
    )
    sd_bone = np.minimum(np.minimum(sd_vb, sd_post), sd_stern)
    sd_bone = np.minimum(sd_bone, bone_segs.sdf(grid, k0, k1))
    inside = sd_bone < 0
    hu[inside] = np.where(sd_bone[inside] > -_CORTEX, HU_CORTICAL, HU_CANCELLOUS)
    disc = (np.maximum(sd_xy + 0.5, np.abs(u - _DISC / 2) - _DISC / 2) <= 0) & ~inside
    hu[disc] = HU_DISC
    return hu


def make_phantom_volume(
    variant: str = "default",
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    seed: int = 0,
) -> tuple[Volume, PhantomTruth]:
    """Generate the phantom CT and its ground truth.

    Parameters
    ----------
    variant : str
        One of :data:`VARIANTS`.
    spacing : (3,) float, metres
        Voxel size along columns (x), rows (y) and slices (z).
    seed : int
        Seed of the Gaussian image noise (sigma 10 HU).

    Returns
    -------
    volume : Volume
        ``array`` (nk, nj, ni) int16 HU, axial slices, i -> +x, j -> +y, k -> +z;
        about 201 x 200 x 256 voxels at the default spacing.
    truth : PhantomTruth
        Centerlines, radii and landmarks in metres (independent of spacing).
    """
    design = _design(variant)
    grid = _grid(spacing)
    width = float(np.cbrt(grid.sx * grid.sy * grid.sz))  # partial-volume ramp, mm
    segs = (
        _Segments(design.vessels, _VESSEL_WALL + _LUNG_SLEEVE + 2 * width),
        _Segments(design.airways, _AIRWAY_WALL + _LUNG_SLEEVE + 2 * width),
        _Segments(design.bone_tubes, 1.0),
    )
    rng = np.random.default_rng(seed)
    out = np.empty((grid.nk, grid.nj, grid.ni), dtype=np.int16)
    slab = 16
    for k0 in range(0, grid.nk, slab):
        k1 = min(grid.nk, k0 + slab)
        hu = _paint_slab(grid, k0, k1, segs, width)
        hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(NOISE_SIGMA_HU)
        np.rint(hu, out=hu)
        np.clip(hu, -1024, 3071, out=hu)
        out[k0:k1] = hu
    volume = Volume(
        array=out,
        world_from_voxel=grid.world_from_voxel(),
        modality="CT",
        series_uid=_series_uid(variant, grid, seed),
        description=f"surgsim digital phantom ({variant})",
        notes=("synthetic phantom generated by surgsim.cases.phantom",),
    )
    truth = PhantomTruth(
        centerlines={k: p / 1000.0 for k, (p, _) in design.truth_mm.items()},
        radii={k: r / 1000.0 for k, (_, r) in design.truth_mm.items()},
        landmarks={
            k: (v / 1000.0 if k != "access_direction" else v.astype(float))
            for k, v in design.landmarks_mm.items()
        },
    )
    return volume, truth


# --------------------------------------------------------------------------- DICOM


def _uid(*parts: str) -> str:
    from surgsim.dicom.write import deterministic_uid

    return deterministic_uid(_UID_PREFIX, _UID_SEED, *parts)


def _series_uid(variant: str, grid: _Grid, seed: int) -> str:
    return _uid(
        f"v{GENERATOR_VERSION}",
        variant,
        "series",
        f"{grid.sx:.6f},{grid.sy:.6f},{grid.sz:.6f}",
        f"seed={seed}",
    )


def write_phantom_series(
    out_dir: Path,
    variant: str = "default",
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    seed: int = 0,
) -> list[Path]:
    """Generate the phantom and write it as a CT DICOM series, one file per slice.

    Files are ``CT000001.dcm`` (most inferior slice) upward, Explicit VR Little
    Endian, CT Image Storage, stored as uint16 with RescaleIntercept -1024
    (:func:`surgsim.dicom.write.write_ct_series`). Writing is deterministic:
    the same arguments give byte-identical files.

    Parameters
    ----------
    out_dir : Path
        Folder to write into (created; existing ``CT*.dcm`` files are overwritten).
    variant, spacing, seed
        As :func:`make_phantom_volume` (spacing in metres).

    Returns
    -------
    list of Path
        The written files in slice order.
    """
    from surgsim.dicom.write import PrivateBlock, decimal_string, write_ct_series

    volume, _ = make_phantom_volume(variant, spacing, seed)
    grid = _grid(spacing)
    extra = {
        "AcquisitionDate": "20240101",
        "AcquisitionTime": "120000",
        "AccessionNumber": "SURGSIMACC001",
        "InstitutionName": "surgsim digital phantom",
        "InstitutionAddress": "1 Phantom Way, Nowhere",
        "ReferringPhysicianName": "Referrer^Phantom",
        "StationName": "SURGSIM-GEN",
        "OperatorsName": "Operator^Phantom",
        "ManufacturerModelName": "digital phantom",
        "PatientAge": "054Y",
        "PatientWeight": "75",
        "KVP": "120",
        "SpacingBetweenSlices": decimal_string(grid.sz),
        "DeviceSerialNumber": "PHANTOM-0001",
        "SoftwareVersions": f"surgsim phantom generator v{GENERATOR_VERSION}",
        "AcquisitionNumber": 1,
        "PositionReferenceIndicator": "",
        "ImageComments": f"surgsim digital phantom, variant {variant}, seed {seed}",
    }
    private = PrivateBlock(
        0x0009, "SURGSIM PHANTOM", ((0x01, "LO", f"generator v{GENERATOR_VERSION} variant {variant}"),)
    )
    try:
        return write_ct_series(
            volume, out_dir,
            series_description=f"Phantom {variant} axial {grid.sz:g}mm",
            study_description="Phantom chest CT angiography",
            patient_name=f"Phantom^{variant.capitalize()}",
            patient_id=f"SURGSIM-PHANTOM-{variant.upper()}",
            body_part="CHEST",
            uid_root=_UID_PREFIX, uid_seed=_UID_SEED,
            study_uid=_uid(variant, "study"),
            frame_of_reference_uid=_uid(variant, "frame-of-reference"),
            implementation_version_name=f"SURGSIM_PH{GENERATOR_VERSION}",
            extra=extra, private=(private,),
        )
    except DicomSeriesError as exc:
        raise DicomSeriesError(f"phantom {variant!r}: {exc}") from None
