"""The bundled digital phantom cases (the default and its arch variants), generated once into the data folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from surgsim.cases import phantom
from surgsim.errors import DicomSeriesError
from surgsim.paths import data_dir

_STAMP = "phantom.json"


def _expected_stamp(variant: str = "default") -> dict[str, object]:
    from surgsim.dicom import write as dicom_write

    source = Path(phantom.__file__).read_bytes()
    writer = Path(dicom_write.__file__).read_bytes()  # the DICOM bytes come from both files
    return {
        "generator": "surgsim.cases.phantom",
        "generator_version": phantom.GENERATOR_VERSION,
        "generator_sha256": hashlib.sha256(source).hexdigest(),
        "writer_sha256": hashlib.sha256(writer).hexdigest(),
        "variant": variant,
        "spacing_m": list(phantom.DEFAULT_SPACING),
        "seed": 0,
    }


def _is_current(case_dir: Path, expected: dict[str, object]) -> bool:
    try:
        stamp = json.loads((case_dir / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict):
        return False
    dicom = case_dir / "dicom"
    n = stamp.get("files")
    return (
        all(stamp.get(k) == v for k, v in expected.items())
        and isinstance(n, int)
        and dicom.is_dir()
        and len(list(dicom.glob("CT*.dcm"))) == n
    )


def default_case_dicom_dir(variant: str = "default") -> Path:
    """Return the folder of a bundled phantom's DICOM series, generating it if needed.

    The series of ``variant`` (one of :data:`surgsim.cases.phantom.VARIANTS`) is
    written once to ``data_dir()/cases/phantom-<variant>-v<N>/dicom``
    (``N`` = :data:`surgsim.cases.phantom.GENERATOR_VERSION`) through a temporary
    folder renamed into place, so a crash never leaves a half-written case. A
    stamp file beside ``dicom/`` records the generator version and the hash of
    its source: when the generator changes, the case is regenerated.

    Parameters
    ----------
    variant : str
        Phantom variant, e.g. ``"default"`` (type I arch) or ``"type3-arch"``.

    Returns
    -------
    Path
        Folder holding ``CT000001.dcm`` ... (about 201 files, 21 MB).

    Raises
    ------
    DicomSeriesError
        Unknown variant, or the data folder is not writable.
    """
    if variant not in phantom.VARIANTS:
        raise DicomSeriesError(
            f"unknown phantom variant {variant!r}; choose one of {', '.join(phantom.VARIANTS)}"
        )
    cases = data_dir() / "cases"
    final = cases / f"phantom-{variant}-v{phantom.GENERATOR_VERSION}"
    expected = _expected_stamp(variant)
    if _is_current(final, expected):
        return final / "dicom"
    try:
        cases.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=cases))
    except OSError as exc:
        raise DicomSeriesError(
            f"cannot write the {variant} phantom case under {cases}: {exc}; "
            "set SURGSIM_DATA_DIR to a writable folder"
        ) from exc
    try:
        files = phantom.write_phantom_series(
            tmp / "dicom", variant, phantom.DEFAULT_SPACING, seed=0
        )
        stamp = dict(expected, files=len(files))
        (tmp / _STAMP).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
        if final.exists():  # stale: from an older generator or damaged
            stale = Path(tempfile.mkdtemp(prefix=f".stale-{final.name}-", dir=cases))
            try:
                os.replace(final, stale / final.name)
            except OSError:
                pass  # another process may have replaced it already
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            # another process finished first; use its copy if it is complete
            if not _is_current(final, expected):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "dicom"
