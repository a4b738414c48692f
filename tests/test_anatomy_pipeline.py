"""build_anatomy: stages, cache, progress, cancellation, label-map and surface sources, the CLI."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from surgsim.anatomy.pipeline import Cancelled, build_anatomy, segment_volume
from surgsim.cli import main
from surgsim.errors import AnatomyError, SurgsimError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
COARSE = (3e-3, 3e-3, 3e-3)


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    """A coarse phantom CT written as DICOM (with the generator's fake patient data)."""
    from surgsim.cases.phantom import write_phantom_series

    folder = tmp_path_factory.mktemp("phantom") / "dicom"
    write_phantom_series(folder, "default", COARSE, seed=0)
    return folder


def test_build_reports_progress_and_uses_the_cache(series):
    seen: list[tuple[float, str]] = []
    first = build_anatomy(series, "vessels", target_triangles=15_000,
                          progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("segment" in m for _, m in seen) and any("surface" in m for _, m in seen)
    assert not first.from_cache
    assert {"read", "segment", "surface", "centerlines", "report"} <= set(first.timings)
    assert first.report["watertight"] and first.report["manifold"]
    assert first.report["difficulty"]["arch"]["type"] == "I"
    assert first.mask.shape == first.mask.shape and first.mask.any()
    assert first.case_id.startswith("case-")

    again = build_anatomy(series, "vessels", target_triangles=15_000)
    assert again.from_cache and set(again.timings) == {"cache"}
    assert again.case_id == first.case_id
    assert again.mesh.n_cells == first.mesh.n_cells
    assert np.array_equal(again.mask, first.mask)
    assert set(again.centerlines.branches) == set(first.centerlines.branches)
    # other parameters are another cache entry
    other = build_anatomy(series, "vessels", target_triangles=8_000)
    assert not other.from_cache and other.case_id != first.case_id


def test_cache_and_saved_case_hold_no_patient_data(series, tmp_path):
    import pydicom

    from surgsim.anatomy.pipeline import _cache_folder, save_case
    from surgsim.paths import cache_dir

    result = build_anatomy(series, "airway", target_triangles=10_000, with_distance=True)
    assert result.distance is not None
    case = save_case(result, root=tmp_path)
    ds = pydicom.dcmread(next(series.glob("*.dcm")))
    phi = [str(ds.PatientName), str(ds.PatientID), str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID),
           str(ds.InstitutionName), str(ds.AccessionNumber), str(ds.ReferringPhysicianName)]
    files = [p for p in (cache_dir() / "anatomy").rglob("*") if p.is_file()]
    files += [p for p in case.rglob("*") if p.is_file()]
    assert files and (case / "labelmap.nrrd").is_file() and (case / "case.json").is_file()
    for path in files:
        blob = path.read_bytes()
        for value in phi:
            assert value.encode() not in blob, f"{value!r} found in {path}"
        assert str(series).encode() not in blob
    assert _cache_folder("x").parent == cache_dir() / "anatomy"


def test_cancel_with_an_event_and_with_a_callable(series):
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        build_anatomy(series, "bone", cancel=ev, use_cache=False)
    assert issubclass(Cancelled, SurgsimError)

    state = {"n": 0}

    def progress(f, m):
        state["n"] += 1
        state["f"] = f

    with pytest.raises(Cancelled, match="cancelled"):
        build_anatomy(series, "skin", progress=progress, cancel=lambda: state.get("f", 0) >= 0.35)
    # nothing was cached: the next build runs the stages
    done = build_anatomy(series, "skin", target_triangles=5_000)
    assert not done.from_cache


def test_labelmap_source_replaces_segmentation(series, tmp_path):
    from surgsim.anatomy.io import write_labelmap

    ref = build_anatomy(series, "vessels", target_triangles=15_000)
    labels = ref.mask.astype(np.uint8) * 5
    labels[0, 0, 0] = 9  # another structure that must not be taken
    path = write_labelmap(labels, ref.world_from_voxel, tmp_path / "vessels.nii.gz")
    res = build_anatomy(None, "vessels", labelmap=path, label=5, target_triangles=15_000, use_cache=False)
    assert np.array_equal(res.mask, ref.mask)
    assert np.allclose(res.world_from_voxel, ref.world_from_voxel, atol=1e-9)
    assert res.report["volume_m3"] == pytest.approx(ref.report["volume_m3"], rel=1e-3)
    assert res.report["difficulty"]["arch"]["type"] == "I"
    with pytest.raises(AnatomyError, match="values present"):
        build_anatomy(None, "vessels", labelmap=path, label=4, use_cache=False)


def test_coarse_to_fine_matches_direct_segmentation(monkeypatch):
    from surgsim.anatomy import pipeline
    from surgsim.anatomy.segment import segment
    from surgsim.cases.phantom import make_phantom_volume

    volume, _ = make_phantom_volume(spacing=(1.2e-3, 1.2e-3, 2.5e-3))
    monkeypatch.setattr(pipeline, "COARSE_TO_FINE_VOXELS", 1000)
    fast = segment_volume(volume, "vessels")
    ref = segment(volume, "vessels")
    dice = 2 * np.logical_and(fast, ref).sum() / (fast.sum() + ref.sum())
    assert dice > 0.995


# --------------------------------------------------------------------------- CLI


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.startswith("surgsim: error:")]
    assert len(last) == 1
    return last[0]


