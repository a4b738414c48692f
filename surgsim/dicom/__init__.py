"""DICOM import: the only owner of pydicom. Discover series, sort, rescale, de-identify."""

from surgsim.dicom.volume import Volume

__all__ = ["Volume"]
