"""Tests of the bundled digital phantom CT (surgsim.cases.phantom / default)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import scipy.ndimage as ndi
from pydicom import config as dcm_config
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from surgsim.cases import default as default_mod
from surgsim.cases import phantom as ph
from surgsim.cases.default import default_case_dicom_dir
from surgsim.cases.phantom import (
    VARIANTS,
    PhantomTruth,
    make_phantom_volume,
    write_phantom_series,
)
from surgsim.errors import DicomSeriesError

COARSE = (3e-3, 3e-3, 4e-3)
REPO = Path(__file__).resolve().parents[1]
CENTERLINE_KEYS = {
    "aorta",
    "brachiocephalic",
    "left_common_carotid",
    "left_subclavian",
    "trachea",
    "right_main_bronchus",
    "left_main_bronchus",
}
LANDMARK_KEYS = {
    "access",
    "access_direction",
    "carina",
    "aortic_root",
    "brachiocephalic_ostium",
    "left_common_carotid_ostium",
    "left_subclavian_ostium",
}


@pytest.fixture(scope="module")
def default_phantom():
    start = time.perf_counter()
    volume, truth = make_phantom_volume()
    elapsed = time.perf_counter() - start
    return volume, truth, elapsed


@pytest.fixture(scope="module", params=VARIANTS)
def any_phantom(request, default_phantom):
    """Every variant at the default spacing (the default one shared with ``default_phantom``)."""
    if request.param == "default":
        return default_phantom
    volume, truth = make_phantom_volume(request.param)
    return volume, truth, 0.0


@pytest.fixture(scope="module")
def coarse_series(tmp_path_factory):
    out = tmp_path_factory.mktemp("coarse")
    old = dcm_config.settings.writing_validation_mode
    dcm_config.settings.writing_validation_mode = dcm_config.RAISE  # invalid values raise
    try:
        files = write_phantom_series(out / "a", spacing=COARSE)
    finally:
        dcm_config.settings.writing_validation_mode = old
    return out, files


def _voxels(volume, points_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest voxel (k, j, i) index arrays of LPS points in metres."""
    v = np.rint(volume.to_voxel(points_m)).astype(int)
    return v[:, 2], v[:, 1], v[:, 0]


def _read_series(folder: Path) -> tuple[np.ndarray, np.ndarray, list[pydicom.Dataset]]:
    """Read a CT series with plain pydicom under strict validation: HU array and world_from_voxel."""
    with dcm_config.strict_reading():
        datasets = []
        for f in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            for elem in ds:  # force value conversion (and validation) of every element
                _ = elem.value
            datasets.append(ds)
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack(
        [
            d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept)
            for d in datasets
        ]
    )
    first = datasets[0]
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row_sp, col_sp = (float(v) for v in first.PixelSpacing)
    z = np.array([float(d.ImagePositionPatient[2]) for d in datasets])
    step = np.diff(z)
    assert np.allclose(step, step[0])
    m = np.eye(4)
    m[:3, 0] = iop[:3] * col_sp
    m[:3, 1] = iop[3:] * row_sp
    m[:3, 2] = np.cross(iop[:3], iop[3:]) * step[0]
    m[:3, 3] = [float(v) for v in first.ImagePositionPatient]
    m[:3, :] /= 1000.0  # mm -> m
    return hu, m, datasets


# ----------------------------------------------------------------------------- API, truth


