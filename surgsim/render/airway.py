"""The 3D scenes of an intubation session, with pyvista and no Qt.

:class:`AirwayScene` builds the head-and-neck anatomy of an
:class:`~surgsim.session.intubation.IntubationSession` once (skin and mucosa as
one surface whose inner side is exactly the physics' airway wall, teeth, vocal
cords and arytenoids) and the moving bodies (tongue and epiglottis proxies,
laryngoscope blade and tube) as meshes in their own body frames, so that
:meth:`AirwayScene.sync` only copies each body's pybullet pose into its
actor's matrix: nothing is re-meshed per frame. It draws two views into any
pyvista plotter (off-screen ``pyvista.Plotter`` in tests and benchmarks,
pyvistaqt's ``QtInteractor`` in the GUI):

* ``"laryngoscope"``: the laryngoscopist's first-person view, from the
  operator's eye (:func:`operator_eye`) toward the glottis, lit from the eye,
  or, for a video laryngoscope, from the camera near the blade tip;
* ``"external"``: a sagittal cut-away seen from the patient's right, the
  patient's left half kept (with a solid cut face), so the trainee sees blade,
  tongue, epiglottis and tube inside the airway.

The static anatomy is cached twice: in memory, and on disk in the data
folder's cache (``<data folder>/cache/airway-render/<key>/``, one VTP file per
mesh), keyed by the phantom generator (its version and source), the surface
pipeline, this module, the design's parameters, head extension, voxel size and
triangle budgets, so a second start of the app reads it in a tenth of a second
instead of building it (label map, surface extraction, cut) again.

The laryngoscope view draws its own copy of the tissue (:attr:`AirwayAnatomy.view_tissue`):
only what lies in a cone around the operator's line of sight (the face around
the mouth, the oral cavity, pharynx, larynx and upper trachea), decimated to
:data:`VIEW_TRIANGLES`: a software OpenGL pays for every triangle sent, seen or
not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("VTK_SMP_BACKEND_IN_USE", "STDThread")

import pyvista as pv  # noqa: E402

VIEWS = ("laryngoscope", "external")

SKIN_COLOR = (0.87, 0.70, 0.60)
MUCOSA_COLOR = (0.80, 0.40, 0.42)
LARYNX_COLOR = (0.84, 0.52, 0.52)
TRACHEA_COLOR = (0.88, 0.66, 0.63)
OESOPHAGUS_COLOR = (0.72, 0.40, 0.45)
TONGUE_COLOR = (0.74, 0.33, 0.38)
EPIGLOTTIS_COLOR = (0.90, 0.58, 0.58)
CORD_COLOR = (0.95, 0.93, 0.88)
TOOTH_COLOR = (0.96, 0.94, 0.84)
CUT_COLOR = (0.93, 0.80, 0.72)
#: Blade: bright steel; the tube: saturated blue (PVC with a blue tint), so both stand out.
BLADE_COLOR = (0.80, 0.82, 0.86)
HANDLE_COLOR = (0.30, 0.32, 0.36)
TUBE_COLOR = (0.20, 0.45, 0.95)
CUFF_COLOR = (0.55, 0.75, 1.0)
MARK_COLOR = (0.05, 0.05, 0.05)
BACKGROUND = (0.06, 0.06, 0.08)

#: Distance of the operator's eye from the mouth centre along the glottis-to-mouth line, metres.
EYE_DISTANCE_M = 0.30
#: The line of sight crosses the mouth this fraction of the way from its centre to the upper incisors.
EYE_SIGHT_FRACTION = 0.5
#: Size (pixels) of the laryngoscope view in the intubation window at its default size (the view keeps
#: this 4:3 shape at any window size); ``surgsim bench intubation`` renders at this size.
LARYNGOSCOPE_VIEW_SIZE = (640, 480)
#: Vertical view angle of the direct (eye) and video views, degrees.
EYE_VIEW_ANGLE = 24.0
VIDEO_VIEW_ANGLE = 60.0
#: Tube depth marks drawn (metres from the tip).
DEPTH_MARKS_M = tuple(np.round(np.arange(0.14, 0.285, 0.01), 3))
#: Sides of the tube, cuff and depth-mark meshes (smooth shading hides the facets).
TUBE_SIDES = 16

#: Triangle budget of the laryngoscope view's tissue (:attr:`AirwayAnatomy.view_tissue`).
VIEW_TRIANGLES = 14000
#: Half angle (degrees) of the cone around the operator's line of sight whose tissue the laryngoscope
#: view keeps: the direct view spans 12 degrees (half) on its narrower side, 20 on the diagonal of a 4:3
#: view; the margin covers wider windows and the video camera moving with the blade inside the mouth.
VIEW_CONE_DEG = 32.0
#: How far (metres) beyond the glottis the laryngoscope view's tissue goes along the line of sight.
VIEW_BEYOND_GLOTTIS_M = 0.12
#: Bump when :func:`build_anatomy`'s output changes for the same inputs (the disk cache key also holds
#: the sources of this module, of the phantom generator and of the surface pipeline).
ANATOMY_CACHE_VERSION = 1

_AIR_LABELS = ("oral_cavity", "pharynx", "larynx", "glottis", "trachea", "right_main_bronchus",
               "left_main_bronchus", "vallecula")


# ---------------------------------------------------------------------- geometry helpers


def pose_matrix(position: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """4x4 ``world_from_body`` of a position (3,) metres and rotation (3, 3)."""
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = position
    return m


def _transformed(mesh: pv.PolyData, position_m: np.ndarray, rotation: np.ndarray) -> pv.PolyData:
    out = mesh.copy()
    out.points = np.asarray(mesh.points) @ np.asarray(rotation).T + np.asarray(position_m)
    return out


def _outward(mesh: pv.PolyData) -> pv.PolyData:
    """The closed triangle mesh wound outward (what back-face culling needs), normals pointing out."""
    tris = np.asarray(mesh.faces).reshape(-1, 4)
    pts = np.asarray(mesh.points, float)
    a, b, c = (pts[tris[:, i]] - pts.mean(axis=0) for i in (1, 2, 3))
    if np.einsum("ij,ij->i", a, np.cross(b, c)).sum() >= 0.0:
        return mesh
    out = pv.PolyData(pts, tris[:, [0, 1, 3, 2]].ravel())  # negative signed volume: it was wound inward
    return out.compute_normals(cell_normals=False, split_vertices=False, consistent_normals=False,
                               auto_orient_normals=False)


def _ellipsoid(radii: np.ndarray, resolution: int = 28) -> pv.PolyData:
    """Ellipsoid centred on the origin, radii (3,) metres, along the local axes, wound outward."""
    return _outward(pv.ParametricEllipsoid(*[float(r) for r in radii], u_res=resolution, v_res=resolution,
                                           w_res=resolution).triangulate().clean())


def _rounded_box(half: np.ndarray, roundness: float = 0.25) -> pv.PolyData:
    """A box with rounded edges (superellipsoid), half extents (3,) metres, wound outward."""
    return _outward(pv.ParametricSuperEllipsoid(*[float(h) for h in half], n1=roundness, n2=roundness,
                                                u_res=16, v_res=16, w_res=16).triangulate().clean())


def operator_eye(geometry, distance_m: float = EYE_DISTANCE_M, sight_fraction: float = EYE_SIGHT_FRACTION,
                 lateral_m: float = 0.0) -> np.ndarray:
    """The laryngoscopist's eye (3,) metres: the classic line of sight from the glottis over the upper incisors.

    The line runs from the glottis through the sighting point, ``sight_fraction``
    of the way from the mouth centre to the upper incisal edge (and ``lateral_m``
    to the patient's right), and on for ``distance_m`` beyond it.

    Parameters
    ----------
    geometry : AirwayGeometry
        ``mouth``, ``upper_incisor`` and ``glottis`` (3,) metres.
    """
    sight = sighting_point(geometry, sight_fraction) + np.array([-lateral_m, 0.0, 0.0])
    glottis = np.asarray(geometry.glottis, float)
    u = (sight - glottis) / np.linalg.norm(sight - glottis)
    return sight + distance_m * u


def sighting_point(geometry, sight_fraction: float = EYE_SIGHT_FRACTION) -> np.ndarray:
    """(3,) metres: where the line of sight crosses the mouth opening (between blade and upper teeth)."""
    mouth = np.asarray(geometry.mouth, float)
    return mouth + sight_fraction * (np.asarray(geometry.upper_incisor, float) - mouth)


def view_frame(geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The operator's frame (each (3,) unit, world LPS): ``into`` the mouth toward the glottis,
    ``up`` on the laryngoscope view (toward the patient's front), ``left`` (the patient's left).
    """
    mouth, glottis = sighting_point(geometry), np.asarray(geometry.glottis, float)
    into = (glottis - mouth) / np.linalg.norm(glottis - mouth)
    left = np.array([1.0, 0.0, 0.0])
    left = left - (left @ into) * into
    left /= np.linalg.norm(left)
    up = np.cross(into, left)
    if up[1] > 0:  # anterior is -y
        up = -up
    return into, up, left


# ---------------------------------------------------------------------- static anatomy


@dataclass
class AirwayAnatomy:
    """Static anatomy meshes of one airway design (metres, LPS).

    Attributes
    ----------
    tissue : pyvista.PolyData
        Skin and mucosa as one closed surface (its inner side follows the
        physics' airway wall: the body of the phantom's label map minus its
        air and :func:`~surgsim.cases.airway_phantom.lumen_mask`, without the
        instrument space in front of the face); point data ``"rgb"`` (n, 3)
        uint8 tissue colours.
    section : pyvista.PolyData
        ``tissue`` cut in the mid-sagittal plane, patient's left half kept, cut face closed.
    teeth : pyvista.PolyData
        Upper and lower incisors (the physics' tooth boxes, rounded).
    cords : pyvista.PolyData
        Vocal cords: the laryngeal disk minus the glottic opening.
    arytenoids : pyvista.PolyData or None
    view_tissue : pyvista.PolyData or None
        What the laryngoscope view draws of ``tissue``: the part in a cone of
        :data:`VIEW_CONE_DEG` around the operator's line of sight (eye to
        glottis, up to :data:`VIEW_BEYOND_GLOTTIS_M` past the glottis),
        decimated to :data:`VIEW_TRIANGLES`; point data ``"rgb"`` and
        ``"Normals"``. None: the view draws ``tissue``.
    """

    tissue: pv.PolyData
    section: pv.PolyData
    teeth: pv.PolyData
    cords: pv.PolyData
    arytenoids: pv.PolyData | None
    view_tissue: pv.PolyData | None = None


_ANATOMY_CACHE: dict = {}


def _resample_nearest(mask: np.ndarray, wfv_src: np.ndarray, axes_dst: list[np.ndarray]) -> np.ndarray:
    """Nearest-neighbour lookup of an axis-aligned mask (nk, nj, ni) at grid axes (x, y, z) metres."""
    idx = []
    for a, n in zip(range(3), (mask.shape[2], mask.shape[1], mask.shape[0]), strict=True):
        i = np.rint((axes_dst[a] - wfv_src[a, 3]) / wfv_src[a, a]).astype(int)
        idx.append((np.clip(i, 0, n - 1), (i >= 0) & (i < n)))
    (ii, vi), (jj, vj), (kk, vk) = idx
    out = mask[np.ix_(kk, jj, ii)]
    return out & vk[:, None, None] & vj[None, :, None] & vi[None, None, :]


def _lumen_without_funnel(design, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The physics' lumen mask minus the instrument space in front of the face (which is not anatomy)."""
    from surgsim.cases.airway_phantom import lumen_mask

    funnel = list(getattr(design, "funnel", []) or [])
    if funnel:
        try:  # a vanishing funnel outside the head keeps the mask's bounds logic working
            tiny = replace(funnel[0], radii=np.full(3, 1e-3))
            return lumen_mask(replace(design, funnel=[tiny]), spacing_mm)
        except (TypeError, ValueError, AttributeError):
            pass
    return lumen_mask(design, spacing_mm)


def _tissue_colors(mesh: pv.PolyData, labels: np.ndarray, wfv: np.ndarray) -> np.ndarray:
    """(n, 3) uint8 colour per vertex from the labels just outside (air side) of the tissue surface."""
    from surgsim.cases.airway_phantom import LABEL_IDS

    pts = np.asarray(mesh.points)
    normals = np.asarray(mesh.point_data["Normals"]) if "Normals" in mesh.point_data else np.zeros_like(pts)
    h = float(abs(wfv[0, 0]))
    probe = pts + 1.5 * h * normals
    ijk = np.rint((probe - wfv[:3, 3]) / np.diag(wfv)[:3]).astype(int)
    nk, nj, ni = labels.shape
    inside = np.all((ijk >= 0) & (ijk < [ni, nj, nk]), axis=1)
    ijk = np.clip(ijk, 0, [ni - 1, nj - 1, nk - 1])
    air = np.where(inside, labels[ijk[:, 2], ijk[:, 1], ijk[:, 0]], LABEL_IDS.get("outside", 0))
    colors = np.tile(np.array(MUCOSA_COLOR), (len(pts), 1))
    by_id = {v: k for k, v in LABEL_IDS.items()}
    names = np.array([by_id.get(int(a), "") for a in range(256)], dtype=object)[air]
    colors[names == "outside"] = SKIN_COLOR
    colors[np.isin(names, ("larynx", "glottis"))] = LARYNX_COLOR
    colors[np.isin(names, ("trachea", "right_main_bronchus", "left_main_bronchus"))] = TRACHEA_COLOR
    colors[names == "oesophagus"] = OESOPHAGUS_COLOR
    return (np.clip(colors, 0.0, 1.0) * 255).astype(np.uint8)


def _cords_mesh(design) -> pv.PolyData:
    """Vocal cords: a ring in the glottic plane from the glottic outline out to the laryngeal wall."""
    outline = np.asarray(design.glottis_outline_mm, float) / 1000.0
    centre = outline.mean(axis=0)
    normal = np.asarray(design.glottis_normal, float)
    normal /= np.linalg.norm(normal)
    cords = getattr(design, "cords", None)
    r_out = float(np.max(cords.radii)) / 1000.0 if cords is not None else 0.012
    # densify the outline, then put each point's partner on the outer circle at the same angle
    k = 6
    dense = np.vstack([a + (b - a) * t for a, b in zip(outline, np.roll(outline, -1, 0), strict=True)
                       for t in np.linspace(0.0, 1.0, k, endpoint=False)])
    radial = dense - centre
    radial -= np.outer(radial @ normal, normal)
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
    outer = centre + 1.15 * r_out * radial
    n = len(dense)
    pts = np.vstack([dense, outer])
    faces = []
    for i in range(n):
        j = (i + 1) % n
        faces += [4, i, j, n + j, n + i]
    return pv.PolyData(pts, faces=np.array(faces)).triangulate()


def laryngoscope_tissue(tissue: pv.PolyData, eye: np.ndarray, glottis: np.ndarray,
                        triangles: int = VIEW_TRIANGLES, cone_deg: float = VIEW_CONE_DEG,
                        beyond_m: float = VIEW_BEYOND_GLOTTIS_M) -> pv.PolyData:
    """The tissue the laryngoscope view draws: culled to a cone around the line of sight, decimated.

    Parameters
    ----------
    tissue : pyvista.PolyData
        Triangles, metres, point data ``"rgb"`` (n, 3) uint8 (:attr:`AirwayAnatomy.tissue`).
    eye, glottis : (3,) float, metres
        The operator's eye (:func:`operator_eye`) and the glottis centre: the cone's apex and axis.
    triangles : int
        Triangle budget after culling (quadric decimation, fast-simplification).
    cone_deg : float
        Half angle of the cone, degrees.
    beyond_m : float
        How far past the glottis (along the line of sight) the tissue is kept, metres.

    Returns
    -------
    pyvista.PolyData
        Triangles in the same orientation as ``tissue`` (outward: into the air),
        point data ``"rgb"`` (the nearest original vertex's colour) and ``"Normals"``.
    """
    import fast_simplification
    from scipy.spatial import cKDTree

    pts = np.asarray(tissue.points, float)
    tris = np.asarray(tissue.faces).reshape(-1, 4)[:, 1:]
    eye, glottis = np.asarray(eye, float), np.asarray(glottis, float)
    axis = (glottis - eye) / np.linalg.norm(glottis - eye)
    rel = pts - eye
    along = rel @ axis
    radial = np.linalg.norm(rel - np.outer(along, axis), axis=1)
    inside = ((along > 0.0) & (radial <= along * np.tan(np.radians(cone_deg)))
              & (along <= np.linalg.norm(glottis - eye) + beyond_m))
    kept = tris[inside[tris].any(axis=1)]  # a triangle with one vertex inside is drawn whole
    if not len(kept):
        raise ValueError("laryngoscope_tissue: no tissue in the view cone; check the eye and glottis")
    used, inverse = np.unique(kept, return_inverse=True)
    p, t = pts[used], inverse.reshape(-1, 3)
    if triangles and len(t) > triangles:
        p, t = fast_simplification.simplify(p.astype(np.float32), t.astype(np.int32),
                                            target_count=int(triangles))
        p = np.asarray(p, float)
    faces = np.hstack([np.full((len(t), 1), 3, dtype=np.int64), np.asarray(t, np.int64)]).ravel()
    out = pv.PolyData(p, faces).compute_normals(cell_normals=False, split_vertices=False,
                                                consistent_normals=False, auto_orient_normals=False)
    _, nearest = cKDTree(pts).query(np.asarray(out.points))
    out.point_data["rgb"] = np.asarray(tissue.point_data["rgb"])[nearest]
    return out


def _line_of_sight(design) -> tuple[np.ndarray, np.ndarray]:
    """The operator's eye and the glottis (each (3,) metres) of a design, as the laryngoscope camera sees."""
    from surgsim.cases.airway_phantom import truth_of

    L = truth_of(design).landmarks
    g = SimpleNamespace(mouth=L["mouth_centre"], upper_incisor=L["upper_incisor"],
                        glottis=L["glottis_centre"])
    return operator_eye(g), np.asarray(g.glottis, float)


def _build_anatomy(design, spacing_m: float, triangles: int, view_triangles: int) -> AirwayAnatomy:
    from surgsim.anatomy.surface import surface_from_mask
    from surgsim.cases.airway_phantom import LABEL_IDS, make_airway_phantom

    volume, labels, _ = make_airway_phantom(design.params.name, spacing=(spacing_m,) * 3,
                                            extension=float(design.extension))
    wfv = np.asarray(volume.world_from_voxel, float)
    nk, nj, ni = labels.shape
    axes = [wfv[a, 3] + wfv[a, a] * np.arange(n) for a, n in zip(range(3), (ni, nj, nk), strict=True)]
    lumen, lumen_wfv = _lumen_without_funnel(design, spacing_m * 1000.0)
    carve = _resample_nearest(lumen, lumen_wfv, axes)
    air = np.isin(labels, [LABEL_IDS[k] for k in _AIR_LABELS if k in LABEL_IDS])
    teeth_ids = [LABEL_IDS[k] for k in ("upper_incisors", "lower_incisors") if k in LABEL_IDS]
    tissue_mask = (labels != LABEL_IDS.get("outside", 0)) & ~air & ~carve & ~np.isin(labels, teeth_ids)
    tissue = surface_from_mask(tissue_mask, wfv, target_triangles=triangles, smooth_iterations=15)
    tissue.point_data["rgb"] = _tissue_colors(tissue, labels, wfv)
    section = tissue.clip_closed_surface(normal=(1.0, 0.0, 0.0), origin=(0.0, 0.0, 0.0))
    section = section.compute_normals(split_vertices=True, feature_angle=50.0, auto_orient_normals=False)
    if section.n_points:
        section.point_data["rgb"] = np.tile((np.array(CUT_COLOR) * 255).astype(np.uint8),
                                            (section.n_points, 1))
        # the cut face keeps CUT_COLOR; the surface part takes the nearest tissue colour
        from scipy.spatial import cKDTree

        d, idx = cKDTree(np.asarray(tissue.points)).query(np.asarray(section.points))
        on_cut = np.abs(np.asarray(section.points)[:, 0]) < 1e-6
        keep = ~on_cut & (d < 1e-4)
        section.point_data["rgb"][keep] = tissue.point_data["rgb"][idx[keep]]
    teeth = []
    for box in (design.upper_teeth, design.lower_teeth):
        half = np.asarray(box.half, float) / 1000.0
        teeth.append(_transformed(_rounded_box(half), np.asarray(box.centre) / 1000.0, box.rot))
    arytenoids = None
    if getattr(design, "arytenoids", None):
        parts = [_transformed(_ellipsoid(np.asarray(e.radii) / 1000.0, 16), np.asarray(e.centre) / 1000.0, e.rot)
                 for e in design.arytenoids]
        arytenoids = pv.merge(parts)
    eye, glottis = _line_of_sight(design)
    view = laryngoscope_tissue(tissue, eye, glottis, view_triangles)
    return AirwayAnatomy(tissue=tissue, section=section, teeth=pv.merge(teeth), cords=_cords_mesh(design),
                         arytenoids=arytenoids, view_tissue=view)


# ---------------------------------------------------------------------- anatomy disk cache

_MESH_FILES = ("tissue", "section", "teeth", "cords", "arytenoids", "view_tissue")


def _source_digest(module) -> str:
    try:
        return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()
    except (OSError, TypeError):
        return "unknown"


def anatomy_cache_key(design, spacing_m: float = 2.5e-3, triangles: int = 40000,
                      view_triangles: int = VIEW_TRIANGLES) -> str:
    """Disk cache key of :func:`build_anatomy`'s output (a JSON string).

    It holds what the meshes depend on: the phantom generator (its
    ``GENERATOR_VERSION`` and the SHA-256 of its source, so an edited generator
    rebuilds even without a version bump), the surface pipeline's and this
    module's sources, :data:`ANATOMY_CACHE_VERSION`, the design's parameters
    and head extension, the voxel size and the triangle budgets.
    """
    import sys

    from surgsim.anatomy import surface
    from surgsim.cases import airway_phantom

    return json.dumps({
        "anatomy_cache_version": ANATOMY_CACHE_VERSION,
        "generator_version": airway_phantom.GENERATOR_VERSION,
        "generator_sha256": _source_digest(airway_phantom),
        "surface_sha256": _source_digest(surface),
        "render_sha256": _source_digest(sys.modules[__name__]),
        "params": asdict(design.params),
        "extension": round(float(design.extension), 9),
        "spacing_m": round(float(spacing_m), 9),
        "triangles": int(triangles),
        "view_triangles": int(view_triangles),
    }, sort_keys=True, default=str)


def anatomy_cache_folder(key: str) -> Path:
    """Folder of the anatomy cached under ``key`` (:func:`anatomy_cache_key`; may not exist yet)."""
    from surgsim.paths import cache_dir

    return cache_dir() / "airway-render" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _save_anatomy(anatomy: AirwayAnatomy, folder: Path, key: str) -> None:
    for name in _MESH_FILES:
        mesh = getattr(anatomy, name)
        if mesh is not None:
            mesh.save(folder / f"{name}.vtp", binary=True)
    (folder / "key.json").write_text(key, encoding="utf-8")


def _load_anatomy(folder: Path, key: str) -> AirwayAnatomy:
    if (folder / "key.json").read_text(encoding="utf-8") != key:
        raise ValueError(f"{folder}: another anatomy under the same digest")
    meshes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reader's complaint means a damaged file
        for name in _MESH_FILES:
            path = folder / f"{name}.vtp"
            meshes[name] = pv.read(path) if path.is_file() else None
    for name in ("tissue", "section", "teeth", "cords"):
        if meshes[name] is None or not meshes[name].n_cells:
            raise ValueError(f"{folder}: {name}.vtp is missing or empty")
    for name in ("tissue", "section", "view_tissue"):
        if meshes[name] is not None and "rgb" not in meshes[name].point_data:
            raise ValueError(f"{folder}: {name}.vtp has no rgb colours")
    return AirwayAnatomy(**meshes)


def build_anatomy(design, spacing_m: float = 2.5e-3, triangles: int = 40000,
                  view_triangles: int = VIEW_TRIANGLES, cache: bool = True) -> AirwayAnatomy:
    """Build (once per design, then cached in memory and on disk) the static anatomy meshes.

    Parameters
    ----------
    design : AirwayDesign
        From :func:`surgsim.cases.airway_phantom.design`.
    spacing_m : float
        Voxel size of the label map the surfaces are extracted from, metres.
    triangles : int
        Triangle budget of the tissue surface.
    view_triangles : int
        Triangle budget of the laryngoscope view's tissue (:func:`laryngoscope_tissue`).
    cache : bool
        Read and write the disk cache (:func:`anatomy_cache_folder`); False
        builds the meshes (the memory cache is still used).

    The label map is the bundled variant's (``design.params.name``) at the
    design's head extension; a design with edited parameters gets that
    variant's skin. A cache entry is written to a temporary folder and renamed
    into place (an interrupted write never leaves a half entry); an unreadable
    entry is rebuilt; an unwritable cache folder only costs the rebuild next time.
    """
    key = anatomy_cache_key(design, spacing_m, triangles, view_triangles)
    if key in _ANATOMY_CACHE:
        return _ANATOMY_CACHE[key]
    folder = anatomy_cache_folder(key) if cache else None
    if folder is not None and (folder / "key.json").is_file():
        try:
            out = _load_anatomy(folder, key)
            _ANATOMY_CACHE[key] = out
            return out
        except (OSError, ValueError, KeyError, Warning):
            shutil.rmtree(folder, ignore_errors=True)  # damaged or stale: rebuild it
    out = _build_anatomy(design, spacing_m, triangles, view_triangles)
    _ANATOMY_CACHE[key] = out
    if folder is not None:
        tmp = None
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
            _save_anatomy(out, tmp, key)
            tmp.rename(folder)
        except OSError:
            pass  # read-only data folder, or another process won the race: keep the built meshes
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return out


# ---------------------------------------------------------------------- device meshes


def blade_mesh(spec, n: int = 40) -> tuple[pv.PolyData, pv.PolyData]:
    """Blade (spatula with a flange on its +y side) and handle meshes in the blade frame (metres).

    Returns
    -------
    blade, handle : pyvista.PolyData
    """
    pts, tan = spec.centerline(n)
    s = np.linspace(0.0, spec.length_m, n)
    w, th = spec.width_m, spec.thickness_m
    flange = 0.014 if spec.kind == "macintosh" else 0.008
    rings = []
    for p, t, sk in zip(pts, tan, s, strict=True):
        nrm = np.array([t[2], 0.0, -t[0]])  # palatal side (-z at the heel)
        h = flange * (1.0 - 0.75 * sk / spec.length_m)
        prof = [(-w / 2, 0.0), (w / 2, 0.0), (w / 2, th + h), (w / 2 - th, th + h), (w / 2 - th, th),
                (-w / 2, th)]
        rings.append([p + u * np.array([0.0, 1.0, 0.0]) + v * nrm for u, v in prof])
    rings = np.asarray(rings)  # (n, m, 3)
    m = rings.shape[1]
    faces = []
    for i in range(n - 1):
        for j in range(m):
            a, b = i * m + j, i * m + (j + 1) % m
            faces += [4, a, b, b + m, a + m]
    faces += [m, *range(m)] + [m, *range((n - 1) * m, n * m)]
    blade = pv.PolyData(rings.reshape(-1, 3), faces=np.array(faces)).triangulate().compute_normals(
        auto_orient_normals=True, split_vertices=True)
    handle = pv.Cylinder(center=(-0.016, 0.0, 0.5 * spec.handle_length_m + 0.004), direction=(0, 0, 1),
                         radius=0.014, height=spec.handle_length_m, resolution=24).triangulate()
    return blade, handle


def tube_meshes(spec, cuff_inflation_m: float = 0.004) -> dict[str, pv.PolyData]:
    """Tube, depth marks and cuff (deflated and inflated) meshes in the tube frame (metres)."""
    pts, marks = spec.centerline(0.005)
    r = 0.5 * float(spec.outer_diameter_m)
    line = pv.lines_from_points(pts)
    out = {"tube": line.tube(radius=r, n_sides=TUBE_SIDES, capping=True).triangulate()}
    rings = []
    for d in DEPTH_MARKS_M:
        if d >= marks[-1]:
            continue
        p = np.array([np.interp(d, marks, pts[:, a]) for a in range(3)])
        q = np.array([np.interp(d + 0.0008, marks, pts[:, a]) for a in range(3)])
        # open bands: their ends would only hide inside the tube
        rings.append(pv.lines_from_points(np.array([p, q])).tube(radius=r * 1.04, n_sides=TUBE_SIDES,
                                                                 capping=False))
    if rings:
        out["marks"] = pv.merge(rings).triangulate()
    c0, c1 = spec.cuff_from_tip_m
    if c1 > c0:
        sel = (marks >= c0) & (marks <= c1)
        cl = pts[sel]
        out["cuff_deflated"] = pv.lines_from_points(cl).tube(radius=r + 0.0006, n_sides=TUBE_SIDES,
                                                            capping=True).triangulate()
        # inflated: a spindle, widest in the middle of the cuff
        u = np.linspace(0.0, 1.0, len(cl))
        radius = r + 0.0006 + cuff_inflation_m * np.sin(np.pi * u) ** 0.6
        spindle = pv.lines_from_points(cl)
        spindle.point_data["r"] = radius
        out["cuff_inflated"] = spindle.tube(scalars="r", absolute=True, n_sides=TUBE_SIDES,
                                                 capping=True).triangulate()
    return out


# ---------------------------------------------------------------------- the scene


class _View:
    """One renderer's actors."""

    def __init__(self, kind: str, plotter):
        self.kind = kind
        self.plotter = plotter
        self.renderer = plotter.renderer
        self.moving: list[tuple[object, str]] = []  # (actor, body name)
        self.cuff: dict[str, object] = {}
        self.placed = False


class AirwayScene:
    """Anatomy, proxies and devices of an intubation session in one or two pyvista renderers.

    Parameters
    ----------
    session : IntubationSession
        Read only: ``world`` (poses), ``design``, ``geometry``, ``blade_spec``,
        ``tube_spec``, ``commands``, ``finished``.
    anatomy : AirwayAnatomy, optional
        Prebuilt static anatomy (default: built from the session's design, cached).

    When the session's design changes (the head was repositioned: another head
    extension), the next :meth:`sync` swaps the anatomy (:meth:`refresh_anatomy`).
    """

    def __init__(self, session, anatomy: AirwayAnatomy | None = None) -> None:
        self.session = session
        self.anatomy = anatomy if anatomy is not None else build_anatomy(session.design)
        self._design = design_key(session.design)
        self.views: dict[str, _View] = {}
        self._blade, self._handle = (_outward(m) for m in blade_mesh(session.blade_spec))
        self._tube = {k: m if k == "marks" else _outward(m)  # the marks are open bands
                      for k, m in tube_meshes(session.tube_spec).items()}
        self._proxy_meshes()
        self.poses: dict[str, np.ndarray] = {}
        self._tube_hidden = False
        self._hidden: set[str] = set()  # moving bodies hidden by set_visible
        self._shown: dict[str, tuple] = {}  # per view: the state its actors were last set to
        self._read_poses()

    def set_session(self, session) -> None:
        """Show another session of the same anatomy and devices (a new attempt).

        Its head may be in another position: the anatomy is then swapped
        (:meth:`refresh_anatomy`). The next :meth:`sync` reports every view as
        changed (render them then).
        """
        if (session.design.params != self.session.design.params or session.blade_spec != self.session.blade_spec
                or session.tube_spec != self.session.tube_spec):
            raise ValueError("set_session: another design or other devices need a new AirwayScene")
        self.session = session
        self.poses = {}
        self._shown.clear()
        self._read_poses()
        if design_key(session.design) != self._design:
            self.refresh_anatomy()

    def _proxy_meshes(self) -> None:
        d = self.session.design
        self._tongue = _ellipsoid(np.asarray(d.tongue.radii) / 1000.0, 36)
        self._epiglottis = _ellipsoid(np.asarray(d.epiglottis.half) / 1000.0 * np.array([1.0, 1.3, 1.0]), 24)

    def refresh_anatomy(self, anatomy: AirwayAnatomy | None = None) -> bool:
        """Show the session's current design (after the head was repositioned); returns whether it changed.

        ``anatomy``: the static meshes of that design (default :func:`build_anatomy`,
        cached in memory and on disk; the first build of an extension takes about
        a second). Every view's anatomy and proxy actors are replaced (same names);
        the external view keeps its camera, the laryngoscope view follows the new
        line of sight. The next :meth:`sync` reports every view as changed.
        """
        key = design_key(self.session.design)
        if key == self._design and anatomy is None:
            return False
        self.anatomy = anatomy if anatomy is not None else build_anatomy(self.session.design)
        self._design = key
        self._proxy_meshes()
        for view in self.views.values():
            view.moving.clear()
            view.cuff.clear()
            self._populate(view)
            for actor, body in view.moving:
                if body in self._hidden:
                    actor.SetVisibility(False)
        self._shown.clear()
        return True

    # ------------------------------------------------------------------ building
    def add_view(self, plotter, kind: str = "laryngoscope", multisamples: int | None = 0) -> None:
        """Draw the scene into ``plotter``'s active renderer as a ``kind`` view (one of :data:`VIEWS`).

        ``multisamples`` sets the window's anti-aliasing samples (None: leave it);
        0 by default, since a software OpenGL (llvmpipe under Xvfb) pays every
        sample on every pixel (4 samples: about 3x the frame time).
        """
        if kind not in VIEWS:
            raise ValueError(f"unknown airway view {kind!r}; choose one of {', '.join(VIEWS)}")
        if multisamples is not None:
            plotter.ren_win.SetMultiSamples(int(multisamples))
        view = _View(kind, plotter)
        self.views[kind] = view
        self._shown.pop(kind, None)
        plotter.set_background(BACKGROUND)
        self._populate(view)
        self.sync()

    def _populate(self, view: _View) -> None:
        """Add (or replace, by name) the view's anatomy, proxy and device actors and its light."""
        plotter, kind = view.plotter, view.kind
        a = self.anatomy
        external = kind == "external"
        smooth = {"smooth_shading": True, "show_scalar_bar": False}
        tissue = a.section if external else (a.view_tissue if a.view_tissue is not None else a.tissue)
        # closed surfaces seen from outside: culling their back faces saves a quarter of the frame time
        plotter.add_mesh(tissue, scalars="rgb", rgb=True, **smooth, name=f"{kind}-tissue",
                         specular=0.0 if external else 0.35, specular_power=20, culling="back")
        plotter.add_mesh(a.teeth, color=TOOTH_COLOR, specular=0.5, name=f"{kind}-teeth", smooth_shading=True,
                         culling="back")
        plotter.add_mesh(a.cords, color=CORD_COLOR, specular=0.4, name=f"{kind}-cords")
        if a.arytenoids is not None:
            plotter.add_mesh(a.arytenoids, color=LARYNX_COLOR, name=f"{kind}-arytenoids", smooth_shading=True)
        else:
            plotter.remove_actor(f"{kind}-arytenoids", render=False)
        clip = _midsagittal_plane() if external else None
        view.moving.append((self._add_moving(plotter, self._tongue, TONGUE_COLOR, f"{kind}-tongue", clip),
                            "tongue"))
        view.moving.append((self._add_moving(plotter, self._epiglottis, EPIGLOTTIS_COLOR,
                                             f"{kind}-epiglottis", clip), "epiglottis"))
        view.moving.append((self._add_moving(plotter, self._blade, BLADE_COLOR, f"{kind}-blade", None,
                                             specular=0.8, smooth=False), "blade"))
        view.moving.append((self._add_moving(plotter, self._handle, HANDLE_COLOR, f"{kind}-handle", None,
                                             specular=0.4), "blade"))
        view.moving.append((self._add_moving(plotter, self._tube["tube"], TUBE_COLOR, f"{kind}-tube", None,
                                             specular=0.6), "tube"))
        if "marks" in self._tube:
            view.moving.append((self._add_moving(plotter, self._tube["marks"], MARK_COLOR, f"{kind}-marks",
                                                 None), "tube"))
        for state in ("cuff_deflated", "cuff_inflated"):
            if state in self._tube:
                actor = self._add_moving(plotter, self._tube[state], CUFF_COLOR, f"{kind}-{state}", None,
                                         opacity=0.85)
                view.moving.append((actor, "tube"))
                view.cuff[state] = actor
        if kind == "laryngoscope":
            # one warm light from the eye: a spot lamp at the blade tip doubles the frame time of a
            # software renderer
            plotter.renderer.remove_all_lights()
            plotter.add_light(pv.Light(light_type="headlight", intensity=1.0, color=(1.0, 0.96, 0.9)))

    def set_visible(self, body: str, visible: bool) -> None:
        """Show or hide a moving body's actors in every view (``blade``, ``tube``, ``tongue``,
        ``epiglottis``).

        The next :meth:`sync` reports every view as changed (render them then).
        """
        for view in self.views.values():
            for actor, name in view.moving:
                if name == body:
                    actor.SetVisibility(bool(visible))
        (self._hidden.discard if visible else self._hidden.add)(body)
        if body == "tube":
            self._tube_hidden = not visible
        self._shown.clear()  # every view shows something else now

    def _add_moving(self, plotter, mesh, color, name, clip, specular=0.2, smooth=True, opacity=1.0):
        # every moving mesh is closed and wound outward: its back faces are never seen, unless a
        # clipping plane opens it (the external view's cut-away)
        actor = plotter.add_mesh(mesh, color=color, name=name, smooth_shading=smooth, specular=specular,
                                 opacity=opacity, culling="back" if clip is None else None)
        if clip is not None:
            actor.mapper.AddClippingPlane(clip)
        return actor

    # ------------------------------------------------------------------ state
    def _read_poses(self) -> None:
        s = self.session
        if getattr(s, "finished", False) and self.poses:
            return  # the physics world is closed when an attempt ends: keep the last poses
        w = s.world
        for name in ("blade", "tube", "tongue", "epiglottis"):
            self.poses[name] = pose_matrix(*w.pose(getattr(w, name)))

    def blade_camera(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Video-laryngoscope camera: position (3,) m, viewing direction (3,) unit, view-up (3,) unit."""
        m = self.poses["blade"]
        pos, d = self.session.blade_spec.camera()
        up = m[:3, :3] @ np.array([0.0, 0.0, -1.0])  # the palatal side is the top of the video image
        return m[:3, :3] @ pos + m[:3, 3], m[:3, :3] @ d, up

    def camera(self, kind: str = "laryngoscope") -> tuple[tuple, tuple, tuple]:
        """pyvista camera position (eye, focal point, view-up) of a view."""
        g = self.session.geometry
        if kind == "laryngoscope":
            if self.session.blade_spec.video:
                eye, d, up = self.blade_camera()
                return tuple(eye), tuple(eye + 0.05 * d), tuple(up)
            _, up, _ = view_frame(g)
            return tuple(operator_eye(g)), tuple(np.asarray(g.glottis, float)), tuple(up)
        centre = 0.5 * (np.asarray(g.mouth) + np.asarray(g.glottis)) + np.array([0.0, -0.02, 0.0])
        return tuple(centre + np.array([-0.5, 0.0, 0.0])), tuple(centre), (0.0, -1.0, 0.0)

    #: Pose change (metres, or radians for the rotation entries) below which a view is not redrawn.
    STILL = 1e-6

    def _state(self, view: _View, inflated: bool) -> tuple:
        return (tuple(view.renderer.GetSize()), inflated, self._tube_hidden,
                *(self.poses[b] for b in ("blade", "tube", "tongue", "epiglottis")))

    def _same(self, a: tuple | None, b: tuple) -> bool:
        if a is None or a[:3] != b[:3]:
            return False
        return all(float(np.abs(p - q).max()) <= self.STILL for p, q in zip(a[3:], b[3:], strict=True))

    def sync(self) -> set[str]:
        """Copy the session's body poses and cuff state into every view; place the cameras.

        Returns
        -------
        set of str
            The views whose picture changed since the last ``sync`` (a body moved
            by more than :attr:`STILL`, the cuff or a body's visibility changed,
            the view was resized, or it is new, or the anatomy was swapped after
            the head was repositioned): only those need a render.
            Views whose state did not change keep their actors untouched.
        """
        if design_key(self.session.design) != self._design:  # the head was repositioned
            self.refresh_anatomy()
        self._read_poses()
        inflated = self.session.commands.get("cuff", 0.0) >= 0.5
        changed = set()
        for kind, view in self.views.items():
            state = self._state(view, inflated)
            if self._same(self._shown.get(kind), state):
                continue
            self._shown[kind] = state
            changed.add(kind)
            for actor, body in view.moving:
                actor.user_matrix = self.poses[body]
            if view.cuff and not self._tube_hidden:
                view.cuff.get("cuff_inflated", view.cuff.get("cuff_deflated")).SetVisibility(inflated)
                if "cuff_deflated" in view.cuff:
                    view.cuff["cuff_deflated"].SetVisibility(not inflated)
            cam = view.renderer.camera
            # the view angle spans the narrower side of the view (a tall view keeps its width)
            w_px, h_px = view.renderer.GetSize()
            cam.SetUseHorizontalViewAngle(bool(0 < w_px < h_px))
            if view.kind == "laryngoscope":
                eye, focal, up = self.camera("laryngoscope")
                cam.position, cam.focal_point, cam.up = eye, focal, up
                cam.view_angle = VIDEO_VIEW_ANGLE if self.session.blade_spec.video else EYE_VIEW_ANGLE
                cam.clipping_range = (0.002, 0.8)
                view.renderer.camera_set = True  # pyvista must not reset it on the first render
            elif not view.placed:
                view.renderer.camera_position = list(self.camera("external"))
                cam.view_angle = 30.0
                view.renderer.reset_camera_clipping_range()
                view.placed = True  # the trainee may turn the external view with the mouse
        return changed


def design_key(design) -> tuple:
    """What identifies a design's anatomy: its parameters and head extension (radians, 9 decimals)."""
    return design.params, round(float(design.extension), 9)


def _midsagittal_plane():
    """VTK plane x = 0 keeping the patient's left half (x > 0)."""
    from vtkmodules.vtkCommonDataModel import vtkPlane

    plane = vtkPlane()
    plane.SetOrigin(0.0, 0.0, 0.0)
    plane.SetNormal(1.0, 0.0, 0.0)
    return plane


def render_views(session, views: tuple[str, ...] = VIEWS, size: tuple[int, int] = (640, 480),
                 anatomy: AirwayAnatomy | None = None) -> dict[str, np.ndarray]:
    """Render the session's views off-screen; returns ``{view: (h, w, 3) uint8 image}``."""
    out = {}
    scene = AirwayScene(session, anatomy)
    for kind in views:
        plotter = pv.Plotter(off_screen=True, window_size=size)
        try:
            scene.add_view(plotter, kind)
            out[kind] = np.asarray(plotter.screenshot(return_img=True))[..., :3]
        finally:
            plotter.close()
            scene.views.pop(kind, None)
    return out
