"""Find the image series in a folder tree and say why every other file was skipped.

Only headers are read (``stop_before_pixels``), so a walk over hundreds of files
takes well under a second per hundred files. Files are grouped into series by
SeriesInstanceUID (or, when that is empty, by study, frame of reference and
slice geometry), non-volume objects are listed in :attr:`Discovery.skipped`
with a reason, and each series' output grid is planned here so that
:attr:`SeriesInfo.shape` and :attr:`SeriesInfo.spacing` are exactly what
:func:`surgsim.dicom.load.load_series` returns.

Nothing read here that could identify a patient leaves this module: series
keys are one-way hashes of UIDs and descriptions are built from geometry.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from surgsim.errors import DicomSeriesError

__all__ = [
    "Discovery",
    "SeriesInfo",
    "SkippedFile",
    "discover",
    "format_listing",
]

Progress = Callable[[float, str], None]

# --- SOP classes and modalities that are never a scalar volume -----------------
_DICOMDIR_SOP = "1.2.840.10008.1.3.10"
_SECONDARY_CAPTURE_SOPS = {
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "multi-frame secondary capture (single bit)",
    "1.2.840.10008.5.1.4.1.1.7.2": "multi-frame secondary capture (grayscale byte)",
    "1.2.840.10008.5.1.4.1.1.7.3": "multi-frame secondary capture (grayscale word)",
    "1.2.840.10008.5.1.4.1.1.7.4": "multi-frame secondary capture (true colour)",
}
# (prefix, reason): prefix matches the UID itself or UID + "."
_NON_IMAGE_SOP_PREFIXES = (
    ("1.2.840.10008.5.1.4.1.1.88", "structured report (SR)"),
    ("1.2.840.10008.5.1.4.1.1.481", "radiotherapy object (RT)"),
    ("1.2.840.10008.5.1.4.1.1.11", "presentation state"),
    ("1.2.840.10008.5.1.4.1.1.104", "encapsulated document"),
    ("1.2.840.10008.5.1.4.1.1.9", "waveform"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data, registration or segmentation object"),
    ("1.2.840.10008.5.1.4.1.1.67", "real-world value mapping"),
    ("1.2.840.10008.5.1.4.1.1.4.2", "MR spectroscopy"),
    ("1.2.840.10008.5.1.4.1.1.68", "surface object"),
    ("1.2.840.10008.5.1.4.1.1.91", "content assessment"),
    ("1.2.840.10008.5.1.1.", "print or service object"),
)
_NON_IMAGE_MODALITIES = {
    "SR": "structured report (SR)",
    "RTSTRUCT": "radiotherapy object (RT)",
    "RTPLAN": "radiotherapy object (RT)",
    "RTDOSE": "radiotherapy object (RT)",
    "RTRECORD": "radiotherapy object (RT)",
    "RTIMAGE": "radiotherapy object (RT)",
    "PR": "presentation state",
    "KO": "key object selection",
    "SEG": "raw data, registration or segmentation object",
    "REG": "raw data, registration or segmentation object",
    "DOC": "encapsulated document",
}

_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
#: Bytes of a file read at once to parse its header in memory (longer headers are read from the file).
_HEADER_PREFIX = 1 << 14

# Tolerances (millimetres unless stated)
_ORTHO_TOL = 1e-3  # |row . col| and | |v| - 1 | for ImageOrientationPatient
_SAME_IOP_TOL = 1e-3  # two slices share an orientation
_SAME_SPACING_TOL = 1e-3  # relative, pixel spacing
_DUPLICATE_MM = 0.01  # two slices closer than this along the normal are duplicates
_SHIFT_FRACTION = 0.05  # in-plane offset (fraction of a pixel) treated as tilt
_EVEN_REL = 0.02  # slice steps within 2 % (or _EVEN_ABS mm) of each other are even
_EVEN_ABS = 0.02
_MAX_TILT_DEG = 45.0
_MAX_RESAMPLE_FACTOR = 8  # at most this many output slices per input slice


@dataclass(frozen=True)
class SeriesInfo:
    """One loadable image series found by :func:`discover`.

    Attributes
    ----------
    key : str
        De-identified, stable series key (12 hex digits of a one-way hash of the
        SeriesInstanceUID, or of study + geometry when the UID is empty).
    modality : str
        DICOM Modality (``"CT"``, ``"MR"``...).
    description : str
        Geometry summary without PHI, e.g. ``"CT 512 x 512 x 64, 0.84 x 0.84 x 5.0 mm"``.
    n_files : int
        Number of files in the series.
    shape : (3,) int
        ``(nk, nj, ni)`` of the volume :func:`load_series` returns.
    spacing : (3,) float, metres
        Voxel size along ``i``, ``j``, ``k`` of that volume.
    files : tuple of Path
        The files, sorted along the slice normal.
    warnings : tuple of str
        What the loader will have to correct (uneven spacing, gantry tilt...).
    """

    key: str
    modality: str
    description: str
    n_files: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    #: The slice headers read by :func:`discover` (sorted; each file's size, time and pixel
    #: data offset; UIDs one-way hashed), so that loading does not parse the files again.
    _headers: tuple[_SliceHeader, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class SkippedFile:
    """A file :func:`discover` did not use, with the reason."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Discovery:
    """Result of :func:`discover`: the series found and the files skipped."""

    series: tuple[SeriesInfo, ...]
    skipped: tuple[SkippedFile, ...]
    root: Path | None = None