def test_truth_structure_and_geometry(default_phantom):
    volume, truth, _ = default_phantom
    assert VARIANTS[0] == "default" and {"type2-arch", "type3-arch"} <= set(VARIANTS)
    assert isinstance(truth, PhantomTruth)
    assert set(truth.centerlines) == CENTERLINE_KEYS == set(truth.radii)
    assert set(truth.landmarks) == LANDMARK_KEYS
    for key, pts in truth.centerlines.items():
        r = truth.radii[key]
        assert pts.ndim == 2 and pts.shape[1] == 3 and pts.shape[0] == r.shape[0] >= 20, key
        steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        assert steps.max() <= 1.0e-3 + 1e-9 and steps.min() > 0.3e-3, key
        assert 3e-3 < r.min() and r.max() < 16e-3, key
    lm = truth.landmarks
    aorta = truth.centerlines["aorta"]
    # the aorta runs root -> descending aorta at the inferior face: the catheter access
    assert np.allclose(aorta[0], lm["aortic_root"]) and np.allclose(aorta[-1], lm["access"])
    assert lm["access"][2] == pytest.approx(-0.250)
    assert lm["access"][0] > 0.02  # left of the spine
    assert np.allclose(lm["access_direction"], [0.0, 0.0, 1.0])
    tail = aorta[-100:]  # last 10 cm: straight down, radius about 12 mm
    assert np.allclose(tail[:, :2], tail[-1, :2], atol=1e-6)
    assert 10e-3 < truth.radii["aorta"][-1] < 13e-3
    # ascending aorta anterior to the descending aorta, arch top above the carina
    assert aorta[:60, 1].mean() < aorta[-60:, 1].mean() - 0.05
    assert aorta[:, 2].max() > lm["carina"][2] + 0.04
    # trachea top at the superior face down to the carina at about z = -20 mm
    trachea = truth.centerlines["trachea"]
    assert trachea[0][2] == pytest.approx(0.150) and np.allclose(trachea[-1], lm["carina"])
    assert lm["carina"][2] == pytest.approx(-0.020, abs=2e-3)
    assert truth.radii["trachea"].mean() == pytest.approx(9e-3, abs=1e-3)
    for key, angle, sign in (("right_main_bronchus", 25.0, -1), ("left_main_bronchus", 45.0, 1)):
        pts = truth.centerlines[key]
        assert np.allclose(pts[0], lm["carina"])
        d = pts[-1] - pts[0]
        assert np.sign(d[0]) == sign
        assert np.degrees(np.arccos(-d[2] / np.linalg.norm(d))) == pytest.approx(angle, abs=1)
    # branches leave the top of the arch in order; carotid trunks reach the superior face
    ostium_s = []
    for key in ph.BRANCH_LABELS:
        pts = truth.centerlines[key]
        assert np.min(np.linalg.norm(aorta - pts[0], axis=1)) < 1e-3  # starts on the aorta
        ost = lm[f"{key}_ostium"]
        assert np.min(np.linalg.norm(pts - ost, axis=1)) < 1e-9
        ostium_s.append(int(np.argmin(np.linalg.norm(aorta - pts[0], axis=1))))
    assert ostium_s == sorted(ostium_s)
    assert truth.centerlines["brachiocephalic"][-1][2] == pytest.approx(0.150)
    assert truth.centerlines["left_common_carotid"][-1][2] == pytest.approx(0.150)
    assert truth.centerlines["brachiocephalic"][-1][0] < -0.01  # patient's right
    assert truth.centerlines["left_subclavian"][-1][0] > 0.06  # lateral, left
    # ostia separated by at least 6 mm of aortic wall
    names = ph.BRANCH_LABELS
    for a, b in zip(names[:-1], names[1:], strict=True):
        gap = np.linalg.norm(lm[f"{a}_ostium"] - lm[f"{b}_ostium"])
        gap -= truth.radii[a][0] + truth.radii[b][0]
        assert gap >= 6e-3, (a, b, gap)


def test_grid_and_timing(default_phantom):
    volume, _, elapsed = default_phantom
    print(f"\ndefault phantom generation: {elapsed:.2f} s, shape {volume.shape}")
    assert volume.shape == (201, 200, 256)
    assert volume.array.dtype == np.int16
    assert np.allclose(volume.spacing, [1.4e-3, 1.4e-3, 2.0e-3])
    w = volume.world_from_voxel
    assert np.allclose(w[:3, :3], np.diag([1.4e-3, 1.4e-3, 2.0e-3]))
    assert np.allclose(w[:3, 3], [-0.1785, -0.1393, -0.250])
    top = volume.to_world([[255, 199, 200]])[0]
    assert np.allclose(top, [0.1785, 0.1393, 0.150])
    assert elapsed < 10.0  # about 1 s on the project machine; the budget is ~3 s


