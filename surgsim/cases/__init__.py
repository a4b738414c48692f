"""surgsim.cases: bundled cases (the digital phantom) and where they live on disk."""

from surgsim.cases.default import default_case_dicom_dir
from surgsim.cases.phantom import (
    VARIANTS,
    PhantomTruth,
    make_phantom_volume,
    write_phantom_series,
)

__all__ = [
    "VARIANTS",
    "PhantomTruth",
    "default_case_dicom_dir",
    "make_phantom_volume",
    "write_phantom_series",
]
