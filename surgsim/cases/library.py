"""The case library: anatomy imported once (a DICOM series or a vessel surface), simulated by id.

Each case lives in ``data_dir()/library/<case id>/``: ``manifest.json`` (what
the case was made from, when, and a summary of its quality report) and
``case/`` (the :class:`~surgsim.cases.build.VesselCase` files: lumen surface,
distance field, labelled centerlines, the CT and lumen mask for fluoroscopy).
Case ids are opaque (``case-`` and 12 hex digits of a hash of the source and
the build parameters), so importing the same source twice gives the same case.
Nothing identifying is written: no file or folder names, no DICOM UIDs (only a
hash of the de-identified series key), no patient attributes.

A scenario refers to a library case with ``case: {case_id: case-...}``, or to a
DICOM folder with ``case: {dicom: folder, preset: vessels}``, which is imported
into the library on first use (:func:`surgsim.cli.load_case_for`).

A chest CT imported with the ``airway`` preset is an *airway case*: ``case/``
holds only ``trachea.json``, the patient's measured trachea
(:class:`surgsim.anatomy.trachea.TracheaMeasure`), which an intubation scenario
puts into its airway phantom with ``case: {phantom: airway-adult, trachea_case_id: case-...}``
(:func:`load_trachea`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from surgsim.cases.build import BUILD_VERSION, Progress, VesselCase
from surgsim.errors import AnatomyError

__all__ = [
    "LIBRARY_FORMAT",
    "case_folder",
    "import_dicom_case",
    "import_mesh_case",
    "library_dir",
    "list_cases",
    "load_case",
    "load_trachea",
    "read_manifest",
]

#: Version of the manifest format.
LIBRARY_FORMAT = 1
MANIFEST = "manifest.json"
#: Presets a DICOM series can be imported with: vessel cases, and airway cases (a measured trachea).
IMPORT_PRESETS = ("vessels", "airway")
TRACHEA_FILE = "trachea.json"
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_HINT = "import it with `surgsim case import FOLDER_OR_MESH` and list the library with `surgsim case list`"


def library_dir() -> Path:
    """The case library folder (``data_dir()/library``), created if needed."""
    from surgsim.paths import data_dir

    path = data_dir() / "library"
    path.mkdir(parents=True, exist_ok=True)
    return path


def case_folder(case_id: str) -> Path:
    """Folder of the case ``case_id`` (may not exist).

    Raises
    ------
    AnatomyError
        The id is not a plain name (letters, digits, '-' and '_').
    """
    if not isinstance(case_id, str) or not _CASE_ID.match(case_id):
        raise AnatomyError(
            f"case id {case_id!r} is not valid: use the id printed by `surgsim case import` "
            "(letters, digits, '-' and '_', e.g. case-0123456789ab)"
        )
    return library_dir() / case_id


def _new_id(key: str) -> str:
    return "case-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- reading


def read_manifest(case_id: str) -> dict[str, Any]:
    """The manifest of a stored case.

    Raises
    ------
    AnatomyError
        Unknown case, or a manifest that is unreadable or incomplete (the
        message names the file and says to re-import).
    """
    folder = case_folder(case_id)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise AnatomyError(f"case {case_id!r} is not in the case library ({library_dir()}); {_HINT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnatomyError(
            f"case {case_id!r}: {path} is missing (an interrupted import?); re-import the case or delete {folder}"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AnatomyError(
            f"case {case_id!r}: the manifest {path} is damaged ({type(exc).__name__}: {exc}); "
            f"re-import the case or delete {folder}"
        ) from None
    problems = []
    if not isinstance(data, dict):
        problems.append("not a JSON object")
    else:
        if data.get("case_id") != case_id:
            problems.append(f"case_id is {data.get('case_id')!r}")
        if data.get("format") != LIBRARY_FORMAT:
            problems.append(f"format {data.get('format')!r} (this surgsim reads {LIBRARY_FORMAT})")
        src = data.get("source")
        if not isinstance(src, dict) or src.get("kind") not in ("dicom", "mesh"):
            problems.append("source.kind is not 'dicom' or 'mesh'")
    if problems:
        raise AnatomyError(
            f"case {case_id!r}: the manifest {path} is damaged ({'; '.join(problems)}); "
            f"re-import the case or delete {folder}"
        )
    return data


def load_case(case_id: str) -> VesselCase:
    """Load a case of the library for simulation.

    Parameters
    ----------
    case_id : str
        As returned by :func:`import_dicom_case` or :func:`import_mesh_case`.

    Returns
    -------
    VesselCase

    Raises
    ------
    AnatomyError
        Unknown id, damaged manifest or case files (the message says what to do).
    """
    from surgsim.cases.build import _load

    manifest = read_manifest(case_id)
    if manifest["source"].get("preset") == "airway":
        raise AnatomyError(
            f"case {case_id!r} is an airway case (a measured trachea), not vessels for a catheter; use it "
            f"in an intubation scenario as  case: {{phantom: airway-adult, trachea_case_id: {case_id}}}")
    folder = case_folder(case_id) / "case"
    try:
        case = _load(folder)
    except Exception as exc:  # any unreadable file of the case
        raise AnatomyError(
            f"case {case_id!r}: the stored case in {folder} cannot be read ({type(exc).__name__}: {exc}); "
            f"re-import the case or delete {folder.parent}"
        ) from None
    if case.case_id != case_id:
        raise AnatomyError(
            f"case {case_id!r}: {folder / 'case.json'} holds case {case.case_id!r}; re-import the case"
        )
    return case


def load_trachea(case_id: str):
    """The measured trachea of an airway case (:class:`~surgsim.anatomy.trachea.TracheaMeasure`).

    Raises
    ------
    AnatomyError
        Unknown id, not an airway case, or a damaged file (the message says what to do).
    """
    from surgsim.anatomy.trachea import TracheaMeasure

    manifest = read_manifest(case_id)
    if manifest["source"].get("preset") != "airway":
        raise AnatomyError(
            f"case {case_id!r} is not an airway case; import a chest CT with "
            "`surgsim case import FOLDER --preset airway` and use that case's id")
    path = case_folder(case_id) / "case" / TRACHEA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AnatomyError(f"case {case_id!r}: {path} cannot be read ({type(exc).__name__}: {exc}); "
                           f"re-import the chest CT or delete {path.parent.parent}") from None
    return TracheaMeasure.from_dict(data, where=f"case {case_id!r}: {path}")


def list_cases() -> list[dict[str, Any]]:
    """Manifests of every case in the library, oldest first.

    A case whose manifest is damaged is listed as ``{"case_id": ..., "error": message}``.
    """
    out = []
    for folder in sorted(library_dir().iterdir()):
        if not folder.is_dir() or folder.name.startswith(".") or not _CASE_ID.match(folder.name):
            continue
        try:
            out.append(read_manifest(folder.name))
        except AnatomyError as exc:
            out.append({"case_id": folder.name, "error": str(exc)})
    return sorted(out, key=lambda m: (str(m.get("created", "")), m["case_id"]))


def _is_usable(case_id: str) -> bool:
    try:
        m = read_manifest(case_id)
    except AnatomyError:
        return False
    main = TRACHEA_FILE if m["source"].get("preset") == "airway" else "case.json"
    return m.get("build_version") == BUILD_VERSION and (case_folder(case_id) / "case" / main).is_file()


# --------------------------------------------------------------------------- writing


def _summary(case: VesselCase) -> dict[str, Any]:
    from surgsim.anatomy.report import arch_type

    report = {k: case.report.get(k) for k in ("watertight", "manifold", "n_triangles", "volume_m3")}
    try:
        arch = arch_type(case.centerlines, case.distance)
    except Exception:  # the summary is informative only
        arch = None
    report["arch_type"] = arch.get("type") if isinstance(arch, dict) else None
    report["notes"] = list(case.report.get("notes", []))
    return report


def _store(case: VesselCase, source: dict[str, Any], seconds: float) -> None:
    """Write a vessel case and its manifest through a temporary folder renamed into place."""
    from surgsim.cases.build import _save

    _store_folder(case.case_id, lambda folder: _save(case, folder), source, seconds, labels=list(case.labels),
                  access_m=[round(float(v), 6) for v in case.access], report=_summary(case))


def _store_folder(case_id: str, write, source: dict[str, Any], seconds: float, **fields: Any) -> None:
    """Write a case folder (``write(folder)`` fills ``case/``) and its manifest, renamed into place."""
    root = library_dir()
    final = case_folder(case_id)
    manifest = {
        "format": LIBRARY_FORMAT,
        "case_id": case_id,
        "source": source,
        "created": _now(),
        "build_version": BUILD_VERSION,
        "build_seconds": round(float(seconds), 2),
        **fields,
    }
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{case_id}-", dir=root))
    except OSError as exc:
        raise AnatomyError(f"cannot write to the case library {root}: {exc}; set SURGSIM_DATA_DIR "
                           "to a writable folder") from None
    try:
        (tmp / "case").mkdir()
        write(tmp / "case")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if final.exists():  # stale (older build) or damaged: replace it
            stale = Path(tempfile.mkdtemp(prefix=f".stale-{case_id}-", dir=root))
            try:
                os.replace(final, stale / final.name)
            except OSError:
                pass
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not _is_usable(case_id):  # another process finished first: keep theirs if good
                raise
    except OSError as exc:
        raise AnatomyError(f"cannot write the case {case_id!r} to {root}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sub(progress: Progress | None, lo: float, hi: float) -> Progress:
    def inner(f: float, message: str) -> None:
        if progress is not None:
            progress(lo + (hi - lo) * float(f), message)

    return inner


def import_dicom_case(
    folder: Path | str,
    preset: str = "vessels",
    series: str | None = None,
    seed: np.ndarray | None = None,
    progress: Progress | None = None,
) -> str:
    """Import a contrast CT series as a case (or find it already imported).

    The series is read through the de-identifying loader, the lumen segmented
    (coarse-to-fine for large series), and the case built with
    :func:`surgsim.cases.build.build_vessel_case`. With ``preset="airway"``
    a chest CT's trachea is measured instead (:func:`surgsim.anatomy.trachea.measure_trachea`)
    and stored as an airway case (:func:`load_trachea`).

    Parameters
    ----------
    folder : Path
        DICOM folder (subfolders are searched).
    preset : str
        ``"vessels"`` (a case the catheter simulation can use) or ``"airway"``
        (a measured trachea for intubation scenarios).
    series : str, optional
        Series key (or a unique prefix) from ``surgsim dicom info`` when the
        folder holds several.
    seed : (3,) float, metres (LPS), optional
        A point inside the aorta (or trachea) when the automatic seed fails.
    progress : callable(fraction, message), optional

    Returns
    -------
    str
        The case id.

    Raises
    ------
    DicomSeriesError
        The folder holds no loadable series, or several and ``series`` was not given.
    AnatomyError
        Unknown preset, or segmentation, centerlines or the trachea measurement failed.
    """
    from surgsim.anatomy.pipeline import PRESETS, _series_stamp, segment_volume
    from surgsim.cases.build import build_vessel_case
    from surgsim.dicom.discover import discover
    from surgsim.dicom.load import _select, load_series

    if preset not in IMPORT_PRESETS:
        known = f"; presets are {', '.join(PRESETS)}" if preset not in PRESETS else ""
        raise AnatomyError(
            f"preset {preset!r}: cases are imported with 'vessels' (catheter simulation) or 'airway' "
            f"(a chest CT's trachea for intubation){known}; use `surgsim anatomy build` for the other presets"
        )
    root = Path(folder)
    t0 = time.perf_counter()
    say = _sub(progress, 0.0, 1.0)
    say(0.0, "looking for series")
    info = _select(discover(root, progress=_sub(progress, 0.0, 0.05)), root, series)
    seed_key = None if seed is None else [round(float(v), 6) for v in np.ravel(seed)]
    if seed_key is not None and len(seed_key) != 3:
        raise AnatomyError(f"seed: expected three coordinates x, y, z in metres, got {len(seed_key)}")
    key = f"dicom|{_series_stamp(info)}|{preset}|{json.dumps(seed_key)}"
    case_id = _new_id(key)
    if _is_usable(case_id):
        say(1.0, f"case {case_id} is already in the library")
        return case_id
    volume = load_series(info, progress=_sub(progress, 0.05, 0.3))
    if preset == "airway":
        _store_airway(volume, info, case_id, seed_key, progress, t0)
        return case_id
    say(0.3, "segmenting the vessels")
    mask = segment_volume(volume, "vessels", seed=None if seed is None else np.asarray(seed_key))
    case = build_vessel_case(volume, case_id, mask=mask, progress=_sub(progress, 0.4, 0.95))
    case.report = dict(case.report, notes=list(volume.notes))
    source = {
        "kind": "dicom",
        "preset": preset,
        "series_uid_sha256": hashlib.sha256(info.key.encode()).hexdigest()[:16],
        "modality": volume.modality,
        "shape": list(volume.shape),
        "spacing_m": [round(float(v), 7) for v in volume.spacing],
        "seed_m": seed_key,
    }
    say(0.95, "saving the case")
    _store(case, source, time.perf_counter() - t0)
    say(1.0, f"saved case {case_id}")
    return case_id


def _store_airway(volume, info, case_id: str, seed_key, progress: Progress | None, t0: float) -> None:
    """Measure a loaded chest CT's trachea and store it as the airway case ``case_id``."""
    from surgsim.anatomy.trachea import measure_trachea_ct

    say = _sub(progress, 0.0, 1.0)
    say(0.3, "segmenting the airway and measuring the trachea")
    measure = measure_trachea_ct(volume, seed=None if seed_key is None else np.asarray(seed_key),
                                 progress=_sub(progress, 0.3, 0.95))
    source = {
        "kind": "dicom",
        "preset": "airway",
        "series_uid_sha256": hashlib.sha256(info.key.encode()).hexdigest()[:16],
        "modality": volume.modality,
        "shape": list(volume.shape),
        "spacing_m": [round(float(v), 7) for v in volume.spacing],
        "seed_m": seed_key,
    }
    report = {"trachea": measure.to_dict(), "summary": measure.summary(), "notes": list(volume.notes)}

    def write(folder: Path) -> None:
        (folder / TRACHEA_FILE).write_text(json.dumps(measure.to_dict(), indent=1), encoding="utf-8")

    say(0.95, "saving the case")
    _store_folder(case_id, write, source, time.perf_counter() - t0,
                  labels=["trachea", "right_main_bronchus", "left_main_bronchus"], report=report)
    say(1.0, f"saved airway case {case_id}")


