"""One call from a DICOM folder (or a label map, or a surface file) to a checked anatomy.

:func:`build_anatomy` reads the series, segments it with a preset (or takes an
external label map), extracts the closed surface, optionally the signed
distance field, the labelled centerlines (vessels, airway) and the quality
report. Results are cached under :func:`surgsim.paths.cache_dir` keyed by the
de-identified series key (plus file sizes and times), the preset, the
parameters and a hash of the pipeline code, so a second build of the same
series is a load. Progress goes to a callback ``(fraction, message)``;
cancellation is checked between stages (and while slices load) through a
callable or a ``threading.Event`` and raises :class:`Cancelled`.

No patient data is kept: cache folders are named by hashes, the case id is
opaque, and only geometry and derived data are written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from surgsim.dicom.volume import Volume
from surgsim.errors import AnatomyError, SurgsimError

#: Bump when the pipeline's output changes in a way the code hash would not catch.
PIPELINE_VERSION = 1

PRESETS = ("vessels", "airway", "bone", "skin")
#: Presets that get centerlines (and the lumen distance field when asked).
TUBULAR = ("vessels", "airway")
#: Grid step used to voxelise an imported surface for its centerlines, metres.
SURFACE_VOXEL = 0.6e-3

Progress = Callable[[float, str], None]


class Cancelled(SurgsimError):
    """The build was cancelled by the caller (nothing was cached)."""


@dataclass
class AnatomyResult:
    """What :func:`build_anatomy` produced.

    Attributes
    ----------
    case_id : str
        Opaque id (a hash of the cache key; no patient data).
    preset : str
    mask : (nk, nj, ni) bool or None
        The label mask (``None`` only for a surface source without centerlines).
    world_from_voxel : (4, 4) float or None
        Grid of :attr:`mask`, ``(i, j, k, 1)`` -> LPS metres.
    mesh : pyvista.PolyData
        Closed surface, LPS metres, outward normals.
    distance : DistanceField or None
        Lumen signed distance (when asked for a vessel or airway preset).
    centerlines : CenterlineGraph or None
        Labelled centerlines (vessels, airway).
    report : dict
        :func:`surgsim.anatomy.report.quality_report` plus ``source`` and ``notes``.
    notes : tuple of str
        What the loader and the pipeline did (resampling, units, failures of
        optional stages).
    from_cache : bool
    timings : dict[str, float]
        Seconds per stage (``read``, ``segment``, ``surface``, ``distance``,
        ``centerlines``, ``report``; ``cache`` for a cache hit).
    """

    case_id: str
    preset: str
    mask: np.ndarray | None
    world_from_voxel: np.ndarray | None
    mesh: Any
    distance: Any = None
    centerlines: Any = None
    report: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    from_cache: bool = False
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)
    return bool(is_set() if callable(is_set) else cancel())


class _Stages:
    """Progress, cancellation and timing of the stages."""

    def __init__(self, progress: Progress | None, cancel) -> None:
        self.progress = progress
        self.cancel = cancel
        self.timings: dict[str, float] = {}
        self._name: str | None = None
        self._t0 = 0.0

    def check(self) -> None:
        if _is_cancelled(self.cancel):
            where = f" while {self._name}" if self._name else ""
            raise Cancelled(f"anatomy build cancelled{where}; nothing was cached")

    def say(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(float(min(max(fraction, 0.0), 1.0)), message)

    def start(self, name: str, fraction: float, message: str) -> None:
        self.stop()
        self.check()
        self._name = name
        self._t0 = time.perf_counter()
        self.say(fraction, message)

    def stop(self) -> None:
        if self._name is not None:
            self.timings[self._name] = self.timings.get(self._name, 0.0) + time.perf_counter() - self._t0
            self._name = None

    def sub(self, lo: float, hi: float) -> Progress:
        """A progress callback mapping [0, 1] onto [lo, hi] that also checks cancellation."""

        def inner(f: float, message: str) -> None:
            self.check()
            self.say(lo + (hi - lo) * float(f), message)

        return inner


def code_version() -> str:
    """Hash of the pipeline's source code (cache entries of older code are not reused)."""
    import importlib

    h = hashlib.sha256(f"pipeline-v{PIPELINE_VERSION}".encode())
    for name in ("anatomy.centerline", "anatomy.distance", "anatomy.io", "anatomy.report",
                 "anatomy.segment", "anatomy.surface", "dicom.load", "dicom.discover"):
        mod = importlib.import_module(f"surgsim.{name}")
        h.update(Path(mod.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


def _series_stamp(info) -> str:
    """De-identified series key plus the files' sizes and modification times."""
    h = hashlib.sha256(info.key.encode())
    for f in info.files:
        try:
            st = Path(f).stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(b"missing")
    return f"series:{info.key}:{h.hexdigest()[:16]}"


def _volume_stamp(volume: Volume) -> str:
    h = hashlib.sha256(np.ascontiguousarray(volume.array).tobytes())
    h.update(np.asarray(volume.world_from_voxel, dtype=float).tobytes())
    return f"volume:{h.hexdigest()[:24]}"


def _is_surface_file(source) -> bool:
    from surgsim.anatomy.io import SURFACE_SUFFIXES, _suffix

    return isinstance(source, (str, Path)) and Path(source).is_file() and _suffix(Path(source)) in SURFACE_SUFFIXES


def _voxelise(mesh, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Inside-mask of a closed surface on an axis-aligned grid (vtkPolyDataToImageStencil)."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    b = np.asarray(mesh.bounds, dtype=float).reshape(3, 2)
    lo = b[:, 0] - 3 * step
    n = np.ceil((b[:, 1] + 3 * step - lo) / step).astype(int) + 1
    if np.prod(n) > 200e6:
        raise AnatomyError(
            f"the imported surface spans {b[:, 1] - b[:, 0]} m: too large to voxelise at "
            f"{step * 1e3:.1f} mm; check its units"
        )
    img = vtk.vtkImageData()
    img.SetOrigin(*lo)
    img.SetSpacing(step, step, step)
    img.SetDimensions(*(int(v) for v in n))
    img.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    img.GetPointData().GetScalars().Fill(1)
    st = vtk.vtkPolyDataToImageStencil()
    st.SetInputData(mesh)
    st.SetOutputOrigin(*lo)
    st.SetOutputSpacing(step, step, step)
    st.SetOutputWholeExtent(img.GetExtent())
    st.Update()
    cut = vtk.vtkImageStencil()
    cut.SetInputData(img)
    cut.SetStencilConnection(st.GetOutputPort())
    cut.ReverseStencilOff()
    cut.SetBackgroundValue(0)
    cut.Update()
    arr = vtk_to_numpy(cut.GetOutput().GetPointData().GetScalars()).reshape(n[::-1]).astype(bool)
    w = np.diag([step, step, step, 1.0])
    w[:3, 3] = lo
    return arr, w


def _downsample(volume: Volume, factors: tuple[int, int, int]) -> Volume:
    """Block mean by integer factors along (k, j, i); the grid keeps its world position."""
    fk, fj, fi = factors
    a = np.asarray(volume.array)
    nk, nj, ni = (a.shape[0] // fk) * fk, (a.shape[1] // fj) * fj, (a.shape[2] // fi) * fi
    out = np.empty((nk // fk, nj // fj, ni // fi), dtype=np.float32)
    # blocks of output planes (small temporaries that stay in cache); in each, sum
    # along k, then j, then i (contiguous blocks first), each pass shrinking the data
    step = max(1, (1 << 22) // max(1, nj * ni))
    for k0 in range(0, nk // fk, step):
        k1 = min(nk // fk, k0 + step)
        acc = a[k0 * fk : k1 * fk, :nj, :ni]
        summed = False
        for axis, f in ((0, fk), (1, fj), (2, fi)):
            if f == 1:
                continue
            lead = (slice(None),) * axis
            total = acc[lead + (slice(0, None, f),)].astype(np.float32)
            for d in range(1, f):
                total += acc[lead + (slice(d, None, f),)]
            acc, summed = total, True
        out[k0:k1] = acc if summed else acc.astype(np.float32)
    acc = out
    acc *= np.float32(1.0 / (fk * fj * fi))
    scale = np.eye(4)
    scale[0, 0], scale[1, 1], scale[2, 2] = fi, fj, fk
    scale[:3, 3] = [(fi - 1) / 2.0, (fj - 1) / 2.0, (fk - 1) / 2.0]
    return Volume(array=acc, world_from_voxel=np.asarray(volume.world_from_voxel) @ scale,
                  modality=volume.modality, series_uid=volume.series_uid)


#: Volumes above this many voxels are segmented coarse-to-fine (vessels, automatic seed).
COARSE_TO_FINE_VOXELS = 24_000_000


def segment_volume(volume: Volume, preset: str, seed: np.ndarray | None = None) -> np.ndarray:
    """:func:`surgsim.anatomy.segment.segment`, coarse-to-fine for large vessel volumes.

    For the vessels preset with an automatic seed on a large volume (more than
    :data:`COARSE_TO_FINE_VOXELS`), the lumen is first found on a copy
    downsampled by 2 along every axis finer than 1.5 mm (without boundary
    refinement); the full-resolution segmentation then runs, seeded where the
    automatic aorta seed was found (or at the deepest point of the lumen), only
    in its bounding box plus 8 mm. If the lumen reaches a face of that window,
    the whole volume is segmented from the same seed. Same mask in practice,
    several times faster and with a fraction of the memory.

    Returns
    -------
    (nk, nj, ni) bool
    """
    from scipy import ndimage

    from surgsim.anatomy.segment import (
        _bbox,
        _smoothed,
        array_spacing,
        segment,
        segment_vessels_with_seed,
    )

    if preset != "vessels" or seed is not None or int(np.prod(volume.shape)) <= COARSE_TO_FINE_VOXELS:
        return segment(volume, preset, seed=seed)
    sp = array_spacing(volume.world_from_voxel)
    factors = tuple(2 if s < 1.5e-3 else 1 for s in sp)
    coarse_vol = _downsample(volume, factors)  # type: ignore[arg-type]
    # the coarse lumen only places the fine window and the seed: no boundary refinement
    coarse, seed_w = segment_vessels_with_seed(coarse_vol, _smoothed(coarse_vol), None, refine=False)
    sl = _bbox(coarse)
    if seed_w is None:  # fallback choice (no aorta-like tube): seed at the lumen's deepest point
        csp = array_spacing(coarse_vol.world_from_voxel)
        depth = ndimage.distance_transform_edt(np.pad(coarse[sl], 1), sampling=csp)
        deepest = np.asarray(np.unravel_index(int(np.argmax(depth)), depth.shape)) - 1
        deepest += [x.start for x in sl]
        seed_w = coarse_vol.to_world(np.asarray(deepest[::-1], dtype=float))[0]
        del depth
    margin = np.ceil(8e-3 / sp).astype(int)
    f = np.asarray(factors)
    box = tuple(
        slice(max(0, x.start * fa - m), min(n, x.stop * fa + m))
        for x, fa, m, n in zip(sl, f, margin, volume.shape, strict=True)
    )
    del coarse, coarse_vol
    shift = np.eye(4)
    shift[:3, 3] = [box[2].start, box[1].start, box[0].start]
    crop = Volume(array=volume.array[box], world_from_voxel=np.asarray(volume.world_from_voxel) @ shift,
                  modality=volume.modality, series_uid=volume.series_uid)
    fine = segment(crop, preset, seed=seed_w)
    for ax in range(3):
        lo_face = box[ax].start > 0 and np.take(fine, 0, axis=ax).any()
        hi_face = box[ax].stop < volume.shape[ax] and np.take(fine, fine.shape[ax] - 1, axis=ax).any()
        if lo_face or hi_face:  # the lumen leaves the window: segment the whole volume instead
            return segment(volume, preset, seed=seed_w)
    out = np.zeros(volume.shape, dtype=bool)
    out[box] = fine
    return out


# --------------------------------------------------------------------------- cache


def _cache_folder(key: str) -> Path:
    from surgsim.paths import cache_dir

    return cache_dir() / "anatomy" / hashlib.sha256(key.encode()).hexdigest()[:20]


def _save(result: AnatomyResult, folder: Path) -> None:
    if result.mask is not None:
        m = np.asarray(result.mask, dtype=bool)
        np.savez(folder / "mask.npz", bits=np.packbits(m.ravel()), shape=np.asarray(m.shape),
                 world_from_voxel=np.asarray(result.world_from_voxel, dtype=float))
    result.mesh.save(folder / "surface.vtp")
    if result.distance is not None:
        np.savez(folder / "distance.npz", values=result.distance.values,
                 world_from_voxel=result.distance.world_from_voxel)
    if result.centerlines is not None:
        (folder / "centerlines.json").write_text(json.dumps(centerlines_to_json(result.centerlines)))
    meta = {"case_id": result.case_id, "preset": result.preset, "notes": list(result.notes),
            "report": result.report}
    (folder / "result.json").write_text(json.dumps(meta, indent=1))


def _load(folder: Path) -> AnatomyResult:
    import pyvista as pv

    from surgsim.anatomy.distance import DistanceField

    meta = json.loads((folder / "result.json").read_text())
    mask = w = None
    if (folder / "mask.npz").is_file():
        with np.load(folder / "mask.npz") as z:
            shape = tuple(int(v) for v in z["shape"])
            mask = np.unpackbits(z["bits"], count=int(np.prod(shape))).astype(bool).reshape(shape)
            w = z["world_from_voxel"]
    distance = None
    if (folder / "distance.npz").is_file():
        with np.load(folder / "distance.npz") as z:
            distance = DistanceField(values=z["values"], world_from_voxel=z["world_from_voxel"])
    centerlines = None
    if (folder / "centerlines.json").is_file():
        centerlines = centerlines_from_json(json.loads((folder / "centerlines.json").read_text()))
    return AnatomyResult(
        case_id=meta["case_id"], preset=meta["preset"], mask=mask, world_from_voxel=w,
        mesh=pv.read(folder / "surface.vtp"), distance=distance, centerlines=centerlines,
        report=meta["report"], notes=tuple(meta["notes"]), from_cache=True,
    )


def centerlines_to_json(graph) -> dict:
    """JSON form of a :class:`CenterlineGraph` (points and radii in metres)."""
    return {
        label: {"points": np.asarray(c.points).tolist(), "radii": np.asarray(c.radii).tolist(),
                "parent": c.parent}
        for label, c in graph.branches.items()
    }


def centerlines_from_json(data: dict):
    """Inverse of :func:`centerlines_to_json`."""
    from surgsim.anatomy.centerline import Centerline, CenterlineGraph

    return CenterlineGraph(branches={
        label: Centerline(label=label, points=np.asarray(b["points"], dtype=float),
                          radii=np.asarray(b["radii"], dtype=float), parent=b["parent"])
        for label, b in data.items()
    })


# --------------------------------------------------------------------------- build


def build_anatomy(
    source: Path | str | Volume | Any | None,
    preset: str,
    *,
    series_key: str | None = None,
    seed: np.ndarray | None = None,
    labelmap: Path | str | None = None,
    label: int | str | list | None = None,
    target_triangles: int | None = 100_000,
    with_distance: bool = False,
    distance_spacing: float | None = None,
    with_centerlines: bool = True,
    use_cache: bool = True,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | Any | None = None,
) -> AnatomyResult:
    """Build a checked anatomy from a DICOM series, a label map or a surface file.

    Parameters
    ----------
    source : Path, Volume, SeriesInfo or None
        A DICOM folder (or file), a loaded :class:`Volume`, a series from
        :func:`surgsim.dicom.discover.discover`, or a surface file (STL, OBJ,
        PLY, VTP, VTK, GLB) used as is. ``None`` when ``labelmap`` is given.
    preset : str
        ``"vessels"``, ``"airway"``, ``"bone"`` or ``"skin"``: the segmentation
        (unless a label map or surface is given) and which centerlines to find.
    series_key : str, optional
        Series key (or unique prefix) when the folder holds several.
    seed : (3,) float, metres (LPS), optional
        A point inside the structure (vessels, airway).
    labelmap : Path, optional
        NRRD or NIfTI label map used instead of segmentation.
    label : int, str or list, optional
        Label value(s) or name(s) to take from ``labelmap`` (default: every non-zero voxel).
    target_triangles : int or None
        Triangle budget of the surface (``None``: full resolution).
    with_distance : bool
        Also compute the lumen signed distance field (vessels, airway).
    distance_spacing : float, metres, optional
        Isotropic step of the distance field (default: the volume grid).
    with_centerlines : bool
        Compute centerlines for the vessels and airway presets.
    use_cache : bool
        Read and write the cache.
    progress : callable(fraction, message), optional
    cancel : callable() -> bool or threading.Event, optional
        Checked between stages and while slices load.

    Returns
    -------
    AnatomyResult

    Raises
    ------
    Cancelled
        ``cancel`` became true.
    DicomSeriesError, AnatomyError
        Bad input (the message names the file or tag and what to do).
    """
    from surgsim.anatomy.io import read_labelmap, read_surface

    if preset not in PRESETS:
        raise AnatomyError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    stages = _Stages(progress, cancel)
    stages.start("read", 0.0, "reading the input")
    notes: list[str] = []
    volume: Volume | None = None
    info = None
    surface_source = _is_surface_file(source)

    # ---- identify the source (cheap) for the cache key
    if labelmap is not None:
        lpath = Path(labelmap)
        if not lpath.is_file():
            raise AnatomyError(f"{lpath}: no such label map file")
        source_key = f"labelmap:{_file_digest(lpath)}:{json.dumps(label, default=str)}"
        source_desc = f"label map {lpath.name}"
    elif surface_source:
        spath = Path(source)  # type: ignore[arg-type]
        source_key = f"surface:{_file_digest(spath)}"
        source_desc = f"surface {spath.name}"
    elif isinstance(source, Volume):
        volume = source
        source_key = _volume_stamp(volume)
        source_desc = volume.description or "volume"
    elif source is None:
        raise AnatomyError("build_anatomy: give a DICOM folder, a volume, a surface file or labelmap=")
    else:
        from surgsim.dicom.discover import SeriesInfo, discover
        from surgsim.dicom.load import _select

        if isinstance(source, SeriesInfo):
            info = source
        else:
            root = Path(source)
            info = _select(discover(root, progress=stages.sub(0.0, 0.1)), root, series_key)
        source_key = _series_stamp(info)
        source_desc = info.description
    params = {
        "preset": preset, "seed": None if seed is None else [round(float(v), 7) for v in np.ravel(seed)],
        "target_triangles": target_triangles, "with_distance": bool(with_distance),
        "distance_spacing": distance_spacing, "with_centerlines": bool(with_centerlines),
    }
    key = f"{source_key}|{json.dumps(params, sort_keys=True)}|{code_version()}"
    case_id = "case-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = _cache_folder(key)
    if use_cache and (folder / "result.json").is_file():
        t0 = time.perf_counter()
        try:
            result = _load(folder)
            stages.stop()
            result.timings = {"cache": time.perf_counter() - t0}
            stages.say(1.0, "loaded from the cache")
            return result
        except Exception:  # corrupt entry: rebuild it
            shutil.rmtree(folder, ignore_errors=True)

    # ---- read
    mask = world = mesh = None
    if labelmap is not None:
        stages.say(0.05, f"reading the label map {Path(labelmap).name}")
        lm = read_labelmap(labelmap)
        mask = lm.mask(label)
        world = lm.world_from_voxel
        notes.append(f"segmentation taken from the label map {Path(labelmap).name}"
                     + (f" (label {label})" if label is not None else ""))
    elif surface_source:
        mesh = read_surface(source)  # type: ignore[arg-type]
        notes.extend(n for n in mesh.field_data["notes"] if n)
        if preset in TUBULAR and (with_centerlines or with_distance):
            mask, world = _voxelise(mesh, SURFACE_VOXEL)
            if not mask.any():
                raise AnatomyError(f"{source}: the surface encloses no volume (is it closed?)")
    elif volume is None:
        from surgsim.dicom.load import load_series

        volume = load_series(info, progress=stages.sub(0.1, 0.35))
    if volume is not None:
        notes.extend(volume.notes)

    # ---- segment
    if mask is None and volume is not None:
        stages.start("segment", 0.35, f"segmenting ({preset})")
        mask = segment_volume(volume, preset, seed=seed)
        world = volume.world_from_voxel
    volume = None  # free the image: only the mask is needed from here

    # ---- surface
    if mesh is None:
        from surgsim.anatomy.surface import surface_from_mask

        stages.start("surface", 0.55, "extracting the surface")
        mesh = surface_from_mask(mask, world, target_triangles=target_triangles)

    # ---- distance field
    distance = None
    if with_distance and preset in TUBULAR and mask is not None:
        from surgsim.anatomy.distance import distance_field_from_mask

        stages.start("distance", 0.72, "computing the distance field")
        distance = distance_field_from_mask(mask, world, spacing=distance_spacing)

    # ---- centerlines
    centerlines = None
    if with_centerlines and preset in TUBULAR and mask is not None:
        from surgsim.anatomy.centerline import airway_centerlines, vessel_centerlines

        stages.start("centerlines", 0.8, "extracting centerlines")
        try:
            centerlines = (vessel_centerlines if preset == "vessels" else airway_centerlines)(mask, world)
        except AnatomyError as exc:
            notes.append(f"no centerlines: {exc}")

    # ---- report
    from surgsim.anatomy.report import quality_report

    stages.start("report", 0.95, "checking the result")
    report = quality_report(mesh, centerlines, distance)
    report["source"] = source_desc
    report["preset"] = preset
    report["case_id"] = case_id
    report["notes"] = list(notes)
    stages.stop()
    stages.check()
    result = AnatomyResult(
        case_id=case_id, preset=preset, mask=mask, world_from_voxel=world, mesh=mesh,
        distance=distance, centerlines=centerlines, report=report, notes=tuple(notes),
        timings=dict(stages.timings),
    )
    if use_cache:
        _store(result, folder)
    stages.say(1.0, "done")
    return result


def _store(result: AnatomyResult, folder: Path) -> None:
    """Write the cache entry through a temporary folder renamed into place."""
    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
    except OSError:
        return  # a read-only cache is not an error: the result is still returned
    try:
        _save(result, tmp)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            pass  # another process stored the same entry first
    except OSError:
        pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_case(result: AnatomyResult, name: str | None = None, root: Path | None = None) -> Path:
    """Save a result as a case folder the scenarios can use (no patient data).

    Writes ``surface.vtp``, ``labelmap.nrrd`` (when a mask exists),
    ``centerlines.json``, ``distance.npz`` (when computed) and ``report.json``
    under ``root`` (default ``data_dir()/cases``) in a folder named ``name``
    (default the opaque case id).

    Returns
    -------
    Path
        The case folder.
    """
    from surgsim.anatomy.io import write_labelmap
    from surgsim.paths import data_dir

    base = Path(root) if root is not None else data_dir() / "cases"
    name = name or result.case_id
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise AnatomyError(f"case name {name!r}: use letters, digits, '-' and '_' only")
    folder = base / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        result.mesh.save(folder / "surface.vtp")
        if result.mask is not None:
            write_labelmap(result.mask, result.world_from_voxel, folder / "labelmap.nrrd",
                           names={1: result.preset})
        if result.centerlines is not None:
            (folder / "centerlines.json").write_text(json.dumps(centerlines_to_json(result.centerlines)))
        if result.distance is not None:
            np.savez(folder / "distance.npz", values=result.distance.values,
                     world_from_voxel=result.distance.world_from_voxel)
        meta = {"case_id": result.case_id, "preset": result.preset, "report": result.report}
        (folder / "case.json").write_text(json.dumps(meta, indent=1))
    except OSError as exc:
        raise AnatomyError(f"{folder}: cannot save the case ({exc.strerror or exc}); choose a writable folder") from None
    return folder
