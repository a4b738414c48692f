"""Educator's scenario editor: a form generated from the scenario model and its JSON schema.

The form's structure comes from the pydantic model
(:class:`surgsim.scenarios.model.Scenario`): nested models become group boxes,
lists of models (instruments, targets, rubric metrics) editable tables, ``Literal``
fields and schema enums combo boxes, numbers spin boxes with the unit read from
the key suffix (``_s``, ``_m``, ``_n``, ``_deg``...). Tooltips are the JSON
schema's descriptions and limits.

Every edit re-validates the scenario (after a short pause) exactly as
``surgsim scenario validate`` does, through the validators of
:mod:`surgsim.scenarios.load`, and lists every problem with its key path; the
offending fields turn red. Spin boxes deliberately accept values outside the
schema's limits so that the problem is *shown* rather than silently clamped.
Saving writes YAML with the ``# yaml-language-server: $schema=...`` header and
is refused while any problem remains.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from surgsim.errors import ScenarioError
from surgsim.paths import SCENARIOS_DIR
from surgsim.scenarios import load as _load
from surgsim.scenarios.model import Scenario

__all__ = ["SCHEMA_HEADER", "ScenarioEditor", "scenario_yaml", "unit_of", "validate_text"]

#: First line of a saved scenario; ``{}`` is the schema path relative to the file.
SCHEMA_HEADER = "# yaml-language-server: $schema={}"

#: Key suffix -> display unit (longest suffix wins).
UNIT_SUFFIXES: dict[str, str] = {
    "_m_s": "m/s", "_gy_m2": "Gy m²", "_ns": "N s", "_deg": "deg", "_ml": "ml", "_hz": "Hz",
    "_pct": "%", "_kg": "kg", "_s": "s", "_m": "m", "_n": "N",
}
MULTILINE_KEYS = {"description"}
INVALID_STYLE = "background-color: #ffd6d6"
INVALID_BG = QColor(255, 214, 214)
_MISSING = object()
Loc = tuple[Any, ...]

#: A new scenario starts from this (valid) content.
TEMPLATE: dict[str, Any] = {
    "schema_version": 1,
    "id": "new-scenario",
    "title": "New scenario",
    "version": "1.0",
    "author": "",
    "procedure": "endovascular",
    "difficulty": 1,
    "description": "",
    "learning_objectives": [],
    "case": {"phantom": "default"},
    "instruments": [{"id": "catheter", "device": "angled_5fr"}],
    "targets": [],
    "time_limit_s": 600.0,
    "rubric": {"pass_score": 60.0,
               "metrics": [{"metric": "time_s", "weight": 1.0, "pass": 240.0, "excellent": 60.0}],
               "critical_errors": ["perforation"]},
}


def unit_of(key: str) -> str:
    """Display unit of a key from its suffix (``time_limit_s`` -> ``"s"``; ``""`` if none)."""
    for suffix in sorted(UNIT_SUFFIXES, key=len, reverse=True):
        if key.endswith(suffix):
            return UNIT_SUFFIXES[suffix]
    return ""


# ------------------------------------------------------------------ validation and YAML


class _LocProblems(_load._Problems):
    """The validator's problem list, also keeping each problem's key path."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.locs: list[tuple[Loc, str]] = []

    def add(self, loc, reason, line=None) -> None:  # noqa: D102
        self.locs.append((tuple(loc), reason))
        super().add(loc, reason, line)

    def sorted_locs(self) -> list[tuple[Loc, str]]:
        """Key paths in the order of :meth:`texts` (by line)."""
        return [self.locs[order] for _, order, _ in sorted(self.items)]


def validate_text(text: str, path: Path | str) -> tuple[Scenario | None, list[str], list[tuple[Loc, str]]]:
    """Validate scenario YAML ``text`` as if it were saved at ``path``.

    The same checks as :func:`surgsim.scenarios.load.load_scenario` (YAML, migration,
    model, devices, anatomy labels, asset paths relative to ``path``'s folder).

    Returns
    -------
    scenario : Scenario or None
        The validated scenario, None when there are problems.
    problems : list of str
        ``file:line: key.path: reason``, sorted by line.
    locs : list of (tuple, str)
        Each problem's key path and reason (for highlighting fields).
    """
    path = Path(path)
    problems = _LocProblems(path)
    data = _load._parse_yaml(text, problems)
    if data is None and not problems.items:
        problems.add((), "the scenario is empty")
    if problems.items:
        return None, problems.texts(), problems.sorted_locs()
    if not isinstance(data, dict):
        problems.add((), f"the top level must be a mapping of keys (got {type(data).__name__})")
        return None, problems.texts(), problems.sorted_locs()
    try:
        data = _load.migrate(data)
    except ScenarioError as exc:
        problems.add(("schema_version",), str(exc).split(": ", 1)[-1])
        return None, problems.texts(), problems.sorted_locs()
    scenario = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        _load._add_validation_errors(exc, problems)
    _load._cross_check(data, path.parent, problems)
    if problems.items:
        return None, problems.texts(), problems.sorted_locs()
    scenario._source = path.resolve()
    return scenario, [], []


