"""Load one discovered series into a :class:`~surgsim.dicom.volume.Volume`.

Slices are decoded one at a time (pydicom pixel handlers: native, RLE, JPEG
lossless, JPEG 2000 through pylibjpeg-openjpeg), rescaled to modality units
(Hounsfield for CT) and streamed into one preallocated array. Series with
uneven slice steps or a gantry tilt are resampled, streaming too, onto a
regular orthogonal grid in the slice frame: the returned volume is never
sheared. Only geometry, rescale and pixels are read; no patient data is kept.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from scipy import ndimage

from surgsim.dicom.discover import (
    Discovery,
    SeriesInfo,
    _describe,
    _Plan,
    _plan_series,
    _read_slices,
    _scrubbed,
    _Skip,
    _SliceHeader,
    discover,
)
from surgsim.dicom.volume import Volume
from surgsim.errors import DicomSeriesError

__all__ = ["load_series"]

Progress = Callable[[float, str], None]

CT_AIR_HU = -1024.0
_INT16 = np.iinfo(np.int16)


def _select(d: Discovery, root: Path, series_key: str | None) -> SeriesInfo:
    """Pick the series to load from a discovery (exact key or unique key prefix)."""
    listing = "; ".join(f"{s.key} ({s.description})" for s in d.series)
    if series_key:
        exact = [s for s in d.series if s.key == series_key]
        matches = exact or [s for s in d.series if s.key.startswith(series_key)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise DicomSeriesError(
                f"{root}: no series with key {series_key!r}; available: {listing or 'none'}; "
                "run `surgsim dicom info` on the folder to list the keys"
            )
        raise DicomSeriesError(
            f"{root}: key {series_key!r} matches several series ({listing}); give more of the key"
        )
    if len(d.series) == 1:
        return d.series[0]
    if not d.series:
        reasons: dict[str, int] = {}
        for sk in d.skipped:
            reasons[sk.reason] = reasons.get(sk.reason, 0) + 1
        top = "; ".join(f"{r} x{n}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])[:4])
        raise DicomSeriesError(
            f"{root}: no loadable image series found"
            + (f" ({len(d.skipped)} files skipped: {top})" if d.skipped else " (no files)")
            + "; point to a folder that holds a CT or MR series of at least 2 slices"
        )
    raise DicomSeriesError(
        f"{root}: {len(d.series)} series found ({listing}); pass series_key= to choose one"
    )


def _series_headers(info: SeriesInfo) -> list[_SliceHeader]:
    """The slice headers of a discovered series, parsed again only where a file changed.

    :func:`discover` keeps each file's headers with its size, modification
    and status-change times; a file whose size or times differ now (or a
    series built without them) is read again, so a series edited since
    discovery is caught (its SeriesInstanceUID is checked) instead of loaded
    with stale geometry.
    """
    known: dict[Path, list[_SliceHeader]] = {}
    for h in getattr(info, "_headers", ()) or ():
        known.setdefault(Path(h.path), []).append(h)
    headers: list[_SliceHeader] = []
    for path in info.files:
        path = Path(path)
        kept = known.get(path)
        if kept:
            try:
                st = os.stat(path)
            except OSError as exc:
                raise DicomSeriesError(
                    f"{path}: cannot read ({exc.strerror or exc}); check the file exists and is readable"
                ) from None
            h0 = kept[0]
            if (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (h0.file_size, h0.file_mtime_ns, h0.file_ctime_ns):
                headers.extend(kept)
                continue
        headers.extend(_read_file_headers(path))
    for h in headers[1:]:
        if h.series_uid != headers[0].series_uid:
            raise DicomSeriesError(
                f"{h.path}: SeriesInstanceUID (0020,000E) differs from {headers[0].path}: the "
                f"files of series {info.key} changed since discovery; discover the folder again"
            )
    return headers


def _read_file_headers(path: Path) -> list[_SliceHeader]:
    """Parse one file's headers again (it changed since discovery, or was never discovered)."""
    try:
        return [_scrubbed(h) for h in _read_slices(Path(path))]
    except _Skip as exc:
        raise DicomSeriesError(
            f"{path}: {exc.args[0]}; remove the file from the folder or replace it, then "
            "discover the folder again"
        ) from None
    except OSError as exc:
        raise DicomSeriesError(
            f"{path}: cannot read ({exc.strerror or exc}); check the file exists and is readable"
        ) from None
    except Exception as exc:
        raise DicomSeriesError(
            f"{path}: unreadable DICOM header ({type(exc).__name__}: {exc}); remove or replace the file"
        ) from None


