"""Build a simulation-ready vessel case from a volume, and cache it.

A case is what the session and the renderer need of the anatomy: the lumen
surface, the lumen's signed distance field (for the physics), labelled
centerlines (for targets and reference path lengths) and the access point.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surgsim.dicom.volume import Volume
from surgsim.errors import AnatomyError
from surgsim.paths import cache_dir

#: Bump when the pipeline changes in a way that changes its output.
BUILD_VERSION = 3

Progress = Callable[[float, str], None]


@dataclass
class VesselCase:
    """A vessel anatomy ready for catheter simulation.

    Attributes
    ----------
    case_id : str
        Opaque, de-identified case id.
    mesh : pyvista.PolyData
        Lumen surface, metres (LPS), closed, with normals.
    distance : DistanceField
        Signed distance to the lumen wall, negative inside, metres.
    centerlines : CenterlineGraph
        Labelled centerlines (aorta, brachiocephalic, left_common_carotid,
        left_subclavian).
    access : (3,) float, metres
        Where the devices enter the imaged anatomy.
    access_direction : (3,) float
        Unit vector pointing into the vessel at the access.
    report : dict
        Quality figures of the surface (watertight, manifold, triangles, volume).
    volume : Volume or None
        The (de-identified) CT the case was built from, for fluoroscopy.
    lumen_mask : (nk, nj, ni) bool or None
        The vessel segmentation on the volume's grid.
    """

    case_id: str
    mesh: object
    distance: object
    centerlines: object
    access: np.ndarray
    access_direction: np.ndarray
    report: dict = field(default_factory=dict)
    volume: Volume | None = None
    lumen_mask: np.ndarray | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """Anatomical labels of the centerline branches."""
        return tuple(self.centerlines.branches)


def _access_from_aorta(centerlines) -> tuple[np.ndarray, np.ndarray]:
    aorta = centerlines.branches.get("aorta")
    if aorta is None or len(aorta.points) < 3:
        raise AnatomyError("no aorta centerline found: the vessel preset needs a contrast-filled aorta")
    pts = np.asarray(aorta.points, dtype=float)
    start = pts[0]
    # principal direction of the first 30 mm: robust to the wobble of a smoothed end
    seglen = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    near = pts[seglen <= 0.03]
    if len(near) < 3:
        raise AnatomyError("aorta centerline is too short at the access end (< 3 points in 30 mm)")
    _, _, vt = np.linalg.svd(near - near.mean(axis=0))
    direction = vt[0] if np.dot(vt[0], near[-1] - near[0]) > 0 else -vt[0]
    return start.copy(), direction / np.linalg.norm(direction)


def build_vessel_case(
    volume: Volume,
    case_id: str,
    *,
    seed: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    mesh=None,
    access_hint: np.ndarray | None = None,
    target_triangles: int = 60_000,
    sdf_spacing: float | None = None,
    progress: Progress | None = None,
) -> VesselCase:
    """Segment the contrast lumen of ``volume`` and build everything the simulation needs.

    Parameters
    ----------
    volume : Volume
        A contrast CT (HU).
    case_id : str
        Opaque id given to the case.
    seed : (3,) float, metres, optional
        A point inside the aorta when automatic seeding fails.
    mask : (nk, nj, ni) bool, optional
        The lumen on the volume's grid when already known (then ``volume`` is
        not segmented).
    mesh : pyvista.PolyData, optional
        A closed lumen surface to use instead of the one extracted from the mask.
    access_hint : (3,) float, metres, optional
        Near the vessel end the devices enter (default: the lowest end).
    target_triangles : int
        Triangle budget of the lumen surface.
    sdf_spacing : float, optional
        Resample the distance field to this isotropic step (metres).
    progress : callable(fraction, message), optional
        Called as stages complete.

    Returns
    -------
    VesselCase
    """
    from surgsim.anatomy.centerline import vessel_centerlines
    from surgsim.anatomy.distance import distance_field_from_mask
    from surgsim.anatomy.segment import segment
    from surgsim.anatomy.surface import mesh_quality, surface_from_mask

    say = progress or (lambda f, m: None)
    if mask is None:
        say(0.0, "segmenting vessels")
        mask = segment(volume, "vessels", seed=seed)
    elif np.shape(mask) != volume.shape:
        raise AnatomyError(f"build_vessel_case: mask shape {np.shape(mask)} differs from the volume's {volume.shape}")
    mask = np.asarray(mask, dtype=bool)
    if mesh is None:
        say(0.3, "extracting the lumen surface")
        mesh = surface_from_mask(mask, volume.world_from_voxel, target_triangles=target_triangles)
    say(0.55, "computing the distance field")
    distance = distance_field_from_mask(mask, volume.world_from_voxel, spacing=sdf_spacing)
    say(0.75, "extracting centerlines")
    centerlines = vessel_centerlines(mask, volume.world_from_voxel, access=access_hint)
    access, direction = _access_from_aorta(centerlines)
    say(1.0, "done")
    return VesselCase(
        case_id=case_id,
        mesh=mesh,
        distance=distance,
        centerlines=centerlines,
        access=access,
        access_direction=direction,
        report=mesh_quality(mesh),
        volume=volume,
        lumen_mask=mask,
    )


# --------------------------------------------------------------------------- cache


def _save(case: VesselCase, folder: Path) -> None:
    case.mesh.save(folder / "lumen.vtp")
    np.savez(
        folder / "distance.npz",
        values=case.distance.values,
        world_from_voxel=case.distance.world_from_voxel,
    )
    branches = {
        label: {
            "points": np.asarray(c.points).tolist(),
            "radii": np.asarray(c.radii).tolist(),
            "parent": c.parent,
        }
        for label, c in case.centerlines.branches.items()
    }
    meta = {
        "case_id": case.case_id,
        "access": case.access.tolist(),
        "access_direction": case.access_direction.tolist(),
        "report": case.report,
        "branches": branches,
        "build_version": BUILD_VERSION,
    }
    if case.volume is not None and case.lumen_mask is not None:
        np.save(folder / "volume.npy", np.asarray(case.volume.array))
        np.save(folder / "lumen_mask.npy", np.packbits(np.asarray(case.lumen_mask, dtype=bool)))
        meta["volume"] = {
            "world_from_voxel": np.asarray(case.volume.world_from_voxel).tolist(),
            "shape": list(case.volume.array.shape),
            "modality": case.volume.modality,
            "series_uid": case.volume.series_uid,
            "description": case.volume.description,
        }
    (folder / "case.json").write_text(json.dumps(meta, indent=1))


def _load(folder: Path) -> VesselCase:
    import pyvista as pv

    from surgsim.anatomy.centerline import Centerline, CenterlineGraph
    from surgsim.anatomy.distance import DistanceField

    meta = json.loads((folder / "case.json").read_text())
    with np.load(folder / "distance.npz") as z:
        distance = DistanceField(values=z["values"], world_from_voxel=z["world_from_voxel"])
    branches = {
        label: Centerline(
            label=label,
            points=np.asarray(b["points"], dtype=float),
            radii=np.asarray(b["radii"], dtype=float),
            parent=b["parent"],
        )
        for label, b in meta["branches"].items()
    }
    volume = lumen_mask = None
    if "volume" in meta and (folder / "volume.npy").is_file():
        v = meta["volume"]
        volume = Volume(
            array=np.load(folder / "volume.npy", mmap_mode="r"),  # read on demand
            world_from_voxel=np.asarray(v["world_from_voxel"], dtype=float),
            modality=v["modality"],
            series_uid=v["series_uid"],
            description=v["description"],
        )
        n = int(np.prod(v["shape"]))
        packed = np.load(folder / "lumen_mask.npy")
        lumen_mask = np.unpackbits(packed, count=n).astype(bool).reshape(v["shape"])
    return VesselCase(
        case_id=meta["case_id"],
        mesh=pv.read(folder / "lumen.vtp"),
        distance=distance,
        centerlines=CenterlineGraph(branches=branches),
        access=np.asarray(meta["access"], dtype=float),
        access_direction=np.asarray(meta["access_direction"], dtype=float),
        report=meta["report"],
        volume=volume,
        lumen_mask=lumen_mask,
    )


def cache_folder(key: str) -> Path:
    """The cache folder of the case built under ``key`` (may not exist yet)."""
    digest = hashlib.sha256(f"{key}|v{BUILD_VERSION}".encode()).hexdigest()[:16]
    return cache_dir() / "cases" / digest


def cached_case(key: str, build: Callable[[], VesselCase]) -> VesselCase:
    """Return the case cached under ``key``, building and caching it when absent.

    The cache entry is written to a temporary folder and renamed into place, so
    an interrupted build never leaves a half-written case behind; an unreadable
    entry is rebuilt.
    """
    folder = cache_folder(key)
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    digest = folder.name
    if (folder / "case.json").is_file():
        try:
            return _load(folder)
        except Exception:  # corrupt cache entry: rebuild it
            shutil.rmtree(folder, ignore_errors=True)
    case = build()
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
    try:
        _save(case, tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process won the race: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return case


def phantom_vessel_case(variant: str = "default", progress: Progress | None = None) -> VesselCase:
    """The vessel case of a bundled digital phantom, read through the DICOM pipeline.

    Parameters
    ----------
    variant : str
        One of :data:`surgsim.cases.phantom.VARIANTS` (``"default"`` is the type I
        arch; ``"type2-arch"`` and ``"type3-arch"`` are the harder arches). Each
        variant has its own DICOM series and cache entry.
    progress : callable(fraction, message), optional

    Returns
    -------
    VesselCase
        ``case_id`` is ``"phantom-<variant>"``.

    Raises
    ------
    AnatomyError
        For an unknown variant.
    """
    from surgsim.cases.default import default_case_dicom_dir
    from surgsim.cases.phantom import VARIANTS
    from surgsim.dicom.load import load_series

    if variant not in VARIANTS:
        raise AnatomyError(
            f"unknown phantom variant {variant!r}; known: {', '.join(VARIANTS)}"
        )

    def build() -> VesselCase:
        folder = default_case_dicom_dir(variant)
        volume = load_series(folder)
        return build_vessel_case(volume, case_id=f"phantom-{variant}", progress=progress)

    return cached_case(phantom_case_key(variant), build)


def phantom_case_key(variant: str = "default") -> str:
    """Cache key of a phantom case: the variant and the generator's stamp (source hash,
    version, spacing), so a changed phantom generator rebuilds its case."""
    from surgsim.cases.default import _expected_stamp

    stamp = json.dumps(_expected_stamp(variant), sort_keys=True)
    return f"phantom:{variant}:{hashlib.sha256(stamp.encode()).hexdigest()}"


# --------------------------------------------------------------------------- cases from surfaces

#: Grid step of the synthetic CT built around an imported lumen surface, metres.
MESH_CT_SPACING = 0.5e-3
#: Grid step of the lumen mask the centerlines of an imported surface are traced on, metres
#: (their cross-section radii are sub-voxel; a finer grid only costs time).
CENTERLINE_SPACING = 1.0e-3
#: Grid step of the quick pass that finds an imported arch's orientation (only its aorta), metres.
ORIENTATION_SPACING = 2.0e-3
#: HU of contrast-filled blood in the synthetic CT.
HU_LUMEN = 300.0
#: HU of the soft tissue around the lumen in the synthetic CT.
HU_TISSUE = 40.0
#: HU of the air outside the body.
HU_AIR = -1000.0
#: Tissue margin around the lumen's bounding box in the synthetic CT, metres.
BODY_MARGIN = 15e-3
#: A closed surface whose mean thickness (2 volume / area) is below this encloses a
#: vessel *wall* (a hollow phantom: inner and outer surfaces joined at the openings).
WALL_THICKNESS_MAX = 1.5e-3


@dataclass(frozen=True)
class Opening:
    """An open end of an imported vessel surface (capped when the lumen is closed).

    Attributes
    ----------
    centre : (3,) float, metres
    normal : (3,) float
        Unit normal of the opening's plane, pointing out of the lumen.
    radius : float, metres
        Radius of a disc of the opening's area.
    """

    centre: np.ndarray
    normal: np.ndarray
    radius: float


def _tri_polydata(points: np.ndarray, tris: np.ndarray):
    import pyvista as pv

    return pv.PolyData(np.ascontiguousarray(points, dtype=float),
                       np.hstack([np.full((len(tris), 1), 3), tris]).ravel())


def _capped(points: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Close every hole of a consistently oriented sheet with a fan around the hole's centroid.

    Returns
    -------
    points : (m, 3) float
        Input points plus one centroid per hole.
    tris : (k, 3) int
        Input triangles plus the fans, oriented consistently with them.
    loops : list of (n_i, 3) float
        The holes' boundary points.
    """
    from surgsim.anatomy.surface import _boundary_loops

    loops = _boundary_loops(tris)
    pts = [points]
    fans = [tris]
    n = len(points)
    rims = []
    for loop in loops:
        ring = np.asarray(loop, dtype=np.int64)
        rims.append(points[ring])
        pts.append(points[ring].mean(axis=0)[None, :])
        a, b = ring, np.roll(ring, -1)
        fans.append(np.column_stack([b, a, np.full(len(ring), n)]))  # opposite to the half-edges a->b
        n += 1
    return np.concatenate(pts), np.concatenate(fans), rims