class _Skip(Exception):
    """Internal: this file is not part of a volume; ``args[0]`` is the reason."""


# ---------------------------------------------------------------------------
# Header reading
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _SliceHeader:
    """What the loader needs from one slice (one file, or one frame of a multi-frame file).

    Holds no PHI: UIDs are only used for grouping and hashing.
    """

    path: Path
    frame: int | None  # None for a single-frame file, else the 0-based frame index
    n_frames: int
    series_uid: str
    study_uid: str
    frame_of_reference: str
    sop_uid: str
    modality: str
    rows: int
    cols: int
    iop: tuple[float, ...]  # (6,) row cosines then column cosines
    ipp: tuple[float, float, float]  # mm
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    slope: float
    intercept: float
    padding: tuple[int, int] | None  # (low, high) raw stored values, inclusive
    bits_stored: int
    signed: bool
    gantry_tilt: float | None  # degrees, from (0018,1120)
    transfer_syntax: str = ""
    # where the loader finds the pixels without parsing the file again
    pixel_offset: int | None = None  # byte offset of native Pixel Data values (None: encapsulated/none)
    pixel_length: int | None = None  # their byte length
    file_size: int = -1  # bytes, when the header was read
    file_mtime_ns: int = -1  # modification time when the header was read
    file_ctime_ns: int = -1  # status change time (cannot be set back by copying tools)


class _ClampedReader:
    """File wrapper whose ``read(n)`` never asks for more than what is left.

    A corrupted length field would otherwise make a buffered read allocate
    gigabytes before finding the end of the file.
    """

    def __init__(self, fh: BinaryIO, size: int, name: str) -> None:
        self._fh = fh
        self._size = size
        self.name = name

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._fh.tell())
        if n is None or n < 0 or n > left:
            n = left
        return self._fh.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:  # the owner closes the real file
        pass

    @property
    def closed(self) -> bool:
        return self._fh.closed


def _is_dicom_start(head: bytes) -> bool:
    """True for a Part 10 file (``DICM`` at 128) or a bare dataset starting at group 0002/0008."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group_le = int.from_bytes(head[0:2], "little")
    group_be = int.from_bytes(head[0:2], "big")
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def _read_dataset_header(path: Path) -> tuple[Dataset, int | None, int, int | None, os.stat_result]:
    """Read a file's header and measure its pixel data without decoding it.

    Returns
    -------
    ds : Dataset
        Every element before the pixel data.
    pixel_len : int or None
        Bytes of pixel data present, ``None`` when the file has no pixel data,
        ``-1`` for encapsulated (compressed) pixel data that is complete.
    size : int
        File size in bytes.
    pixel_start : int or None
        Byte offset of the native pixel data values (``None`` when there are none
        or they are encapsulated).
    st : os.stat_result
        The file's status when it was read (size and times).

    Raises
    ------
    _Skip
        With the reason: not DICOM, truncated, unreadable.
    """
    st = path.stat()
    size = st.st_size
    if size == 0:
        raise _Skip("empty file (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(min(size, _HEADER_PREFIX))
        if not _is_dicom_start(head[:132]):
            raise _Skip("not a DICOM file")
        parsed = None
        if len(head) == size:  # the whole file is in memory: parse it there
            parsed = _parse_header(io.BytesIO(head))
        else:
            # Parse the header from the first bytes in memory (far fewer small file reads);
            # if it does not end well inside them, parse again from the file.
            try:
                ds, pos = _parse_header(io.BytesIO(head))
                if pos + 16 <= len(head):
                    parsed = ds, pos
            except _Skip:
                parsed = None
        if parsed is None:
            fh.seek(0)
            parsed = _parse_header(_ClampedReader(fh, size, str(path)))
        ds, pos = parsed
        little = _is_little_endian(ds)
        implicit = _is_implicit(ds)
        pixel_len, pixel_start = _measure_pixel_data(fh, pos, size, little, implicit)
    return ds, pixel_len, size, pixel_start, st


def _parse_header(stream: Any) -> tuple[Dataset, int]:
    """``dcmread`` up to the pixel data; returns the dataset and the stream position after it.

    Raises
    ------
    _Skip
        Truncated or unreadable header.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(stream, stop_before_pixels=True, force=True)
    except (EOFError, struct.error) as exc:
        raise _Skip(f"truncated: {exc}") from None
    except Exception as exc:  # pydicom raises many types on corrupt input
        msg = str(exc) or type(exc).__name__
        if "end of file" in msg.lower() or "eof" in msg.lower():
            raise _Skip(f"truncated: {msg}") from None
        raise _Skip(f"unreadable DICOM header: {msg}") from None
    return ds, stream.tell()