def import_mesh_case(
    path: Path | str,
    progress: Progress | None = None,
    *,
    orientation: str = "auto",
) -> str:
    """Import a vessel surface (lumen, or a hollow phantom's wall) as a case.

    See :func:`surgsim.cases.build.build_mesh_case`: the lumen is closed,
    oriented to patient coordinates, placed in a synthetic contrast CT (for
    fluoroscopy) and given a distance field and labelled centerlines.

    Parameters
    ----------
    path : Path
        STL, OBJ, PLY, VTP, VTK or GLB; metres or millimetres (detected).
    progress : callable(fraction, message), optional
    orientation : {"auto", "lps"}
        ``"lps"``: the file is in patient coordinates already, do not rotate.

    Returns
    -------
    str
        The case id.

    Raises
    ------
    AnatomyError
        Unreadable file, a surface that cannot be closed, no aorta found.
    """
    from surgsim.anatomy.io import read_surface
    from surgsim.anatomy.pipeline import _file_digest
    from surgsim.cases.build import build_mesh_case

    path = Path(path)
    if not path.is_file():
        raise AnatomyError(f"{path}: no such surface file")
    t0 = time.perf_counter()
    digest = _file_digest(path)
    case_id = _new_id(f"mesh|{digest}|{orientation}")
    say = _sub(progress, 0.0, 1.0)
    if _is_usable(case_id):
        say(1.0, f"case {case_id} is already in the library")
        return case_id
    say(0.0, "reading the surface")
    mesh = read_surface(path)
    try:
        case, notes = build_mesh_case(mesh, case_id, orientation=orientation, progress=_sub(progress, 0.02, 0.95))
    except AnatomyError as exc:
        raise AnatomyError(f"{path}: {exc}") from None
    read_notes = [str(n) for n in mesh.field_data["notes"] if str(n)]
    case.report = dict(case.report, notes=read_notes + list(notes))
    source = {
        "kind": "mesh",
        "file_sha256": digest,
        "orientation": orientation,
        "synthetic_ct": True,
    }
    say(0.95, "saving the case")
    _store(case, source, time.perf_counter() - t0)
    say(1.0, f"saved case {case_id}")
    return case_id
