"""Loading and validating scenario files.

:func:`load_scenario` reads a YAML scenario and either returns a
:class:`~surgsim.scenarios.model.Scenario` or raises one
:class:`~surgsim.errors.ScenarioError` listing every problem found, each as
``file:line: key.path[i]: reason`` (with a suggestion for a misspelt key).
:func:`validate_files` reports the problems of many files without raising.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from surgsim.errors import ScenarioError
from surgsim.paths import ASSETS_DIR, SCENARIOS_DIR
from surgsim.scenarios.model import SCHEMA_VERSION, Scenario

__all__ = [
    "FALLBACK_DEVICES",
    "MIGRATIONS",
    "PHANTOM_LABELS",
    "SCHEMA_PATH",
    "json_schema",
    "known_devices",
    "load_scenario",
    "migrate",
    "validate_files",
    "write_json_schema",
]

#: Where the generated JSON schema is committed.
SCHEMA_PATH = SCENARIOS_DIR / "schema" / "scenario.schema.json"

#: Migrations of the raw scenario dict: ``MIGRATIONS[v]`` turns version v into v + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

#: Device names used when ``surgsim.instruments.catheter.CATALOGUE`` is not importable.
FALLBACK_DEVICES: tuple[str, ...] = ("angled_5fr", "cobra_5fr", "simmons_5fr", "guidewire_035")

#: Anatomy labels of the built-in phantoms, used when ``surgsim.cases.phantom`` is not importable.
_FALLBACK_PHANTOM_LABELS: frozenset[str] = frozenset(
    {
        "aorta",
        "brachiocephalic",
        "left_common_carotid",
        "left_subclavian",
        "trachea",
        "right_main_bronchus",
        "left_main_bronchus",
    }
)


def _phantom_labels() -> dict[str, frozenset[str]]:
    """Labels of every phantom variant (names from ``surgsim.cases.phantom.VARIANTS``)."""
    try:
        from surgsim.cases import phantom  # noqa: PLC0415 (numpy/scipy only)
    except ImportError:
        return {"default": _FALLBACK_PHANTOM_LABELS}
    labels = frozenset(phantom.VESSEL_LABELS) | frozenset(phantom.AIRWAY_LABELS)
    return {variant: labels for variant in phantom.VARIANTS}


#: Anatomy labels each built-in phantom provides (targets must use one of them).
PHANTOM_LABELS: dict[str, frozenset[str]] = _phantom_labels()
try:  # airway phantoms: {phantom: airway-adult}, airway-difficult, airway-obese, airway-child
    from surgsim.cases.airway_phantom import AIRWAY_LABELS as _AIRWAY_LABELS  # noqa: E402
    from surgsim.cases.airway_phantom import VARIANTS as _AIRWAY_VARIANTS  # noqa: E402

    PHANTOM_LABELS.update({f"airway-{v}": frozenset(_AIRWAY_LABELS) for v in _AIRWAY_VARIANTS})
except ImportError:  # pragma: no cover
    pass

Loc = tuple[str | int, ...]


class _Problems:
    """Problems of one file, each with the key path and YAML line it refers to."""

    def __init__(self, path: Path, lines: dict[Loc, int] | None = None) -> None:
        self.path = path
        self.lines = lines or {}
        self.items: list[tuple[int, int, str]] = []  # (line or big, order, text)

    def add(self, loc: Loc, reason: str, line: int | None = None) -> None:
        if line is None:
            line = self._line(loc)
        where = f"{self.path}:{line}" if line else f"{self.path}"
        key = _format_loc(loc)
        text = f"{where}: {key}: {reason}" if key else f"{where}: {reason}"
        self.items.append((line or 10**9, len(self.items), text))

    def _line(self, loc: Loc) -> int | None:
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None

    def texts(self) -> list[str]:
        return [text for _, _, text in sorted(self.items)]


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# ------------------------------------------------------------------ YAML


class _Loader(yaml.SafeLoader):
    """Safe loader that records duplicate keys instead of silently keeping the last."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[yaml.Node, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    self.duplicates.append((key_node, str(key)))
                seen.add(key)
            except TypeError:  # unhashable key: let the base class complain
                pass
        return super().construct_mapping(node, deep=deep)