def _is_little_endian(ds: Dataset) -> bool:
    try:
        enc = ds.original_encoding
        if enc[1] is not None:
            return bool(enc[1])
    except Exception:
        pass
    return True


def _is_implicit(ds: Dataset) -> bool:
    try:
        enc = ds.original_encoding
        if enc[0] is not None:
            return bool(enc[0])
    except Exception:
        pass
    return False


def _measure_pixel_data(
    fh: BinaryIO, pos: int, size: int, little: bool, implicit: bool
) -> tuple[int | None, int | None]:
    """Look at the element at ``pos``: if it is pixel data, check it is all there.

    Returns
    -------
    length : int or None
        Byte length of native pixel data, ``-1`` for complete encapsulated
        data, ``None`` when there is no pixel data element.
    start : int or None
        Byte offset of the native values (``None`` unless native).
    """
    fh.seek(pos)
    hdr = fh.read(8)
    if len(hdr) < 8:
        return None, None
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", hdr[:4])
    tag = (group << 16) | elem
    if tag not in _PIXEL_TAGS:
        return None, None
    vr = hdr[4:6]
    if not implicit and vr.isalpha():
        if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            ext = fh.read(4)
            if len(ext) < 4:
                raise _Skip("truncated: file ends inside the Pixel Data (7FE0,0010) header")
            (length,) = struct.unpack(e + "I", ext)
            start = pos + 12
        else:
            (length,) = struct.unpack(e + "H", hdr[6:8])
            start = pos + 8
    else:
        (length,) = struct.unpack(e + "I", hdr[4:8])
        start = pos + 8
    if length == 0xFFFFFFFF:
        _check_fragments(fh, start, size, e)
        return -1, None
    have = size - start
    if have < length:
        raise _Skip(
            f"truncated: Pixel Data (7FE0,0010) needs {length} bytes but the file has {max(have, 0)}"
        )
    return length, (start if tag == 0x7FE00010 else None)


def _check_fragments(fh: BinaryIO, start: int, size: int, e: str) -> None:
    """Walk the items of encapsulated pixel data up to the sequence delimiter."""
    pos = start
    n_items = 0
    while True:
        fh.seek(pos)
        item = fh.read(8)
        if len(item) < 8:
            raise _Skip(
                "truncated: compressed Pixel Data (7FE0,0010) ends before its "
                f"sequence delimiter ({n_items} fragments read)"
            )
        group, elem, length = struct.unpack(e + "HHI", item)
        if (group, elem) == (0xFFFE, 0xE0DD):
            if n_items < 2:  # offset table + at least one fragment
                raise _Skip("truncated: compressed Pixel Data (7FE0,0010) has no image fragment")
            return
        if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            raise _Skip(
                f"truncated: compressed Pixel Data (7FE0,0010) has a broken item at byte {pos}"
            )
        pos += 8 + length
        if pos > size:
            raise _Skip(
                f"truncated: compressed Pixel Data (7FE0,0010) fragment {n_items} runs past "
                f"the end of the file ({size} bytes)"
            )
        n_items += 1


