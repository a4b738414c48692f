"""Exceptions and warnings raised by surgsim.

Each error subclasses both :class:`SurgsimError` and the builtin a caller
would naturally catch, carries the offending path or field, and says what
to do about it.
"""

from __future__ import annotations


class SurgsimError(Exception):
    """Base class of every error surgsim raises on purpose."""


class SurgsimWarning(UserWarning):
    """Base class of surgsim's own warnings (errors in the test suite)."""


class DicomSeriesError(SurgsimError, ValueError):
    """A DICOM file or series cannot be used; the message names file and tag."""


class AnatomyError(SurgsimError, ValueError):
    """Segmentation, surface or centerline extraction failed."""


class ScenarioError(SurgsimError, ValueError):
    """A scenario file is invalid; the message names file, key path and reason."""


class PhysicsError(SurgsimError, RuntimeError):
    """The simulation reached an invalid state (NaN, explosion)."""


class RecordsError(SurgsimError, RuntimeError):
    """The attempt database cannot be reached or written."""


class ReplayMismatchError(SurgsimError, AssertionError):
    """Replaying an input log did not reproduce the recorded result."""
