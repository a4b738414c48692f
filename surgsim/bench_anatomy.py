"""``surgsim bench anatomy``: DICOM to a 100k-triangle vessel mesh, timed stage by stage.

A 512 x 512 x 300 contrast CT of the digital phantom is written once as a
DICOM series into the cache folder (in a child process, so its memory does not
count). The surgsim pipeline (:func:`surgsim.anatomy.pipeline.build_anatomy`,
no cache) then runs in this process and its peak resident memory is read;
then a naive pipeline in the same process: a pydicom read loop, the same
segmentation preset run directly on the full volume, scikit-image marching
cubes, vtkQuadricDecimation to the same budget and windowed-sinc smoothing.
Figures are printed with their ratio (naive / surgsim), never asserted.
SimpleITK's ImageSeriesReader is timed for the read stage when installed.
The libraries the surgsim pipeline loads on first use are imported as its
first timed stage (``imports``, part of its total), since the naive pipeline
runs after it and finds them loaded.
The machine's load average and each pipeline's CPU seconds are printed too:
on a shared machine the wall-clock figures of one run vary a lot, so compare
the best of several runs.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("VTK_SMP_BACKEND_IN_USE", "STDThread")

SHAPE = (300, 512, 512)  # (nk, nj, ni)
#: Phantom voxel size giving exactly 512 x 512 x 300 voxels over its field of view, metres.
SPACING = (357.0 / 511 * 1e-3, 278.6 / 511 * 1e-3, 400.0 / 299 * 1e-3)
TARGET_TRIANGLES = 100_000
GOALS = {"total_s": 3.0, "speedup": 5.0, "peak_rss_bytes": 2 * 2**30}

_GENERATE = r"""
import sys
from pathlib import Path
from surgsim.cases import phantom
sp = tuple(float(v) for v in sys.argv[2].split(","))
files = phantom.write_phantom_series(Path(sys.argv[1]), "default", sp, seed=0)
print(len(files))
"""


def _peak_rss() -> int:
    """Peak resident set size of this process so far, bytes (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak * (1 if sys.platform == "darwin" else 1024))


def _import_pipeline_libraries() -> None:
    """Import what :func:`build_anatomy` loads on first use (DICOM reader, VTK, pyvista, skimage)."""
    import importlib

    for name in ("surgsim.dicom.load", "surgsim.dicom.discover", "pyvista", "vtkmodules.vtkFiltersCore",
                 "fast_simplification", "skimage.segmentation", "surgsim.anatomy.report"):
        importlib.import_module(name)


def _load_average() -> float | None:
    """1-minute load average of the machine (other users' work slows every figure), or None."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def bench_series_dir() -> tuple[Path, float]:
    """The benchmark series folder, generated when missing; (folder, generation seconds or 0)."""
    from surgsim.cases.phantom import GENERATOR_VERSION
    from surgsim.paths import cache_dir

    folder = cache_dir() / "bench" / f"phantom-512x512x300-v{GENERATOR_VERSION}"
    dicom = folder / "dicom"
    stamp = folder / "done.json"
    if stamp.is_file() and len(list(dicom.glob("CT*.dcm"))) == SHAPE[0]:
        return dicom, 0.0
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run(
        [sys.executable, "-c", _GENERATE, str(dicom), ",".join(repr(v) for v in SPACING)],
        capture_output=True, text=True, env=env, timeout=1800,
    )
    if proc.returncode != 0:
        from surgsim.errors import SurgsimError

        raise SurgsimError(f"could not generate the benchmark series in {dicom}: {proc.stderr.strip()[-300:]}")
    stamp.write_text(json.dumps({"files": SHAPE[0], "spacing_m": SPACING}))
    return dicom, time.perf_counter() - t0


def naive_read(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The textbook pydicom loop: read every file, rescale, sort by position, stack.

    Returns
    -------
    array : (nk, nj, ni) float32, HU
    world_from_voxel : (4, 4) float, metres (axial series assumed, as such scripts do)
    """
    import pydicom

    slices = []
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        img = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((float(ds.ImagePositionPatient[2]), img, ds))
    slices.sort(key=lambda t: t[0])
    array = np.stack([s[1] for s in slices])
    ds = slices[0][2]
    dz = slices[1][0] - slices[0][0]
    w = np.eye(4)
    w[0, 0], w[1, 1], w[2, 2] = float(ds.PixelSpacing[1]) / 1e3, float(ds.PixelSpacing[0]) / 1e3, dz / 1e3
    w[:3, 3] = np.asarray([float(v) for v in ds.ImagePositionPatient]) / 1e3
    return array, w