def _str(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:
        return ""
    if value is None:
        return ""
    try:
        return str(value).strip()
    except Exception:
        return ""


def _floats(value: Any, n: int, what: str) -> tuple[float, ...]:
    """Convert a multi-valued DS element to ``n`` finite floats or raise :class:`_Skip`."""
    if value is None or value == "":
        raise _Skip(f"missing geometry: no {what}")
    try:
        seq = list(value) if not isinstance(value, str | bytes) else [value]
        out = tuple(float(v) for v in seq)
    except Exception:
        raise _Skip(f"invalid geometry: {what} is not numeric ({value!r:.60})") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise _Skip(f"invalid geometry: {what} must hold {n} finite numbers, has {out!r:.80}")
    return out


def _float(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        v = float(value)
    except Exception:
        return default
    return v if math.isfinite(v) else default


def _first_item(seq_owner: Dataset | None, keyword: str) -> Dataset | None:
    if seq_owner is None:
        return None
    try:
        seq = seq_owner.get(keyword)
        if seq is not None and len(seq) > 0:
            return seq[0]
    except Exception:
        return None
    return None


def _functional(per_frame: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    """Return the first item of functional group ``keyword``, per-frame first, then shared."""
    return _first_item(per_frame, keyword) or _first_item(shared, keyword)


def _non_volume_reason(ds: Dataset, pixel_len: int | None) -> str | None:
    """Reason why this object is not part of a volume, or None."""
    meta = getattr(ds, "file_meta", None)
    media_sop = ""
    if meta is not None:
        try:
            media_sop = str(meta.get("MediaStorageSOPClassUID", "") or "").strip()
        except Exception:
            media_sop = ""
    if media_sop == _DICOMDIR_SOP or "DirectoryRecordSequence" in ds:
        return "DICOMDIR index"
    sop = _str(ds, "SOPClassUID") or media_sop
    if sop in _SECONDARY_CAPTURE_SOPS:
        return f"{_SECONDARY_CAPTURE_SOPS[sop]} (SOP class {sop})"
    for prefix, reason in _NON_IMAGE_SOP_PREFIXES:
        if sop == prefix.rstrip(".") or sop.startswith(prefix.rstrip(".") + "."):
            return f"{reason} (SOP class {sop})"
    modality = _str(ds, "Modality").upper()
    if modality in _NON_IMAGE_MODALITIES:
        return f"{_NON_IMAGE_MODALITIES[modality]} (Modality {modality})"
    try:
        image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    except Exception:
        image_type = []
    if "LOCALIZER" in image_type:
        return "localizer (ImageType LOCALIZER)"
    if pixel_len is None:
        return f"no pixel data (7FE0,0010) (SOP class {sop or 'unknown'})"
    try:
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
    except Exception:
        spp = 1
    if spp != 1:
        return f"colour image (SamplesPerPixel {spp}), not a scalar volume"
    return None


def _read_slices(path: Path) -> list[_SliceHeader]:
    """Read one file's header and return one :class:`_SliceHeader` per frame.

    Raises
    ------
    _Skip
        With the reason the file is not part of a volume.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on every odd value of a corrupt file
        return _read_slices_quiet(path)


def _read_slices_quiet(path: Path) -> list[_SliceHeader]:
    ds, pixel_len, size, pixel_start, st = _read_dataset_header(path)
    reason = _non_volume_reason(ds, pixel_len)
    if reason is not None:
        raise _Skip(reason)
    try:
        rows = int(ds.get("Rows", 0) or 0)
        cols = int(ds.get("Columns", 0) or 0)
    except Exception:
        raise _Skip("invalid Rows (0028,0010) / Columns (0028,0011)") from None
    if rows <= 0 or cols <= 0:
        raise _Skip("missing geometry: no Rows (0028,0010) / Columns (0028,0011)")
    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:
        n_frames = 1
    if n_frames < 1:
        n_frames = 1
    bits_alloc = _float(ds.get("BitsAllocated"), 16)
    try:
        bits_stored = int(ds.get("BitsStored", bits_alloc) or bits_alloc)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except Exception:
        raise _Skip("invalid BitsStored (0028,0101) / PixelRepresentation (0028,0103)") from None
    if pixel_len is not None and pixel_len >= 0:
        need = rows * cols * n_frames * int(bits_alloc) // 8
        if bits_alloc >= 8 and pixel_len < need:
            raise _Skip(
                f"truncated: Pixel Data (7FE0,0010) has {pixel_len} bytes, "
                f"Rows x Columns x frames needs {need}"
            )
    padding = None
    if "PixelPaddingValue" in ds:
        try:
            pv = int(ds.PixelPaddingValue)
            lim = int(ds.get("PixelPaddingRangeLimit", pv))
            if signed and bits_alloc == 16:
                pv = pv - 65536 if pv > 32767 else pv
                lim = lim - 65536 if lim > 32767 else lim
            padding = (min(pv, lim), max(pv, lim))
        except Exception:
            padding = None
    meta = getattr(ds, "file_meta", None)
    try:
        tsyntax = str(meta.get("TransferSyntaxUID", "") or "").strip() if meta is not None else ""
    except Exception:
        tsyntax = ""
    common = dict(
        path=path,
        transfer_syntax=tsyntax,
        n_frames=n_frames,
        series_uid=_str(ds, "SeriesInstanceUID"),
        study_uid=_str(ds, "StudyInstanceUID"),
        frame_of_reference=_str(ds, "FrameOfReferenceUID"),
        sop_uid=_str(ds, "SOPInstanceUID"),
        modality=_str(ds, "Modality").upper() or "OT",
        rows=rows,
        cols=cols,
        padding=padding,
        bits_stored=bits_stored,
        signed=signed,
        gantry_tilt=_float(ds.get("GantryDetectorTilt"), 0.0) if "GantryDetectorTilt" in ds else None,
        pixel_offset=pixel_start,
        pixel_length=pixel_len if pixel_start is not None else None,
        file_size=size,
        file_mtime_ns=st.st_mtime_ns,
        file_ctime_ns=st.st_ctime_ns,
    )
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame_seq = None
    try:
        per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    except Exception:
        per_frame_seq = None
    if n_frames > 1 or per_frame_seq is not None:
        if per_frame_seq is None or len(per_frame_seq) < n_frames:
            raise _Skip(
                f"multi-frame image ({n_frames} frames) without per-frame positions "
                "(PerFrameFunctionalGroupsSequence (5200,9230))"
            )
        out = []
        for f in range(n_frames):
            item = per_frame_seq[f]
            pos = _functional(item, shared, "PlanePositionSequence")
            ori = _functional(item, shared, "PlaneOrientationSequence")
            meas = _functional(item, shared, "PixelMeasuresSequence")
            pvt = _functional(item, shared, "PixelValueTransformationSequence")
            ipp = _floats(pos.get("ImagePositionPatient") if pos else None, 3,
                          f"ImagePositionPatient (0020,0032) for frame {f + 1}")
            iop = _floats(ori.get("ImageOrientationPatient") if ori else ds.get("ImageOrientationPatient"),
                          6, f"ImageOrientationPatient (0020,0037) for frame {f + 1}")
            ps = _floats(meas.get("PixelSpacing") if meas else ds.get("PixelSpacing"), 2,
                         f"PixelSpacing (0028,0030) for frame {f + 1}")
            src = pvt if pvt is not None else ds
            out.append(_SliceHeader(
                frame=f, iop=iop, ipp=ipp, pixel_spacing=ps,  # type: ignore[arg-type]
                slope=_float(src.get("RescaleSlope"), 1.0),
                intercept=_float(src.get("RescaleIntercept"), 0.0),
                **common,  # type: ignore[arg-type]
            ))
        for h in out:
            _check_geometry(h)
        return out
    ipp = _floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient (0020,0032)")
    iop = _floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient (0020,0037)")
    ps = _floats(ds.get("PixelSpacing"), 2, "PixelSpacing (0028,0030)")
    h = _SliceHeader(
        frame=None, iop=iop, ipp=ipp, pixel_spacing=ps,  # type: ignore[arg-type]
        slope=_float(ds.get("RescaleSlope"), 1.0),
        intercept=_float(ds.get("RescaleIntercept"), 0.0),
        **common,  # type: ignore[arg-type]
    )
    _check_geometry(h)
    return [h]


def _scrubbed(h: _SliceHeader) -> _SliceHeader:
    """The header with its UIDs replaced by one-way hashes (what a SeriesInfo may carry).

    Equal UIDs stay equal, so the loader can still check that re-read files
    belong to the series; the scanner's UIDs never leave this module.
    """
    def one_way(uid: str) -> str:
        return "" if not uid else "sha256:" + hashlib.sha256(uid.encode("utf-8")).hexdigest()[:24]

    return replace(
        h,
        series_uid=one_way(h.series_uid),
        study_uid=one_way(h.study_uid),
        frame_of_reference=one_way(h.frame_of_reference),
        sop_uid=one_way(h.sop_uid),
    )


def _check_geometry(h: _SliceHeader) -> None:
    row = np.asarray(h.iop[:3])
    col = np.asarray(h.iop[3:])
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if abs(nr - 1) > 0.01 or abs(nc - 1) > 0.01 or abs(float(row @ col)) > 0.01:
        raise _Skip(
            "invalid geometry: ImageOrientationPatient (0020,0037) is not two orthogonal unit "
            f"vectors ({', '.join(f'{v:g}' for v in h.iop)})"
        )
    if not all(v > 0 for v in h.pixel_spacing):
        raise _Skip(f"invalid geometry: PixelSpacing (0028,0030) must be positive, is {h.pixel_spacing}")
    if h.slope == 0:
        raise _Skip("invalid RescaleSlope (0028,1053): 0")


# ---------------------------------------------------------------------------
# Grid planning (shared with the loader)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """The output grid of one series and how each input slice maps onto it."""

    slices: tuple[_SliceHeader, ...]  # sorted along the normal
    d: np.ndarray  # (n,) mm, offset of each slice along the normal from the first
    a: np.ndarray  # (n,) mm, in-plane offset along the row direction (i)
    b: np.ndarray  # (n,) mm, in-plane offset along the column direction (j)
    row: np.ndarray  # (3,) unit vector of increasing i
    col: np.ndarray  # (3,) unit vector of increasing j
    normal: np.ndarray  # (3,) unit vector of increasing k
    di: float  # mm
    dj: float  # mm
    dk: float  # mm
    shape: tuple[int, int, int]  # (nk, nj, ni)
    x0: float  # mm, in-plane origin of the output grid in the slice frame
    y0: float
    origin_mm: np.ndarray  # (3,) LPS mm of voxel (0, 0, 0)
    tilted: bool
    uneven: bool
    warnings: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def world_from_voxel(self) -> np.ndarray:
        """(4, 4) voxel (i, j, k, 1) to LPS metres."""
        m = np.eye(4)
        m[:3, 0] = self.row * self.di / 1000.0
        m[:3, 1] = self.col * self.dj / 1000.0
        m[:3, 2] = self.normal * self.dk / 1000.0
        m[:3, 3] = self.origin_mm / 1000.0
        return m

    @property
    def modality(self) -> str:
        return self.slices[0].modality

    @property
    def resampled(self) -> bool:
        return self.tilted or self.uneven


def _same_geometry(a: _SliceHeader, b: _SliceHeader) -> str | None:
    """None when two slices can share a grid, else the tag that differs."""
    if (a.rows, a.cols) != (b.rows, b.cols):
        return "Rows (0028,0010) / Columns (0028,0011)"
    if max(abs(x - y) for x, y in zip(a.iop, b.iop, strict=True)) > _SAME_IOP_TOL:
        return "ImageOrientationPatient (0020,0037)"
    for x, y in zip(a.pixel_spacing, b.pixel_spacing, strict=True):
        if abs(x - y) > _SAME_SPACING_TOL * max(x, y):
            return "PixelSpacing (0028,0030)"
    return None


def _fmt_mm(v: float) -> str:
    return f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _plan_series(slices: list[_SliceHeader] | tuple[_SliceHeader, ...]) -> _Plan:
    """Sort slices along the normal and plan the output grid.

    Raises
    ------
    DicomSeriesError
        Fewer than two slices, inconsistent geometry, duplicate positions, or a
        tilt too large to resample.
    """
    if len(slices) < 2:
        where = slices[0].path if slices else "<no file>"
        raise DicomSeriesError(
            f"{where}: single-slice series (a volume needs at least 2 slices); "
            "choose a series with more images"
        )
    ref = slices[0]
    for s in slices[1:]:
        diff = _same_geometry(ref, s)
        if diff is not None:
            raise DicomSeriesError(
                f"{s.path}: {diff} differs from {ref.path} within one series; "
                "the series mixes image geometries: load the files of one geometry separately"
            )
    iop = np.asarray(ref.iop, dtype=float)
    row = iop[:3] / np.linalg.norm(iop[:3])
    col = iop[3:] - (iop[3:] @ row) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    ipp = np.asarray([s.ipp for s in slices], dtype=float)
    proj = ipp @ normal
    order = np.argsort(proj, kind="stable")
    slices = tuple(slices[i] for i in order)
    ipp = ipp[order]
    rel = ipp - ipp[0]
    d = rel @ normal
    a = rel @ row
    b = rel @ col
    steps = np.diff(d)
    dup = int(np.argmin(steps))
    if steps[dup] < _DUPLICATE_MM:
        raise DicomSeriesError(
            f"{slices[dup + 1].path}: same ImagePositionPatient (0020,0032) along the slice "
            f"normal as {slices[dup].path}; the series holds overlapping acquisitions "
            "(several phases or echoes?): remove the duplicates or split the series"
        )
    dj_mm = float(ref.pixel_spacing[0])  # between rows: along j (column direction)
    di_mm = float(ref.pixel_spacing[1])  # between columns: along i (row direction)
    warn: list[str] = []
    notes: list[str] = []
    n = len(slices)

    # Gantry tilt / in-plane shifts
    shift_tol_i = _SHIFT_FRACTION * di_mm
    shift_tol_j = _SHIFT_FRACTION * dj_mm
    tilted = bool(np.max(np.abs(a)) > shift_tol_i or np.max(np.abs(b)) > shift_tol_j)
    ni, nj = ref.cols, ref.rows
    x0 = y0 = 0.0
    if tilted:
        lateral = float(np.hypot(a[-1] - a[0], b[-1] - b[0]))
        angle = math.degrees(math.atan2(lateral, d[-1] - d[0]))
        tag = ref.gantry_tilt
        tag_txt = f" (GantryDetectorTilt (0018,1120) = {tag:g})" if tag is not None else ""
        x0, y0 = float(a.min()), float(b.min())
        ni = ref.cols + int(math.ceil((a.max() - a.min()) / di_mm - 1e-6))
        nj = ref.rows + int(math.ceil((b.max() - b.min()) / dj_mm - 1e-6))
        if angle > _MAX_TILT_DEG or ni > 3 * ref.cols or nj > 3 * ref.rows:
            raise DicomSeriesError(
                f"{slices[-1].path}: slice positions ImagePositionPatient (0020,0032) drift "
                f"{lateral:.1f} mm sideways over {d[-1] - d[0]:.1f} mm along the normal "
                f"(tilt {angle:.1f} deg{tag_txt}); too large to resample safely: "
                "reconstruct the series without gantry tilt on the scanner"
            )
        warn.append(f"gantry tilt {angle:.1f} deg")
        notes.append(
            f"gantry tilt {angle:.1f} deg{tag_txt}: slices resampled onto an orthogonal "
            f"grid in the slice frame (true slice positions, bilinear in-plane); "
            f"in-plane grid {ref.cols} x {ref.rows} -> {ni} x {nj}"
        )

    # Slice spacing
    smin, smax = float(steps.min()), float(steps.max())
    span = float(d[-1] - d[0])
    uneven = (smax - smin) > max(_EVEN_ABS, _EVEN_REL * float(np.median(steps)))
    if uneven:
        m = int(math.ceil(span / smin - 1e-6))
        limit = _MAX_RESAMPLE_FACTOR * (n - 1)
        capped = m > limit
        m = min(m, limit)
        dk = span / m
        nk = m + 1
        warn.append(f"uneven slice spacing {_fmt_mm(smin)}-{_fmt_mm(smax)} mm")
        notes.append(
            f"uneven slice spacing {smin:.2f}-{smax:.2f} mm: resampled along k from {n} slices "
            f"to {nk} slices at {dk:.3f} mm (linear interpolation"
            + (f"; step limited to {_MAX_RESAMPLE_FACTOR}x the slice count)" if capped else ")")
        )
    else:
        dk = span / (n - 1)
        nk = n
    origin = ipp[0] + x0 * row + y0 * col
    return _Plan(
        slices=slices, d=d, a=a, b=b, row=row, col=col, normal=normal,
        di=di_mm, dj=dj_mm, dk=dk, shape=(nk, nj, ni), x0=x0, y0=y0, origin_mm=origin,
        tilted=tilted, uneven=uneven, warnings=tuple(warn), notes=tuple(notes),
    )


def _decoder_warnings(slices: tuple[_SliceHeader, ...]) -> tuple[str, ...]:
    """Say when no installed pixel decoder handles a series' transfer syntax."""
    out = []
    for uid in sorted({h.transfer_syntax for h in slices if h.transfer_syntax}):
        try:
            from pydicom.pixels import get_decoder

            decoder = get_decoder(uid)
            if decoder.is_available:
                continue
            missing = "; ".join(decoder.missing_dependencies)
        except NotImplementedError:
            missing = "pydicom has no decoder for it"
        except Exception:
            continue
        name = pydicom.uid.UID(uid).name
        out.append(f"no pixel decoder installed for {name} ({uid}): {missing}")
    return tuple(out)


def _describe(plan: _Plan) -> str:
    nk, nj, ni = plan.shape
    return (
        f"{plan.modality} {ni} x {nj} x {nk}, "
        f"{_fmt_mm(plan.di)} x {_fmt_mm(plan.dj)} x {_fmt_mm(plan.dk)} mm"
    )


def _hash_key(text: str) -> str:
    return hashlib.sha256(("surgsim-series-v1|" + text).encode("utf-8")).hexdigest()[:12]


def _geometry_signature(h: _SliceHeader) -> str:
    iop = ",".join(f"{v:.3f}" for v in h.iop)
    ps = ",".join(f"{v:.4f}" for v in h.pixel_spacing)
    return f"{iop}|{h.rows}x{h.cols}|{ps}"


def _group(headers: list[_SliceHeader]) -> dict[str, list[_SliceHeader]]:
    """Group slices into series keyed by their de-identified key."""
    by_uid: dict[str, list[_SliceHeader]] = {}
    for h in headers:
        if h.series_uid:
            uid_key = "uid|" + h.series_uid
        else:
            uid_key = f"geom|{h.study_uid}|{h.frame_of_reference}|{_geometry_signature(h)}"
        by_uid.setdefault(uid_key, []).append(h)
    out: dict[str, list[_SliceHeader]] = {}
    for uid_key, members in by_uid.items():
        # split a UID that mixes geometries (e.g. a 3-plane localizer) into clusters
        clusters: list[list[_SliceHeader]] = []
        for h in members:
            for c in clusters:
                if _same_geometry(c[0], h) is None:
                    c.append(h)
                    break
            else:
                clusters.append([h])
        for c in clusters:
            text = uid_key if len(clusters) == 1 else uid_key + "|" + _geometry_signature(c[0])
            out[_hash_key(text)] = c
    return out


def _dedupe(members: list[_SliceHeader], skipped: list[SkippedFile]) -> list[_SliceHeader]:
    """Drop copies of the same SOP instance (a file copied twice into the tree)."""
    seen: dict[tuple[str, int | None], Path] = {}
    keep = []
    for h in members:
        ident = (h.sop_uid, h.frame)
        if h.sop_uid and ident in seen:
            if h.frame in (None, 0):
                skipped.append(SkippedFile(h.path, f"duplicate of {seen[ident]} (same SOPInstanceUID)"))
            continue
        seen[ident] = h.path
        keep.append(h)
    return keep


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _walk(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def discover(root: Path | str, progress: Progress | None = None) -> Discovery:
    """Find the image series under ``root`` (a folder tree or a single file).

    Parameters
    ----------
    root : Path
        Folder to walk recursively (file names with or without extensions), or one file.
        Hidden files and folders (name starting with ``.``) are ignored.
    progress : callable(fraction, message), optional
        Called with a fraction in [0, 1] while files are read.

    Returns
    -------
    Discovery
        The loadable series (sorted by their first file) and every file that is
        not part of one, with the reason. Never raises for a bad file.

    Raises
    ------
    DicomSeriesError
        Only when ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise DicomSeriesError(f"{root}: no such file or folder; check the path to the DICOM data")
    paths = list(_walk(root))
    skipped: list[SkippedFile] = []
    headers: list[_SliceHeader] = []
    n = len(paths)
    for idx, path in enumerate(paths):
        try:
            headers.extend(_read_slices(path))
        except _Skip as exc:
            skipped.append(SkippedFile(path, str(exc.args[0])))
        except OSError as exc:
            skipped.append(SkippedFile(path, f"cannot read file: {exc.strerror or exc}"))
        except Exception as exc:  # never let one corrupt file stop the walk
            skipped.append(SkippedFile(path, f"unreadable DICOM file: {type(exc).__name__}: {exc}"))
        if progress is not None and (idx % 16 == 0 or idx == n - 1):
            progress(0.9 * (idx + 1) / max(n, 1), f"reading headers {idx + 1}/{n}")
    series: list[SeriesInfo] = []
    for key, members in _group(headers).items():
        members = _dedupe(members, skipped)
        files = list(dict.fromkeys(h.path for h in members))
        if len(members) < 2:
            skipped.append(SkippedFile(
                members[0].path,
                "single-slice series (a volume needs at least 2 slices)",
            ))
            continue
        try:
            plan = _plan_series(members)
        except DicomSeriesError as exc:
            for f in files:
                skipped.append(SkippedFile(f, f"series {key} cannot be loaded: {exc}"))
            continue
        except Exception as exc:
            for f in files:
                skipped.append(SkippedFile(f, f"series {key} cannot be planned: {type(exc).__name__}: {exc}"))
            continue
        sorted_files = list(dict.fromkeys(h.path for h in plan.slices))
        series.append(SeriesInfo(
            key=key,
            modality=plan.modality,
            description=_describe(plan),
            n_files=len(sorted_files),
            shape=plan.shape,
            spacing=(plan.di / 1000.0, plan.dj / 1000.0, plan.dk / 1000.0),
            files=tuple(sorted_files),
            warnings=plan.warnings + _decoder_warnings(plan.slices),
            _headers=tuple(_scrubbed(h) for h in plan.slices),
        ))
    series.sort(key=lambda s: (str(s.files[0]), s.key))
    skipped.sort(key=lambda s: str(s.path))
    if progress is not None:
        progress(1.0, f"found {len(series)} series, skipped {len(skipped)} files")
    return Discovery(series=tuple(series), skipped=tuple(skipped), root=root)


def _rel(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            rel = path.relative_to(root)
            return str(rel) if str(rel) != "." else path.name
        except ValueError:
            pass
    return str(path)


def format_listing(d: Discovery) -> str:
    """Human-readable table of a :class:`Discovery` (for ``surgsim dicom info DIR``).

    Skipped files are grouped by reason, with up to five paths each.
    """
    lines = []
    root = d.root if d.root is not None and d.root.is_dir() else None
    lines.append(f"{len(d.series)} series, {len(d.skipped)} skipped files"
                 + (f" in {d.root}" if d.root is not None else ""))
    if d.series:
        header = f"{'KEY':<12}  {'MOD':<4} {'SIZE i x j x k':<18} {'VOXEL mm':<20} {'FILES':>5}  NOTES"
        lines.append(header)
        for s in d.series:
            nk, nj, ni = s.shape
            size = f"{ni} x {nj} x {nk}"
            vox = " x ".join(_fmt_mm(v * 1000.0) for v in s.spacing)
            notes = "; ".join(s.warnings)
            lines.append(f"{s.key:<12}  {s.modality:<4} {size:<18} {vox:<20} {s.n_files:>5}  {notes}")
    if d.skipped:
        lines.append("Skipped:")
        by_reason: dict[str, list[Path]] = {}
        for sk in d.skipped:
            by_reason.setdefault(sk.reason, []).append(sk.path)
        for reason, paths in by_reason.items():
            shown = ", ".join(_rel(p, root) for p in paths[:5])
            more = f" (+{len(paths) - 5} more)" if len(paths) > 5 else ""
            lines.append(f"  {reason} [{len(paths)}]: {shown}{more}")
    if not d.series:
        lines.append("No loadable image series found.")
    return "\n".join(lines)