def test_cli_builds_and_writes_everything(series, tmp_path, capsys):
    out = tmp_path / "airway.glb"
    report = tmp_path / "r.json"
    lab = tmp_path / "airway.nrrd"
    code = main(["anatomy", "build", str(series), "--preset", "airway", "-o", str(out), "--report",
                 str(report), "--save-labelmap", str(lab), "--triangles", "10000"])
    assert code == 0
    err = capsys.readouterr().err
    assert "100.0 %" in err and "#" in err  # the progress bar
    rep = json.loads(report.read_text())
    assert rep["watertight"] and "trachea" in rep["branches"]
    from surgsim.anatomy.io import read_labelmap, read_surface

    assert read_surface(out).n_cells == rep["n_triangles"]
    assert read_labelmap(lab).mask().any()


@pytest.mark.parametrize("case", ["missing", "empty", "not_dicom", "bad_seed", "bad_output",
                                  "bad_labelmap", "seed_outside"])
def test_cli_bad_input_is_one_line_and_exit_code_two(series, tmp_path, capsys, case):
    out = str(tmp_path / "x.vtp")
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a DICOM file")
    bad_lab = tmp_path / "bad.nrrd"
    bad_lab.write_text("NRRD0004\nnonsense\n")
    argv = {
        "missing": ["anatomy", "build", str(tmp_path / "nope"), "-o", out],
        "empty": ["anatomy", "build", str(empty), "-o", out],
        "not_dicom": ["anatomy", "build", str(junk), "-o", out],
        "bad_seed": ["anatomy", "build", str(series), "-o", out, "--seed", "1,2"],
        "bad_output": ["anatomy", "build", str(series), "-o", str(tmp_path / "x.docx")],
        "bad_labelmap": ["anatomy", "build", "--labelmap", str(bad_lab), "-o", out],
        "seed_outside": ["anatomy", "build", str(series), "-o", out, "--seed", "900,900,900",
                         "--no-cache"],
    }[case]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    expect = {"missing": "nope", "empty": "empty", "not_dicom": "junk", "bad_seed": "--seed",
              "bad_output": "x.docx", "bad_labelmap": "bad.nrrd", "seed_outside": "outside"}[case]
    assert expect in line


# --------------------------------------------------------------------------- real data


