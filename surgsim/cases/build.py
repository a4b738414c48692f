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
    say(0.0, "segmenting vessels")
    mask = segment(volume, "vessels", seed=seed)
    say(0.3, "extracting the lumen surface")
    mesh = surface_from_mask(mask, volume.world_from_voxel, target_triangles=target_triangles)
    say(0.55, "computing the distance field")
    distance = distance_field_from_mask(mask, volume.world_from_voxel, spacing=sdf_spacing)
    say(0.75, "extracting centerlines")
    centerlines = vessel_centerlines(mask, volume.world_from_voxel)
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