def test_invalid_arguments():
    with pytest.raises(ValueError, match="variant"):
        make_phantom_volume("nonsense")
    with pytest.raises(ValueError, match="metres"):
        make_phantom_volume(spacing=(1.4, 1.4, 2.0))  # millimetres by mistake


# ----------------------------------------------------------------------------- determinism


def test_deterministic_arrays():
    v1, t1 = make_phantom_volume(spacing=COARSE)
    v2, t2 = make_phantom_volume(spacing=COARSE)
    assert np.array_equal(v1.array, v2.array)
    assert np.array_equal(v1.world_from_voxel, v2.world_from_voxel)
    assert v1.series_uid == v2.series_uid
    for key in t1.centerlines:
        assert np.array_equal(t1.centerlines[key], t2.centerlines[key])
        assert np.array_equal(t1.radii[key], t2.radii[key])
    v3, t3 = make_phantom_volume(spacing=COARSE, seed=1)
    noise = v3.array.astype(int) - v1.array
    assert not np.array_equal(v3.array, v1.array)
    assert 5.0 < noise[v1.array > -900].std() < 20.0  # sqrt(2) * 10 HU
    assert np.array_equal(t3.centerlines["aorta"], t1.centerlines["aorta"])


def test_dicom_byte_identical(coarse_series):
    out, files = coarse_series
    again = write_phantom_series(out / "b", spacing=COARSE)
    assert [f.name for f in files] == [f.name for f in again]
    assert files[0].name == "CT000001.dcm" and len(files) == 101
    for f1, f2 in zip(files, again, strict=True):
        assert f1.read_bytes() == f2.read_bytes(), f1.name


# ----------------------------------------------------------------------------- DICOM


def test_dicom_roundtrip_with_plain_pydicom(coarse_series):
    out, files = coarse_series
    volume, _ = make_phantom_volume(spacing=COARSE)
    hu, world_from_voxel, datasets = _read_series(out / "a")
    assert hu.shape == volume.shape
    assert np.array_equal(hu, volume.array)
    assert np.allclose(world_from_voxel, volume.world_from_voxel, atol=1e-9)

    first = datasets[0]
    assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert first.SOPClassUID == CTImageStorage
    assert first.Modality == "CT" and first.Manufacturer == "surgsim"
    assert (first.BitsAllocated, first.BitsStored, first.HighBit) == (16, 12, 11)
    assert first.PixelRepresentation == 0 and first.RescaleType == "HU"
    assert float(first.RescaleIntercept) == -1024 and float(first.RescaleSlope) == 1
    assert float(first.SliceThickness) == float(first.SpacingBetweenSlices) == 4.0
    assert str(first.PatientName) == "Phantom^Default"
    assert first.PatientID == "SURGSIM-PHANTOM-DEFAULT"
    assert first.InstitutionName == "surgsim digital phantom"
    for tag in (
        "PatientBirthDate",
        "StudyDescription",
        "SeriesDescription",
        "StudyDate",
        "WindowCenter",
        "WindowWidth",
        "FrameOfReferenceUID",
    ):
        assert tag in first, tag
    assert first.SeriesInstanceUID == volume.series_uid
    uids = {"study": set(), "series": set(), "frame": set(), "sop": set()}
    for n, ds in enumerate(datasets):
        assert ds.InstanceNumber == n + 1
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        uids["study"].add(ds.StudyInstanceUID)
        uids["series"].add(ds.SeriesInstanceUID)
        uids["frame"].add(ds.FrameOfReferenceUID)
        uids["sop"].add(ds.SOPInstanceUID)
        for uid in (
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.SOPInstanceUID,
            ds.FrameOfReferenceUID,
        ):
            assert uid.is_valid and uid.startswith("1.2.826.0.1.3680043.8.498.")
    assert [len(uids[k]) for k in ("study", "series", "frame", "sop")] == [1, 1, 1, len(files)]