def _real(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test data not found at {path}")
    return path


@pytest.mark.realdata
@pytest.mark.slow
def test_real_chest_ct_airway_has_trachea_and_both_main_bronchi(tmp_path):
    folder = _real(SHARED / "dicom" / "chest-ct-lung-dx-a0001")
    out = tmp_path / "airway.stl"
    assert main(["anatomy", "build", str(folder), "--preset", "airway", "-o", str(out),
                 "--report", str(tmp_path / "r.json"), "--quiet", "--no-cache"]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["watertight"] and rep["manifold"]
    for label in ("trachea", "right_main_bronchus", "left_main_bronchus"):
        assert label in rep["branches"]
    aw = rep["airway"]
    assert 0.06 < aw["trachea_length_m"] < 0.2
    assert 5e-3 < rep["branches"]["trachea"]["min_radius_m"] < 15e-3
    assert 40 < aw["interbronchial_angle_deg"] < 120


@pytest.mark.realdata
@pytest.mark.slow
def test_real_elastrat_arch_surface_is_imported_with_centerlines():
    path = _real(SHARED / "meshes" / "aortic-arch-elastrat-phantom.obj")
    res = build_anatomy(path, "vessels", use_cache=False)
    assert res.report["watertight"] and res.report["manifold"]
    assert any("welded" in n for n in res.notes)
    assert res.centerlines is not None and "aorta" in res.centerlines.branches
    assert res.report["branches"]["aorta"]["length_m"] > 0.1


@pytest.mark.realdata
@pytest.mark.slow
def test_real_j2k_abdominal_ct_gives_the_aorta_from_a_seed(tmp_path):
    """Portal-venous CT (lumen ~155 HU, calcified wall on the spine): the seed finds the aorta alone."""
    folder = _real(SHARED / "dicom" / "abdomen-ct-j2k-empty-series-uid")
    out = tmp_path / "aorta.vtp"
    report = tmp_path / "r.json"
    assert main(["anatomy", "build", str(folder), "--preset", "vessels", "--seed", "8.3,-147.4,-784.5",
                 "-o", str(out), "--report", str(report), "--quiet", "--no-cache"]) == 0
    rep = json.loads(report.read_text())
    assert rep["watertight"] and rep["manifold"]
    # a 40 mm stretch of a ~23 mm aorta: 12-25 ml, not the 50+ ml of aorta plus vertebra
    assert 12e-6 < rep["volume_m3"] < 25e-6
    import pyvista as pv

    b = np.asarray(pv.read(out).bounds).reshape(3, 2)
    extent = b[:, 1] - b[:, 0]
    assert extent[0] < 35e-3 and extent[1] < 45e-3  # one vessel in plane, not the spine
    assert extent[2] > 35e-3  # runs through the 20 slices (38 mm)


@pytest.mark.realdata
def test_real_j2k_abdominal_ct_auto_seed_finds_the_aorta():
    """No seed: the automatic choice is the aorta (round, uniform, anterior to the vertebra),
    so the mesh encloses the point a user would click in it, and holds nothing else."""
    import pyvista as pv

    folder = _real(SHARED / "dicom" / "abdomen-ct-j2k-empty-series-uid")
    res = build_anatomy(folder, "vessels", with_centerlines=False, use_cache=False)
    assert res.report["watertight"] and res.report["manifold"]
    seed = np.array([8.3, -147.4, -784.5]) * 1e-3  # inside the aortic lumen (LPS metres)
    inside = pv.PolyData(seed.reshape(1, 3)).select_enclosed_points(res.mesh, check_surface=True)
    assert bool(inside["SelectedPoints"][0])
    # the aorta alone: the same 12-25 ml and in-plane extent as the seeded build
    assert 12e-6 < res.report["volume_m3"] < 25e-6
    b = np.asarray(res.mesh.bounds).reshape(3, 2)
    extent = b[:, 1] - b[:, 0]
    assert extent[0] < 35e-3 and extent[1] < 45e-3 and extent[2] > 35e-3