def naive_surface(mask: np.ndarray, world_from_voxel: np.ndarray, target: int) -> tuple[object, dict]:
    """skimage marching cubes + vtkQuadricDecimation + vtkWindowedSinc; returns (mesh, seconds per step)."""
    import pyvista as pv
    import vtk
    from skimage.measure import marching_cubes

    times = {}
    t0 = time.perf_counter()
    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).astype(np.float32), level=0.5)
    times["marching_cubes"] = time.perf_counter() - t0
    verts = verts[:, ::-1] - 1.0  # (k, j, i) -> (i, j, k), undo the pad
    pts = verts @ world_from_voxel[:3, :3].T + world_from_voxel[:3, 3]
    mesh = pv.PolyData(pts, np.hstack([np.full((len(faces), 1), 3), faces]).ravel())
    t0 = time.perf_counter()
    dec = vtk.vtkQuadricDecimation()
    dec.SetInputData(mesh)
    dec.SetTargetReduction(max(0.0, 1.0 - target / max(mesh.n_cells, 1)))
    dec.Update()
    times["quadric_decimation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sm = vtk.vtkWindowedSincPolyDataFilter()
    sm.SetInputData(dec.GetOutput())
    sm.SetNumberOfIterations(20)
    sm.SetPassBand(0.01)
    sm.NormalizeCoordinatesOn()
    sm.Update()
    times["smooth"] = time.perf_counter() - t0
    return pv.wrap(sm.GetOutput()), times


def bench_anatomy(run_naive: bool = True) -> dict:
    """Run the benchmark; returns the figures (seconds, bytes, ratios)."""
    from surgsim.anatomy.pipeline import build_anatomy
    from surgsim.anatomy.segment import segment
    from surgsim.anatomy.surface import mesh_quality
    from surgsim.dicom.volume import Volume

    folder, gen_s = bench_series_dir()
    res: dict = {"series": f"{SHAPE[2]} x {SHAPE[1]} x {SHAPE[0]} CT (digital phantom)",
                 "generate_s": gen_s, "cores": os.cpu_count(),
                 "vtk_smp_backend": os.environ.get("VTK_SMP_BACKEND_IN_USE"),
                 "load_average_1min": _load_average()}
    rss0 = _peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    # the libraries the pipeline loads on first use, timed as their own stage (counted in the
    # total): the naive pipeline runs later in this process and finds them loaded
    _import_pipeline_libraries()
    imports_s = time.perf_counter() - t0
    result = build_anatomy(folder, "vessels", target_triangles=TARGET_TRIANGLES, with_centerlines=False,
                           use_cache=False)
    res["surgsim_total_s"] = time.perf_counter() - t0
    res["surgsim_cpu_s"] = time.process_time() - c0
    res["surgsim_stages_s"] = {"imports": imports_s, **result.timings}
    res["surgsim_peak_rss_bytes"] = _peak_rss()
    res["peak_rss_before_bytes"] = rss0
    q = mesh_quality(result.mesh)
    res["surgsim_mesh"] = {k: q[k] for k in ("n_triangles", "watertight", "manifold")}
    mask = result.mask
    del result

    try:
        import SimpleITK as sitk  # optional

        t0 = time.perf_counter()
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        img = reader.Execute()
        res["simpleitk_read_s"] = time.perf_counter() - t0
        del img, reader
    except ImportError:
        res["simpleitk_read_s"] = None

    if run_naive:
        stages = {}
        t0, c0 = time.perf_counter(), time.process_time()
        array, w = naive_read(folder)
        stages["read"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        naive_mask = segment(Volume(array=array, world_from_voxel=w), "vessels", reference=True)
        stages["segment"] = time.perf_counter() - t1
        del array
        mesh, times = naive_surface(naive_mask, w, TARGET_TRIANGLES)
        stages.update(times)
        res["naive_total_s"] = time.perf_counter() - t0
        res["naive_cpu_s"] = time.process_time() - c0
        res["naive_stages_s"] = stages
        nq = mesh_quality(mesh)
        res["naive_mesh"] = {k: nq[k] for k in ("n_triangles", "watertight", "manifold")}
        res["masks_agree_dice"] = float(2 * np.logical_and(mask, naive_mask).sum()
                                        / max(mask.sum() + naive_mask.sum(), 1))
        res["speedup"] = res["naive_total_s"] / res["surgsim_total_s"]
        ours_surface = res["surgsim_stages_s"].get("surface", 0.0)
        theirs_surface = sum(times.values())
        res["surface_speedup"] = theirs_surface / ours_surface if ours_surface else None
        res["read_speedup"] = stages["read"] / res["surgsim_stages_s"].get("read", float("nan"))
    return res


def run_bench_anatomy(args) -> int:
    """Print the anatomy benchmark (JSON with ``--json``)."""
    res = bench_anatomy()
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    mib = 2**20
    load = res.get("load_average_1min")
    print(f"surgsim bench anatomy: {res['series']} -> {TARGET_TRIANGLES:,}-triangle smoothed watertight "
          f"vessel mesh ({res['cores']} cores, VTK SMP {res['vtk_smp_backend']}"
          + (f", load average {load:.1f}" if load is not None else "") + ")")
    if res["generate_s"]:
        print(f"  (generated the series first in {res['generate_s']:.1f} s; not counted)")
    print("  surgsim pipeline:")
    for k, v in res["surgsim_stages_s"].items():
        print(f"    {k:<20} {v:6.2f} s")
    m = res["surgsim_mesh"]
    print(f"    {'total':<20} {res['surgsim_total_s']:6.2f} s (goal <= {GOALS['total_s']:.0f} s; "
          f"{res['surgsim_cpu_s']:.2f} s CPU); "
          f"{m['n_triangles']:,} triangles, watertight {m['watertight']}, manifold {m['manifold']}")
    print(f"    peak resident memory {res['surgsim_peak_rss_bytes'] / mib:,.0f} MiB "
          f"(goal < {GOALS['peak_rss_bytes'] / mib:,.0f} MiB)")
    if "naive_total_s" in res:
        print("  naive pipeline (pydicom loop, segmentation on the full volume, skimage marching cubes, "
              "vtkQuadricDecimation, windowed sinc):")
        for k, v in res["naive_stages_s"].items():
            print(f"    {k:<20} {v:6.2f} s")
        nm = res["naive_mesh"]
        print(f"    {'total':<20} {res['naive_total_s']:6.2f} s ({res['naive_cpu_s']:.2f} s CPU); "
              f"{nm['n_triangles']:,} triangles, watertight {nm['watertight']}")
        print(f"  speed-up: {res['speedup']:.1f}x end to end (goal >= {GOALS['speedup']:.0f}x); "
              f"surface stages {res['surface_speedup']:.1f}x; read {res['read_speedup']:.2f}x; "
              f"masks agree (Dice) {res['masks_agree_dice']:.4f}")
    if res["simpleitk_read_s"] is not None:
        ours = res["surgsim_stages_s"].get("read", float("nan"))
        print(f"  read: surgsim {ours:.2f} s vs SimpleITK ImageSeriesReader {res['simpleitk_read_s']:.2f} s "
              f"({res['simpleitk_read_s'] / ours:.2f}x)")
    else:
        print("  SimpleITK not installed: series-reading comparison skipped")
    return 0
