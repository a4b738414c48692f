"""DICOM import: the only owner of pydicom. Discover series, sort, rescale, de-identify."""

from surgsim.dicom.volume import Volume  # noqa: I001  (first: the shared type)
from surgsim.dicom.discover import Discovery, SeriesInfo, SkippedFile, discover, format_listing
from surgsim.dicom.load import load_series
from surgsim.dicom.deid import UidMap, deidentify, write_deidentified_series

__all__ = [
    "Discovery",
    "SeriesInfo",
    "SkippedFile",
    "UidMap",
    "Volume",
    "deidentify",
    "discover",
    "format_listing",
    "load_series",
    "write_deidentified_series",
]