def test_make_phantom_tool(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_phantom", REPO / "tools" / "make_phantom.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(tmp_path / "out"), "--spacing", "3,3,4"]) == 0
    written = sorted((tmp_path / "out").glob("CT*.dcm"))
    assert len(written) == 101
    ds = pydicom.dcmread(written[-1])
    assert [float(v) for v in ds.ImagePositionPatient] == [-178.5, -138.0, 150.0]
    with pytest.raises(SystemExit):
        module.main([str(tmp_path / "bad"), "--spacing", "3,3"])


# ----------------------------------------------------------------------------- anatomy


def test_hu_at_truth_points(any_phantom):
    volume, truth, _ = any_phantom
    a = volume.array
    aorta = a[_voxels(volume, truth.centerlines["aorta"])]
    assert abs(aorta.mean() - 350) < 10 and aorta.min() > 280
    for key in ("trachea", "right_main_bronchus", "left_main_bronchus"):
        air = a[_voxels(volume, truth.centerlines[key])]
        assert air.mean() < -960 and air.max() < -900, key
    lungs = a[
        _voxels(
            volume,
            np.array(
                [[-0.09, 0.02, -0.06], [0.09, 0.02, -0.06], [-0.08, 0.0, 0.02], [0.08, 0.0, 0.02]]
            ),
        )
    ]
    assert np.all(np.abs(lungs + 850) < 50)
    # vertebral bodies in the posterior midline: bone or disc all the way down
    k, j, i = _voxels(volume, np.array([[0.0, 0.055, z] for z in np.arange(-0.2, 0.0, 0.002)]))
    spine = a[k, j, i]
    assert np.mean(spine > 200) > 0.7 and spine.min() > 40
    assert a[0, 0, 0] < -950  # outside air
    # body: soft tissue in the middle, fat under the skin, narrow neck
    k, j, i = _voxels(
        volume,
        np.array([[0.150, 0.0, -0.2], [0.155, 0.0, -0.2], [0.02, -0.03, 0.145], [0.1, 0.0, 0.145]]),
    )
    fat, fat2, neck_front, beside_neck = a[k, j, i]
    assert fat < -50 and fat2 < -50 and neck_front > -150 and beside_neck < -950


def test_vessels_one_component_clear_of_bone(any_phantom):
    volume, truth, _ = any_phantom
    a = volume.array
    lo, hi = ph.CONTRAST_RANGE_HU
    mask = (a >= lo) & (a <= hi)
    labels, _ = ndi.label(mask)
    root = labels[_voxels(volume, truth.landmarks["aortic_root"][None])][0]
    assert root > 0
    vessels = labels == root
    for key in ph.VESSEL_LABELS:
        idx = _voxels(volume, truth.centerlines[key])
        assert np.all(mask[idx]), key  # every centerline point in the contrast range
        assert np.all(labels[idx] == root), key
    assert vessels[0].any() and vessels[-1].any()  # leaves through inferior and superior faces
    spacing_mm = volume.spacing[::-1] * 1000.0
    bone = a > hi
    # distances only matter within 10 mm of the vessels: crop for speed
    pad = np.ceil(10.0 / spacing_mm).astype(int)
    nz = np.argwhere(vessels)
    lo_k = np.maximum(nz.min(axis=0) - pad, 0)
    hi_k = nz.max(axis=0) + pad + 1
    crop = tuple(slice(int(b), int(e)) for b, e in zip(lo_k, hi_k, strict=True))
    to_bone = ndi.distance_transform_edt(~bone[crop], sampling=spacing_mm)
    clearance = to_bone[vessels[crop]].min()
    print(f"\nmin contrast lumen to bone: {clearance:.1f} mm")
    assert clearance >= ph.MIN_VESSEL_BONE_CLEARANCE * 1000.0
    # anything else in the contrast range is cancellous bone: touching cortex, far from vessels
    others = mask & ~vessels
    other_labels, n_other = ndi.label(others)
    near_bone = ndi.maximum_filter(bone.view(np.uint8), size=3).view(bool)
    touching = np.unique(other_labels[near_bone & others])
    assert set(touching) - {0} == set(range(1, n_other + 1))
    to_vessel = ndi.distance_transform_edt(~vessels[crop], sampling=spacing_mm)
    assert to_vessel[others[crop]].min() >= 8.0


