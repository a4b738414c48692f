"""DICOM import: the only owner of pydicom. Discover series, sort, rescale, de-identify.

Import what you need from the submodules (``surgsim.dicom.discover``,
``surgsim.dicom.load``, ``surgsim.dicom.deid``, ``surgsim.dicom.write`` for the
one series writer); the package itself only
exports :class:`Volume`, so that importing the shared volume type does not
load pydicom (start-up time).
"""

from surgsim.dicom.volume import Volume

__all__ = ["Volume"]
