"""De-identification (PS3.15 Annex E basic profile): no PHI in written files or in the Volume."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from surgsim.dicom.deid import REMOVED_KEYWORDS, UidMap, deidentify, write_deidentified_series
from surgsim.dicom.discover import discover
from surgsim.dicom.load import load_series
from surgsim.errors import DicomSeriesError

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_UID = "1.2.826.0.1.3680043.8.498.7777000111"
SERIES_UID = "1.2.826.0.1.3680043.8.498.7777000222"
FOR_UID = "1.2.826.0.1.3680043.8.498.7777000333"
SOP_ROOT = "1.2.826.0.1.3680043.8.498.7777000444."

#: Keyword -> identifying value written into every slice.
PHI = {
    "PatientName": "Quackenbush^Zebediah",
    "PatientID": "PID8675309",
    "PatientBirthDate": "19230405",
    "PatientAge": "099Y",
    "PatientAddress": "42 Wallaby Way Sydney",
    "PatientTelephoneNumbers": "555-0199-7731",
    "OtherPatientIDs": "OPID-77123",
    "PatientWeight": "83.25",
    "PatientSize": "1.8537",
    "EthnicGroup": "ETHNOXYZ",
    "Occupation": "Lighthousekeep",
    "AdditionalPatientHistory": "history of plugh",
    "PatientComments": "likes xyzzy",
    "AccessionNumber": "ACC99887766",
    "StudyDate": "19870213",
    "StudyTime": "134559.987654",
    "SeriesDate": "19870214",
    "AcquisitionDate": "19870215",
    "ContentDate": "19870216",
    "AcquisitionDateTime": "19870217101112.131415",
    "ReferringPhysicianName": "Feelgood^Nicholas",
    "PerformingPhysicianName": "Zhivago^Yuri",
    "OperatorsName": "Ratched^Mildred",
    "InstitutionName": "St Elsewhere Memorial",
    "InstitutionAddress": "1 Hospital Plaza Springfield",
    "InstitutionalDepartmentName": "Dept of Frobnication",
    "StationName": "CTROOM-XYZZY",
    "DeviceSerialNumber": "SN-31415926",
    "StudyID": "STUDYID-5551",
    "StudyDescription": "CT HEAD FOR ZEBEDIAH",
    "SeriesDescription": "SERIES OF QUACKENBUSH",
    "ProtocolName": "PROTO-QUACK",
    "ImageComments": "patient quackenbush says hi",
    "RequestingPhysician": "Strangelove^Merkwurdig",
}
PRIVATE_VALUES = ("PRIVATE-SECRET-GRUE", "ACMECORP-QUACK")
NESTED_VALUES = ("REQ-FOR-QUACKENBUSH", "Nested^Namey", "19990101")


def phi_strings(n_slices: int) -> list[str]:
    uids = [STUDY_UID, SERIES_UID, FOR_UID] + [f"{SOP_ROOT}{s}" for s in range(n_slices)]
    words = [v for k, v in PHI.items() if len(v) >= 5] + list(PRIVATE_VALUES) + list(NESTED_VALUES)
    # also the distinctive parts of names and the UID stem
    extra = ["Quackenbush", "Zebediah", "Feelgood", "Zhivago", "Ratched", "Elsewhere", "7777000"]
    return uids + words + extra


def write_phi_series(folder: Path, n: int = 4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n):
        sop = f"{SOP_ROOT}{s}"
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.SourceApplicationEntityTitle = "QUACKAE"
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CT_IMAGE
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = STUDY_UID
        ds.SeriesInstanceUID = SERIES_UID
        ds.FrameOfReferenceUID = FOR_UID
        ds.Modality = "CT"
        ds.Manufacturer = "GenericVendor"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientSex = "O"
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        # private block
        block = ds.private_block(0x0019, PRIVATE_VALUES[1], create=True)
        block.add_new(0x10, "LO", PRIVATE_VALUES[0])
        # nested identifying data in a sequence, and a reference to another instance
        req = Dataset()
        req.RequestedProcedureDescription = NESTED_VALUES[0]
        req.ScheduledPerformingPhysicianName = NESTED_VALUES[1]
        ds.RequestAttributesSequence = Sequence([req])
        src = Dataset()
        src.ReferencedSOPClassUID = CT_IMAGE
        src.ReferencedSOPInstanceUID = f"{SOP_ROOT}{(s + 1) % n}"
        src.add_new(0x00081160, "IS", "1")
        nested_date = Dataset()
        nested_date.ContentDate = NESTED_VALUES[2]
        nested_date.PersonName = "Nested^Namey"
        src.ContentSequence = Sequence([nested_date])
        ds.SourceImageSequence = Sequence([src])
        ds.ImagePositionPatient = ["-4", "-4", f"{3.0 * s:g}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["0.5", "0.5"]
        ds.SliceThickness = "3"
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleSlope = "1"
        ds.RescaleIntercept = "-1024"
        ds.BurnedInAnnotation = "NO"
        rng = np.random.default_rng(s)
        ds.PixelData = rng.integers(0, 2000, (16, 16)).astype("<u2").tobytes()
        ds.preamble = b"QUACKENBUSH PREAMBLE".ljust(128, b"\0")
        path = folder / f"Quackenbush_Zebediah_{s:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _found(needles: list[str], haystack: bytes) -> list[str]:
    low = haystack.lower()
    return [s for s in needles if s.encode("latin-1").lower() in low]


def test_written_series_holds_no_phi_and_loads_identically(tmp_path):
    src_dir = tmp_path / "in"
    write_phi_series(src_dir, n=4)
    # the originals do hold every PHI string (so the check below can fail)
    original = b"".join(p.read_bytes() for p in sorted(src_dir.iterdir()))
    needles = phi_strings(4)
    assert _found(needles, original) == needles

    info = discover(src_dir).series[0]
    out_dir = tmp_path / "cache"
    written = write_deidentified_series(info, out_dir)
    assert [p.name for p in written] == [f"{i:05d}.dcm" for i in range(4)]
    for p in written:
        assert _found(needles, p.read_bytes()) == [], p
        assert "quackenbush" not in str(p).lower()

    vol_in = load_series(info)
    vol_out = load_series(out_dir)
    np.testing.assert_array_equal(vol_in.array, vol_out.array)
    np.testing.assert_allclose(vol_in.world_from_voxel, vol_out.world_from_voxel)
    for vol in (vol_in, vol_out):
        text = " ".join([vol.series_uid, vol.description, vol.modality, *vol.notes, repr(vol.notes)])
        assert _found(needles, text.encode("latin-1")) == [], text
        assert vol.series_uid != SERIES_UID
    assert vol_out.series_uid != vol_in.series_uid  # new UIDs -> new key


def test_deidentified_dataset_content(tmp_path):
    paths = write_phi_series(tmp_path / "in", n=3)
    uid_map = UidMap()
    originals = [pydicom.dcmread(p) for p in paths]
    cleaned = [deidentify(ds, uid_map) for ds in originals]
    for orig, ds in zip(originals, cleaned, strict=True):
        # input untouched
        assert orig.PatientName == PHI["PatientName"]
        assert ds.PatientName == "ANONYMOUS" and ds.PatientID == "ANONYMOUS"
        for keyword in ("PatientBirthDate", "AccessionNumber", "StudyDate", "StudyTime",
                        "ReferringPhysicianName", "StudyID", "PatientSex"):
            assert keyword in ds and ds[keyword].value in ("", None), keyword
        for keyword in ("PatientAddress", "PatientAge", "InstitutionName", "StationName",
                        "OperatorsName", "StudyDescription", "SeriesDescription", "ImageComments",
                        "DeviceSerialNumber", "RequestAttributesSequence", "OtherPatientIDs"):
            assert keyword not in ds, keyword
        assert not any(elem.tag.is_private for elem in ds.iterall())
        assert ds.PatientIdentityRemoved == "YES"
        assert "PS3.15" in ds.DeidentificationMethod and len(ds.DeidentificationMethod) <= 64
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert "SourceApplicationEntityTitle" not in ds.file_meta
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        # well-known UIDs kept, instance UIDs replaced
        assert ds.SOPClassUID == CT_IMAGE
        assert ds.SourceImageSequence[0].ReferencedSOPClassUID == CT_IMAGE
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID"):
            assert ds[keyword].value != orig[keyword].value
            assert re.fullmatch(r"2\.25\.[1-9][0-9]*", ds[keyword].value) and len(ds[keyword].value) <= 64
        # nested dates emptied and names removed
        nested = ds.SourceImageSequence[0].ContentSequence[0]
        assert nested.ContentDate == "" and "PersonName" not in nested
        # geometry and pixels kept
        assert ds.ImagePositionPatient == orig.ImagePositionPatient
        assert ds.PixelData == orig.PixelData
    # consistent replacement within one import
    assert len({ds.StudyInstanceUID for ds in cleaned}) == 1
    assert len({ds.SeriesInstanceUID for ds in cleaned}) == 1
    assert len({ds.SOPInstanceUID for ds in cleaned}) == 3
    # references follow the referenced instance's new UID
    assert cleaned[0].SourceImageSequence[0].ReferencedSOPInstanceUID == cleaned[1].SOPInstanceUID
    # another import gets other UIDs
    again = deidentify(originals[0], UidMap())
    assert again.StudyInstanceUID != cleaned[0].StudyInstanceUID


def test_uid_map_is_deterministic_per_salt():
    a, b, c = UidMap(b"salt-1"), UidMap(b"salt-1"), UidMap(b"salt-2")
    uid = "1.2.826.0.1.3680043.8.498.55"
    assert a(uid) == a.map(uid) == b(uid)
    assert a(uid) != c(uid)
    assert a(uid) != a(uid + "6")
    assert a("") == ""
    assert len(a) == 2
    assert "3680043" not in a(uid)


def test_every_removed_keyword_is_a_dicom_keyword():
    from pydicom.datadict import tag_for_keyword

    assert [k for k in REMOVED_KEYWORDS if tag_for_keyword(k) is None] == []


def test_burned_in_annotation_is_refused(tmp_path):
    paths = write_phi_series(tmp_path / "in", n=2)
    ds = pydicom.dcmread(paths[0])
    ds.BurnedInAnnotation = "YES"
    ds.save_as(paths[0])
    info = discover(tmp_path / "in").series[0]
    with pytest.raises(DicomSeriesError, match=r"\(0028,0301\)"):
        write_deidentified_series(info, tmp_path / "out")


@pytest.mark.realdata
def test_real_series_deidentified_copy(shared_data, tmp_path):
    """The Philips series (private tags, empty-UID J2K series too) survives de-identification."""
    for name in ("head-phantom-philips-mixed-study", "abdomen-ct-j2k-empty-series-uid"):
        info = discover(shared_data / "dicom" / name).series[0]
        orig = pydicom.dcmread(info.files[0], stop_before_pixels=True)
        secrets = [str(orig[k].value) for k in ("StudyInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")]
        secrets += [str(orig.get(k, "")) for k in ("InstitutionName", "StationName", "PatientID")]
        secrets = [s for s in secrets if len(s) >= 4]
        out = tmp_path / name
        written = write_deidentified_series(info, out)
        assert len(written) == info.n_files
        for p in written:
            ds = pydicom.dcmread(p)
            assert not any(e.tag.is_private for e in ds.iterall())
            assert ds.PatientIdentityRemoved == "YES"
            assert _found(secrets, p.read_bytes()) == []
        vol_a, vol_b = load_series(info), load_series(out)
        np.testing.assert_array_equal(vol_a.array, vol_b.array)
        np.testing.assert_allclose(vol_a.world_from_voxel, vol_b.world_from_voxel)