def test_airway_connected_and_closed(any_phantom):
    volume, truth, _ = any_phantom
    a = volume.array
    air = a < -500
    labels, _ = ndi.label(air)
    seed = labels[_voxels(volume, truth.centerlines["trachea"][10:11])][0]
    assert seed > 0
    for key in ("trachea", "right_main_bronchus", "left_main_bronchus"):
        assert np.all(labels[_voxels(volume, truth.centerlines[key])] == seed), key
    assert labels[0, 0, 0] != seed  # never touches the air outside the body
    assert (labels == labels[0, 0, 0]).sum() > 1_000_000
    lungs = labels[_voxels(volume, np.array([[-0.09, 0.02, -0.06], [0.09, 0.02, -0.06]]))]
    assert seed not in lungs and lungs[0] != lungs[1]  # walled bronchi, two separate lungs
    airway = labels == seed
    assert airway[-1].any() and not airway[0].any()  # trachea leaves through the superior face
    assert 5_000 < airway.sum() < 40_000


# ----------------------------------------------------------------------------- default case


def test_default_case_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGSIM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(ph, "DEFAULT_SPACING", COARSE)  # keep the test fast
    calls = []
    real_write = ph.write_phantom_series

    def counting_write(*args, **kwargs):
        calls.append(args)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ph, "write_phantom_series", counting_write)
    folder = default_case_dicom_dir()
    assert folder == tmp_path / "cases" / f"phantom-default-v{ph.GENERATOR_VERSION}" / "dicom"
    files = sorted(folder.glob("CT*.dcm"))
    assert len(files) == 101 and len(calls) == 1
    assert [p.name for p in (tmp_path / "cases").iterdir()] == [folder.parent.name]  # no temp left
    mtime = files[0].stat().st_mtime_ns
    assert default_case_dicom_dir() == folder and len(calls) == 1  # reused
    assert files[0].stat().st_mtime_ns == mtime
    # a changed generator (different source hash in the stamp) regenerates in place
    stamp_path = folder.parent / "phantom.json"
    stamp = json.loads(stamp_path.read_text())
    stamp["generator_sha256"] = "0" * 64
    stamp_path.write_text(json.dumps(stamp))
    assert default_case_dicom_dir() == folder and len(calls) == 2
    assert len(list(folder.glob("CT*.dcm"))) == 101
    # a damaged case (missing file) regenerates too
    files[3].unlink()
    assert default_case_dicom_dir() == folder and len(calls) == 3
    assert len(list(folder.glob("CT*.dcm"))) == 101
    assert [p.name for p in (tmp_path / "cases").iterdir()] == [folder.parent.name]
    assert default_mod._is_current(folder.parent, default_mod._expected_stamp())


# ----------------------------------------------------------------------------- arch variants


def _arch_type_ratio(truth: PhantomTruth) -> tuple[float, float]:
    """(BCT origin below the top of the arch's outer curve in LCCA diameters, outer top z in m)."""
    aorta = truth.centerlines["aorta"]
    outer_top = float(np.max(aorta[:, 2] + truth.radii["aorta"]))
    lcca_diameter = 2.0 * float(truth.radii["left_common_carotid"][0])
    drop = outer_top - float(truth.landmarks["brachiocephalic_ostium"][2])
    return drop / lcca_diameter, outer_top


