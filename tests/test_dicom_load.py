"""Loading DICOM series into a Volume: real scanner data and generated series.

Real-data tests read ../shared/data/dicom (marked ``realdata``, skipped when absent)
and print the time to discover and load each series (run with ``-s`` to see it).
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from surgsim.dicom import Volume
from surgsim.dicom.discover import discover
from surgsim.dicom.load import load_series
from surgsim.errors import DicomSeriesError

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


# ---------------------------------------------------------------------------
# Synthetic series
# ---------------------------------------------------------------------------


def write_slice(
    path: Path,
    pixels: np.ndarray,
    ipp,
    *,
    iop=AXIAL,
    spacing=(0.5, 0.5),
    series_uid="1.2.826.0.1.3680043.8.498.1",
    study_uid="1.2.826.0.1.3680043.8.498.2",
    sop_uid=None,
    slope=1.0,
    intercept=-1024.0,
    modality="CT",
    padding=None,
    extra: dict | None = None,
) -> Path:
    """Write one signed 16-bit CT slice (explicit VR little endian)."""
    sop_uid = sop_uid or pydicom.uid.generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".9"
    ds.Modality = modality
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    ds.ImageOrientationPatient = [f"{v:.7f}" for v in iop]
    ds.PixelSpacing = [f"{v:g}" for v in spacing]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    if padding is not None:
        ds.add_new(0x00280120, "SS", int(padding))
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def make_series(
    folder: Path,
    n: int = 4,
    shape=(16, 16),
    *,
    dz: float = 2.0,
    positions=None,
    names=None,
    value=None,
    **kw,
) -> list[Path]:
    """Write an axial series; slice ``s`` holds ``value(s)`` (default ``100 * s``) as raw values."""
    folder.mkdir(parents=True, exist_ok=True)
    positions = positions if positions is not None else [(-4.0, -4.0, 10.0 + s * dz) for s in range(n)]
    out = []
    for s, ipp in enumerate(positions):
        raw = value(s) if value is not None else np.full(shape, 100 * s, dtype=np.int16)
        name = names[s] if names is not None else f"IM{s:04d}"
        out.append(write_slice(folder / name, np.asarray(raw, dtype=np.int16), ipp, **kw))
    return out


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------


def _timed_load(folder: Path):
    t0 = time.perf_counter()
    d = discover(folder)
    t1 = time.perf_counter()
    vol = load_series(d.series[0])
    t2 = time.perf_counter()
    print(f"\n{folder.name}: discover {t1 - t0:.3f} s, load {t2 - t1:.3f} s, shape {vol.shape}")
    return d, vol


def _check_axial_lps(vol: Volume, spacing_mm, first_ipp_mm):
    w = vol.world_from_voxel
    np.testing.assert_allclose(np.diag(w[:3, :3]) * 1000, spacing_mm, rtol=1e-6)
    assert np.count_nonzero(w[:3, :3] - np.diag(np.diag(w[:3, :3]))) == 0
    np.testing.assert_allclose(w[:3, 3] * 1000, first_ipp_mm, atol=1e-6)
    np.testing.assert_array_equal(w[3], [0, 0, 0, 1])


def _lowest_ipp(folder: Path) -> np.ndarray:
    z = []
    for p in folder.iterdir():
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        z.append([float(v) for v in ds.ImagePositionPatient])
    z = np.array(z)
    return z[np.argmin(z[:, 2])]


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, shape, spacing_mm",
    [
        ("chest-ct-lung-dx-a0001", (64, 512, 512), (0.841796875, 0.841796875, 5.0)),
        ("chest-ct-lung-dx-a0002", (30, 512, 512), (0.646484375, 0.646484375, 8.0)),
    ],
)
def test_real_chest_ct_loads_in_lps_metres(shared_data, name, shape, spacing_mm):
    folder = shared_data / "dicom" / name
    d, vol = _timed_load(folder)
    assert vol.shape == shape == d.series[0].shape
    assert vol.array.dtype == np.int16
    _check_axial_lps(vol, spacing_mm, _lowest_ipp(folder))
    # Hounsfield units: air outside at -1024, lungs dark, bone bright
    assert vol.array.min() == -1024
    assert 1000 < vol.array.max() < 4000
    mid = vol.array[shape[0] // 2]
    assert np.mean(mid < -500) > 0.2  # air and lung
    assert np.mean(mid > 150) > 0.002  # bone
    assert vol.series_uid == d.series[0].key
    assert vol.modality == "CT"


@pytest.mark.realdata
def test_real_sorting_follows_the_slice_normal(shared_data):
    folder = shared_data / "dicom" / "chest-ct-lung-dx-a0001"
    d = discover(folder)
    z = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in d.series[0].files]
    assert np.all(np.diff(z) > 0)
    vol = load_series(d.series[0])
    # slice k of the volume is the file at sorted position k (rescaled)
    for k in (0, 31, 63):
        ds = pydicom.dcmread(d.series[0].files[k])
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.array[k], np.maximum(hu, -1024))


@pytest.mark.realdata
def test_real_mixed_philips_study_picks_the_axial_series(shared_data):
    folder = shared_data / "dicom" / "head-phantom-philips-mixed-study"
    t0 = time.perf_counter()
    vol = load_series(folder)  # one loadable series: chosen without a key
    print(f"\nmixed study: discover+load {time.perf_counter() - t0:.3f} s")
    assert vol.shape == (28, 512, 512)
    np.testing.assert_allclose(vol.spacing * 1000, [0.451171875, 0.451171875, 5.0], rtol=1e-6)
    _check_axial_lps(vol, (0.451171875, 0.451171875, 5.0), _lowest_ipp_of(folder / "S2010"))


def _lowest_ipp_of(folder: Path) -> np.ndarray:
    z = []
    for p in folder.iterdir():
        if p.name == "DIRFILE":
            continue
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        z.append([float(v) for v in ds.ImagePositionPatient])
    z = np.array(z)
    return z[np.argmin(z[:, 2])]


@pytest.mark.realdata
def test_real_jpeg2000_with_empty_series_uid_loads(shared_data):
    folder = shared_data / "dicom" / "abdomen-ct-j2k-empty-series-uid"
    d, vol = _timed_load(folder)
    assert vol.shape == (20, 512, 512)
    np.testing.assert_allclose(vol.spacing * 1000, [0.9765625, 0.9765625, 2.0], rtol=1e-6)
    _check_axial_lps(vol, (0.9765625, 0.9765625, 2.0), _lowest_ipp(folder))
    assert vol.array.min() == -1024
    # portal-venous contrast: enhanced soft tissue and bone above 150 HU exist
    assert np.mean(vol.array > 150) > 0.005
    assert vol.series_uid and vol.series_uid == d.series[0].key


@pytest.mark.realdata
def test_real_gantry_tilt_is_resampled_not_sheared(shared_data):
    folder = shared_data / "dicom" / "head-ct-ge-gantry-tilt"
    d, vol = _timed_load(folder)
    info = d.series[0]
    w = vol.world_from_voxel[:3, :3]
    # orthogonal columns: no shear
    cos = (w.T @ w) / np.outer(np.linalg.norm(w, axis=0), np.linalg.norm(w, axis=0))
    np.testing.assert_allclose(cos, np.eye(3), atol=1e-9)
    assert np.linalg.det(w) > 0
    # k is the true slice normal (row x column cosines)
    first = pydicom.dcmread(info.files[0])
    last = pydicom.dcmread(info.files[-1])
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    np.testing.assert_allclose(w[:, 2] / np.linalg.norm(w[:, 2]), normal, atol=1e-6)
    # regular k grid at (at most) the smallest slice step, 1.08 mm
    assert vol.spacing[2] * 1000 <= 1.08 + 1e-6
    assert any("gantry tilt 18.5 deg" in n for n in vol.notes)
    assert any("uneven slice spacing" in n for n in vol.notes)
    # padding value -1500 is gone, replaced by air
    assert vol.array.min() >= -1024
    assert not np.any(vol.array == -1500)
    assert any("-1500" in n for n in vol.notes)
    # every input slice's pixels are found at their true patient positions
    from scipy import ndimage

    drift = []
    errs, sheared_errs = [], []
    jj, ii = np.mgrid[96:416:8, 96:416:8]
    for path in info.files:
        ds = pydicom.dcmread(path)
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        ps = [float(v) for v in ds.PixelSpacing]
        hu = np.maximum(np.where(ds.pixel_array == -1500, -1024, ds.pixel_array), -1024).astype(float)
        world = (ipp + ii.ravel()[:, None] * ps[1] * iop[:3] + jj.ravel()[:, None] * ps[0] * iop[3:]) / 1000
        vox = vol.to_voxel(world)
        drift.append(vox[0, 1] - jj.ravel()[0])
        got = ndimage.map_coordinates(vol.array, vox[:, ::-1].T, order=1, mode="nearest")
        errs.append(np.mean(np.abs(got - hu[jj.ravel(), ii.ravel()])))
        # what a sheared reading would give: the same pixel indices on every slice
        vox_s = vox.copy()
        vox_s[:, 1] = jj.ravel() + (vol.to_voxel(world[:1])[0, 1] - jj.ravel()[0]) * 0 + drift[0]
        got_s = ndimage.map_coordinates(vol.array, vox_s[:, ::-1].T, order=1, mode="nearest")
        sheared_errs.append(np.mean(np.abs(got_s - hu[jj.ravel(), ii.ravel()])))
    # the slices drift ~48 mm (about 99 rows) along j over the stack: a gantry tilt
    assert abs(drift[0] - drift[-1]) * vol.spacing[1] * 1000 == pytest.approx(
        (float(last.ImagePositionPatient[2]) - float(first.ImagePositionPatient[2])) * abs(iop[5]), rel=1e-3)
    # first and last slices lie on output planes: reproduced to interpolation accuracy
    print("tilt: mean |error| per slice (HU)", np.round(errs, 1), "sheared:", np.round(sheared_errs, 1))
    assert errs[0] < 15 and errs[-1] < 1e-3
    assert np.median(errs) < 40
    assert np.median(sheared_errs[1:]) > 3 * np.median(errs[1:])


# ---------------------------------------------------------------------------
# Generated series
# ---------------------------------------------------------------------------


def test_rescale_sort_and_transform(tmp_path):
    # written in reverse order with shuffled names; positions decide the order
    names = ["zz", "aa", "mm", "bb"]
    make_series(tmp_path, n=4, dz=-2.5, names=names, slope=2.0, intercept=-1000.0)
    vol = load_series(tmp_path)
    assert vol.shape == (4, 16, 16)
    # slice s raw 100*s at z = 10 - 2.5 s; sorted ascending z: k = 3 - s
    for k in range(4):
        s = 3 - k
        np.testing.assert_allclose(vol.array[k], 2.0 * 100 * s - 1000.0)
    w = vol.world_from_voxel
    np.testing.assert_allclose(w[:3, :3], np.diag([0.0005, 0.0005, 0.0025]))
    np.testing.assert_allclose(w[:3, 3], [-0.004, -0.004, (10.0 - 7.5) / 1000])
    assert vol.array.dtype in (np.int16, np.float32)


def test_padding_and_below_air_become_minus_1024(tmp_path):
    def value(s):
        a = np.full((16, 16), 1064, dtype=np.int16)  # 40 HU with intercept -1024
        a[:2] = -2000  # padding
        a[2, :3] = -500  # below air after rescale: -1524 HU
        return a

    make_series(tmp_path, n=3, value=value, padding=-2000)
    vol = load_series(tmp_path)
    assert vol.array.min() == -1024
    assert np.all(vol.array[:, :2] == -1024)
    assert np.all(vol.array[:, 2, :3] == -1024)
    assert np.all(vol.array[:, 3:] == 40)
    assert any("padding value -2000" in n for n in vol.notes)


def test_uneven_spacing_is_resampled_linearly(tmp_path):
    z = [0.0, 1.0, 2.0, 5.0, 6.0]
    make_series(tmp_path, positions=[(0.0, 0.0, v) for v in z],
                value=lambda s: np.full((16, 16), int(10 * z[s]) + 1024, dtype=np.int16))
    info = discover(tmp_path).series[0]
    assert any("uneven slice spacing" in w for w in info.warnings)
    vol = load_series(info)
    assert vol.shape == info.shape == (7, 16, 16)
    np.testing.assert_allclose(vol.spacing[2], 0.001)
    # values are 10 * z: linear interpolation reproduces them at every plane
    np.testing.assert_allclose(vol.array[:, 8, 8], 10 * np.arange(7), atol=1e-4)
    assert vol.array.dtype == np.float32
    assert any("resampled along k" in n for n in vol.notes)


@pytest.mark.parametrize("tilt_deg", [12.0, -20.0])
def test_gantry_tilt_resampling_respects_true_positions(tmp_path, tilt_deg):
    """A linear field f(x, y, z) sampled on tilted slices is reproduced on the output grid."""
    t = np.radians(tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(t), -np.sin(t)])  # tilted about x, as a gantry does
    ps, n, shape = 1.0, 6, (20, 20)
    ipps = [np.array([-10.0, -10.0, 3.0 * s]) for s in range(n)]  # the table moves along z

    def field(p):  # HU as a linear function of LPS position (mm)
        return 2.0 * p[..., 0] + 3.0 * p[..., 1] + 5.0 * p[..., 2]

    def value(s):
        jj, ii = np.mgrid[0:shape[0], 0:shape[1]]
        p = ipps[s] + ii[..., None] * ps * row + jj[..., None] * ps * col
        return np.rint(field(p) + 1024).astype(np.int16)

    make_series(tmp_path, positions=[tuple(p) for p in ipps], value=value,
                iop=tuple(row) + tuple(col), spacing=(ps, ps))
    info = discover(tmp_path).series[0]
    assert any(f"gantry tilt {abs(tilt_deg):.1f} deg" in w for w in info.warnings)
    vol = load_series(info)
    assert vol.shape == info.shape
    w = vol.world_from_voxel[:3, :3]
    np.testing.assert_allclose(w.T @ w, np.diag(np.sum(w * w, axis=0)), atol=1e-15)
    # every output voxel covered by two input slices holds f(its own world position)
    kk, jj, ii = np.meshgrid(*(np.arange(s) for s in vol.shape), indexing="ij")
    ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
    world_mm = vol.to_world(ijk) * 1000
    expected = field(world_mm).reshape(vol.shape)
    got = vol.array
    inside = got > -1000  # voxels outside the slices' footprints are air (fill)
    assert inside.mean() > 0.5
    # interior (away from footprint edges, where bilinear blends with the fill)
    interior = inside.copy()
    for axis in (1, 2):
        interior &= np.roll(inside, 1, axis) & np.roll(inside, -1, axis)
    np.testing.assert_allclose(got[interior], expected[interior], atol=0.6)
    # the sheared alternative (ignoring the drift) would be off by the drift
    drift_mm = abs(3.0 * (n - 1) * np.sin(t))
    assert drift_mm > 2


def test_refuses_absurd_tilt(tmp_path):
    # slices drift 10 mm sideways per 1 mm along the normal: not a gantry tilt
    make_series(tmp_path, positions=[(10.0 * s, 0.0, 1.0 * s) for s in range(4)])
    d = discover(tmp_path)
    assert not d.series
    assert all("(0020,0032)" in s.reason for s in d.skipped)
    with pytest.raises(DicomSeriesError, match=r"\(0020,0032\).*tilt"):
        load_series(tmp_path)


def test_oblique_orientation_transform(tmp_path):
    # sagittal slices: rows along +y (posterior), columns along -z (inferior)
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    make_series(tmp_path, positions=[(5.0 * s, 0.0, 0.0) for s in range(3)], iop=iop, spacing=(0.7, 0.6))
    vol = load_series(tmp_path)
    w = vol.world_from_voxel
    np.testing.assert_allclose(w[:3, 0], [0, 0.0006, 0], atol=1e-12)  # i: column spacing 0.6
    np.testing.assert_allclose(w[:3, 1], [0, 0, -0.0007], atol=1e-12)  # j: row spacing 0.7
    np.testing.assert_allclose(w[:3, 2], [-0.005, 0, 0], atol=1e-12)  # k: row x col = -x
    np.testing.assert_allclose(w[:3, 3], [0.010, 0, 0], atol=1e-12)  # starts at the slice at x = 10 mm
    np.testing.assert_allclose(vol.array[:, 0, 0], [100 * s - 1024 for s in (2, 1, 0)])
    assert np.linalg.det(w[:3, :3]) > 0


def test_rle_compressed_series(tmp_path):
    paths = make_series(tmp_path, n=3, value=lambda s: (np.arange(256).reshape(16, 16) + s).astype(np.int16))
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        ds.save_as(p)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == RLELossless
    vol = load_series(tmp_path)
    for s in range(3):
        np.testing.assert_array_equal(vol.array[s], np.maximum(np.arange(256).reshape(16, 16) + s - 1024, -1024))


def test_undecodable_compressed_pixels_name_file_and_decoder(tmp_path):
    """JPEG lossless needs pylibjpeg-libjpeg (or gdcm): discovery warns, load says what to install."""
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    jpeg_lossless = "1.2.840.10008.1.2.4.70"
    for p in make_series(tmp_path, n=3):
        ds = pydicom.dcmread(p)
        ds.file_meta.TransferSyntaxUID = jpeg_lossless
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 60 + b"\xff\xd9"])  # not a real stream
        ds["PixelData"].VR = "OB"
        ds.save_as(p, enforce_file_format=True)
    info = discover(tmp_path).series[0]
    if not get_decoder(jpeg_lossless).is_available:
        assert any("no pixel decoder installed for JPEG Lossless" in w and "pylibjpeg-libjpeg" in w
                   for w in info.warnings), info.warnings
    with pytest.raises(DicomSeriesError) as exc:
        load_series(info)
    msg = str(exc.value)
    assert str(info.files[0]) in msg and "(7FE0,0010)" in msg and "pylibjpeg-libjpeg" in msg


def _enhanced_ct(path: Path, n: int = 5, order=None) -> np.ndarray:
    """Write a multi-frame enhanced CT; frames stored in ``order``; returns raw frames by z."""
    order = order or list(range(n))
    frames = np.stack([np.full((8, 8), 10 * z, dtype=np.int16) for z in range(n)])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SOPClassUID = ENHANCED_CT
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.Rows, ds.Columns = 8, 8
    ds.NumberOfFrames = n
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    shared = Dataset()
    meas = Dataset()
    meas.PixelSpacing = ["0.8", "0.8"]
    meas.SliceThickness = "1.5"
    ori = Dataset()
    ori.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    pvt = Dataset()
    pvt.RescaleSlope = "1"
    pvt.RescaleIntercept = "-1024"
    pvt.RescaleType = "HU"
    shared.PixelMeasuresSequence = Sequence([meas])
    shared.PlaneOrientationSequence = Sequence([ori])
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for z in order:
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = ["0", "0", f"{1.5 * z:g}"]
        item.PlanePositionSequence = Sequence([pos])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = frames[order].astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return frames


def test_enhanced_multiframe_ct_uses_per_frame_positions(tmp_path):
    frames = _enhanced_ct(tmp_path / "enhanced.dcm", n=5, order=[3, 0, 4, 1, 2])
    d = discover(tmp_path)
    assert len(d.series) == 1 and d.series[0].n_files == 1
    vol = load_series(d.series[0])
    assert vol.shape == (5, 8, 8)
    np.testing.assert_allclose(vol.spacing * 1000, [0.8, 0.8, 1.5])
    np.testing.assert_array_equal(vol.array, frames - 1024)


def test_two_series_need_a_key_and_each_loads(tmp_path):
    make_series(tmp_path / "a", n=3, series_uid="1.2.826.0.1.3680043.8.498.10")
    make_series(tmp_path / "b", n=5, series_uid="1.2.826.0.1.3680043.8.498.11", spacing=(0.25, 0.25))
    d = discover(tmp_path)
    assert len(d.series) == 2
    with pytest.raises(DicomSeriesError, match="series_key"):
        load_series(tmp_path)
    shapes = {load_series(tmp_path, s.key).shape for s in d.series}
    assert shapes == {(3, 16, 16), (5, 16, 16)}
    # a unique prefix of the key is enough
    assert load_series(tmp_path, d.series[0].key[:6]).series_uid == d.series[0].key
    with pytest.raises(DicomSeriesError, match="no series with key"):
        load_series(tmp_path, "nonexistentkey")


def test_series_uid_is_the_key_never_the_scanner_uid(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.4242424242"
    make_series(tmp_path, n=3, series_uid=uid)
    vol = load_series(tmp_path)
    assert vol.series_uid == discover(tmp_path).series[0].key
    for text in (vol.series_uid, vol.description, *vol.notes):
        assert uid not in text and "4242424242" not in text


def test_broken_file_is_skipped_and_the_rest_loads(tmp_path):
    paths = make_series(tmp_path, n=5)
    raw = paths[2].read_bytes()
    paths[2].write_bytes(raw[: len(raw) - 100])  # truncated pixel data
    (tmp_path / "notes.txt").write_text("not dicom")
    d = discover(tmp_path)
    assert {s.path.name for s in d.skipped} == {paths[2].name, "notes.txt"}
    vol = load_series(tmp_path)
    # 4 slices left, the gap at the missing one is resampled (uneven spacing)
    assert vol.shape == (5, 16, 16)
    np.testing.assert_allclose(vol.array[2, 0, 0], (100 + 300) / 2 - 1024)


def test_file_truncated_after_discovery_names_the_file(tmp_path):
    paths = make_series(tmp_path, n=4)
    info = discover(tmp_path).series[0]
    raw = paths[1].read_bytes()
    paths[1].write_bytes(raw[:-50])
    with pytest.raises(DicomSeriesError) as exc:
        load_series(info)
    assert str(paths[1]) in str(exc.value)
    assert "truncated" in str(exc.value)


def test_empty_folder_and_missing_folder(tmp_path):
    with pytest.raises(DicomSeriesError, match="no loadable image series"):
        load_series(tmp_path)
    with pytest.raises(DicomSeriesError, match="no such file"):
        load_series(tmp_path / "missing")


def test_single_slice_series_is_refused(tmp_path):
    make_series(tmp_path, n=1)
    with pytest.raises(DicomSeriesError, match="single-slice"):
        load_series(tmp_path)


def test_progress_is_reported(tmp_path):
    make_series(tmp_path, n=6)
    seen = []
    load_series(tmp_path, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert 0 <= fractions[0] and fractions[-1] == pytest.approx(1.0)


def _fast_series(folder: Path, n: int, shape) -> None:
    """Write ``n`` slices quickly: one template dataset, new position/UID/pixels per file."""
    folder.mkdir(parents=True, exist_ok=True)
    first = write_slice(folder / "S00000", np.zeros(shape, np.int16), (0.0, 0.0, 0.0))
    ds = pydicom.dcmread(first)
    for s in range(1, n):
        ds.ImagePositionPatient = ["0", "0", f"{0.5 * s:g}"]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.7.{s}"
        ds.PixelData = np.full(shape, s % 3000, dtype="<i2").tobytes()
        ds.save_as(folder / f"S{s:05d}")


def test_thousand_slices_load(tmp_path):
    """A 1,000-slice series loads into one array in the right order."""
    n, shape = 1000, (16, 16)
    _fast_series(tmp_path, n, shape)
    info = discover(tmp_path).series[0]
    assert info.shape == (n, *shape) and info.n_files == n
    vol = load_series(info)
    assert vol.shape == (n, *shape)
    np.testing.assert_array_equal(vol.array[:, 3, 5], np.arange(n) - 1024)
    np.testing.assert_allclose(vol.spacing[2], 0.0005)


def test_slices_stream_into_one_preallocated_array(tmp_path):
    """Peak memory while loading stays near one copy of the volume."""
    n, shape = 120, (96, 96)
    _fast_series(tmp_path, n, shape)
    info = discover(tmp_path).series[0]
    tracemalloc.start()
    vol = load_series(info)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert vol.array.nbytes == n * 96 * 96 * vol.array.dtype.itemsize
    # one volume plus a few float32 working slices and pydicom's per-file objects
    assert peak < vol.array.nbytes + 1_500_000, (peak, vol.array.nbytes)


# ---------------------------------------------------------------------------
# Direct reading of uncompressed pixels (fast path) agrees with pydicom
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("implicit", [False, True])
def test_direct_native_read_matches_pydicom_with_unused_high_bits(tmp_path, signed, implicit):
    """12 bits stored in 16 with garbage in the high bits, both VR encodings, a trailing element."""
    from pydicom.uid import ImplicitVRLittleEndian

    from surgsim.dicom.load import _read_native_frame

    rng = np.random.default_rng(3)
    paths = make_series(tmp_path, n=3, shape=(12, 10), intercept=-1024.0)
    expected = []
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
        raw = rng.integers(0, 1 << 16, size=(12, 10), dtype=np.uint16)  # high bits set at random
        ds.PixelData = raw.tobytes()
        ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)  # Data Set Trailing Padding after the pixels
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(p, enforce_file_format=True)
        expected.append(pydicom.dcmread(p).pixel_array)
    info = discover(tmp_path).series[0]
    from surgsim.dicom.load import _series_headers

    for h in _series_headers(info):
        direct = _read_native_frame(h)
        assert direct is not None  # the fast path was taken
        ref = pydicom.dcmread(h.path).pixel_array
        np.testing.assert_array_equal(direct, ref)
    vol = load_series(info)
    # the volume holds pydicom's values rescaled (and clamped at -1024 HU), slice by slice
    assert len(expected) == vol.shape[0]
    for k, p in enumerate(info.files):
        ref = pydicom.dcmread(p).pixel_array.astype(np.int32) - 1024
        np.testing.assert_array_equal(vol.array[k], np.maximum(ref, -1024))
    assert vol.array.dtype == np.int16


def test_direct_native_read_declines_what_it_cannot_read(tmp_path):
    """Compressed and multi-frame files go to pydicom (None from the fast path) and still load."""
    from surgsim.dicom.load import _read_native_frame, _series_headers

    rle = tmp_path / "rle"
    for p in make_series(rle, n=2):
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        ds.save_as(p)
    for h in _series_headers(discover(rle).series[0]):
        assert _read_native_frame(h) is None
    mf = tmp_path / "mf"
    mf.mkdir()
    frames = _enhanced_ct(mf / "ENH", n=3)
    for h in _series_headers(discover(mf).series[0]):
        assert _read_native_frame(h) is None
    vol = load_series(mf)
    np.testing.assert_array_equal(vol.array, np.maximum(frames.astype(np.int32) - 1024, -1024))


# ---------------------------------------------------------------------------
# Loading reuses what discovery read (no second parse of the headers)
# ---------------------------------------------------------------------------


def test_load_reuses_discovery_headers_and_offsets(tmp_path, monkeypatch):
    """A discovered series loads without parsing any header again, nor decoding with pydicom."""
    import surgsim.dicom.load as load_mod

    make_series(tmp_path, n=5, shape=(12, 10), padding=-2000)
    info = discover(tmp_path).series[0]
    assert len(info._headers) == 5
    assert all(h.pixel_offset and h.pixel_length == 12 * 10 * 2 for h in info._headers)
    reference = load_series(info)

    def no_parse(*args, **kwargs):
        raise AssertionError("a header was parsed again")

    monkeypatch.setattr(load_mod, "_read_slices", no_parse)
    monkeypatch.setattr(load_mod.pydicom, "dcmread", no_parse)
    vol = load_series(info)
    np.testing.assert_array_equal(vol.array, reference.array)
    np.testing.assert_array_equal(vol.world_from_voxel, reference.world_from_voxel)
    np.testing.assert_array_equal(vol.array[:, 0, 0], np.arange(5) * 100 - 1024)


def test_series_info_carries_no_scanner_uid(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.424242"
    make_series(tmp_path, n=3, series_uid=uid, study_uid=uid + ".1")
    info = discover(tmp_path).series[0]
    text = repr(info) + " ".join(repr(h) for h in info._headers)
    assert "424242" not in text
    assert len({h.series_uid for h in info._headers}) == 1


def test_file_rewritten_after_discovery_is_parsed_again(tmp_path):
    """Changed size or time: the new header is read (new pixels load; another series is refused)."""
    import os

    paths = make_series(tmp_path, n=4)
    info = discover(tmp_path).series[0]
    # same geometry, new pixel values and a longer header: the old pixel offset is stale
    write_slice(paths[2], np.full((16, 16), 777, np.int16), (-4.0, -4.0, 14.0),
                extra={"ImageComments": "rewritten with a longer header"})
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    vol = load_series(info)
    assert vol.array[2, 0, 0] == 777 - 1024
    # a file that now belongs to another series is refused, naming the file and tag
    write_slice(paths[3], np.zeros((16, 16), np.int16), (-4.0, -4.0, 16.0),
                series_uid="1.2.826.0.1.3680043.8.498.99")
    st = os.stat(paths[3])
    os.utime(paths[3], ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000_000))
    with pytest.raises(DicomSeriesError, match=r"SeriesInstanceUID \(0020,000E\)") as exc:
        load_series(info)
    assert str(paths[3]) in str(exc.value)


def test_stale_pixel_offset_falls_back_to_pydicom(tmp_path):
    """If the bytes at the recorded offset are not the Pixel Data element, pydicom decodes the file."""
    from dataclasses import replace

    from surgsim.dicom.load import _read_native_frame

    make_series(tmp_path, n=3, shape=(8, 8))
    info = discover(tmp_path).series[0]
    bad = tuple(replace(h, pixel_offset=h.pixel_offset - 2) for h in info._headers)
    assert all(_read_native_frame(h) is None for h in bad)
    vol = load_series(replace(info, _headers=bad))
    np.testing.assert_array_equal(vol.array[:, 3, 3], np.arange(3) * 100 - 1024)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [12, 16])
def test_in_place_integer_rescale_matches_pydicom(tmp_path, signed, bits):
    """Direct reads rescaled in place (padding range, clamping, unused high bits) equal pydicom's values."""
    rng = np.random.default_rng(bits + signed)
    paths = make_series(tmp_path, n=4, shape=(9, 7), intercept=-1024.0 if not signed else 0.0)
    pad_lo, pad_hi = (5, 9) if not signed else (-2000, -1990)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
        if bits == 16 and not signed:
            ds.RescaleIntercept = "-32768"
        raw = rng.integers(0, 1 << 16, size=(9, 7), dtype=np.uint16)
        raw[0, :3] = [pad_lo & 0xFFFF, pad_hi & 0xFFFF, (pad_lo + 2) & 0xFFFF]
        ds.PixelData = raw.tobytes()
        ds.add_new(0x00280120, "US" if not signed else "SS", pad_lo)
        ds.add_new(0x00280121, "US" if not signed else "SS", pad_hi)
        ds.save_as(p, enforce_file_format=True)
    info = discover(tmp_path).series[0]
    vol = load_series(info)
    assert vol.array.dtype == np.int16
    for k, p in enumerate(info.files):
        ds = pydicom.dcmread(p)
        stored = ds.pixel_array.astype(np.int64)
        hu = stored + int(float(ds.RescaleIntercept))
        hu[(stored >= pad_lo) & (stored <= pad_hi)] = -1024
        np.testing.assert_array_equal(vol.array[k], np.maximum(hu, -1024))


def test_rewrite_keeping_size_and_mtime_is_still_seen(tmp_path):
    """A copy tool that restores the modification time (``cp -p``) cannot hide a changed header."""
    import os

    paths = make_series(tmp_path, n=4)
    info = discover(tmp_path).series[0]
    st = os.stat(paths[3])
    size = st.st_size
    time.sleep(0.05)  # past the file system's timestamp granularity
    # same size, new position along z (16 -> 19 mm: an uneven step now), old mtime put back
    write_slice(paths[3], np.full((16, 16), 300, np.int16), (-4.0, -4.0, 19.0))
    assert os.stat(paths[3]).st_size == size
    os.utime(paths[3], ns=(st.st_atime_ns, st.st_mtime_ns))
    vol = load_series(info)
    assert any("uneven slice spacing" in n for n in vol.notes)
