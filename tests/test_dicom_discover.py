"""Series discovery: real folders, generated bad inputs, and a byte-corruption fuzz test."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from surgsim.dicom import Volume
from surgsim.dicom.discover import Discovery, SeriesInfo, discover, format_listing
from surgsim.dicom.load import load_series
from surgsim.errors import DicomSeriesError

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def write_slice(path: Path, z: float, *, series_uid="1.2.826.0.1.3680043.8.498.21",
                study_uid="1.2.826.0.1.3680043.8.498.22", sop_uid=None, shape=(16, 16),
                iop=(1, 0, 0, 0, 1, 0), spacing=(0.5, 0.5), sop_class=CT_IMAGE,
                image_type=("ORIGINAL", "PRIMARY", "AXIAL"), drop=(), implicit=False,
                value=None) -> Path:
    """One 16-bit CT slice at height ``z`` mm; ``drop`` lists keywords to leave out."""
    sop_uid = sop_uid or pydicom.uid.generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".1"
    ds.Modality = "CT"
    ds.ImageType = list(image_type)
    ds.ImagePositionPatient = ["-4", "-4", f"{z:g}"]
    ds.ImageOrientationPatient = [f"{v:g}" for v in iop]
    ds.PixelSpacing = [f"{v:g}" for v in spacing]
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = "1"
    ds.RescaleIntercept = "-1024"
    for keyword in drop:
        delattr(ds, keyword)
    pixels = value if value is not None else np.full(shape, int(z * 10) % 4000 + 24, dtype=np.uint16)
    ds.PixelData = np.asarray(pixels, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(folder: Path, n: int = 3, dz: float = 2.0, prefix: str = "IM", **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_slice(folder / f"{prefix}{s:03d}", 10.0 + dz * s, **kw) for s in range(n)]


def reasons(d: Discovery) -> dict[str, str]:
    return {s.path.name: s.reason for s in d.skipped}


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, n_files, shape, warnings",
    [
        ("chest-ct-lung-dx-a0001", 64, (64, 512, 512), ()),
        ("chest-ct-lung-dx-a0002", 30, (30, 512, 512), ()),
        ("abdomen-ct-j2k-empty-series-uid", 20, (20, 512, 512), ()),
        ("head-phantom-philips-mixed-study", 28, (28, 512, 512), ()),
        ("head-ct-ge-gantry-tilt", 28, None, ("gantry tilt 18.5 deg", "uneven slice spacing 1.1-7.0 mm")),
    ],
)
def test_real_folders(shared_data, name, n_files, shape, warnings):
    folder = shared_data / "dicom" / name
    t0 = time.perf_counter()
    d = discover(folder)
    print(f"\n{name}: discover {time.perf_counter() - t0:.3f} s")
    assert len(d.series) == 1
    info = d.series[0]
    assert info.modality == "CT" and info.n_files == n_files == len(info.files)
    if shape is not None:
        assert info.shape == shape
    assert info.warnings == warnings
    assert len(info.key) == 12 and all(c in "0123456789abcdef" for c in info.key)
    # the key is stable and is not the scanner UID
    assert discover(folder).series[0].key == info.key
    uid = str(pydicom.dcmread(info.files[0], stop_before_pixels=True).get("SeriesInstanceUID", ""))
    assert info.key not in uid and (not uid or uid not in info.description)
    if name != "head-phantom-philips-mixed-study":
        assert d.skipped == ()


@pytest.mark.realdata
def test_real_mixed_study_lists_what_it_skipped(shared_data):
    folder = shared_data / "dicom" / "head-phantom-philips-mixed-study"
    d = discover(folder)
    (info,) = d.series
    assert {p.parent.name for p in info.files} == {"S2010"}
    assert all(p.name != "DIRFILE" for p in info.files)
    why = {str(s.path.relative_to(folder)): s.reason for s in d.skipped}
    assert why["S1000/I10"] == "localizer (ImageType LOCALIZER)"
    for name in ("I10", "I20", "I30", "I40", "I50", "I60"):
        assert why[f"S4010/{name}"].startswith("secondary capture")
    for name in ("DIRFILE", "S1000/DIRFILE", "S2010/DIRFILE", "S4010/DIRFILE"):
        assert why[name] == "DICOMDIR index"
    assert len(why) == 11
    listing = format_listing(d)
    assert info.key in listing
    assert "localizer (ImageType LOCALIZER) [1]: S1000/I10" in listing
    assert "DICOMDIR index [4]" in listing
    assert "secondary capture" in listing


@pytest.mark.realdata
def test_real_empty_series_uid_groups_by_geometry(shared_data):
    folder = shared_data / "dicom" / "abdomen-ct-j2k-empty-series-uid"
    info = discover(folder).series[0]
    assert pydicom.dcmread(info.files[0], stop_before_pixels=True).SeriesInstanceUID == ""
    z = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in info.files]
    np.testing.assert_allclose(np.diff(z), 2.0)  # sorted along the normal (+z)


@pytest.mark.realdata
def test_real_tree_lists_licences_as_non_dicom(shared_data):
    d = discover(shared_data / "dicom")
    assert len(d.series) == 5
    lic = [s for s in d.skipped if s.path.name.startswith("LICENSE")]
    assert lic and all(s.reason == "not a DICOM file" for s in lic)


# ---------------------------------------------------------------------------
# Generated inputs
# ---------------------------------------------------------------------------


def test_empty_folder(tmp_path):
    d = discover(tmp_path)
    assert d.series == () and d.skipped == ()
    assert "No loadable image series" in format_listing(d)


def test_missing_root_raises(tmp_path):
    with pytest.raises(DicomSeriesError, match="no such file or folder"):
        discover(tmp_path / "nope")


def test_non_dicom_truncated_and_missing_position(tmp_path):
    paths = write_series(tmp_path, n=4)
    (tmp_path / "readme.txt").write_text("hello, not an image")
    (tmp_path / "random.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "zero").write_bytes(b"")
    raw = paths[3].read_bytes()
    (tmp_path / "cut").write_bytes(raw[: len(raw) - 200])  # pixel data cut short
    (tmp_path / "cut-header").write_bytes(raw[:300])  # cut inside the header
    write_slice(tmp_path / "nopos", 50.0, drop=("ImagePositionPatient",))
    d = discover(tmp_path)
    why = reasons(d)
    assert why["readme.txt"] == "not a DICOM file"
    assert why["random.bin"] == "not a DICOM file"
    assert why["zero"] == "empty file (0 bytes)"
    assert why["cut"].startswith("truncated: Pixel Data (7FE0,0010) needs")
    assert why["cut-header"].startswith(("truncated:", "no pixel data")), why["cut-header"]
    assert why["nopos"] == "missing geometry: no ImagePositionPatient (0020,0032)"
    (info,) = d.series
    assert info.n_files == 4 and [p.name for p in info.files] == [p.name for p in paths]


def test_two_series_are_both_listed(tmp_path):
    write_series(tmp_path / "x" / "deep", n=3, series_uid="1.2.826.0.1.3680043.8.498.31")
    write_series(tmp_path / "y", n=5, series_uid="1.2.826.0.1.3680043.8.498.32", spacing=(0.3, 0.3))
    d = discover(tmp_path)
    assert sorted(s.n_files for s in d.series) == [3, 5]
    assert len({s.key for s in d.series}) == 2
    for s in d.series:
        assert s.key in format_listing(d)
        assert isinstance(load_series(s), Volume)
    five = next(s for s in d.series if s.n_files == 5)
    assert five.spacing == pytest.approx((0.0003, 0.0003, 0.002))
    assert five.description == "CT 16 x 16 x 5, 0.30 x 0.30 x 2.0 mm"


def test_single_slice_series_is_skipped(tmp_path):
    write_series(tmp_path, n=1)
    d = discover(tmp_path)
    assert d.series == ()
    assert reasons(d)["IM000"].startswith("single-slice series")


def test_non_volume_objects_are_skipped_with_reasons(tmp_path):
    write_series(tmp_path, n=3)
    write_slice(tmp_path / "scout", 0.0, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                series_uid="1.2.826.0.1.3680043.8.498.41")
    write_slice(tmp_path / "sc", 0.0, sop_class=SECONDARY_CAPTURE, series_uid="1.2.826.0.1.3680043.8.498.42")
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    sr.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    sr.SOPClassUID = BASIC_TEXT_SR
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID
    sr.Modality = "SR"
    sr.save_as(tmp_path / "report", enforce_file_format=True)
    d = discover(tmp_path)
    why = reasons(d)
    assert why["scout"] == "localizer (ImageType LOCALIZER)"
    assert why["sc"] == f"secondary capture (SOP class {SECONDARY_CAPTURE})"
    assert why["report"] == f"structured report (SR) (SOP class {BASIC_TEXT_SR})"
    assert len(d.series) == 1


def test_empty_series_uid_groups_by_geometry(tmp_path):
    write_series(tmp_path, n=3, series_uid="", prefix="A")
    write_series(tmp_path, n=4, series_uid="", prefix="B", spacing=(0.25, 0.25))
    d = discover(tmp_path)
    assert sorted(s.n_files for s in d.series) == [3, 4]


def test_one_uid_with_two_geometries_is_split(tmp_path):
    write_series(tmp_path, n=3, prefix="A")
    write_series(tmp_path, n=3, prefix="B", shape=(8, 8), spacing=(1.0, 1.0))
    d = discover(tmp_path)
    assert len(d.series) == 2 and {s.n_files for s in d.series} == {3}
    assert {load_series(s).shape for s in d.series} == {(3, 16, 16), (3, 8, 8)}
    assert {load_series(tmp_path, s.key).series_uid for s in d.series} == {s.key for s in d.series}


def test_sorted_along_the_normal_not_by_name(tmp_path):
    write_slice(tmp_path / "a", 30.0)
    write_slice(tmp_path / "b", 10.0)
    write_slice(tmp_path / "c", 20.0, implicit=True)  # mixed transfer syntaxes in one series
    info = discover(tmp_path).series[0]
    assert [p.name for p in info.files] == ["b", "c", "a"]
    assert info.shape == (3, 16, 16)
    assert info.spacing == pytest.approx((0.0005, 0.0005, 0.01))


def test_duplicate_copy_is_skipped(tmp_path):
    paths = write_series(tmp_path, n=3)
    shutil.copy(paths[1], tmp_path / "copy-of-IM001")
    d = discover(tmp_path)
    assert d.series[0].n_files == 3
    assert reasons(d)["copy-of-IM001"].startswith("duplicate of")


def test_overlapping_slices_are_reported(tmp_path):
    write_series(tmp_path, n=3)
    write_slice(tmp_path / "other-phase", 12.0)  # same position as IM001, another instance
    d = discover(tmp_path)
    assert d.series == ()
    assert all("(0020,0032)" in s.reason for s in d.skipped)
    with pytest.raises(DicomSeriesError, match="overlapping"):
        load_series(tmp_path)


def test_progress_callback(tmp_path):
    write_series(tmp_path, n=40)
    seen: list[tuple[float, str]] = []
    discover(tmp_path, progress=lambda f, m: seen.append((f, m)))
    fr = [f for f, _ in seen]
    assert fr == sorted(fr) and fr[-1] == 1.0 and all(0 <= f <= 1 for f in fr)
    assert "found 1 series" in seen[-1][1]


def test_a_single_file_root(tmp_path):
    (p,) = write_series(tmp_path, n=1)
    d = discover(p)
    assert d.series == () and reasons(d)[p.name].startswith("single-slice")


# ---------------------------------------------------------------------------
# Fuzz: corrupt bytes of a small series file
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template_series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    write_series(folder, n=3)
    return folder


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(st.one_of(st.integers(0, 700), st.integers(0, 1300)), st.integers(0, 255)),
        min_size=1,
        max_size=12,
    ),
    cut=st.one_of(st.none(), st.integers(0, 1300)),
    which=st.integers(0, 2),
)
def test_fuzz_corrupted_file_never_breaks_discovery(template_series, edits, cut, which):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "s"
        shutil.copytree(template_series, folder)
        target = sorted(folder.iterdir())[which]
        data = bytearray(target.read_bytes())
        for pos, byte in edits:
            if pos < len(data):
                data[pos] = byte
        if cut is not None:
            data = data[:cut]
        target.write_bytes(bytes(data))
        d = discover(folder)  # must not raise
        listed = {p for s in d.series for p in s.files} | {s.path for s in d.skipped}
        assert listed == set(folder.iterdir())
        assert all(isinstance(s, SeriesInfo) for s in d.series)
        for info in d.series:
            try:
                vol = load_series(info)
            except DicomSeriesError as exc:
                assert str(folder) in str(exc)
            else:
                assert vol.shape == info.shape
        try:
            load_series(folder)
        except DicomSeriesError:
            pass


# ---------------------------------------------------------------------------
# Headers are parsed from the first bytes in memory; longer ones from the file
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("extra_bytes", [0, 15000, 15540, 15560, 15580, 15600, 40000])
def test_headers_around_and_beyond_the_in_memory_prefix(tmp_path, extra_bytes):
    """Whatever the header length, discovery finds the series and the pixel offset is right."""
    from surgsim.dicom.discover import _HEADER_PREFIX

    paths = write_series(tmp_path, n=3, shape=(128, 128))
    for p in paths:
        ds = pydicom.dcmread(p)
        if extra_bytes:
            ds.add_new(0x00291010, "OB", b"\x01" * extra_bytes)  # a long private element
            ds.add_new(0x00290010, "LO", "SURGSIM TEST")
        ds.save_as(p, enforce_file_format=True)
    assert paths[0].stat().st_size > _HEADER_PREFIX
    d = discover(tmp_path)
    assert len(d.series) == 1 and not d.skipped
    info = d.series[0]
    for h, p in zip(info._headers, info.files, strict=True):
        raw = p.read_bytes()
        assert raw[h.pixel_offset - 12 : h.pixel_offset - 8] == b"\xe0\x7f\x10\x00"
    vol = load_series(info)
    for k, p in enumerate(info.files):
        np.testing.assert_array_equal(vol.array[k], pydicom.dcmread(p).pixel_array.astype(np.int32) - 1024)


@pytest.mark.parametrize("cut", [9000, 16000, 16384, 16390, 30000])
def test_header_cut_beyond_the_prefix_is_skipped(tmp_path, cut):
    """A file cut inside (or after) a long header is skipped with a reason; the others still load."""
    paths = write_series(tmp_path, n=3, shape=(128, 128))
    ds = pydicom.dcmread(paths[1])
    ds.add_new(0x00290010, "LO", "SURGSIM TEST")
    ds.add_new(0x00291010, "OB", b"\x01" * 40000)
    ds.save_as(paths[1], enforce_file_format=True)
    paths[1].write_bytes(paths[1].read_bytes()[:cut])
    d = discover(tmp_path)
    why = reasons(d)
    assert paths[1].name in why
    assert "truncated" in why[paths[1].name] or "(7FE0,0010)" in why[paths[1].name]
    assert len(d.series) == 1 and d.series[0].n_files == 2
    assert load_series(d.series[0]).shape == (2, 128, 128)