def test_arch_variants_have_their_arch_type():
    ratios = {}
    for variant in VARIANTS:
        _, truth = make_phantom_volume(variant, spacing=(6e-3, 6e-3, 8e-3))
        ratios[variant] = _arch_type_ratio(truth)
        lm = truth.landmarks
        assert set(truth.centerlines) == CENTERLINE_KEYS and set(lm) == LANDMARK_KEYS, variant
        # the same access, airway and branch order in every variant
        assert lm["access"][2] == pytest.approx(-0.250) and lm["access"][0] > 0.02
        aorta = truth.centerlines["aorta"]
        junctions = [int(np.argmin(np.linalg.norm(aorta - truth.centerlines[k][0], axis=1))) for k in ph.BRANCH_LABELS]
        assert junctions == sorted(junctions), variant
        names = ph.BRANCH_LABELS
        for a, b in zip(names[:-1], names[1:], strict=True):
            gap = np.linalg.norm(lm[f"{a}_ostium"] - lm[f"{b}_ostium"])
            assert gap - truth.radii[a][0] - truth.radii[b][0] >= 6e-3, (variant, a, b)
        for key in ph.BRANCH_LABELS:  # each branch leaves its ostium within 2 cm of its junction
            pts = truth.centerlines[key]
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
            at = s[int(np.argmin(np.linalg.norm(pts - lm[f"{key}_ostium"], axis=1)))]
            assert at < 0.02, (variant, key, at)
    print("\narch type (BCT origin below the arch top, LCCA diameters):",
          {k: round(v[0], 2) for k, v in ratios.items()})
    assert ratios["default"][0] < 1.0  # type I
    assert 1.0 <= ratios["type2-arch"][0] <= 2.0  # type II
    assert ratios["type3-arch"][0] > 2.0  # type III
    # elongated: the arch top rises with the type
    assert ratios["default"][1] < ratios["type2-arch"][1] - 0.005 < ratios["type3-arch"][1] - 0.01


def test_variants_are_deterministic_and_distinct(tmp_path):
    a = write_phantom_series(tmp_path / "a", "type3-arch", spacing=(6e-3, 6e-3, 8e-3))
    b = write_phantom_series(tmp_path / "b", "type3-arch", spacing=(6e-3, 6e-3, 8e-3))
    for f1, f2 in zip(a, b, strict=True):
        assert f1.read_bytes() == f2.read_bytes(), f1.name
    ds = pydicom.dcmread(a[0])
    assert ds.PatientID == "SURGSIM-PHANTOM-TYPE3-ARCH"
    uids = {make_phantom_volume(v, spacing=(6e-3, 6e-3, 8e-3))[0].series_uid for v in VARIANTS}
    assert len(uids) == len(VARIANTS)
    v1, _ = make_phantom_volume("default", spacing=(6e-3, 6e-3, 8e-3))
    v3, _ = make_phantom_volume("type3-arch", spacing=(6e-3, 6e-3, 8e-3))
    assert not np.array_equal(v1.array, v3.array)


def test_variant_cases_are_generated_separately(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGSIM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(ph, "DEFAULT_SPACING", (6e-3, 6e-3, 8e-3))
    folders = {v: default_case_dicom_dir(v) for v in VARIANTS}
    assert folders["default"] == default_case_dicom_dir()
    assert len(set(folders.values())) == len(VARIANTS)
    for variant, folder in folders.items():
        assert folder.parent.name == f"phantom-{variant}-v{ph.GENERATOR_VERSION}"
        stamp = json.loads((folder.parent / "phantom.json").read_text())
        assert stamp["variant"] == variant and stamp["files"] == len(list(folder.glob("CT*.dcm")))
    with pytest.raises(DicomSeriesError, match="type3-arch"):
        default_case_dicom_dir("type4-arch")


@pytest.mark.slow
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "default"])
def test_variant_vessel_case_is_labelled(variant):
    from surgsim.cases.build import phantom_vessel_case

    case = phantom_vessel_case(variant)
    _, truth = make_phantom_volume(variant, spacing=(6e-3, 6e-3, 8e-3))
    assert case.case_id == f"phantom-{variant}"
    assert set(case.labels) >= set(ph.VESSEL_LABELS)
    for key in ph.BRANCH_LABELS:  # each labelled branch is the phantom's branch of that name
        mine = case.centerlines.branches[key].points
        true = truth.centerlines[key]
        tail = mine[len(mine) // 3 :]  # beyond the junction region
        d = np.min(np.linalg.norm(tail[:, None, :] - true[None, :, :], axis=2), axis=1)
        assert np.median(d) < 2e-3, (variant, key, np.median(d))
    with pytest.raises(Exception, match="unknown phantom variant"):
        phantom_vessel_case("type4-arch")