class _Dumper(yaml.SafeDumper):
    """Safe dumper writing multi-line strings as ``|`` blocks and keeping key order."""


def _str_representer(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value.strip("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def scenario_yaml(data: dict[str, Any], path: Path | str) -> str:
    """Scenario content as YAML text with the schema header for a file at ``path``."""
    schema = os.path.relpath(_load.SCHEMA_PATH, Path(path).resolve().parent)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)
    return SCHEMA_HEADER.format(Path(schema).as_posix()) + "\n" + body


# ------------------------------------------------------------------ type helpers


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(type without Optional/Annotated, whether None is allowed)."""
    optional = False
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            if len(args) != 1:
                return tp, optional
            tp = args[0]
        else:
            return tp, optional


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _fields(model: type[BaseModel]) -> list[tuple[str, Any]]:
    """(key as written in YAML, FieldInfo) in declaration order."""
    return [(f.alias or name, f) for name, f in model.model_fields.items()]


def _tooltip(key: str, prop: dict[str, Any]) -> str:
    """Description and limits of a field from its JSON schema property."""
    parts = [prop["description"]] if prop.get("description") else []
    limits = []
    for word, sym in (("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"),
                      ("maximum", "<=")):
        if word in prop:
            limits.append(f"{sym} {prop[word]:g}")
    if "pattern" in prop:
        limits.append(f"pattern {prop['pattern']}")
    if "minLength" in prop:
        limits.append(f"at least {prop['minLength']} characters")
    if "maxLength" in prop:
        limits.append(f"at most {prop['maxLength']} characters")
    unit = unit_of(key)
    if limits:
        parts.append("Allowed: " + ", ".join(limits) + (f" {unit}" if unit else ""))
    if "default" in prop:
        parts.append(f"Default: {prop['default']}")
    return f"{key}: " + " ".join(parts) if parts else key


def _fmt_number(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)


def _parse_cell(text: str, tp: Any) -> Any:
    """A table cell's text as the field's type (raw text when it does not parse: the validator says why)."""
    text = text.strip()
    if text == "":
        return _MISSING
    if tp is int:
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)
                return int(f) if f.is_integer() else f
            except ValueError:
                return text
    if tp is float:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _hint_choices(loc: tuple[str, ...]) -> list[str] | None:
    """Known values for free-text fields that have a catalogue (editable combo boxes)."""
    if loc == ("instruments", "device"):
        return _load.known_devices()
    if loc == ("case", "phantom"):
        return list(_load.PHANTOM_LABELS)
    if loc == ("targets", "label"):
        return sorted(set().union(*_load.PHANTOM_LABELS.values()))
    return None


# ------------------------------------------------------------------ field editors


class _Editor:
    """A widget editing one value; ``get`` returns the YAML value or ``_MISSING``."""

    widget: QWidget

    def __init__(self, changed) -> None:
        self._changed = changed
        self._tip = ""

    def set_tip(self, tip: str) -> None:
        self._tip = tip
        self.widget.setToolTip(tip)

    def get(self) -> Any:
        raise NotImplementedError

    def set(self, value: Any, dropped: list[str], loc: Loc) -> None:
        raise NotImplementedError

    def mark(self, loc: Loc, reason: str) -> bool:
        """Show a problem at ``loc`` (relative to this editor); True when shown."""
        self.widget.setStyleSheet(INVALID_STYLE)
        self.widget.setToolTip(f"{self._tip}\n\nProblem: {reason}".strip())
        return True

    def clear_marks(self) -> None:
        self.widget.setStyleSheet("")
        self.widget.setToolTip(self._tip)

    def find(self, loc: Loc) -> QWidget | None:
        return self.widget if not loc else None


class _LineEditor(_Editor):
    def __init__(self, changed, optional: bool) -> None:
        super().__init__(changed)
        self.optional = optional
        self.widget = QLineEdit()
        self.widget.textChanged.connect(changed)

    def get(self) -> Any:
        text = self.widget.text()
        return _MISSING if self.optional and text.strip() == "" else text

    def set(self, value, dropped, loc) -> None:
        self.widget.setText("" if value is None else str(value))


class _ComboEditor(_Editor):
    """Fixed choices (``Literal`` or schema enum), or an editable list of known values."""

    def __init__(self, changed, choices: list[Any], editable: bool = False,
                 optional: bool = False) -> None:
        super().__init__(changed)
        self.optional = optional
        self.widget = QComboBox()
        self.widget.setEditable(editable)
        if optional:
            self.widget.addItem("", _MISSING)
        for c in choices:
            self.widget.addItem(str(c), c)
        self.widget.currentIndexChanged.connect(changed)
        if editable:
            self.widget.editTextChanged.connect(changed)

    def get(self) -> Any:
        if self.widget.isEditable():
            text = self.widget.currentText().strip()
            return _MISSING if self.optional and not text else text
        return self.widget.currentData()

    def set(self, value, dropped, loc) -> None:
        if value is None:
            self.widget.setCurrentIndex(0 if self.optional else -1)
            if self.widget.isEditable():
                self.widget.setEditText("")
            return
        i = self.widget.findData(value)
        if i < 0:
            self.widget.addItem(str(value), value)
            i = self.widget.count() - 1
        self.widget.setCurrentIndex(i)


class _CompactSpin(QDoubleSpinBox):
    """A double spin box showing numbers without trailing zeros (0.008, 600)."""

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt API)
        return f"{value:.8g}"


class _NumberEditor(_Editor):
    """Spin box for a required number, with the unit of its key as suffix.

    The range is deliberately wider than the schema's limits: an out-of-range
    value is listed as a problem instead of being clamped away.
    """

    def __init__(self, changed, kind: type, unit: str) -> None:
        super().__init__(changed)
        self.kind = kind
        if kind is int:
            self.widget = QSpinBox()
            self.widget.setRange(-2**31, 2**31 - 1)
        else:
            self.widget = _CompactSpin()
            self.widget.setDecimals(8)
            self.widget.setRange(-1e12, 1e12)
        self.widget.setKeyboardTracking(True)
        if unit:
            self.widget.setSuffix(f" {unit}")
        self.widget.valueChanged.connect(changed)

    def get(self) -> Any:
        v = self.widget.value()
        return int(v) if self.kind is int else float(v)

    def set(self, value, dropped, loc) -> None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            dropped.append(f"{_load._format_loc(loc)} (not a number: {value!r})")
            v = 0.0
        self.widget.setValue(int(v) if self.kind is int else v)


class _OptionalNumberEditor(_Editor):
    """Line edit for an optional number: empty means 'not given' (the catalogue's value)."""

    def __init__(self, changed, kind: type, unit: str) -> None:
        super().__init__(changed)
        self.kind = kind
        self.widget = QWidget()
        row = QHBoxLayout(self.widget)
        row.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("default")
        self.edit.textChanged.connect(changed)
        row.addWidget(self.edit)
        if unit:
            row.addWidget(QLabel(unit))

    def get(self) -> Any:
        return _parse_cell(self.edit.text(), self.kind)

    def set(self, value, dropped, loc) -> None:
        self.edit.setText(_fmt_number(value))


class _TextEditor(_Editor):
    def __init__(self, changed) -> None:
        super().__init__(changed)
        self.widget = QPlainTextEdit()
        self.widget.setFixedHeight(90)
        self.widget.textChanged.connect(changed)
        self._original: str | None = None

    def get(self) -> Any:
        text = self.widget.toPlainText()
        # an unedited text keeps its exact original (a folded YAML block's final newline)
        if self._original is not None and text == self._original.strip():
            return self._original
        return text

    def set(self, value, dropped, loc) -> None:
        self._original = None if value is None else str(value)
        self.widget.setPlainText("" if value is None else str(value).strip())


class _LinesEditor(_Editor):
    """A list of strings, one per line."""

    def __init__(self, changed) -> None:
        super().__init__(changed)
        self.widget = QPlainTextEdit()
        self.widget.setFixedHeight(80)
        self.widget.setPlaceholderText("one per line")
        self.widget.textChanged.connect(changed)

    def get(self) -> Any:
        return [line.strip() for line in self.widget.toPlainText().splitlines() if line.strip()]

    def set(self, value, dropped, loc) -> None:
        items = value if isinstance(value, list) else []
        self.widget.setPlainText("\n".join(str(v).strip() for v in items))


class _ChecksEditor(_Editor):
    """A list of strings from an enum: one check box per choice."""

    def __init__(self, changed, choices: list[str]) -> None:
        super().__init__(changed)
        self.widget = QListWidget()
        self.widget.setFixedHeight(22 * len(choices) + 8)
        for c in choices:
            item = QListWidgetItem(c)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.widget.addItem(item)
        self.widget.itemChanged.connect(changed)

    def get(self) -> Any:
        return [self.widget.item(i).text() for i in range(self.widget.count())
                if self.widget.item(i).checkState() == Qt.CheckState.Checked]

    def set(self, value, dropped, loc) -> None:
        wanted = set(value) if isinstance(value, list) else set()
        for v in sorted(wanted - {self.widget.item(i).text() for i in range(self.widget.count())}):
            dropped.append(f"{_load._format_loc(loc)}: unknown value {v!r}")
        for i in range(self.widget.count()):
            item = self.widget.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in wanted
                               else Qt.CheckState.Unchecked)


class _TableEditor(_Editor):
    """A list of models as a table: one column per field, add/remove row buttons."""

    def __init__(self, changed, model: type[BaseModel], loc: tuple[str, ...]) -> None:
        super().__init__(changed)
        self.model = model
        props = model.model_json_schema(by_alias=True).get("properties", {})
        self.columns: list[tuple[str, Any, list[Any] | None, bool]] = []
        for key, f in _fields(model):
            tp, _ = _unwrap(f.annotation)
            prop = props.get(key, {})
            if typing.get_origin(tp) is Literal:
                choices, editable = list(typing.get_args(tp)), False
            elif prop.get("enum"):
                choices, editable = list(prop["enum"]), False
            else:
                choices, editable = _hint_choices((*loc, key)), True
            self.columns.append((key, tp, choices, editable))
        self.widget = QWidget()
        layout = QVBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, len(self.columns))
        headers = [f"{k} [{unit_of(k)}]" if unit_of(k) else k for k, *_ in self.columns]
        self.table.setHorizontalHeaderLabels(headers)
        for c, (key, *_rest) in enumerate(self.columns):
            item = self.table.horizontalHeaderItem(c)
            item.setToolTip(_tooltip(key, props.get(key, {})))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(110)
        self.table.itemChanged.connect(changed)
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add row")
        self.add_button.clicked.connect(lambda: self.add_row({}))
        self.remove_button = QPushButton("Remove selected row")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)

    def add_row(self, values: dict[str, Any]) -> int:
        row = self.table.rowCount()
        self.table.blockSignals(True)
        self.table.insertRow(row)
        for c, (key, _tp, choices, editable) in enumerate(self.columns):
            value = values.get(key)
            if choices is not None:
                combo = QComboBox()
                combo.setEditable(editable)
                combo.addItem("", None)
                for ch in choices:
                    combo.addItem(str(ch), ch)
                if value is not None:
                    i = combo.findData(value)
                    if i < 0:
                        combo.addItem(str(value), value)
                        i = combo.count() - 1
                    combo.setCurrentIndex(i)
                combo.currentIndexChanged.connect(self._changed)
                if editable:
                    combo.editTextChanged.connect(self._changed)
                self.table.setCellWidget(row, c, combo)
            else:
                self.table.setItem(row, c, QTableWidgetItem(_fmt_number(value)))
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()
        for c in range(len(self.columns)):  # cell widgets do not count in resizeColumnsToContents
            w = self.table.cellWidget(row, c)
            if w is not None:
                self.table.setColumnWidth(c, max(self.table.columnWidth(c), w.sizeHint().width()))
        self._changed()
        return row

    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        if not rows and self.table.rowCount():
            rows = [self.table.currentRow() if self.table.currentRow() >= 0 else
                    self.table.rowCount() - 1]
        for r in rows:
            self.table.removeRow(r)
        self._changed()

    def cell_text(self, row: int, col: int) -> str:
        combo = self.table.cellWidget(row, col)
        if isinstance(combo, QComboBox):
            if combo.isEditable():
                return combo.currentText()
            data = combo.currentData()
            return "" if data is None else str(data)
        item = self.table.item(row, col)
        return item.text() if item is not None else ""

    def set_cell(self, row: int, key: str, text: str) -> None:
        """Set one cell by column key (combo cells select or type the text)."""
        col = [k for k, *_ in self.columns].index(key)
        combo = self.table.cellWidget(row, col)
        if isinstance(combo, QComboBox):
            i = combo.findText(text)
            if i >= 0:
                combo.setCurrentIndex(i)
            elif combo.isEditable():
                combo.setEditText(text)
            else:
                combo.addItem(text, text)
                combo.setCurrentIndex(combo.count() - 1)
        else:
            self.table.item(row, col).setText(text)

    def get(self) -> Any:
        rows = []
        for r in range(self.table.rowCount()):
            d = {}
            for c, (key, tp, _choices, _editable) in enumerate(self.columns):
                v = _parse_cell(self.cell_text(r, c), tp)
                if v is not _MISSING:
                    d[key] = v
            rows.append(d)
        return rows

    def set(self, value, dropped, loc) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        self.table.blockSignals(False)
        known = {k for k, *_ in self.columns}
        for i, row in enumerate(value if isinstance(value, list) else []):
            row = row if isinstance(row, dict) else {}
            for k in row:
                if k not in known:
                    dropped.append(_load._format_loc((*loc, i, k)))
            self.add_row(row)

    def mark(self, loc: Loc, reason: str) -> bool:
        keys = [k for k, *_ in self.columns]
        if loc and isinstance(loc[0], int) and loc[0] < self.table.rowCount():
            row = loc[0]
            cols = [keys.index(loc[1])] if len(loc) > 1 and loc[1] in keys else range(len(keys))
            for c in cols:
                w = self.table.cellWidget(row, c)
                if w is not None:
                    w.setStyleSheet(INVALID_STYLE)
                    w.setToolTip(f"Problem: {reason}")
                else:
                    item = self.table.item(row, c)
                    if item is not None:
                        self.table.blockSignals(True)
                        item.setBackground(QBrush(INVALID_BG))
                        item.setToolTip(f"Problem: {reason}")
                        self.table.blockSignals(False)
            return True
        self.table.setStyleSheet(INVALID_STYLE)
        self.table.setToolTip(f"Problem: {reason}")
        return True

    def clear_marks(self) -> None:
        self.table.setStyleSheet("")
        self.table.setToolTip(self._tip)
        self.table.blockSignals(True)
        for r in range(self.table.rowCount()):
            for c in range(self.table.columnCount()):
                w = self.table.cellWidget(r, c)
                if w is not None:
                    w.setStyleSheet("")
                    w.setToolTip("")
                item = self.table.item(r, c)
                if item is not None:
                    item.setBackground(QBrush())
                    item.setToolTip("")
        self.table.blockSignals(False)

    def find(self, loc: Loc) -> QWidget | None:
        if not loc:
            return self.table
        if isinstance(loc[0], int) and len(loc) > 1:
            keys = [k for k, *_ in self.columns]
            if loc[1] in keys and loc[0] < self.table.rowCount():
                return self.table.cellWidget(loc[0], keys.index(loc[1])) or self.table
        return self.table

    def set_tip(self, tip: str) -> None:
        self._tip = tip
        self.table.setToolTip(tip)