def _fill_and_orient(mesh):
    """Close the holes of a manifold surface and orient it outward; return (mesh, openings)."""
    from surgsim.anatomy.surface import _signed_volume, _triangles

    mesh = mesh.compute_normals(consistent_normals=True, auto_orient_normals=False, cell_normals=True,
                                point_normals=False, split_vertices=False)
    points, tris, rims = _capped(np.asarray(mesh.points, dtype=float), _triangles(mesh))
    if _signed_volume(points, tris) < 0:
        tris = tris[:, ::-1].copy()
    openings = []
    for loop in rims:
        centre = loop.mean(axis=0)
        rel = loop - centre
        radius = float(np.sqrt(np.mean(np.sum(rel**2, axis=1))))
        normal = np.linalg.svd(rel)[2][2]
        # the lumen lies on the side of the opening's plane where the surface's points are
        near = points[np.linalg.norm(points - centre, axis=1) < 2.0 * max(radius, 1e-3)]
        if len(near) and float(np.mean((near - centre) @ normal)) > 0:
            normal = -normal
        openings.append(Opening(centre=centre, normal=normal, radius=radius))
    openings.sort(key=lambda o: -o.radius)
    return _tri_polydata(points, tris), openings


def _sheets(tris: np.ndarray, points: np.ndarray, feature_angle: float) -> np.ndarray:
    """Label of each triangle: connected pieces of the surface not crossing a sharp edge."""
    from scipy import sparse
    from scipy.sparse import csgraph

    n = len(tris)
    fn = np.cross(points[tris[:, 1]] - points[tris[:, 0]], points[tris[:, 2]] - points[tris[:, 0]])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    e.sort(axis=1)
    owner = np.tile(np.arange(n), 3)
    order = np.lexsort((e[:, 1], e[:, 0]))
    e, owner = e[order], owner[order]
    same = np.all(e[1:] == e[:-1], axis=1)
    a, b = owner[:-1][same], owner[1:][same]
    smooth = np.einsum("ij,ij->i", fn[a], fn[b]) > np.cos(np.radians(feature_angle))
    g = sparse.coo_matrix((np.ones(int(smooth.sum())), (a[smooth], b[smooth])), shape=(n, n))
    return csgraph.connected_components(g, directed=False)[1]


