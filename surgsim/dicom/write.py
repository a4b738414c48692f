"""Write a volume as a CT DICOM series (one file per slice), deterministically.

The one DICOM writer of surgsim (pydicom stays inside :mod:`surgsim.dicom`):
the digital phantoms (:mod:`surgsim.cases.phantom`,
:mod:`surgsim.cases.airway_phantom`) go through it, so that the default case
takes the same DICOM path as patient data. Files are Explicit VR Little
Endian, CT Image Storage, pixels stored as unsigned integers with a
RescaleIntercept (HU = stored + intercept). UIDs are derived from a caller's
seed (:func:`deterministic_uid`), and nothing depends on the clock, so the
same arguments always give byte-identical files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from surgsim.dicom.volume import Volume
from surgsim.errors import DicomSeriesError

__all__ = ["PrivateBlock", "decimal_string", "deterministic_uid", "write_ct_series"]

#: UID root used for surgsim's generated series (pydicom's root for generated UIDs).
DEFAULT_UID_ROOT = "1.2.826.0.1.3680043.8.498."


def deterministic_uid(uid_root: str, seed: str, *parts: str) -> str:
    """A DICOM UID that depends only on its arguments.

    Parameters
    ----------
    uid_root : str
        Organisation root ending with ``"."``, e.g. :data:`DEFAULT_UID_ROOT`.
    seed : str
        Names the generator (e.g. ``"surgsim-phantom"``); different seeds give
        unrelated UIDs for the same parts.
    *parts : str
        What the UID identifies (``"study"``, ``"instance-3"``...).

    Returns
    -------
    str
        At most 64 characters (a hash of seed and parts under ``uid_root``).
    """
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=uid_root, entropy_srcs=[seed, *parts]))


def _is_uid(text: str) -> bool:
    """Whether ``text`` is a valid DICOM UID (digits and dots, no leading zeros, <= 64 characters)."""
    return bool(text) and len(text) <= 64 and re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+", text) is not None


def decimal_string(value: float) -> str:
    """DICOM DS text (at most 16 characters) of a millimetre value, 6 decimals, no trailing zeros."""
    s = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


@dataclass(frozen=True)
class PrivateBlock:
    """A private block written into every file.

    Attributes
    ----------
    group : int
        Odd group number, e.g. ``0x0009``.
    creator : str
        Private creator string (reserves the block).
    elements : tuple of (int, str, value)
        ``(element offset 0x00-0xFF, VR, value)``.
    """

    group: int
    creator: str
    elements: tuple[tuple[int, str, Any], ...] = field(default_factory=tuple)


def _check_volume(volume: Volume, intercept: int, bits_stored: int) -> np.ndarray:
    """Stored values ``(nk, nj, ni)`` ``<u2`` of the volume, or a DicomSeriesError."""
    arr = np.asarray(volume.array)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise DicomSeriesError(f"write_ct_series: volume array must be 3D (nk, nj, ni), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DicomSeriesError(
            f"write_ct_series: volume array must hold integer HU, got {arr.dtype}; round it first"
        )
    if not 1 <= bits_stored <= 16:
        raise DicomSeriesError(f"write_ct_series: bits_stored={bits_stored} must be within 1..16")
    lo, hi = intercept, intercept + (1 << bits_stored) - 1
    vmin, vmax = int(arr.min()), int(arr.max())
    if vmin < lo or vmax > hi:
        raise DicomSeriesError(
            f"write_ct_series: values {vmin}..{vmax} do not fit BitsStored (0028,0101) = {bits_stored} "
            f"with RescaleIntercept (0028,1052) = {intercept} (range {lo}..{hi}); clip the volume "
            "or pass a wider bits_stored / lower intercept"
        )
    return (arr.astype(np.int32) - intercept).astype("<u2")


def _axes_mm(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, float]:
    """Unit row, column, slice directions and the three steps (mm) of ``world_from_voxel``."""
    cols = w[:3, :3] * 1000.0
    steps = np.linalg.norm(cols, axis=0)
    if np.any(steps <= 0) or not np.all(np.isfinite(w)):
        raise DicomSeriesError("write_ct_series: world_from_voxel must be a finite invertible affine")
    unit = cols / steps
    if abs(float(unit[:, 0] @ unit[:, 1])) > 1e-6:
        raise DicomSeriesError("write_ct_series: the i and j axes of world_from_voxel are not orthogonal")
    if abs(float(np.cross(unit[:, 0], unit[:, 1]) @ unit[:, 2]) - 1.0) > 1e-6:
        raise DicomSeriesError(
            "write_ct_series: the k axis of world_from_voxel is not the slice normal (i x j); "
            "a sheared or left-handed grid cannot be written as a plain CT series"
        )
    return unit[:, 0], unit[:, 1], unit[:, 2], float(steps[0]), float(steps[1]), float(steps[2])


def write_ct_series(
    volume: Volume,
    folder: Path | str,
    *,
    series_description: str,
    patient_name: str,
    patient_id: str,
    uid_seed: str,
    uid_root: str = DEFAULT_UID_ROOT,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    implementation_uid: str | None = None,
    implementation_version_name: str | None = None,
    study_description: str = "",
    patient_birth_date: str = "19700101",
    patient_sex: str = "O",
    body_part: str = "",
    date: str = "20240101",
    time: str = "120000",
    intercept: int = -1024,
    bits_stored: int = 12,
    window: tuple[str, str] = ("40", "400"),
    extra: Mapping[str, Any] | None = None,
    private: Sequence[PrivateBlock] = (),
    progress: Callable[[float, str], None] | None = None,
) -> list[Path]:
    """Write ``volume`` as a CT series, one file per slice ``k`` (``CT000001.dcm`` is ``k = 0``).

    Each file is written to ``NAME.part`` and renamed into place, so a crash
    never leaves a half-written slice under its final name.

    Parameters
    ----------
    volume : Volume
        ``array`` (nk, nj, ni) integer HU; ``world_from_voxel`` (4, 4), metres,
        with orthogonal i, j and k along i x j (any orientation, no shear).
    folder : Path
        Created if needed; existing files of the same names are overwritten.
    series_description, patient_name, patient_id : str
        SeriesDescription, PatientName, PatientID.
    uid_seed : str
        Seed of every UID not given (:func:`deterministic_uid` with ``uid_root``):
        study ``(seed, "study")``, frame of reference ``(seed, "frame")``,
        implementation ``("implementation",)``, SOP instance ``(series UID,
        "instance-<k+1>")``.
    uid_root : str
        UID root, ending with ``"."``.
    study_uid, series_uid, frame_of_reference_uid, implementation_uid : str, optional
        Explicit UIDs (``series_uid`` defaults to ``volume.series_uid`` when it
        is a valid UID, else ``(seed, "series")``).
    implementation_version_name : str, optional
        (0002,0013), omitted when ``None``.
    study_description, patient_birth_date, patient_sex, body_part : str
        StudyDescription, PatientBirthDate, PatientSex, BodyPartExamined (omitted when empty).
    date, time : str
        DICOM DA and TM of the study, series and content.
    intercept : int
        RescaleIntercept (0028,1052): stored value = HU - intercept (slope 1).
    bits_stored : int
        BitsStored (0028,0101) (BitsAllocated 16, unsigned); every HU must fit.
    window : (str, str)
        WindowCenter, WindowWidth (HU, DS text).
    extra : mapping of keyword to value, optional
        More attributes by pydicom keyword (e.g. ``{"KVP": "120"}``); they may
        not replace the geometry, pixel or UID attributes set here.
    private : sequence of PrivateBlock
        Private blocks added to every file.
    progress : callable(fraction, message), optional

    Returns
    -------
    list of Path
        The files written, in slice order.

    Raises
    ------
    DicomSeriesError
        Values that do not fit the stored range, a sheared grid, an attribute
        of ``extra`` that is unknown or reserved, or a folder that cannot be written.
    """
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    stored = _check_volume(volume, intercept, bits_stored)
    w = np.asarray(volume.world_from_voxel, dtype=float)
    if w.shape != (4, 4):
        raise DicomSeriesError(f"write_ct_series: world_from_voxel must be (4, 4), got {w.shape}")
    row, col, normal, sx, sy, sz = _axes_mm(w)
    origin = w[:3, 3] * 1000.0
    step = w[:3, 2] * 1000.0
    extra = dict(extra or {})
    for key in extra:
        if tag_for_keyword(key) is None:
            raise DicomSeriesError(f"write_ct_series: extra attribute {key!r} is not a DICOM keyword")
        if key in _RESERVED:
            raise DicomSeriesError(
                f"write_ct_series: extra attribute {key!r} is set by the writer (geometry, pixels "
                "or UIDs); pass it through the dedicated argument"
            )

    def uid(*parts: str) -> str:
        return deterministic_uid(uid_root, uid_seed, *parts)

    if series_uid is None:
        given = str(volume.series_uid or "")
        series_uid = given if _is_uid(given) else uid("series")
    study_uid = study_uid or uid("study")
    frame_uid = frame_of_reference_uid or uid("frame")
    impl_uid = implementation_uid or deterministic_uid(uid_root, uid_seed, "implementation")
    iop = [decimal_string(v) for v in (*row, *col)]
    nk, nj, ni = stored.shape

    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DicomSeriesError(
            f"cannot create the DICOM output folder {out}: {exc.strerror or exc}; choose a writable folder"
        ) from None

    paths: list[Path] = []
    for k in range(nk):
        sop_uid = deterministic_uid(uid_root, uid_seed, series_uid, f"instance-{k + 1}")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = impl_uid
        if implementation_version_name is not None:
            meta.ImplementationVersionName = implementation_version_name

        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
        ds.Modality = "CT"
        ds.Manufacturer = "surgsim"
        if study_description:
            ds.StudyDescription = study_description
        ds.SeriesDescription = series_description
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = patient_birth_date
        ds.PatientSex = patient_sex
        if body_part:
            ds.BodyPartExamined = body_part
        ds.SliceThickness = decimal_string(sz)
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        pos = origin + k * step
        ds.ImagePositionPatient = [decimal_string(v) for v in pos]
        ds.ImageOrientationPatient = iop
        ds.FrameOfReferenceUID = frame_uid
        ds.SliceLocation = decimal_string(float(pos @ normal))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = nj
        ds.Columns = ni
        ds.PixelSpacing = [decimal_string(sy), decimal_string(sx)]  # row spacing, column spacing
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        ds.WindowCenter, ds.WindowWidth = window
        ds.RescaleIntercept = str(int(intercept))
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        for key, value in extra.items():
            setattr(ds, key, value)
        for blk in private:
            block = ds.private_block(blk.group, blk.creator, create=True)
            for offset, vr, value in blk.elements:
                block.add_new(offset, vr, value)
        ds.add_new(0x7FE00010, "OW", stored[k].tobytes())

        path = out / f"CT{k + 1:06d}.dcm"
        tmp = path.with_name(path.name + ".part")
        try:
            ds.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, path)
        except OSError as exc:
            raise DicomSeriesError(
                f"{path}: cannot write the slice ({exc.strerror or exc}); check the folder is writable "
                "and the disk is not full"
            ) from None
        paths.append(path)
        if progress is not None and (k % 16 == 0 or k == nk - 1):
            progress((k + 1) / nk, f"writing slice {k + 1}/{nk}")
    return paths


#: Attributes :func:`write_ct_series` sets itself (``extra`` may not override them).
_RESERVED = frozenset({
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SliceLocation",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "RescaleIntercept", "RescaleSlope", "PixelData",
    "InstanceNumber", "Modality",
})
