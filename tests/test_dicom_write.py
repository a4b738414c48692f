"""The one DICOM series writer (surgsim.dicom.write): round trip, determinism, refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest

from surgsim.dicom import Volume
from surgsim.dicom.discover import discover
from surgsim.dicom.load import load_series
from surgsim.dicom.write import PrivateBlock, decimal_string, deterministic_uid, write_ct_series
from surgsim.errors import DicomSeriesError

NAMES = dict(series_description="test series", patient_name="Test^Writer", patient_id="W-1", uid_seed="test-writer")


def _volume(shape=(4, 6, 5), world=None, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1024, 3072, size=shape).astype(np.int16)
    if world is None:
        world = np.diag([0.7e-3, 0.6e-3, 2.5e-3, 1.0])
        world[:3, 3] = [-0.1, -0.05, 0.2]
    return Volume(array=arr, world_from_voxel=np.asarray(world, dtype=float), modality="CT")


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_axial_round_trip_through_the_loader(tmp_path):
    vol = _volume()
    files = write_ct_series(vol, tmp_path / "s", **NAMES)
    assert [f.name for f in files] == ["CT000001.dcm", "CT000002.dcm", "CT000003.dcm", "CT000004.dcm"]
    assert not list((tmp_path / "s").glob("*.part"))
    back = load_series(tmp_path / "s")
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.world_from_voxel, vol.world_from_voxel, atol=1e-9)
    ds = pydicom.dcmread(files[1])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.BitsStored == 12 and ds.PixelRepresentation == 0 and float(ds.RescaleIntercept) == -1024
    assert ds.PatientName == "Test^Writer" and ds.InstanceNumber == 2


def test_oblique_grid_round_trip(tmp_path):
    """Any rotation of the grid (no shear) is written as IOP/IPP and read back to the same transform."""
    w = np.eye(4)
    w[:3, :3] = _rotation(0.3, -0.2, 0.5) @ np.diag([0.8e-3, 0.9e-3, 1.5e-3])
    w[:3, 3] = [0.01, -0.02, 0.03]
    vol = _volume(shape=(5, 4, 6), world=w, seed=1)
    write_ct_series(vol, tmp_path, **NAMES)
    back = load_series(tmp_path)
    np.testing.assert_array_equal(back.array, vol.array)
    # DS text keeps 6 decimals of mm (1 nm) and IOP 6 decimals
    np.testing.assert_allclose(back.world_from_voxel, w, atol=2e-8)


def test_byte_identical_reruns_and_seeded_uids(tmp_path):
    vol = _volume()
    a = write_ct_series(vol, tmp_path / "a", **NAMES)
    b = write_ct_series(vol, tmp_path / "b", **NAMES)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    other = write_ct_series(vol, tmp_path / "c", **dict(NAMES, uid_seed="another-seed"))
    d0, d1 = pydicom.dcmread(a[0]), pydicom.dcmread(other[0])
    assert d0.StudyInstanceUID != d1.StudyInstanceUID and d0.SOPInstanceUID != d1.SOPInstanceUID
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in a}
    assert len(uids) == len(a)
    for uid in (d0.StudyInstanceUID, d0.SeriesInstanceUID, d0.SOPInstanceUID, d0.FrameOfReferenceUID):
        assert pydicom.uid.UID(uid).is_valid and len(uid) <= 64
    assert deterministic_uid("1.2.3.", "s", "x") == deterministic_uid("1.2.3.", "s", "x")
    assert deterministic_uid("1.2.3.", "s", "x") != deterministic_uid("1.2.3.", "s", "y")


def test_writer_bytes_are_pinned(tmp_path):
    """The exact bytes of a small series: a change here changes every generated phantom case.

    If this fails after an intended change to the writer, the phantom cases
    regenerate (their stamp hashes surgsim/dicom/write.py); update the digest.
    """
    vol = _volume(shape=(2, 3, 4), seed=7)
    files = write_ct_series(vol, tmp_path, **NAMES, extra={"KVP": "120"},
                            private=(PrivateBlock(0x0009, "SURGSIM TEST", ((0x01, "LO", "x"),)),))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    assert digest == "16bf0e726ee705a3fe9d37896a2b534057aeb11e6345616fe496eb99babbc597", digest


def test_extra_attributes_and_private_block(tmp_path):
    files = write_ct_series(_volume(), tmp_path, **NAMES, extra={"KVP": "120", "ImageComments": "hello"},
                            private=(PrivateBlock(0x0009, "SURGSIM TEST", ((0x01, "LO", "payload"),)),),
                            implementation_version_name="SURGSIM_T1")
    ds = pydicom.dcmread(files[0])
    assert ds.KVP == "120" and ds.ImageComments == "hello"
    assert ds.private_block(0x0009, "SURGSIM TEST")[0x01].value == "payload"
    assert ds.file_meta.ImplementationVersionName == "SURGSIM_T1"


def test_series_uid_from_the_volume_or_generated(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.12345"
    vol = Volume(array=_volume().array, world_from_voxel=_volume().world_from_voxel, series_uid=uid)
    f = write_ct_series(vol, tmp_path / "a", **NAMES)[0]
    assert pydicom.dcmread(f).SeriesInstanceUID == uid
    keyed = Volume(array=vol.array, world_from_voxel=vol.world_from_voxel, series_uid="a1b2c3d4e5f6")
    g = write_ct_series(keyed, tmp_path / "b", **NAMES)[0]  # a de-identified key is not a UID
    assert pydicom.uid.UID(pydicom.dcmread(g).SeriesInstanceUID).is_valid


@pytest.mark.parametrize(
    "array, world, kwargs, match",
    [
        (np.zeros((2, 3, 3), np.float32), None, {}, "integer HU"),
        (np.full((2, 3, 3), 3100, np.int16), None, {}, r"BitsStored \(0028,0101\)"),
        (np.full((2, 3, 3), -1100, np.int16), None, {}, r"RescaleIntercept \(0028,1052\)"),
        (np.zeros((3, 3), np.int16), None, {}, "3D"),
        (np.zeros((2, 3, 3), np.int16), [[1e-3, 5e-4, 0, 0], [0, 1e-3, 0, 0], [0, 0, 1e-3, 0], [0, 0, 0, 1]], {},
         "not orthogonal"),
        (np.zeros((2, 3, 3), np.int16), np.diag([1e-3, 1e-3, -1e-3, 1]), {}, "slice normal"),
        (np.zeros((2, 3, 3), np.int16), None, {"extra": {"Rows": 5}}, "set by the writer"),
        (np.zeros((2, 3, 3), np.int16), None, {"extra": {"NotAKeyword": 1}}, "not a DICOM keyword"),
    ],
)
def test_refusals_say_what_to_do(tmp_path, array, world, kwargs, match):
    w = np.diag([1e-3, 1e-3, 1e-3, 1.0]) if world is None else np.asarray(world, dtype=float)
    with pytest.raises(DicomSeriesError, match=match):
        write_ct_series(Volume(array=array, world_from_voxel=w), tmp_path, **NAMES, **kwargs)
    assert not list(tmp_path.glob("*.dcm"))


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DicomSeriesError, match="writable"):
        write_ct_series(_volume(), blocker / "sub", **NAMES)


def test_decimal_string():
    assert decimal_string(1.0) == "1"
    assert decimal_string(-0.0) == "0"
    assert decimal_string(-0.0000001) == "0"
    assert decimal_string(0.6999999) == "0.7"
    assert decimal_string(-250.5) == "-250.5"
    assert len(decimal_string(-12345.123456)) <= 16


def test_written_series_is_discovered_as_one_ct_series(tmp_path):
    write_ct_series(_volume(shape=(6, 5, 4)), tmp_path, **NAMES)
    (tmp_path / "CT000001.dcm.part").write_bytes(b"")  # a leftover from a crash is skipped, not loaded
    d = discover(tmp_path)
    assert len(d.series) == 1 and d.series[0].modality == "CT" and d.series[0].shape == (6, 5, 4)


def test_no_pydicom_outside_the_dicom_package():
    """pydicom is used only inside surgsim/dicom (the phantoms write through write_ct_series).

    The one exception is the anatomy benchmark's naive baseline, which is by
    definition a plain pydicom read loop.
    """
    root = Path(__file__).resolve().parents[1] / "surgsim"
    allowed = {"bench_anatomy.py"}
    offenders = [
        str(p.relative_to(root)) for p in root.rglob("*.py")
        if "pydicom" in p.read_text(encoding="utf-8") and p.parent.name != "dicom" and p.name not in allowed
    ]
    assert not offenders, offenders