def _line_map(
    node: yaml.Node | None, loc: Loc = (), out: dict[Loc, int] | None = None
) -> dict[Loc, int]:
    """Map every key path of a composed YAML document to its 1-based line."""
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                sub = (*loc, key_node.value)
                out[sub] = key_node.start_mark.line + 1
                _line_map(value_node, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*loc, i)
            out[sub] = item.start_mark.line + 1
            _line_map(item, sub, out)
    return out


def _parse_yaml(text: str, problems: _Problems) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        problems.lines = _line_map(node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = f" (column {mark.column + 1})" if mark is not None else ""
        reason = str(exc.problem or exc.context or "invalid YAML")
        if exc.context and exc.problem:
            cmark = exc.context_mark
            at = f" started at line {cmark.line + 1}" if cmark is not None else ""
            reason += f" ({exc.context}{at})"
        problems.add((), f"YAML syntax error{col}: {reason}; fix the YAML", line=line)
        return None
    except yaml.YAMLError as exc:
        problems.add((), f"YAML error: {exc}")
        return None
    finally:
        loader.dispose()
    for key_node, key in loader.duplicates:
        problems.add(
            (),
            f"key {key!r} appears twice in the same block; keep one",
            line=key_node.start_mark.line + 1,
        )
    return data


# ------------------------------------------------------------------ migration


def migrate(
    data: dict[str, Any],
    migrations: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    current: int = SCHEMA_VERSION,
) -> dict[str, Any]:
    """Bring a raw scenario dict to the current ``schema_version``.

    Parameters
    ----------
    data : dict
        The YAML content (not modified).
    migrations : dict of int to callable, optional
        ``migrations[v](data)`` returns the dict in version v + 1 (default :data:`MIGRATIONS`).
    current : int
        The version to reach.

    Raises
    ------
    ScenarioError
        The file is newer than this code, or a migration step is missing.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ScenarioError(f"schema_version: must be a positive integer (got {version!r})")
    if version > current:
        raise ScenarioError(
            f"schema_version: {version} is newer than this surgsim reads ({current}); "
            "update surgsim"
        )
    out = copy.deepcopy(data)
    while version < current:
        step = migrations.get(version)
        if step is None:
            raise ScenarioError(
                f"schema_version: no migration from version {version} to {version + 1}"
            )
        out = step(out)
        version += 1
        out["schema_version"] = version
    return out


# ------------------------------------------------------------------ catalogues


def known_devices() -> list[str]:
    """Device catalogue keys (``surgsim.instruments.catheter.CATALOGUE``, else the fallback set)."""
    try:
        from surgsim.instruments.catheter import CATALOGUE  # noqa: PLC0415 (lazy on purpose)
    except ImportError:
        names = list(FALLBACK_DEVICES)
    else:
        names = [str(k) for k in CATALOGUE]
    try:
        from surgsim.instruments.airway import AIRWAY_DEVICES  # noqa: PLC0415
    except ImportError:
        return names
    return names + [str(k) for k in AIRWAY_DEVICES if k not in names]


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ------------------------------------------------------------------ pydantic errors


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Annotated from a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class validating the mapping at key path ``loc``."""
    tp: Any = Scenario
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {(f.alias or name): f for name, f in tp.model_fields.items()}
            if part not in fields:
                return None
            tp = fields[part].annotation
        elif origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _add_validation_errors(exc: ValidationError, problems: _Problems) -> None:
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        msg = err["msg"]
        if kind == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = [(f.alias or n) for n, f in model.model_fields.items()] if model else []
            key = str(loc[-1])
            hint = _suggest(key, allowed)
            tail = f" (allowed here: {', '.join(allowed)})" if allowed and not hint else ""
            problems.add(loc, f"unknown key {key!r}{hint}{tail}")
            continue
        if kind == "missing":
            problems.add(loc, "missing required key")
            continue
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        if kind == "literal_error" and isinstance(err.get("input"), str):
            choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
            msg += _suggest(err["input"], choices)
        if kind not in ("value_error", "assertion_error") and "input" in err:
            value = err["input"]
            shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
            if len(shown) > 60:
                shown = shown[:57] + "..."
            msg += f" (got {shown})"
        problems.add(loc, msg)


# ------------------------------------------------------------------ cross-checks


def _cross_check(data: dict[str, Any], base: Path, problems: _Problems) -> None:
    """Checks that need more than the model: devices, labels, asset paths.

    Works on the raw dict and skips parts the model already rejects, so that
    every problem is reported in one pass.
    """
    devices = known_devices()
    instruments = data.get("instruments")
    if isinstance(instruments, list):
        for i, inst in enumerate(instruments):
            dev = inst.get("device") if isinstance(inst, dict) else None
            if isinstance(dev, str) and dev not in devices:
                problems.add(
                    ("instruments", i, "device"),
                    f"unknown device {dev!r}{_suggest(dev, devices)} (known: {', '.join(devices)})",
                )

    case = data.get("case")
    labels: frozenset[str] | None = None
    if isinstance(case, dict):
        phantom = case.get("phantom")
        if isinstance(phantom, str):
            if phantom in PHANTOM_LABELS:
                labels = PHANTOM_LABELS[phantom]
            else:
                names = list(PHANTOM_LABELS)
                problems.add(
                    ("case", "phantom"),
                    f"unknown phantom {phantom!r}{_suggest(phantom, names)} (known: {', '.join(names)})",
                )
        case_id = case.get("case_id")
        if isinstance(case_id, str) and "phantom" not in case and "dicom" not in case:
            labels = _library_labels(case_id, problems)
        dicom = case.get("dicom")
        if isinstance(dicom, str):
            reason = _asset_problem(dicom, base)
            if reason:
                problems.add(("case", "dicom"), reason)
        trachea = case.get("trachea_case_id")
        if isinstance(trachea, str):
            _check_trachea_case(trachea, problems)

    targets = data.get("targets")
    if labels is not None and isinstance(targets, list):
        names = sorted(labels)
        for i, target in enumerate(targets):
            label = target.get("label") if isinstance(target, dict) else None
            if isinstance(label, str) and label not in labels:
                problems.add(
                    ("targets", i, "label"),
                    f"unknown anatomy label {label!r}{_suggest(label, names)} for this case "
                    f"(known: {', '.join(names)})",
                )


def _library_labels(case_id: str, problems: _Problems) -> frozenset[str] | None:
    """Labels of a case in the case library; a problem (and None) when it is not usable here."""
    from surgsim.cases.library import read_manifest  # noqa: PLC0415 (reads only the manifest)
    from surgsim.errors import SurgsimError  # noqa: PLC0415

    try:
        manifest = read_manifest(case_id)
    except SurgsimError as exc:
        problems.add(("case", "case_id"), str(exc))
        return None
    labels = manifest.get("labels")
    return frozenset(labels) if isinstance(labels, list) else None


def _check_trachea_case(case_id: str, problems: _Problems) -> None:
    """An intubation scenario's ``trachea_case_id`` must be an airway case of the library."""
    from surgsim.cases.library import read_manifest  # noqa: PLC0415 (reads only the manifest)
    from surgsim.errors import SurgsimError  # noqa: PLC0415

    try:
        manifest = read_manifest(case_id)
    except SurgsimError as exc:
        problems.add(("case", "trachea_case_id"), str(exc))
        return
    if manifest["source"].get("preset") != "airway":
        problems.add(("case", "trachea_case_id"),
                     f"case {case_id!r} is not an airway case; import a chest CT with "
                     "`surgsim case import FOLDER --preset airway` and use that id")


def _asset_problem(rel: str, base: Path) -> str | None:
    """Why an asset path is refused, or None if it is fine."""
    p = Path(rel)
    if p.is_absolute():
        return (
            f"absolute path {rel!r} is not allowed; give a path relative to the scenario file, "
            f"inside its folder or under {ASSETS_DIR}"
        )
    resolved = (base / p).resolve()
    roots = [base.resolve(), ASSETS_DIR.resolve()]
    if not any(resolved.is_relative_to(r) for r in roots):
        return (
            f"path {rel!r} leads to {resolved}, outside the scenario's folder ({roots[0]}) "
            f"and the assets folder ({roots[1]}); move the data under one of them"
        )
    if not resolved.is_dir():
        return f"folder {resolved} not found; put the DICOM series there or fix the path"
    return None


# ------------------------------------------------------------------ public API


def _check(path: Path) -> tuple[Scenario | None, list[str]]:
    path = Path(path)
    problems = _Problems(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add((), f"cannot read the scenario file ({exc}); check the path")
        return None, problems.texts()
    data = _parse_yaml(text, problems)
    if data is None and not problems.items:
        problems.add((), "the file is empty; a scenario needs at least id, title, version, ...")
    if problems.items:
        return None, problems.texts()
    if not isinstance(data, dict):
        problems.add((), f"the top level must be a mapping of keys (got {type(data).__name__})")
        return None, problems.texts()
    try:
        data = migrate(data)
    except ScenarioError as exc:
        problems.add(("schema_version",), str(exc).split(": ", 1)[-1])
        return None, problems.texts()
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        _add_validation_errors(exc, problems)
    _cross_check(data, path.parent, problems)
    if problems.items:
        return None, problems.texts()
    assert scenario is not None
    scenario._source = path.resolve()
    return scenario, []


def load_scenario(path: Path | str) -> Scenario:
    """Load and validate a scenario file.

    Parameters
    ----------
    path : Path
        The YAML file.

    Returns
    -------
    Scenario
        The validated scenario (``source_path`` set to the file).

    Raises
    ------
    ScenarioError
        With every problem found, one per line as ``file:line: key.path: reason``;
        the list is also in the exception's ``problems`` attribute.
    """
    path = Path(path)
    scenario, problems = _check(path)
    if scenario is None:
        n = len(problems)
        err = ScenarioError(
            f"{path}: {n} problem{'s' if n != 1 else ''} in the scenario file:\n  "
            + "\n  ".join(problems)
        )
        err.path = path  # type: ignore[attr-defined]
        err.problems = problems  # type: ignore[attr-defined]
        raise err
    return scenario


def validate_files(paths: list[Path]) -> list[tuple[Path, list[str]]]:
    """Validate scenario files without raising (``surgsim scenario validate FILE...``).

    Returns
    -------
    list of (Path, list of str)
        Each file with its problems (an empty list when valid).
    """
    return [(Path(p), _check(Path(p))[1]) for p in paths]


def json_schema() -> dict[str, Any]:
    """The JSON schema of the scenario format (for editors and other tools)."""
    schema = Scenario.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "surgsim scenario",
        "description": (
            "A surgsim training scenario (generated from surgsim.scenarios.model; "
            "regenerate with surgsim.scenarios.write_json_schema())."
        ),
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def json_schema_text() -> str:
    """:func:`json_schema` as the exact text committed in :data:`SCHEMA_PATH`."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_json_schema(path: Path | str | None = None) -> Path:
    """Write the JSON schema (default :data:`SCHEMA_PATH`); returns the path written."""
    path = Path(path) if path is not None else SCHEMA_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_schema_text(), encoding="utf-8")
    return path