def _inner_sheet(wall):
    """The lumen-facing sheet of a closed vessel-wall surface, or None if it cannot be split.

    The wall is split along its sharp edges (the rims of the openings meet the
    inner and outer sheets at about a right angle). Large pieces whose holes,
    capped, enclose a negative volume face the lumen (the wall's outward
    normals point into it); small pieces (flat ends of blind branches) joining
    only those are added to them. What is left open are the true openings.
    """
    from surgsim.anatomy.surface import _signed_volume, _triangles

    tris = _triangles(wall)
    points = np.asarray(wall.points, dtype=float)
    area = 0.5 * np.linalg.norm(
        np.cross(points[tris[:, 1]] - points[tris[:, 0]], points[tris[:, 2]] - points[tris[:, 0]]), axis=1)
    for angle in (60.0, 45.0, 75.0, 30.0):
        label = _sheets(tris, points, angle)
        n_lab = int(label.max()) + 1
        sizes = np.bincount(label, weights=area, minlength=n_lab)
        big = np.flatnonzero(sizes > 0.2 * area.sum())
        inner, outer = set(), set()
        for r in big:
            cp, ct, _ = _capped(points, tris[label == r])
            (inner if _signed_volume(cp, ct) < 0 else outer).add(int(r))
        if not inner or not outer:
            continue
        # regions touching each vertex
        touch = [set() for _ in range(len(points))]
        for t, r in zip(tris, label, strict=True):
            for v in t:
                touch[v].add(int(r))
        neighbours: dict[int, set[int]] = {}
        for regions in touch:
            for r in regions:
                neighbours.setdefault(r, set()).update(regions - {r})
        grown = set(inner)
        changed = True
        while changed:
            changed = False
            for r in range(n_lab):
                if r in grown or r in big or neighbours.get(r, set()) & outer:
                    continue
                if neighbours.get(r, set()) & grown:
                    grown.add(r)
                    changed = True
        keep = np.isin(label, sorted(grown))
        t = tris[keep][:, ::-1].copy()  # the lumen's outward normals
        used = np.unique(t)
        remap = np.full(len(points), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return _tri_polydata(points[used], remap[t])
    return None


def lumen_surface(mesh) -> tuple[object, list[Opening], list[str]]:
    """The closed lumen surface of an imported vessel surface.

    Three kinds of input are accepted: a closed lumen surface (used as is), an
    open lumen surface with cut ends (the ends are capped) and a closed
    *vessel wall*, as phantom meshes are (the Elastrat arch: inner and outer
    surfaces joined at the openings, about 0.5 mm apart), whose inner sheet is
    taken and capped.

    Parameters
    ----------
    mesh : pyvista.PolyData
        Triangles, metres (e.g. from :func:`surgsim.anatomy.io.read_surface`).

    Returns
    -------
    lumen : pyvista.PolyData
        Closed, manifold, outward normals, metres.
    openings : list of Opening
        The capped open ends, largest first.
    notes : list of str

    Raises
    ------
    AnatomyError
        The surface cannot be made a closed lumen.
    """
    from surgsim.anatomy.surface import mesh_quality

    q = mesh_quality(mesh)
    notes: list[str] = []
    if q["nonmanifold_edges"]:
        raise AnatomyError(
            f"the surface has {q['nonmanifold_edges']} non-manifold edges; repair it (e.g. in Blender or "
            "Meshmixer) so each edge joins two triangles"
        )
    if q["watertight"]:
        thickness = 2.0 * abs(q["volume_m3"]) / max(q["area_m2"], 1e-30)
        if thickness >= WALL_THICKNESS_MAX:
            lumen, _ = _fill_and_orient(mesh)
            return lumen, [], notes
        inner = _inner_sheet(mesh)
        if inner is None:
            raise AnatomyError(
                f"the surface encloses a thin shell ({thickness * 1e3:.2f} mm mean thickness): a vessel "
                "wall whose lumen could not be separated from its outer surface; export the lumen surface instead"
            )
        notes.append(f"the surface is a vessel wall ({thickness * 1e3:.2f} mm thick): its inner sheet is the lumen")
        mesh = inner
    lumen, openings = _fill_and_orient(mesh)
    q = mesh_quality(lumen)
    if not (q["watertight"] and q["manifold"]) or q["volume_m3"] <= 0:
        raise AnatomyError(
            "the lumen surface could not be closed (after capping: "
            f"{q['boundary_edges']} boundary and {q['nonmanifold_edges']} non-manifold edges)"
        )
    if openings:
        notes.append(
            f"{len(openings)} open end(s) capped (largest {2e3 * openings[0].radius:.1f} mm across)"
        )
    return lumen, openings, notes


def _voxelise_lumen(mesh, step: float, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Inside-mask of a closed surface on an LPS-aligned grid padded by ``margin`` metres."""
    from surgsim.anatomy.pipeline import _voxelise

    mask, w = _voxelise(mesh, step)
    pad = int(np.ceil(margin / step))
    if pad:
        mask = np.pad(mask, pad)
        w = w.copy()
        w[:3, 3] -= pad * step
    return mask, w


def _cumlen(points: np.ndarray) -> np.ndarray:
    return np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]


def _apex_index(points: np.ndarray) -> tuple[int, float]:
    """Index of the point farthest from the chord between the path's ends, and that distance."""
    chord = points[-1] - points[0]
    u = chord / max(float(np.linalg.norm(chord)), 1e-12)
    rel = points - points[0]
    d = np.linalg.norm(rel - np.outer(rel @ u, u), axis=1)
    k = int(np.argmax(d))
    return k, float(d[k])


def _rotation_from_arch(aorta_points: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Rotation (3, 3) taking an arch's frame to LPS, from its aorta centerline.

    ``aorta_points`` run from the descending end to the aortic root. Superior is
    the direction of the descending aorta over its last 40 mm (it runs along
    the spine); the aortic root lies anterior and to the right of the
    descending aorta, here taken at 45 degrees (which is why LAO views open the
    arch). ``None`` when the path is too short or straight to say (the note
    tells why).
    """
    p = np.asarray(aorta_points, dtype=float)
    s = _cumlen(p)
    near = p[s <= 40e-3]
    if len(near) < 3 or s[-1] < 80e-3:
        return None, f"the aorta is too short ({s[-1] * 1e3:.0f} mm) to tell its orientation: orientation kept"
    _, dist = _apex_index(p)
    if dist < 15e-3:
        return None, f"the aorta is nearly straight (apex {dist * 1e3:.0f} mm off its chord): orientation kept"
    sup = np.linalg.svd(near - near.mean(axis=0))[2][0]
    if np.dot(sup, near[-1] - near[0]) < 0:
        sup = -sup
    h = p[0] - p[-1]  # root to descending aorta, horizontal part
    h = h - np.dot(h, sup) * sup
    if np.linalg.norm(h) < 10e-3:
        return None, "the aortic root lies in line with the descending aorta: orientation kept"
    h /= np.linalg.norm(h)
    left = (h - np.cross(sup, h)) / np.sqrt(2.0)
    post = (h + np.cross(sup, h)) / np.sqrt(2.0)
    return np.vstack([left, post, sup]), ""


def _arch_frame(lumen, openings: list[Opening], notes: list[str]):
    """Estimate where the arch's superior direction and access end are in the file's frame.

    Returns
    -------
    rotation : (3, 3) float or None
        LPS-from-file rotation (``None``: the file is taken as LPS).
    access : (3,) float, metres, file frame
        Near the descending aorta's end.
    """
    from surgsim.anatomy.centerline import vessel_centerlines

    coarse, w = _voxelise_lumen(lumen, ORIENTATION_SPACING)
    hint = None
    if openings:
        o = openings[0]
        hint = o.centre - o.normal * o.radius  # inside, near the largest opening
    graph = vessel_centerlines(coarse, w, access=hint)
    aorta = np.asarray(graph.branches["aorta"].points, dtype=float)
    if hint is None:
        # no opening tells the access: the aorta is the thickest path from its own far end,
        # and the descending limb is the longer one from the arch's apex
        graph = vessel_centerlines(coarse, w, access=aorta[-1])
        aorta = np.asarray(graph.branches["aorta"].points, dtype=float)
        k, _ = _apex_index(aorta)
        s = _cumlen(aorta)
        if s[k] < s[-1] - s[k]:
            aorta = aorta[::-1]
    rot, why = _rotation_from_arch(aorta)
    if rot is None:
        notes.append(why)
        return None, aorta[0]
    angle = float(np.degrees(np.arccos(np.clip(rot[2, 2], -1.0, 1.0))))
    if angle < 45.0:
        notes.append(f"descending aorta {angle:.0f} degrees from +z: the file is taken as patient coordinates (LPS)")
        return None, aorta[0]
    axis = int(np.argmax(np.abs(rot[2])))
    sign = "+" if rot[2, axis] > 0 else "-"
    notes.append(
        f"the descending aorta runs along {sign}{'xyz'[axis]} of the file ({angle:.0f} degrees from +z): rotated "
        "to patient coordinates (superior up, aortic root anterior-right of the descending aorta)"
    )
    return rot, aorta[0]


def synthetic_ct(mask: np.ndarray, world_from_voxel: np.ndarray, description: str = "") -> Volume:
    """A contrast CT around a lumen mask, for fluoroscopy of cases without a scan.

    Contrast-filled blood (:data:`HU_LUMEN`) in the lumen, soft tissue
    (:data:`HU_TISSUE`) inside an elliptic body cylinder (along z) filling the
    grid's axial extent, air (:data:`HU_AIR`) outside it.

    Parameters
    ----------
    mask : (nk, nj, ni) bool
    world_from_voxel : (4, 4) float

    Returns
    -------
    Volume
        int16 HU, same grid.
    """
    mask = np.asarray(mask, dtype=bool)
    nk, nj, ni = mask.shape
    jj, ii = np.mgrid[0:nj, 0:ni].astype(float)
    cj, ci = (nj - 1) / 2.0, (ni - 1) / 2.0
    body2d = ((jj - cj) / max(cj, 1.0)) ** 2 + ((ii - ci) / max(ci, 1.0)) ** 2 <= 1.0
    hu = np.where(body2d, np.int16(HU_TISSUE), np.int16(HU_AIR)).astype(np.int16)
    array = np.broadcast_to(hu, mask.shape).copy()
    array[mask] = np.int16(HU_LUMEN)
    digest = hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:12]
    return Volume(array=array, world_from_voxel=np.asarray(world_from_voxel, dtype=float), modality="CT",
                  series_uid=f"synthetic-{digest}",
                  description=description or "synthetic contrast CT around a lumen surface",
                  notes=("synthetic CT: lumen +300 HU, soft tissue 40 HU",))


def build_mesh_case(
    mesh,
    case_id: str,
    *,
    orientation: str = "auto",
    spacing: float = MESH_CT_SPACING,
    progress: Progress | None = None,
) -> tuple[VesselCase, list[str]]:
    """Build a vessel case from a lumen (or vessel-wall) surface.

    The lumen is closed (:func:`lumen_surface`), turned into patient
    coordinates when its arch does not point up (``orientation="auto"``),
    voxelised at ``spacing`` inside a synthetic contrast CT
    (:func:`synthetic_ct`, so fluoroscopy and contrast work), and given the
    lumen's distance field (on the same grid) and labelled centerlines (traced
    on a :data:`CENTERLINE_SPACING` grid). The access is at the descending
    aorta's end (the largest opening when the surface has open ends).

    Parameters
    ----------
    mesh : pyvista.PolyData
        Metres (read with :func:`surgsim.anatomy.io.read_surface`).
    case_id : str
    orientation : {"auto", "lps"}
        ``"lps"``: the file is already in patient coordinates.
    spacing : float, metres
    progress : callable(fraction, message), optional

    Returns
    -------
    case : VesselCase
    notes : list of str
        What was done to the surface (capped, rotated...).

    Raises
    ------
    AnatomyError
    """
    from surgsim.anatomy.centerline import vessel_centerlines
    from surgsim.anatomy.distance import distance_field_from_mask
    from surgsim.anatomy.surface import mesh_quality

    if orientation not in ("auto", "lps"):
        raise AnatomyError(f"orientation must be 'auto' or 'lps', got {orientation!r}")
    say = progress or (lambda f, m: None)
    say(0.0, "closing the lumen surface")
    lumen, openings, notes = lumen_surface(mesh)
    say(0.1, "finding the arch's orientation")
    rot = None
    if orientation == "auto":
        rot, access = _arch_frame(lumen, openings, notes)
    else:
        access = openings[0].centre - openings[0].normal * openings[0].radius if openings else None
    if rot is not None:
        import pyvista as pv

        from surgsim.anatomy.surface import _triangles

        pts = np.asarray(lumen.points, dtype=float)
        centre = pts.mean(axis=0)
        pts = (pts - centre) @ rot.T + centre
        lumen = pv.PolyData(pts, np.hstack([np.full((lumen.n_cells, 1), 3), _triangles(lumen)]).ravel())
        access = (np.asarray(access) - centre) @ rot.T + centre
    lumen = lumen.compute_normals(cell_normals=False, point_normals=True, split_vertices=False,
                                  consistent_normals=False, auto_orient_normals=False)
    say(0.2, "voxelising the lumen")
    mask, w = _voxelise_lumen(lumen, spacing, margin=BODY_MARGIN)
    volume = synthetic_ct(mask, w)
    say(0.3, "computing the distance field")
    distance = distance_field_from_mask(mask, w)
    say(0.6, "extracting centerlines")
    coarse, wc = _voxelise_lumen(lumen, max(spacing, CENTERLINE_SPACING))
    centerlines = vessel_centerlines(coarse, wc, access=access)
    access, direction = _access_from_aorta(centerlines)
    say(1.0, "done")
    report = dict(mesh_quality(lumen), notes=list(notes))
    case = VesselCase(case_id=case_id, mesh=lumen, distance=distance, centerlines=centerlines, access=access,
                      access_direction=direction, report=report, volume=volume, lumen_mask=mask)
    return case, notes
