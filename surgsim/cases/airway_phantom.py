"""Digital head-and-neck phantom for orotracheal intubation, written as real DICOM.

The anatomy is designed analytically (so the truth is exact) in millimetres in
the DICOM patient frame (LPS: +x patient left, +y posterior, +z superior) of a
supine patient, and converted to metres at the API edge. Structures: lips and
mouth opening, upper and lower incisors (tooth density), hard palate, mandible
(rotating about the temporomandibular joint to open the mouth), tongue,
vallecula, epiglottis, laryngeal vestibule, glottis with vocal cords and
arytenoids, trachea to the carina and both main bronchi (ending blind),
oesophagus (collapsed tube behind the larynx), hyoid, cervical spine and skull.
The head and upper neck rotate about the atlanto-occipital joint by the
``extension`` angle (blended smoothly over the neck), as in the sniffing
position.

Variants (:data:`VARIANTS`): ``adult`` (normal), ``difficult`` (large tongue,
small mouth opening, anterior larynx, limited extension), ``obese`` (thick neck,
bigger tongue, narrower pharynx) and ``child`` (scaled down).

The volume goes through the same DICOM pipeline as patient data
(:func:`write_airway_series` writes a CT series; ``surgsim.dicom`` reads it
back). :func:`lumen_mask` gives the space the instruments may occupy (air,
tongue, epiglottis, oesophagus) for the physics' static wall mesh.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from surgsim.dicom.volume import Volume
from surgsim.errors import AnatomyError, DicomSeriesError

#: Bump when the generated image or DICOM content changes.
GENERATOR_VERSION = 3  # 2: tongue moved forward of the vallecula; 3: larynx lower (incisor-glottis 13-15 cm)

VARIANTS: tuple[str, ...] = ("adult", "difficult", "obese", "child")

#: Anatomy labels an airway phantom case provides (scenario cross-check).
AIRWAY_LABELS: tuple[str, ...] = (
    "oral_cavity", "pharynx", "larynx", "glottis", "trachea", "right_main_bronchus",
    "left_main_bronchus", "oesophagus", "tongue", "epiglottis", "vallecula",
    "upper_incisors", "lower_incisors", "mandible",
)

#: How far (mm, adult; scaled with the variant) the larynx lies below the design's first level,
#: which put the glottis only 10 cm from the upper incisors.
LARYNX_DROP_MM = 25.0

#: Tilt of the tongue's long axis from superior toward anterior, radians (its base reaches the vallecula).
TONGUE_TILT = 0.61

#: The route over the tongue's dorsum (mouth to vallecula, where a curved blade runs and lifts the
#: tongue): radius of its sagittal curve (a Macintosh blade's), mm, adult.
DORSUM_ROUTE_RADIUS_MM = 160.0
#: ... its half-width (left-right) and half-height (palate to dorsum) around that curve, mm, adult.
DORSUM_ROUTE_HALF_MM = (13.0, 7.0)
#: ... and where it enters the mouth: this fraction of the inter-incisor gap below the upper
#: incisal edge, and at least DORSUM_ROUTE_ENTRY_MM.
DORSUM_ROUTE_ENTRY_FRACTION = 0.3
DORSUM_ROUTE_ENTRY_MM = 12.0

#: Default voxel size (column, row, slice), metres.
DEFAULT_SPACING: tuple[float, float, float] = (1.5e-3, 1.5e-3, 1.5e-3)

HU_AIR = -1000.0
HU_FAT = -100.0
HU_SOFT = 40.0
HU_MUSCLE = 55.0
HU_CARTILAGE = 110.0
HU_OESOPHAGUS = 30.0
HU_CORTICAL = 1000.0
HU_CANCELLOUS = 300.0
HU_TOOTH = 2200.0
NOISE_SIGMA_HU = 10.0

_UID_PREFIX = "1.2.826.0.1.3680043.8.498."

#: Integer labels of :func:`make_airway_phantom`'s label map.
LABEL_IDS: dict[str, int] = {
    "outside": 0, "soft": 1, "fat": 2, "oral_cavity": 3, "pharynx": 4, "larynx": 5,
    "trachea": 6, "right_main_bronchus": 7, "left_main_bronchus": 8, "oesophagus": 9,
    "tongue": 10, "epiglottis": 11, "vocal_cords": 12, "arytenoids": 13, "vallecula": 14,
    "upper_incisors": 15, "lower_incisors": 16, "mandible": 17, "bone": 18, "hyoid": 19,
}


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class AirwayParams:
    """Parameters of one airway anatomy (millimetres, radians).

    Attributes
    ----------
    scale : overall size factor (1 adult)
    mouth_opening_mm : inter-incisor gap when the mouth is open
    max_extension : largest head extension the neck allows, radians
    tongue_scale : tongue size factor
    larynx_anterior_mm : larynx moved anteriorly (and up by half) from normal
    pharynx_radius_mm : oropharynx lumen radius
    trachea_radius_mm : trachea lumen radius
    neck_fat_mm : subcutaneous fat thickness of the neck
    trachea_length_mm : cricoid to carina along the trachea; ``None``: the design's
        (125.6 mm adult, scaled)
    lower_trachea_radius_mm : lumen radius of the trachea from 15 mm below the cricoid
        to the carina (a patient's, scaled); ``None``: ``trachea_radius_mm``. The
        larynx and cords keep ``trachea_radius_mm``.
    right_bronchus_deg, left_bronchus_deg : angle of each main bronchus from the
        downward tracheal axis (a patient's), degrees; ``None``: the design's
        bronchi (25 and 45 degrees from the vertical in the coronal plane)
    source : where the trachea came from (``"phantom"``, or ``"case-..."``: a
        chest CT measured by :mod:`surgsim.anatomy.trachea`)
    """

    name: str
    scale: float = 1.0
    mouth_opening_mm: float = 45.0
    max_extension: float = 0.6
    tongue_scale: float = 1.0
    larynx_anterior_mm: float = 0.0
    pharynx_radius_mm: float = 12.0
    trachea_radius_mm: float = 9.5
    neck_fat_mm: float = 6.0
    trachea_length_mm: float | None = None
    lower_trachea_radius_mm: float | None = None
    right_bronchus_deg: float | None = None
    left_bronchus_deg: float | None = None
    source: str = "phantom"


PARAMS: dict[str, AirwayParams] = {
    "adult": AirwayParams("adult"),
    "difficult": AirwayParams("difficult", mouth_opening_mm=28.0, max_extension=0.15,
                              tongue_scale=1.18, larynx_anterior_mm=8.0),
    "obese": AirwayParams("obese", mouth_opening_mm=38.0, max_extension=0.35, tongue_scale=1.1,
                          pharynx_radius_mm=9.5, neck_fat_mm=28.0),
    "child": AirwayParams("child", scale=0.62, mouth_opening_mm=30.0, max_extension=0.5,
                          trachea_radius_mm=5.0 / 0.62, pharynx_radius_mm=12.0),
}


# --------------------------------------------------------------------------- geometry helpers


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


@dataclass
class _Tube:
    points: np.ndarray  # (n, 3) mm
    radii: np.ndarray  # (n,) mm


@dataclass
class _Ellipsoid:
    centre: np.ndarray  # (3,) mm
    radii: np.ndarray  # (3,) mm
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))  # world_from_local


@dataclass
class _Box:
    centre: np.ndarray
    half: np.ndarray
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass(frozen=True)
class AirwayTruth:
    """Exact geometry of an airway phantom (metres, LPS).

    Attributes
    ----------
    landmarks : dict[str, (3,) float]
        ``upper_incisor`` (incisal edge, midline), ``lower_incisor``,
        ``mouth_centre`` (midpoint of the two), ``glottis_centre``, ``carina``,
        ``oesophagus_entrance``, ``vallecula``, ``epiglottis_tip``,
        ``epiglottis_base``, ``hyoid``, ``tmj`` (mandible pivot), ``ao_joint``
        (head extension pivot), ``laryngeal_inlet``.
    glottis_outline : (n, 3) float
        Polygon of the glottic opening (anterior commissure first, then the
        patient's left vocal cord, posterior commissure, right cord).
    glottis_normal : (3,) float
        Unit axis of the airway at the glottis, pointing down the trachea.
    upper_incisor_axis : (3,) float
        Unit long axis of the upper incisors, incisal edge -> root.
    centerlines : dict[str, (n, 3) float]
        ``airway`` (mouth centre -> glottis -> carina), ``trachea`` (cricoid ->
        carina), ``right_main_bronchus``, ``left_main_bronchus`` (carina ->
        blind end), ``oesophagus`` (entrance -> inferior face), ``pharynx``
        (oropharynx -> oesophageal entrance).
    radii : dict[str, (n,) float]
        Lumen radius along each centerline.
    params : AirwayParams
    extension : float
        Head extension of this geometry, radians.
    """

    landmarks: dict[str, np.ndarray]
    glottis_outline: np.ndarray
    glottis_normal: np.ndarray
    upper_incisor_axis: np.ndarray
    centerlines: dict[str, np.ndarray]
    radii: dict[str, np.ndarray]
    params: AirwayParams
    extension: float


@dataclass
class AirwayDesign:
    """The whole design in millimetres: primitives to paint plus the truth.

    Attributes are lists of primitives per structure (see :func:`design`);
    ``tongue``, ``epiglottis`` and the teeth are also what the physics'
    proxies are built from.
    """

    params: AirwayParams
    extension: float
    fov_lo: np.ndarray  # (3,) mm
    fov_hi: np.ndarray
    body: list
    fat_mm: float
    air: dict[str, list]  # label -> primitives (air lumen)
    oesophagus: list
    tongue: _Ellipsoid
    epiglottis: _Box
    cords: _Tube  # laryngeal disk at the glottis (cords = disk minus outline)
    arytenoids: list
    upper_teeth: _Box
    lower_teeth: _Box
    bones: dict[str, list]
    hyoid: _Tube
    landmarks_mm: dict[str, np.ndarray]
    glottis_outline_mm: np.ndarray
    glottis_normal: np.ndarray
    centerlines_mm: dict[str, tuple[np.ndarray, np.ndarray]]
    funnel: list  # outside-the-mouth space for the instruments (not anatomy)


def _polyline(points, radii, step: float = 2.0) -> _Tube:
    """Densify a polyline (mm) with linearly interpolated radii, every <= step mm."""
    p = np.asarray(points, float)
    r = np.asarray(radii, float)
    out_p, out_r = [p[0]], [r[0]]
    for a, b, ra, rb in zip(p[:-1], p[1:], r[:-1], r[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        s = np.linspace(0, 1, n + 1)[1:]
        out_p.append(a + s[:, None] * (b - a))
        out_r.append(ra + s * (rb - ra))
    return _Tube(np.vstack([np.atleast_2d(x) for x in out_p]), np.concatenate([np.atleast_1d(x) for x in out_r]))


def design(variant: str | AirwayParams = "adult", extension: float = 0.0) -> AirwayDesign:
    """Analytic design of an airway phantom.

    Parameters
    ----------
    variant : str or AirwayParams
        One of :data:`VARIANTS`, or a variant's parameters (e.g. with a patient's
        trachea, :func:`surgsim.anatomy.trachea.patient_airway_params`).
    extension : float
        Head extension about the atlanto-occipital joint, radians (clipped to
        the variant's ``max_extension``; 0 = neutral).

    Raises
    ------
    ValueError
        Unknown variant.
    """
    if isinstance(variant, AirwayParams):
        P = variant
    elif variant in PARAMS:
        P = PARAMS[variant]
    else:
        raise ValueError(f"unknown airway phantom variant {variant!r}; choose one of {VARIANTS}")
    ext = float(np.clip(extension, 0.0, P.max_extension))
    sc = P.scale

    def S(p):  # scale about the carina region origin
        return np.asarray(p, float) * sc

    # ---- neutral-position key points (adult, mm)
    la = np.array([0.0, -P.larynx_anterior_mm, 0.5 * P.larynx_anterior_mm])
    # the larynx (hyoid, epiglottis, glottis, cricoid) sits LARYNX_DROP_MM below the design's
    # original level: upper incisors to glottis 13-15 cm in the adult (sniffing position)
    dl = S((0.0, 0.0, -LARYNX_DROP_MM))
    lx = la + dl  # every laryngeal point moves with the larynx
    carina = S((0.0, 28.0, -28.0))
    cricoid = S((0.0, -15.0, 115.0)) + la * 0.6 + dl
    u_t = _unit(carina - cricoid)  # down the trachea
    if P.trachea_length_mm is not None:  # a measured trachea: same axis, its own length
        carina = cricoid + P.trachea_length_mm * sc * u_t
    glottis = cricoid - 20.0 * sc * u_t
    inlet = glottis - 25.0 * sc * u_t
    oes_in = S((0.0, -0.8, 141.0)) + 0.3 * la + dl
    oes_end = S((0.0, 62.0, -58.0))
    tmj = S((0.0, -5.0, 222.0))
    ao = S((0.0, 28.0, 212.0))
    ui = S((0.0, -88.0, 208.0))
    li0 = S((0.0, -86.0, 206.0))

    # mandible opening angle giving the variant's inter-incisor gap
    def lower_at(phi):
        return tmj + _rot_x(phi) @ (li0 - tmj)

    lo, hi = 0.0, 1.2
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if np.linalg.norm(lower_at(mid) - ui) < P.mouth_opening_mm * sc:
            lo = mid
        else:
            hi = mid
    phi = 0.5 * (lo + hi)
    R_mand = _rot_x(phi)

    def mand(p):
        return tmj + R_mand @ (np.asarray(p, float) - tmj)

    # head extension: rotation about the AO joint blended over the neck
    z_lo, z_hi = 150.0 * sc, 205.0 * sc

    def warp(p):
        p = np.atleast_2d(np.asarray(p, float))
        w = _smoothstep((p[:, 2] - z_lo) / (z_hi - z_lo))
        out = np.empty_like(p)
        for n, (q, wn) in enumerate(zip(p, w, strict=True)):
            out[n] = ao + _rot_x(-ext * wn) @ (q - ao)
        return out

    def warp1(p):
        return warp(p)[0]

    def warp_rot(p):
        w = float(_smoothstep((np.asarray(p)[2] - z_lo) / (z_hi - z_lo)))
        return _rot_x(-ext * w)

    R_head = _rot_x(-ext)

    def tube(points, radii, step=2.0):
        t = _polyline(points, radii, step)
        return _Tube(warp(t.points), t.radii)

    def ell(c, r, rot=None):
        rot = np.eye(3) if rot is None else rot
        c = np.asarray(c, float)
        return _Ellipsoid(warp1(c), np.asarray(r, float), warp_rot(c) @ rot)

    r_tr = P.trachea_radius_mm * sc
    # the trachea below the cricoid (a patient's lumen when measured), reached over 15 mm
    r_lo = (P.lower_trachea_radius_mm if P.lower_trachea_radius_mm is not None else P.trachea_radius_mm) * sc
    taper_end = cricoid + min(15.0 * sc, 0.5 * float(np.linalg.norm(carina - cricoid))) * u_t
    trachea_pts, trachea_r = [cricoid, taper_end, carina], [r_tr, r_lo, r_lo]
    r_ph = P.pharynx_radius_mm * sc

    # ---- air spaces
    mouth_c0 = 0.5 * (ui + lower_at(phi))
    air = {
        "trachea": [tube(trachea_pts, trachea_r)],
        "larynx": [tube([glottis, cricoid], [0.85 * r_tr, r_tr]),
                   tube([inlet, glottis], [0.95 * r_tr * 0.95, 0.85 * r_tr])],
        "pharynx": [tube([S((0, -6, 222)), S((0, -9, 190)), S((0, -8, 165)) + 0.5 * la + dl, oes_in],
                         [r_ph, r_ph, r_ph * 0.9, 6.0 * sc]),
                    ell(S((0, -22, 168)) + la + 0.5 * dl, S((15, 13, 19)) - 0.5 * dl)],
        "oral_cavity": [ell(S((0, -50, 216)), S((24, 36, 8))),
                        ell(mand(S((0, -55, 212))), S((23, 30, 6)), R_mand),
                        tube([0.5 * (S((0, -45, 214)) + mand(S((0, -45, 212)))),
                              mouth_c0 + S((0, -30, 0))],
                             [0.42 * P.mouth_opening_mm * sc, 0.42 * P.mouth_opening_mm * sc])],
        "vallecula": [ell(S((0, -40, 170)) + lx, S((12, 5, 6)))],
    }
    def bronchus(deg, design_deg, side):  # side -1: patient right (-x)
        if deg is None:  # the design's: from the vertical
            a = np.radians(design_deg)
            return np.array([side * np.sin(a), 0.0, -np.cos(a)])
        a = np.radians(deg)  # a patient's: from the tracheal axis, toward its side
        return np.cos(a) * u_t + np.sin(a) * np.array([side, 0.0, 0.0])

    rmb_end = carina + 40.0 * sc * bronchus(P.right_bronchus_deg, 25.0, -1.0)
    lmb_end = carina + 45.0 * sc * bronchus(P.left_bronchus_deg, 45.0, 1.0)
    air["right_main_bronchus"] = [tube([carina, rmb_end], [0.75 * r_lo, 0.7 * r_lo])]
    air["left_main_bronchus"] = [tube([carina, lmb_end], [0.65 * r_lo, 0.6 * r_lo])]
    oesophagus = [tube([oes_in, oes_end], [7.0 * sc, 7.0 * sc], step=4.0)]

    # ---- tongue (moves with the mandible), epiglottis, cords, arytenoids
    ts = P.tongue_scale
    R_tongue = _rot_x(0.35 * phi)  # the tongue follows the jaw only partly
    # the tongue base lies in front of the vallecula and the epiglottis (the blade tip reaches the
    # vallecula past the base); the dorsum leaves room under the palate for the blade
    # long axis (local z) from the base up and forward to the tip, tilted TONGUE_TILT from superior
    tongue_c = tmj + R_tongue @ (S((0, -62, 177)) + np.array([0, -4.0, -6.0]) * (ts - 1) * 10 - tmj)
    tongue = ell(tongue_c, S((25, 21, 31)) * ts, R_tongue @ _rot_x(TONGUE_TILT))
    epi_base = S((0, -36, 150)) + lx
    epi_tip = S((0, -26, 182)) + lx
    e_ax = _unit(epi_tip - epi_base)
    # epiglottis plate: local z along base->tip, y its thickness, x lateral
    ez = e_ax
    ey = _unit(np.cross(ez, [1.0, 0, 0]))
    rot_e = np.column_stack([[1.0, 0, 0], ey, ez])
    epi_len = float(np.linalg.norm(epi_tip - epi_base))
    epiglottis_c = 0.5 * (epi_base + epi_tip)
    epiglottis = _Box(warp1(epiglottis_c), np.array([12.0 * sc, 1.5 * sc, 0.5 * epi_len]),
                      warp_rot(epiglottis_c) @ rot_e)
    # glottis outline in the plane normal to the trachea at the glottis
    e_lr = np.array([1.0, 0.0, 0.0])
    e_ap = _unit(np.cross(e_lr, u_t))  # points posterior
    if e_ap[1] < 0:
        e_ap = -e_ap
    outline_2d = np.array([[0.0, -10.0], [3.0, -3.0], [6.0, 6.0], [4.0, 9.0], [0.0, 9.5],
                           [-4.0, 9.0], [-6.0, 6.0], [-3.0, -3.0]]) * sc
    outline = glottis + outline_2d[:, :1] * e_lr + outline_2d[:, 1:] * e_ap
    cords = _Tube(np.array([glottis - 1.5 * sc * u_t, glottis + 1.5 * sc * u_t]),
                  np.array([0.85 * r_tr, 0.85 * r_tr]))
    arytenoids = [ell(glottis + 9.0 * sc * e_ap + sx * 5.5 * sc * e_lr - 6.0 * sc * u_t,
                      S((3.0, 3.0, 6.0))) for sx in (-1.0, 1.0)]

    # ---- teeth: boxes (incisal edge at the given points), tooth axis edge -> root
    up_axis = R_head @ _unit(S((0, 0.25, 1.0)))
    ui_w = warp1(ui)
    li = lower_at(phi)
    li_w = warp1(li)
    lo_axis = R_head @ R_mand @ _unit((0, 0.2, -1.0))
    rot_u = np.column_stack([[1.0, 0, 0], _unit(np.cross(up_axis, [1.0, 0, 0])), up_axis])
    rot_l = np.column_stack([[1.0, 0, 0], _unit(np.cross(lo_axis, [1.0, 0, 0])), lo_axis])
    upper_teeth = _Box(ui_w + 5.5 * sc * up_axis + R_head @ np.array([0, 2.5, 0]) * sc,
                       np.array([17.0, 3.5, 5.5]) * sc, rot_u)
    lower_teeth = _Box(li_w + 5.0 * sc * lo_axis + R_head @ R_mand @ np.array([0, 2.5, 0]) * sc,
                       np.array([15.0, 3.5, 5.0]) * sc, rot_l)

    # ---- bones
    spine = [tube([S((0, 42, -40)), S((0, 38, 100)), S((0, 36, 200))],
                  [11.0 * sc, 10.0 * sc, 10.0 * sc], step=6.0)]
    palate = [ell(S((0, -50, 228)), S((26, 38, 3.5)))]
    maxilla = [tube([S((-22, -60, 222)), S((-12, -82, 218)), S((0, -86, 220)),
                     S((12, -82, 218)), S((22, -60, 222))], [5.0 * sc] * 5)]
    # mandible: U from one TMJ to the other through the chin (rotated by the opening)
    mand_pts = [S((-45, -5, 222)), S((-45, -30, 190)), S((-35, -70, 185)), S((0, -86, 180)),
                S((35, -70, 185)), S((45, -30, 190)), S((45, -5, 222))]
    mandible = [tube([mand(p) for p in mand_pts], [5.0 * sc] * 7, step=3.0)]
    skull = [ell(S((0, 30, 285)), S((64, 75, 52)))]
    hyoid_pts = [S((-18, -30, 158)), S((-8, -46, 160)), S((8, -46, 160)), S((18, -30, 158))]
    hyoid = tube([p + lx for p in hyoid_pts], [2.5 * sc] * 4)
    bones = {"bone": spine + palate + maxilla + skull, "mandible": mandible}

    # ---- body outline: neck cylinder blending into an ellipsoidal head and the chest
    fov_lo = S((-85.0, -140.0, -80.0))
    # a long trachea takes the carina and bronchi lower: keep them 12 mm inside the volume
    fov_lo[2] = min(fov_lo[2], min(rmb_end[2], lmb_end[2], oes_end[2]) - 12.0 * sc)
    fov_hi = S((85.0, 95.0, 275.0))
    fat = P.neck_fat_mm * sc
    body = [("neck", S((0.0, 8.0, 0.0)), S((58.0, 62.0, 0.0))),
            ell(S((0.0, -4.0, 240.0)), S((72.0, 92.0, 80.0)) + np.array([0.3, 0.3, 0.0]) * fat),
            ell(mand(S((0.0, -40.0, 188.0))), S((52.0, 52.0, 24.0)) + np.array([0.4, 0.4, 0.4]) * fat,
                R_mand),
            ell(S((0.0, -30.0, 172.0)), S((50.0, 50.0, 30.0)) + np.array([0.5, 0.5, 0.3]) * fat)]
    funnel = [_Ellipsoid(mouth_c0 + R_head @ S((0, -120, 10)), S((45, 110, 45)), R_head)]
    funnel[0] = _Ellipsoid(warp1(mouth_c0) + R_head @ S((0, -170, 60)), S((140, 165, 175)), R_head)
    # the room in front of the chin, neck and upper chest, where a laryngoscope handle swings
    # (its deepest point stays 30 mm in front of the skin of the neck)
    inner = -54.0 * sc - fat - 30.0 * sc
    funnel.append(_Ellipsoid(np.array([0.0, inner - 170.0 * sc, 110.0 * sc]), S((140.0, 170.0, 170.0))))
    # the operator's room above the face, where a tube's connector and a laryngoscope's handle go (a
    # 32 cm tube entering the mouth reaches 25 cm out of it; the first funnel alone ended short of that
    # and its boundary levered the tube's connector in free air)
    funnel.append(_Ellipsoid(warp1(mouth_c0) + R_head @ S((0, -230, 220)), S((160.0, 160.0, 160.0)), R_head))

    # ---- truth
    outline_w = warp(outline)
    glottis_w = warp1(glottis)
    landmarks = {
        "upper_incisor": ui_w,
        "lower_incisor": li_w,
        "mouth_centre": 0.5 * (ui_w + li_w),
        "glottis_centre": glottis_w,
        "laryngeal_inlet": warp1(inlet),
        "carina": warp1(carina),
        "oesophagus_entrance": warp1(oes_in),
        "vallecula": warp1(S((0, -40, 170)) + lx),
        "epiglottis_tip": warp1(epi_tip),
        "epiglottis_base": warp1(epi_base),
        "hyoid": warp1(S((0, -46, 160)) + lx),
        "tmj": warp1(tmj),
        "ao_joint": ao,
    }
    cl = {
        "trachea": _polyline(trachea_pts, trachea_r, 1.0),
        "right_main_bronchus": _polyline([carina, rmb_end], [0.75 * r_lo, 0.7 * r_lo], 1.0),
        "left_main_bronchus": _polyline([carina, lmb_end], [0.65 * r_lo, 0.6 * r_lo], 1.0),
        "oesophagus": _polyline([oes_in, oes_end], [7.0 * sc, 7.0 * sc], 1.0),
        "pharynx": _polyline([S((0, -6, 222)), S((0, -9, 190)), S((0, -8, 165)) + 0.5 * la + dl, oes_in],
                             [r_ph, r_ph, 0.9 * r_ph, 6.0 * sc], 1.0),
    }
    centerlines = {k: (warp(t.points), t.radii) for k, t in cl.items()}
    # the airway path: mouth centre -> laryngeal inlet -> glottis -> carina (warped)
    path = _polyline([warp1(mouth_c0), warp1(mouth_c0) + 0.35 * (warp1(inlet) - warp1(mouth_c0)),
                      warp1(inlet), glottis_w, warp1(carina)], [10.0] * 5, 1.0)
    centerlines["airway"] = (path.points, path.radii)

    return AirwayDesign(
        params=P, extension=ext, fov_lo=fov_lo, fov_hi=fov_hi, body=body,
        fat_mm=P.neck_fat_mm * sc, air=air, oesophagus=oesophagus, tongue=tongue,
        epiglottis=epiglottis, cords=_Tube(warp(cords.points), cords.radii), arytenoids=arytenoids,
        upper_teeth=upper_teeth, lower_teeth=lower_teeth, bones=bones, hyoid=hyoid,
        landmarks_mm=landmarks, glottis_outline_mm=outline_w,
        glottis_normal=warp_rot(glottis) @ u_t, centerlines_mm=centerlines, funnel=funnel,
    )


def truth_of(d: AirwayDesign) -> AirwayTruth:
    """The design's truth in metres."""
    return AirwayTruth(
        landmarks={k: v / 1000.0 for k, v in d.landmarks_mm.items()},
        glottis_outline=d.glottis_outline_mm / 1000.0,
        glottis_normal=np.asarray(d.glottis_normal, float),
        upper_incisor_axis=np.asarray(d.upper_teeth.rot[:, 2], float),
        centerlines={k: p / 1000.0 for k, (p, _) in d.centerlines_mm.items()},
        radii={k: r / 1000.0 for k, (_, r) in d.centerlines_mm.items()},
        params=d.params,
        extension=d.extension,
    )


# --------------------------------------------------------------------------- signed distances


def _sd_tube(t: _Tube, X, Y, Z) -> np.ndarray:
    out = np.full(np.broadcast(X, Y, Z).shape, 1e4, np.float32)
    a = t.points[:-1]
    b = t.points[1:]
    for pa, pb, ra, rb in zip(a, b, t.radii[:-1], t.radii[1:], strict=True):
        ab = pb - pa
        dx, dy, dz = X - pa[0], Y - pa[1], Z - pa[2]
        tt = np.clip((dx * ab[0] + dy * ab[1] + dz * ab[2]) / float(ab @ ab), 0.0, 1.0)
        d = np.sqrt((dx - tt * ab[0]) ** 2 + (dy - tt * ab[1]) ** 2 + (dz - tt * ab[2]) ** 2)
        np.minimum(out, d - (ra + tt * (rb - ra)), out=out)
    return out


def _local(rot, c, X, Y, Z):
    dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
    return (rot[0, 0] * dx + rot[1, 0] * dy + rot[2, 0] * dz,
            rot[0, 1] * dx + rot[1, 1] * dy + rot[2, 1] * dz,
            rot[0, 2] * dx + rot[1, 2] * dy + rot[2, 2] * dz)


def _sd_ell(e: _Ellipsoid, X, Y, Z) -> np.ndarray:
    u, v, w = _local(e.rot, e.centre, X, Y, Z)
    r = e.radii
    rho = np.sqrt((u / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2)
    g = np.sqrt((u / r[0] ** 2) ** 2 + (v / r[1] ** 2) ** 2 + (w / r[2] ** 2) ** 2) + 1e-9
    return ((rho - 1.0) * rho / g).astype(np.float32)


def _sd_box(b: _Box, X, Y, Z) -> np.ndarray:
    u, v, w = _local(b.rot, b.centre, X, Y, Z)
    q = [np.abs(u) - b.half[0], np.abs(v) - b.half[1], np.abs(w) - b.half[2]]
    outside = np.sqrt(sum(np.maximum(x, 0.0) ** 2 for x in q))
    inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0)
    return (outside + inside).astype(np.float32)


def _sd1(prim, X, Y, Z) -> np.ndarray:
    return _sd_union([prim], X, Y, Z)


def _sd(prim, X, Y, Z) -> np.ndarray:
    if isinstance(prim, _Tube):
        return _sd_tube(prim, X, Y, Z)
    if isinstance(prim, _Ellipsoid):
        return _sd_ell(prim, X, Y, Z)
    return _sd_box(prim, X, Y, Z)


def _bbox(prim) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds (mm) of a primitive."""
    if isinstance(prim, _Tube):
        r = prim.radii.max()
        return prim.points.min(0) - r, prim.points.max(0) + r
    if isinstance(prim, _Ellipsoid):
        ext = np.abs(prim.rot) @ prim.radii
    else:
        ext = np.abs(prim.rot) @ prim.half
    return prim.centre - ext, prim.centre + ext


def _sd_union(prims, X, Y, Z, margin: float = 4.0) -> np.ndarray:
    """Signed distance to a union of primitives on the grid axes X (1,1,ni), Y (1,nj,1), Z (nk,1,1).

    Each primitive is evaluated only in its bounding box plus ``margin`` (mm);
    elsewhere the value is ``margin`` (i.e. "outside").
    """
    x, y, z = X.reshape(-1), Y.reshape(-1), Z.reshape(-1)
    out = np.full((len(z), len(y), len(x)), margin, np.float32)
    for p in prims:
        lo, hi = _bbox(p)
        lo = lo - margin
        hi = hi + margin
        sl = []
        for ax, (a, b) in zip((x, y, z), zip(lo, hi, strict=True), strict=True):
            i0 = int(np.searchsorted(ax, a))
            i1 = int(np.searchsorted(ax, b, side="right"))
            sl.append(slice(i0, i1))
        if any(q.stop <= q.start for q in sl):
            continue
        xs, ys, zs = x[sl[0]], y[sl[1]], z[sl[2]]
        d = _sd(p, xs[None, None, :], ys[None, :, None], zs[:, None, None])
        view = out[sl[2], sl[1], sl[0]]
        np.minimum(view, d, out=view)
    return out


def _polygon_inside(pts2d: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised."""
    inside = np.zeros(np.broadcast(u, v).shape, bool)
    n = len(pts2d)
    for i in range(n):
        x1, y1 = pts2d[i]
        x2, y2 = pts2d[(i + 1) % n]
        cond = (y1 > v) != (y2 > v)
        xint = (x2 - x1) * (v - y1) / ((y2 - y1) + 1e-12) + x1
        inside ^= cond & (u < xint)
    return inside


# --------------------------------------------------------------------------- grid and painting


@dataclass(frozen=True)
class _Grid:
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    step: np.ndarray  # mm

    def world_from_voxel(self) -> np.ndarray:
        m = np.diag([*self.step, 1000.0]) / 1000.0
        m[:3, 3] = np.array([self.x[0], self.y[0], self.z[0]]) / 1000.0
        return m


def _grid(d: AirwayDesign, spacing) -> _Grid:
    sp = np.asarray(spacing, float) * 1000.0
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or sp.min() < 0.5 or sp.max() > 6.0:
        raise ValueError(f"spacing {spacing!r} m is outside 0.5..6 mm; pass metres, e.g. (1.5e-3,) * 3")
    n = np.floor((d.fov_hi - d.fov_lo) / sp + 1e-6).astype(int) + 1
    lo = np.round(0.5 * (d.fov_lo + d.fov_hi) - 0.5 * (n - 1) * sp, 6)
    axes = [(lo[a] + sp[a] * np.arange(n[a])).astype(np.float32) for a in range(3)]
    return _Grid(axes[0], axes[1], axes[2], sp)


def _body_sd(d: AirwayDesign, X, Y, Z) -> np.ndarray:
    (_, nc, nr) = d.body[0]
    sc = d.params.scale
    fat = d.fat_mm
    # neck: elliptic cylinder (grows with fat), widening into the chest below z = 40 mm
    chest = _smoothstep((40.0 * sc - Z) / (60.0 * sc))
    a = nr[0] + fat + 60.0 * sc * chest
    b = nr[1] + fat + 25.0 * sc * chest
    u = X / a
    v = (Y - nc[1]) / b
    rho = np.sqrt(u * u + v * v)
    g = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-9
    neck = (rho - 1.0) * rho / g
    head = _sd_union(d.body[1:], X, Y, Z, margin=50.0)
    return np.minimum(neck, head).astype(np.float32)


def _paint(d: AirwayDesign, g: _Grid, k0: int, k1: int):
    """HU (float32, no noise) and labels (uint8) on slices k0..k1-1."""
    X = g.x[None, None, :]
    Y = g.y[None, :, None]
    Z = g.z[k0:k1, None, None]
    shape = (k1 - k0, len(g.y), len(g.x))
    w = float(np.cbrt(np.prod(g.step)))
    inv_w = np.float32(1.0 / w)
    hu = np.full(shape, HU_AIR, np.float32)
    lab = np.zeros(shape, np.uint8)

    def put(sd, value, name, hard=False):
        sd = np.broadcast_to(sd, shape)
        a = (sd < 0).astype(np.float32) if hard else np.clip(0.5 - sd * inv_w, 0.0, 1.0)
        hu[...] += a * (np.float32(value) - hu)
        lab[sd < 0] = LABEL_IDS[name]

    sd_body = _body_sd(d, X, Y, Z)
    put(sd_body, HU_FAT, "fat")
    put(sd_body + d.fat_mm, HU_SOFT, "soft")
    for name in ("mandible", "bone"):
        sd = _sd_union(d.bones[name], X, Y, Z)
        inside = np.broadcast_to(sd < 0, shape)
        hu[inside] = np.where(np.broadcast_to(sd, shape)[inside] > -2.0, HU_CORTICAL, HU_CANCELLOUS)
        lab[inside] = LABEL_IDS[name]
    put(_sd1(d.hyoid, X, Y, Z), HU_CORTICAL, "hyoid", hard=True)
    for name in ("pharynx", "oral_cavity", "larynx", "trachea",
                 "right_main_bronchus", "left_main_bronchus"):
        put(_sd_union(d.air[name], X, Y, Z), HU_AIR, name)
    # the mouth opens to the outside: air in front of the face where the oral channel leaves
    put(_sd1(d.tongue, X, Y, Z), HU_MUSCLE, "tongue")
    put(_sd_union(d.air["vallecula"], X, Y, Z), HU_AIR, "vallecula")  # pocket at the tongue base
    put(_sd1(d.epiglottis, X, Y, Z), HU_CARTILAGE, "epiglottis")
    # vocal cords: the laryngeal disk at the glottis minus the glottic opening
    sd_disk = _sd1(d.cords, X, Y, Z)
    near = np.broadcast_to(sd_disk < 0, shape)
    if near.any():
        nrm = d.glottis_normal
        c = d.landmarks_mm["glottis_centre"]
        e_lr = np.array([1.0, 0, 0])
        e_ap = _unit(np.cross(e_lr, nrm))
        if e_ap[1] < 0:
            e_ap = -e_ap
        XX, YY, ZZ = (np.broadcast_to(a, shape)[near] for a in (X, Y, Z))
        rel = np.stack([XX - c[0], YY - c[1], ZZ - c[2]], 1)
        poly = d.glottis_outline_mm - c
        poly2 = np.stack([poly @ e_lr, poly @ e_ap], 1)
        opening = _polygon_inside(poly2, rel @ e_lr, rel @ e_ap)
        vals = np.where(opening, HU_AIR, HU_SOFT).astype(np.float32)
        hu[near] = vals
        labs = lab[near]
        labs[~opening] = LABEL_IDS["vocal_cords"]
        lab[near] = labs
    for a in d.arytenoids:
        put(_sd1(a, X, Y, Z), HU_CARTILAGE, "arytenoids")
    put(_sd_union(d.oesophagus, X, Y, Z), HU_OESOPHAGUS, "oesophagus")
    put(_sd1(d.upper_teeth, X, Y, Z), HU_TOOTH, "upper_incisors", hard=True)
    put(_sd1(d.lower_teeth, X, Y, Z), HU_TOOTH, "lower_incisors", hard=True)
    outside = np.broadcast_to(sd_body > 0, shape) & np.isin(lab, [0, 2, 1])
    lab[outside & (hu < -500)] = 0
    return hu, lab


def make_airway_phantom(
    variant: str = "adult",
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    seed: int = 0,
    extension: float = 0.0,
) -> tuple[Volume, np.ndarray, AirwayTruth]:
    """Generate the airway phantom CT, its label map and its truth.

    Parameters
    ----------
    variant : str
        One of :data:`VARIANTS`.
    spacing : (3,) float, metres
        Voxel size (x, y, z).
    seed : int
        Seed of the Gaussian image noise.
    extension : float
        Head extension, radians.

    Returns
    -------
    volume : Volume
        ``array`` (nk, nj, ni) int16 HU.
    labels : (nk, nj, ni) uint8
        :data:`LABEL_IDS` of each voxel.
    truth : AirwayTruth
    """
    d = design(variant, extension)
    g = _grid(d, spacing)
    rng = np.random.default_rng(seed)
    nk = len(g.z)
    out = np.empty((nk, len(g.y), len(g.x)), np.int16)
    labels = np.empty(out.shape, np.uint8)
    for k0 in range(0, nk, 24):
        k1 = min(nk, k0 + 24)
        hu, lab = _paint(d, g, k0, k1)
        hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(NOISE_SIGMA_HU)
        np.rint(hu, out=hu)
        np.clip(hu, -1024, 3071, out=hu)
        out[k0:k1] = hu
        labels[k0:k1] = lab
    volume = Volume(
        array=out, world_from_voxel=g.world_from_voxel(), modality="CT",
        series_uid=_uid(f"v{GENERATOR_VERSION}", variant, f"{extension:.6f}", str(g.step.tolist()),
                        f"seed={seed}", "series"),
        description=f"surgsim airway phantom ({variant})",
        notes=("synthetic head-and-neck phantom generated by surgsim.cases.airway_phantom",),
    )
    return volume, labels, truth_of(d)


def _mouth_space(d: AirwayDesign) -> list:
    """Compliant lips and cheeks around the mouth opening, the space under the palate and the route
    over the tongue's dorsum (:func:`_dorsum_route`), mm.

    The lips part around a blade or a tube (the teeth are the rigid limit), and
    the blade runs between the palate and the dorsum of the tongue.
    """
    sc = d.params.scale
    L = d.landmarks_mm
    up, lo, mc = L["upper_incisor"], L["lower_incisor"], L["mouth_centre"]
    ez = _unit(up - lo)  # along the mouth opening
    ex = np.array([1.0, 0.0, 0.0])
    ey = _unit(np.cross(ez, ex))
    rot = np.column_stack([ex, ey, ez])
    gap = float(np.linalg.norm(up - lo))
    inward = _unit(L["vallecula"] - mc)
    lips = _Ellipsoid(mc, np.array([40.0 * sc, 18.0 * sc, 0.5 * gap + 12.0 * sc]), rot)
    # under the palate: from just inside the incisors back over the dorsum of the tongue
    t = d.tongue
    top = t.centre + t.rot @ np.array([0.0, 0.0, t.radii[2]])
    palate = _Tube(np.array([mc + 8.0 * sc * inward + 0.25 * gap * ez, top + np.array([0.0, 0.0, 4.0]) * sc,
                             top + np.array([0.0, 22.0, -4.0]) * sc]),
                   np.array([9.0, 9.0, 9.0]) * sc)
    return [lips, _polyline(palate.points, palate.radii)] + _dorsum_route(d)


def _dorsum_route(d: AirwayDesign) -> list:
    """The route over the tongue's dorsum from the mouth to the vallecula (flat ellipsoids, mm).

    The space between the palate and the tongue that a curved laryngoscope blade
    runs through and lifts: a sagittal arc of radius :data:`DORSUM_ROUTE_RADIUS_MM`
    bulging toward the palate, from :data:`DORSUM_ROUTE_ENTRY_FRACTION` of the
    inter-incisor gap below the upper incisal edge to the vallecula, with a flat
    cross-section (:data:`DORSUM_ROUTE_HALF_MM`). Without it the oral cavity and the
    tongue of a variant with a small mouth opening and a big tongue (obese) meet
    in a pinch too thin for a blade.
    """
    sc = d.params.scale
    L = d.landmarks_mm
    up, lo = L["upper_incisor"], L["lower_incisor"]
    gap = float(np.linalg.norm(lo - up))
    entry = up + max(DORSUM_ROUTE_ENTRY_MM * sc, DORSUM_ROUTE_ENTRY_FRACTION * gap) * (lo - up) / gap
    v = L["vallecula"]
    entry = np.array([0.0, entry[1], entry[2]])
    v = np.array([0.0, v[1], v[2]])
    chord = float(np.linalg.norm(v - entry))
    n = np.cross([1.0, 0.0, 0.0], (v - entry) / chord)
    if n @ (d.tongue.centre - 0.5 * (entry + v)) > 0.0:
        n = -n  # toward the palate, away from the tongue
    R = DORSUM_ROUTE_RADIUS_MM * sc
    sagitta = R - np.sqrt(max(R * R - 0.25 * chord * chord, 0.0))
    half_w, half_h = DORSUM_ROUTE_HALF_MM
    out = []
    for u in np.linspace(0.0, 1.0, int(np.ceil(chord / (5.0 * sc))) + 1):
        centre = entry + u * (v - entry) + 4.0 * sagitta * u * (1.0 - u) * n
        tangent = _unit((v - entry) + 4.0 * sagitta * (1.0 - 2.0 * u) * n)
        rot = np.column_stack([[1.0, 0.0, 0.0], np.cross(tangent, [1.0, 0.0, 0.0]), tangent])
        out.append(_Ellipsoid(centre, np.array([half_w, half_h, 6.0]) * sc, rot))
    return out


def lumen_mask(d: AirwayDesign, spacing_mm: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Space the instruments may occupy: air, tongue, epiglottis, oesophagus, mouth funnel.

    The vocal cords are left open (they are compliant in a paralysed patient;
    the glottic outline is used for detection, not collision).

    Returns
    -------
    mask : (nk, nj, ni) bool
    world_from_voxel : (4, 4) float
    """
    lo = np.min([d.fov_lo] + [f.centre - f.radii.max() for f in d.funnel], axis=0) - 2 * spacing_mm
    hi = np.max([d.fov_hi] + [f.centre + f.radii.max() for f in d.funnel], axis=0) + 2 * spacing_mm
    n = np.floor((hi - lo) / spacing_mm).astype(int) + 1
    axes = [(lo[a] + spacing_mm * np.arange(n[a])).astype(np.float32) for a in range(3)]
    X, Y, Z = axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None]
    prims = [p for v in d.air.values() for p in v] + d.oesophagus + d.funnel
    # where the blade pushes the tongue (into the compliant floor of the mouth)
    shift = np.array([0.0, -18.0, -12.0]) * d.params.scale
    pushed = _Ellipsoid(d.tongue.centre + shift, d.tongue.radii * 0.9, d.tongue.rot)
    prims += [d.tongue, pushed, _Ellipsoid(d.epiglottis.centre, d.epiglottis.half * np.array([1.2, 4.0, 1.1]),
                                   d.epiglottis.rot)]
    # where the lifted epiglottis goes (it tips anteriorly about its base as the tongue base is lifted)
    base = d.landmarks_mm["epiglottis_base"]
    for a in (0.35, 0.7, 1.05):
        r = _rot_x(a)
        prims.append(_Ellipsoid(base + r @ (d.epiglottis.centre - base),
                                d.epiglottis.half * np.array([1.2, 4.0, 1.1]), r @ d.epiglottis.rot))
    prims += _mouth_space(d)
    mask = _sd_union(prims, X, Y, Z) < 0
    wfv = np.diag([spacing_mm] * 3 + [1000.0]) / 1000.0
    wfv[:3, 3] = lo / 1000.0
    if not mask.any():
        raise AnatomyError("airway lumen mask is empty; check the airway design")
    return mask, wfv


# --------------------------------------------------------------------------- DICOM


_UID_SEED = "surgsim-airway-phantom"


def _uid(*parts: str) -> str:
    from surgsim.dicom.write import deterministic_uid

    return deterministic_uid(_UID_PREFIX, _UID_SEED, *parts)


def write_airway_series(
    out_dir: Path,
    variant: str = "adult",
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    seed: int = 0,
    extension: float = 0.0,
) -> list[Path]:
    """Generate the airway phantom and write it as a CT DICOM series (one file per slice).

    Files ``CT000001.dcm`` (most inferior) upward, Explicit VR Little Endian,
    uint16 with RescaleIntercept -1024; deterministic (byte-identical reruns).

    Returns
    -------
    list of Path
        The written files in slice order.
    """
    from surgsim.dicom.write import write_ct_series

    volume, _, _ = make_airway_phantom(variant, spacing, seed, extension)
    sz = float(volume.world_from_voxel[2, 2] * 1000.0)
    try:
        return write_ct_series(
            volume, out_dir,
            series_description=f"Airway phantom {variant} axial {sz:g}mm",
            study_description="Phantom head and neck CT",
            patient_name=f"AirwayPhantom^{variant.capitalize()}",
            patient_id=f"SURGSIM-AIRWAY-{variant.upper()}",
            body_part="NECK",
            uid_root=_UID_PREFIX, uid_seed=_UID_SEED,
            study_uid=_uid(variant, "study"), frame_of_reference_uid=_uid(variant, "frame"),
        )
    except DicomSeriesError as exc:
        raise DicomSeriesError(f"airway phantom {variant!r}: {exc}") from None


def with_params(variant: str, **changes) -> AirwayParams:
    """A copy of a variant's parameters with some changed (for experiments)."""
    return replace(PARAMS[variant], **changes)