def _ensure_transfer_syntax(ds: pydicom.Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if not meta.get("TransferSyntaxUID"):
        implicit = ds.original_encoding[0]
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit in (True, None) else ExplicitVRLittleEndian


def _decode_error(path: Path, ts: str, exc: BaseException) -> DicomSeriesError:
    return DicomSeriesError(
        f"{path}: cannot decode Pixel Data (7FE0,0010) (transfer syntax {ts or 'unknown'}): "
        f"{type(exc).__name__}: {exc}; check the file is complete, or install the pixel "
        "decoder for that transfer syntax (pylibjpeg-openjpeg for JPEG 2000, "
        "pylibjpeg-libjpeg for JPEG), or remove the file"
    )


#: Uncompressed little-endian transfer syntaxes whose pixels are read straight from the file.
_NATIVE_LE = {str(ImplicitVRLittleEndian): True, str(ExplicitVRLittleEndian): False}
_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian


def _native_ok(h: _SliceHeader) -> bool:
    """Whether the pixels of ``h`` can be read straight from the file (no decoder)."""
    return (
        h.frame is None
        and h.transfer_syntax in _NATIVE_LE
        and 1 <= h.bits_stored <= 16
        and h.pixel_offset is not None
        and h.pixel_length == h.rows * h.cols * 2
        and sys.byteorder == "little"
    )


def _read_native_into(h: _SliceHeader, dest: np.ndarray) -> bool:
    """Read the stored pixels of an uncompressed little-endian 16-bit file into ``dest``.

    Uses the Pixel Data offset found by :func:`discover` (no parsing): the
    element header just before it is checked (tag, VR, a length of exactly
    Rows x Columns x 2), then the values are read with one ``readinto`` and
    their unused high bits corrected as pydicom does.

    Parameters
    ----------
    h : _SliceHeader
    dest : (rows, cols) uint16 or int16, C-contiguous
        Receives the raw stored values (``int16`` when PixelRepresentation is 1).

    Returns
    -------
    bool
        ``False`` (``dest`` unspecified) when the file is not such a file or
        the element is not where discovery saw it: the caller decodes with pydicom.
    """
    if not _native_ok(h):
        return False
    implicit = _NATIVE_LE[h.transfer_syntax]
    need = h.rows * h.cols * 2
    head_len = 8 if implicit else 12
    start = int(h.pixel_offset)  # type: ignore[arg-type]
    if start < head_len or dest.nbytes != need or not dest.flags.c_contiguous:
        return False
    try:
        with open(h.path, "rb", buffering=0) as fh:
            fh.seek(start - head_len)
            head = fh.read(head_len)
            if len(head) != head_len or head[:4] != _PIXEL_TAG:
                return False
            if not implicit and head[4:8] not in (b"OW\x00\x00", b"OB\x00\x00"):
                return False
            if struct.unpack_from("<I", head, head_len - 4)[0] != need:
                return False
            view = memoryview(dest.reshape(-1).view(np.uint8))
            got = 0
            while got < need:
                n = fh.readinto(view[got:])
                if not n:
                    return False
                got += n
    except OSError:
        return False
    shift = 16 - h.bits_stored
    if shift:
        if h.signed:
            np.left_shift(dest, shift, out=dest)
            np.right_shift(dest, shift, out=dest)  # arithmetic: sign-extends
        else:
            np.bitwise_and(dest, (1 << h.bits_stored) - 1, out=dest)
    return True


def _read_native_frame(h: _SliceHeader) -> np.ndarray | None:
    """Pixels ``(rows, cols)`` of an uncompressed little-endian 16-bit single-frame file.

    Values as pydicom returns them (``uint16``, or ``int16`` when signed);
    ``None`` when :func:`_read_native_into` declines (the caller decodes with pydicom).
    """
    if not _native_ok(h):
        return None
    arr = np.empty((h.rows, h.cols), dtype=np.int16 if h.signed else np.uint16)
    return arr if _read_native_into(h, arr) else None


def _read_single_frame(h: _SliceHeader) -> np.ndarray:
    fast = _read_native_frame(h)
    if fast is not None:
        return fast
    ts = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(h.path, force=True)
            _ensure_transfer_syntax(ds)
            ts = str(ds.file_meta.TransferSyntaxUID)
            arr = ds.pixel_array
    except DicomSeriesError:
        raise
    except Exception as exc:
        raise _decode_error(h.path, ts, exc) from None
    if arr.shape != (h.rows, h.cols):
        raise DicomSeriesError(
            f"{h.path}: Pixel Data (7FE0,0010) decodes to shape {arr.shape}, expected Rows x "
            f"Columns ({h.rows}, {h.cols}); the file is inconsistent: remove or replace it"
        )
    return arr


class _PlaneSource:
    """Yields the rescaled planes of the sorted slices, one at a time, in order."""

    def __init__(self, plan: _Plan, fill: float, clamp_ct: bool) -> None:
        self.plan = plan
        self.fill = np.float32(fill)
        self.clamp_ct = clamp_ct
        self.padded = 0
        self.clamped = 0
        self.padding_values: set[tuple[int, int]] = set()
        self._frame_iters: dict[Path, Iterator[np.ndarray]] = {}
        self._frames_of: dict[Path, list[int]] = {}
        for h in plan.slices:
            if h.frame is not None:
                self._frames_of.setdefault(h.path, []).append(h.frame)

    def _raw(self, h: _SliceHeader) -> np.ndarray:
        if h.frame is None:
            return _read_single_frame(h)
        it = self._frame_iters.get(h.path)
        try:
            if it is None:
                it = pydicom.pixels.iter_pixels(str(h.path), indices=self._frames_of[h.path])
                self._frame_iters[h.path] = it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = next(it)
        except DicomSeriesError:
            raise
        except StopIteration:
            raise DicomSeriesError(
                f"{h.path}: frame {h.frame + 1} missing from Pixel Data (7FE0,0010); the file "
                "is incomplete: replace it"
            ) from None
        except Exception as exc:
            raise _decode_error(h.path, "", exc) from None
        if arr.shape != (h.rows, h.cols):
            raise DicomSeriesError(
                f"{h.path}: frame {h.frame + 1} decodes to shape {arr.shape}, expected "
                f"({h.rows}, {h.cols}); the file is inconsistent: replace it"
            )
        return arr

    def values(self, h: _SliceHeader) -> np.ndarray:
        """(rows, cols) float32 rescaled plane with padding and sub-air values replaced."""
        raw = self._raw(h)
        vals = raw.astype(np.float32)
        if h.slope != 1.0:
            vals *= np.float32(h.slope)
        if h.intercept != 0.0:
            vals += np.float32(h.intercept)
        if h.padding is not None:
            lo, hi = h.padding
            mask = (raw >= lo) & (raw <= hi) if lo != hi else (raw == lo)
            n = int(np.count_nonzero(mask))
            if n:
                vals[mask] = self.fill
                self.padded += n
                self.padding_values.add((lo, hi))
        if self.clamp_ct:
            below = vals < self.fill
            n = int(np.count_nonzero(below))
            if n:
                vals[below] = self.fill
                self.clamped += n
        return vals

    def int_values(self, h: _SliceHeader) -> tuple[np.ndarray, int, int, bool]:
        """(rows, cols) int16 plane for an integer rescale (slope 1, integer intercept).

        Same values as :meth:`values` rounded, computed in integers. Thread-safe:
        returns the plane with its padded and clamped voxel counts and whether
        values were clipped to the int16 range, instead of updating counters.
        """
        raw = self._raw(h)
        vals = raw.astype(np.int32)
        if h.intercept != 0.0:
            vals += np.int32(round(h.intercept))
        fill = int(self.fill)
        padded = clamped = 0
        if h.padding is not None:
            lo, hi = h.padding
            mask = (raw >= lo) & (raw <= hi) if lo != hi else (raw == lo)
            padded = int(np.count_nonzero(mask))
            if padded:
                vals[mask] = fill
        if self.clamp_ct:
            below = vals < fill
            clamped = int(np.count_nonzero(below))
            if clamped:
                vals[below] = fill
        clipped = bool(vals.min() < _INT16.min or vals.max() > _INT16.max)
        if clipped:
            np.clip(vals, _INT16.min, _INT16.max, out=vals)
        return vals.astype(np.int16), padded, clamped, clipped

    def int_values_into(self, h: _SliceHeader, plane: np.ndarray) -> tuple[int, int, bool]:
        """:meth:`int_values` written into ``plane`` ((rows, cols) int16, C-contiguous).

        Uncompressed files are read straight into ``plane`` and rescaled there
        (no temporary copies of the slice); other files go through
        :meth:`int_values`. Thread-safe; returns (padded, clamped, clipped).
        Only for a plan whose int16 range holds every stored value plus the
        intercept (:func:`_choose_dtype`), so nothing can overflow.
        """
        raw = plane if h.signed else plane.view(np.uint16)
        if not _read_native_into(h, raw):
            vals, padded, clamped, clipped = self.int_values(h)
            plane[...] = vals
            return padded, clamped, clipped
        fill = int(self.fill)
        mask = None
        if h.padding is not None:
            lo, hi = h.padding
            mask = (raw >= lo) & (raw <= hi) if lo != hi else (raw == lo)
        intercept = int(round(h.intercept))
        if intercept:
            # in int16 arithmetic: exact, since stored value + intercept fits int16 (modular
            # wrap-around of an unsigned value above 32767 lands on the right result)
            np.add(plane, np.int16(intercept), out=plane)
        padded = 0
        if mask is not None:
            padded = int(np.count_nonzero(mask))
            if padded:
                plane[mask] = fill
        clamped = 0
        if self.clamp_ct:
            clamped = int(np.count_nonzero(plane < fill))
            if clamped:
                np.maximum(plane, np.int16(fill), out=plane)
        return padded, clamped, False

    def on_grid(self, idx: int) -> np.ndarray:
        """Plane ``idx`` of the sorted slices moved onto the output in-plane grid."""
        plan = self.plan
        h = plan.slices[idx]
        vals = self.values(h)
        if not plan.tilted:
            return vals
        nk, nj, ni = plan.shape
        off_j = (plan.y0 - plan.b[idx]) / plan.dj
        off_i = (plan.x0 - plan.a[idx]) / plan.di
        return ndimage.affine_transform(
            vals, np.array([1.0, 1.0]), offset=(off_j, off_i), output_shape=(nj, ni),
            order=1, mode="constant", cval=float(self.fill), prefilter=False,
        ).astype(np.float32, copy=False)


def _choose_dtype(plan: _Plan) -> np.dtype:
    if plan.resampled:
        return np.dtype(np.float32)
    lo_all, hi_all = math.inf, -math.inf
    for h in plan.slices:
        if h.slope != 1.0 or h.intercept != round(h.intercept):
            return np.dtype(np.float32)
        bits = max(1, min(h.bits_stored, 32))
        raw_lo, raw_hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if h.signed else (0, 2**bits - 1)
        lo_all = min(lo_all, raw_lo + h.intercept)
        hi_all = max(hi_all, raw_hi + h.intercept)
    if lo_all >= _INT16.min and hi_all <= _INT16.max:
        return np.dtype(np.int16)
    return np.dtype(np.float32)


def _allocate(plan: _Plan, dtype: np.dtype, where: Path) -> np.ndarray:
    nbytes = int(np.prod(plan.shape)) * dtype.itemsize
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except Exception:  # pragma: no cover - psutil is a dependency
        avail = None
    if avail is not None and nbytes > 0.8 * avail:
        raise DicomSeriesError(
            f"{where}: the volume {plan.shape} needs {nbytes / 2**30:.1f} GiB but only "
            f"{avail / 2**30:.1f} GiB of memory is free; close other programs or load a "
            "coarser series"
        )
    try:
        return np.empty(plan.shape, dtype=dtype)
    except MemoryError:
        raise DicomSeriesError(
            f"{where}: cannot allocate {nbytes / 2**30:.1f} GiB for the volume {plan.shape}; "
            "free memory or load a coarser series"
        ) from None


def _store(out: np.ndarray, k: int, plane: np.ndarray) -> bool:
    """Write a float plane into ``out[k]``; return True when values had to be clipped."""
    if out.dtype == np.int16:
        r = np.rint(plane)
        clipped = bool(r.min() < _INT16.min or r.max() > _INT16.max)
        if clipped:
            np.clip(r, _INT16.min, _INT16.max, out=r)
        out[k] = r
        return clipped
    out[k] = plane
    return False


def load_series(
    root_or_info: Path | str | SeriesInfo,
    series_key: str | None = None,
    progress: Progress | None = None,
) -> Volume:
    """Load one image series as a :class:`Volume` in LPS metres.

    Parameters
    ----------
    root_or_info : Path or SeriesInfo
        A folder (or file) to discover, or a series from :func:`discover`.
    series_key : str, optional
        Key (or unique prefix) of the series to load when a folder holds several.
    progress : callable(fraction, message), optional
        Progress report in [0, 1].

    Returns
    -------
    Volume
        ``array`` (nk, nj, ni) int16 (when no resampling and the rescaled range
        fits) or float32, in modality units (HU for CT; padding and values below
        -1024 HU set to -1024); ``world_from_voxel`` (4, 4) maps (i, j, k, 1) to
        LPS metres with orthogonal columns; ``series_uid`` the de-identified key;
        ``notes`` what was corrected.

    Raises
    ------
    DicomSeriesError
        With the file (and tag) at fault and what to do.
    """
    if isinstance(root_or_info, SeriesInfo):
        info = root_or_info
    else:
        root = Path(root_or_info)
        sub = (lambda f, m: progress(0.1 * f, m)) if progress is not None else None
        info = _select(discover(root, progress=sub), root, series_key)
    headers = _series_headers(info)
    plan = _plan_series(headers)
    modality = plan.modality
    is_ct = modality == "CT"
    fill = CT_AIR_HU if is_ct else 0.0
    dtype = _choose_dtype(plan)
    out = _allocate(plan, dtype, info.files[0])
    src = _PlaneSource(plan, fill, clamp_ct=is_ct)
    nk = plan.shape[0]
    n = len(plan.slices)
    clipped = False

    def report(k: int) -> None:
        if progress is not None and (k % 8 == 0 or k == nk - 1):
            progress(0.1 + 0.9 * (k + 1) / nk, f"loading slice {k + 1}/{nk}")

    parallel = (
        dtype == np.int16 and not plan.resampled and nk == n
        and all(h.frame is None and h.slope == 1.0 for h in plan.slices)
    )
    if parallel:
        # single-frame slices with an integer rescale: read, decode and store in a
        # thread pool (file reads and numpy release the GIL); each task writes its
        # own plane of ``out``; progress and cancellation stay in this thread.
        def task(k: int) -> tuple[int, int, bool, tuple[int, int] | None]:
            h = plan.slices[k]
            padded, clamped, clip = src.int_values_into(h, out[k])
            return padded, clamped, clip, h.padding if padded else None

        workers = max(1, min(4, os.cpu_count() or 1))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="surgsim-dicom")
        try:
            for k, (padded, clamped, clip, pad_range) in enumerate(pool.map(task, range(nk))):
                src.padded += padded
                src.clamped += clamped
                if pad_range is not None:
                    src.padding_values.add(pad_range)
                clipped |= clip
                report(k)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    elif not plan.uneven:
        for k in range(nk):
            clipped |= _store(out, k, src.on_grid(k))
            report(k)
    else:
        cache: dict[int, np.ndarray] = {}
        lo = 0
        for k in range(nk):
            pos = k * plan.dk
            while lo + 2 < n and plan.d[lo + 1] <= pos:
                lo += 1
            hi = lo + 1
            for idx in list(cache):
                if idx < lo:
                    del cache[idx]
            for idx in (lo, hi):
                if idx not in cache:
                    cache[idx] = src.on_grid(idx)
            w = (pos - plan.d[lo]) / (plan.d[hi] - plan.d[lo])
            w = min(max(w, 0.0), 1.0)
            if w < 1e-6:
                plane = cache[lo]
            elif w > 1 - 1e-6:
                plane = cache[hi]
            else:
                plane = cache[lo] * np.float32(1 - w) + cache[hi] * np.float32(w)
            clipped |= _store(out, k, plane)
            report(k)
        del cache
    notes = list(plan.notes)
    for lo_v, hi_v in sorted(src.padding_values):
        value = f"{lo_v}" if lo_v == hi_v else f"{lo_v}..{hi_v}"
        notes.append(
            f"pixel padding value {value} (0028,0120) set to {fill:g}"
            f"{' HU' if is_ct else ''} in {src.padded} voxels"
        )
    if src.clamped:
        notes.append(f"{src.clamped} voxels below {CT_AIR_HU:g} HU set to {CT_AIR_HU:g} HU")
    if clipped:
        notes.append("values outside the int16 range were clipped")
    return Volume(
        array=out,
        world_from_voxel=plan.world_from_voxel,
        modality=modality,
        series_uid=info.key,
        description=_describe(plan),
        notes=tuple(notes),
    )