class _DictEditor(_Editor):
    """A mapping of str to str (feedback texts): key combo and text per row."""

    def __init__(self, changed, keys: list[str] | None) -> None:
        super().__init__(changed)
        self.keys = keys
        self.widget = QWidget()
        layout = QVBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["key", "text"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(130)
        self.table.setWordWrap(True)
        self.table.itemChanged.connect(changed)
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        add = QPushButton("Add text")
        add.clicked.connect(lambda: self.add_row("", ""))
        remove = QPushButton("Remove selected")
        remove.clicked.connect(self.remove_selected)
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        layout.addLayout(buttons)

    def add_row(self, key: str, text: str) -> None:
        row = self.table.rowCount()
        self.table.blockSignals(True)
        self.table.insertRow(row)
        combo = QComboBox()
        combo.setEditable(self.keys is None)
        combo.addItem("", "")
        for k in self.keys or []:
            combo.addItem(k, k)
        i = combo.findData(key)
        if i < 0:
            combo.addItem(key, key)
            i = combo.count() - 1
        combo.setCurrentIndex(i)
        combo.currentIndexChanged.connect(self._changed)
        self.table.setCellWidget(row, 0, combo)
        self.table.setItem(row, 1, QTableWidgetItem(text))
        self.table.blockSignals(False)
        self.table.resizeColumnToContents(0)
        self._changed()

    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        for r in rows:
            self.table.removeRow(r)
        self._changed()

    def get(self) -> Any:
        out = {}
        for r in range(self.table.rowCount()):
            combo = self.table.cellWidget(r, 0)
            key = combo.currentText().strip() if combo.isEditable() else str(combo.currentData())
            item = self.table.item(r, 1)
            text = item.text().strip() if item is not None else ""
            original = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
            if isinstance(original, str) and text == " ".join(original.split()):
                text = original  # unedited: keep the exact text (line breaks of a YAML block)
            if key:
                out[key] = text
        return out

    def set(self, value, dropped, loc) -> None:
        self.table.setRowCount(0)
        for k, v in (value.items() if isinstance(value, dict) else []):
            self.add_row(str(k), " ".join(str(v).split()))
            item = self.table.item(self.table.rowCount() - 1, 1)
            self.table.blockSignals(True)
            item.setData(Qt.ItemDataRole.UserRole, str(v))
            self.table.blockSignals(False)

    def mark(self, loc: Loc, reason: str) -> bool:
        self.table.setStyleSheet(INVALID_STYLE)
        self.table.setToolTip(f"Problem: {reason}")
        return True

    def clear_marks(self) -> None:
        self.table.setStyleSheet("")
        self.table.setToolTip(self._tip)

    def find(self, loc: Loc) -> QWidget | None:
        return self.table


class _GroupEditor(_Editor):
    """A nested model: a form with one row per field."""

    def __init__(self, changed, model: type[BaseModel], loc: tuple[str, ...] = (),
                 title: str | None = None) -> None:
        super().__init__(changed)
        self.model = model
        self.loc = loc
        props = model.model_json_schema(by_alias=True).get("properties", {})
        self.children: dict[str, _Editor] = {}
        if title is None:
            self.widget = QWidget()
        else:
            self.widget = QGroupBox(title)
        form = QFormLayout(self.widget)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for key, f in _fields(model):
            child = _make_editor(changed, key, f, props.get(key, {}), (*loc, key))
            child.set_tip(_tooltip(key, props.get(key, {})))
            self.children[key] = child
            if isinstance(child, _GroupEditor | _TableEditor | _DictEditor):
                if isinstance(child, _GroupEditor):
                    form.addRow(child.widget)
                else:
                    box = QGroupBox(key)
                    QVBoxLayout(box).addWidget(child.widget)
                    form.addRow(box)
            else:
                label = QLabel(key)
                label.setToolTip(_tooltip(key, props.get(key, {})))
                form.addRow(label, child.widget)

    def get(self) -> Any:
        out = {}
        for key, child in self.children.items():
            v = child.get()
            if v is not _MISSING:
                out[key] = v
        return out

    def set(self, value, dropped, loc) -> None:
        value = value if isinstance(value, dict) else {}
        for k in value:
            if k not in self.children:
                dropped.append(_load._format_loc((*loc, k)))
        for key, child in self.children.items():
            if key in value:
                child.set(value[key], dropped, (*loc, key))
            else:
                default = self._default(key)
                child.set(default, dropped, (*loc, key))

    def _default(self, key: str) -> Any:
        for k, f in _fields(self.model):
            if k == key:
                if f.is_required():
                    return None
                try:
                    d = f.get_default(call_default_factory=True)
                except TypeError:
                    d = f.get_default()
                if isinstance(d, BaseModel):
                    return d.model_dump(mode="json", by_alias=True)
                return d
        return None

    def mark(self, loc: Loc, reason: str) -> bool:
        if loc and loc[0] in self.children:
            return self.children[loc[0]].mark(loc[1:], reason)
        if isinstance(self.widget, QGroupBox):
            self.widget.setStyleSheet("QGroupBox { color: #b00000; font-weight: bold }")
            self.widget.setToolTip(f"Problem: {reason}")
            return True
        return False

    def clear_marks(self) -> None:
        if isinstance(self.widget, QGroupBox):
            self.widget.setStyleSheet("")
            self.widget.setToolTip("")
        for child in self.children.values():
            child.clear_marks()

    def find(self, loc: Loc) -> QWidget | None:
        if not loc:
            return self.widget
        child = self.children.get(loc[0])
        return child.find(loc[1:]) if child is not None else None

    def set_tip(self, tip: str) -> None:
        self._tip = tip


def _make_editor(changed, key: str, f, prop: dict[str, Any], loc: tuple[str, ...]) -> _Editor:
    """The editor for one model field, chosen from its type and schema."""
    tp, optional = _unwrap(f.annotation)
    origin = typing.get_origin(tp)
    if _is_model(tp):
        return _GroupEditor(changed, tp, loc, title=key)
    if origin is Literal:
        return _ComboEditor(changed, list(typing.get_args(tp)), optional=optional)
    if origin is list:
        item, _ = _unwrap(typing.get_args(tp)[0])
        if _is_model(item):
            return _TableEditor(changed, item, loc)
        enum = prop.get("items", {}).get("enum")
        return _ChecksEditor(changed, list(enum)) if enum else _LinesEditor(changed)
    if origin is dict:
        return _DictEditor(changed, prop.get("propertyNames", {}).get("enum"))
    if tp in (int, float):
        unit = unit_of(key)
        return _OptionalNumberEditor(changed, tp, unit) if optional else _NumberEditor(changed, tp, unit)
    if prop.get("enum"):
        return _ComboEditor(changed, list(prop["enum"]), optional=optional)
    hints = _hint_choices(loc)
    if hints is not None:
        return _ComboEditor(changed, hints, editable=True, optional=optional)
    if key in MULTILINE_KEYS:
        return _TextEditor(changed)
    return _LineEditor(changed, optional)


# ------------------------------------------------------------------ the editor


class ScenarioEditor(QWidget):
    """Edit a scenario file in a generated form with live validation.

    Parameters
    ----------
    path : Path, optional
        The scenario YAML to edit (None: a new scenario from :data:`TEMPLATE`,
        saved with "Save as...").

    Attributes
    ----------
    path : Path or None
        Where "Save" writes.
    problems : list of str
        The current problems as ``key.path: reason`` (e.g. ``targets[0].tolerance_m: ...``),
        empty when valid.
    problem_texts : list of str
        The same as the validator words them for the file (``file:line: key.path: reason``).
    problem_list : QListWidget
        Those problems, shown under the form.
    save_button : QPushButton
        Enabled only while the scenario is valid.

    Signals
    -------
    saved(Path)
        After a successful save.
    validity_changed(bool)
        When the scenario becomes valid or invalid.
    """

    saved = Signal(object)
    validity_changed = Signal(bool)

    def __init__(self, path: Path | str | None = None, parent=None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self.problems: list[str] = []
        self.problem_texts: list[str] = []
        self.problem_locs: list[tuple[Loc, str]] = []
        self.scenario: Scenario | None = None
        self._valid: bool | None = None
        self._loading = False
        self.resize(900, 900)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.validate)

        self.root = _GroupEditor(self._on_change, Scenario)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.root.widget)

        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #8a5a00")
        self.notice.hide()
        self.status = QLabel()
        self.status.setObjectName("editor_status")
        self.status.setWordWrap(True)
        self.problem_list = QListWidget()
        self.problem_list.itemActivated.connect(self._focus_problem)
        self.problem_list.itemClicked.connect(self._focus_problem)
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(lambda: self.save())
        self.save_as_button = QPushButton("Save as...")
        self.save_as_button.clicked.connect(self.save_as)
        self.revert_button = QPushButton("Revert")
        self.revert_button.clicked.connect(lambda: self.path and self.load(self.path))

        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.notice)
        bl.addWidget(self.status)
        bl.addWidget(self.problem_list, stretch=1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.save_as_button)
        buttons.addWidget(self.save_button)
        bl.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(scroll)
        splitter.addWidget(bottom)
        splitter.setSizes([700, 200])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        if path is not None:
            self.load(path)
        else:
            self._set_data(TEMPLATE, [])
            self._update_title()

    # ------------------------------------------------------------------ load
    def load(self, path: Path | str) -> None:
        """Load a scenario file into the form (an invalid file loads too, with its problems).

        Raises
        ------
        ScenarioError
            The file cannot be read or is not a YAML mapping.
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ScenarioError(f"{path}: cannot open in the editor ({exc}); fix the file by hand") from exc
        if not isinstance(data, dict):
            raise ScenarioError(f"{path}: the top level is not a mapping of keys; fix the file by hand")
        try:
            data = _load.migrate(data)
        except ScenarioError:
            pass  # shown by validation
        self.path = path
        dropped: list[str] = []
        self._set_data(data, dropped)
        self._update_title()

    def _set_data(self, data: dict[str, Any], dropped: list[str]) -> None:
        self._loading = True
        try:
            self.root.set(data, dropped, ())
        finally:
            self._loading = False
        if dropped:
            self.notice.setText("Not part of the scenario format, left out of the form (and of the "
                                "saved file): " + ", ".join(dropped))
            self.notice.show()
        else:
            self.notice.hide()
        self.validate()

    # ------------------------------------------------------------------ content
    def data(self) -> dict[str, Any]:
        """The form's content as the scenario dict (YAML keys, model order)."""
        return self.root.get()

    def yaml_text(self, path: Path | str | None = None) -> str:
        """The YAML that would be saved at ``path`` (default :attr:`path`)."""
        return scenario_yaml(self.data(), self._target(path))

    def _target(self, path: Path | str | None) -> Path:
        if path is not None:
            return Path(path)
        return self.path if self.path is not None else SCENARIOS_DIR / "untitled.yaml"

    def field(self, key_path: str) -> QWidget | None:
        """The widget editing ``key_path`` (``"time_limit_s"``, ``"start.initial_depth_m"``,
        ``"targets[0].hold_s"``; a table for ``"targets"``)."""
        return self.root.find(_parse_loc(key_path))

    def editor(self, key_path: str) -> _Editor | None:
        """The field editor object of a key path (tables expose ``set_cell``/``add_row``)."""
        node: Any = self.root
        for part in _parse_loc(key_path):
            if not isinstance(node, _GroupEditor) or part not in node.children:
                return None
            node = node.children[part]
        return node

    # ------------------------------------------------------------------ validation
    def _on_change(self, *_args) -> None:
        if not self._loading:
            self._timer.start()

    def validate(self) -> list[str]:
        """Validate the form's content now; returns (and lists) every problem."""
        self._timer.stop()
        target = self._target(None)
        return self._validate_for(target)

    def _validate_for(self, target: Path) -> list[str]:
        text = scenario_yaml(self.data(), target)
        scenario, texts, locs = validate_text(text, target)
        # "key.path: reason": line numbers of the not-yet-saved text would only confuse
        problems = [f"{_load._format_loc(loc)}: {reason}" if loc else reason for loc, reason in locs]
        self.scenario = scenario
        self.problems = problems
        self.problem_texts = texts
        self.problem_locs = locs
        self.root.clear_marks()
        for loc, reason in locs:
            self.root.mark(loc, reason)
        self.problem_list.clear()
        for text_line, full, (loc, _reason) in zip(problems, texts, locs, strict=True):
            item = QListWidgetItem(text_line)
            item.setToolTip(full)
            item.setData(Qt.ItemDataRole.UserRole, loc)
            item.setForeground(QBrush(QColor(176, 0, 0)))
            self.problem_list.addItem(item)
        valid = not problems
        if valid:
            self.status.setText("Valid scenario." + ("" if self.path else " Use Save as... to choose a file."))
            self.status.setStyleSheet("color: #1a7f1a")
        else:
            n = len(problems)
            self.status.setText(f"{n} problem{'s' if n != 1 else ''}: fix {'it' if n == 1 else 'them'} "
                                "to save (fields in red)")
            self.status.setStyleSheet("color: #b00000")
        self.save_button.setEnabled(valid and self.path is not None)
        if valid != self._valid:
            self._valid = valid
            self.validity_changed.emit(valid)
        self._update_title()
        return problems

    @property
    def is_valid(self) -> bool:
        return not self.problems

    def _focus_problem(self, item: QListWidgetItem) -> None:
        loc = item.data(Qt.ItemDataRole.UserRole)
        w = self.root.find(tuple(loc)) if loc is not None else None
        if w is not None:
            w.setFocus()

    # ------------------------------------------------------------------ saving
    def save(self, path: Path | str | None = None) -> bool:
        """Validate for ``path`` (default :attr:`path`) and write it; False (nothing written) if invalid."""
        if path is None and self.path is None:
            return self.save_as()
        target = self._target(path)
        problems = self._validate_for(target)
        if problems:
            self.status.setText(f"Not saved: {len(problems)} problem(s) remain; fix the fields in red.")
            self.status.setStyleSheet("color: #b00000")
            return False
        text = scenario_yaml(self.data(), target)
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.status.setText(f"Not saved: cannot write {target} ({exc.strerror}); choose another file.")
            self.status.setStyleSheet("color: #b00000")
            return False
        self.path = target
        self.save_button.setEnabled(True)
        self.status.setText(f"Saved {target}.")
        self.status.setStyleSheet("color: #1a7f1a")
        self._update_title()
        self.saved.emit(target)
        return True

    def save_as(self) -> bool:
        """Ask for a file name and save there."""
        start = str(self.path or SCENARIOS_DIR / "untitled.yaml")
        name, _ = QFileDialog.getSaveFileName(self, "Save scenario as", start, "Scenario (*.yaml)")
        if not name:
            return False
        return self.save(Path(name))

    def _update_title(self) -> None:
        name = self.path.name if self.path else "new scenario"
        flag = "" if not self.problems else f" ({len(self.problems)} problem(s))"
        self.setWindowTitle(f"surgsim scenario editor: {name}{flag}")


def _parse_loc(key_path: str) -> Loc:
    """``"targets[0].hold_s"`` -> ``("targets", 0, "hold_s")``."""
    out: list[Any] = []
    for part in key_path.split("."):
        while "[" in part:
            head, rest = part.split("[", 1)
            if head:
                out.append(head)
            idx, part = rest.split("]", 1)
            out.append(int(idx))
        if part:
            out.append(part)
    return tuple(out)


