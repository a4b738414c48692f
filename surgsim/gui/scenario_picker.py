"""Scenario picker: the bundled scenarios with their description and learning objectives.

Every ``*.yaml`` file of a scenario folder (default :data:`surgsim.paths.SCENARIOS_DIR`)
is validated with :func:`surgsim.scenarios.load.load_scenario`; valid ones can be
chosen, invalid ones are listed greyed out with every validation problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from surgsim.errors import ScenarioError
from surgsim.paths import SCENARIOS_DIR
from surgsim.scenarios.load import load_scenario

__all__ = ["PickerEntry", "ScenarioPicker", "scan_scenarios"]

PROCEDURE_NAMES = {"endovascular": "Endovascular catheterisation", "intubation": "Airway intubation"}


@dataclass(frozen=True)
class PickerEntry:
    """One scenario file: the validated scenario, or its problems."""

    path: Path
    scenario: object | None  # Scenario when valid
    problems: tuple[str, ...]
    title: str  # the scenario's title, or the file name when it cannot be read

    @property
    def valid(self) -> bool:
        return self.scenario is not None


def _raw_title(path: Path) -> str:
    """Best-effort title of an invalid file (its ``title`` key, else the file name)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return path.name
    title = data.get("title") if isinstance(data, dict) else None
    return str(title) if isinstance(title, str) and title.strip() else path.name


def scan_scenarios(folder: Path | str = SCENARIOS_DIR) -> list[PickerEntry]:
    """Validate every ``*.yaml`` directly in ``folder`` (not sub-folders such as ``inputs``).

    Returns
    -------
    list of PickerEntry
        Valid scenarios first (by difficulty, then title), then invalid files by name.
    """
    entries = []
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            problems = tuple(getattr(exc, "problems", None) or [str(exc)])
            entries.append(PickerEntry(path, None, problems, _raw_title(path)))
        else:
            entries.append(PickerEntry(path, scenario, (), scenario.title))
    valid = sorted((e for e in entries if e.valid),
                   key=lambda e: (e.scenario.difficulty, e.title.lower()))
    invalid = [e for e in entries if not e.valid]
    return valid + invalid


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def describe_html(entry: PickerEntry) -> str:
    """The details pane's HTML for one entry."""
    if not entry.valid:
        items = "".join(f"<li><tt>{_esc(p)}</tt></li>" for p in entry.problems)
        return (f"<h3>{_esc(entry.title)}</h3><p><b>{_esc(str(entry.path))}</b> is not a valid "
                f"scenario ({len(entry.problems)} problem{'s' if len(entry.problems) != 1 else ''})."
                f" Fix the file (or open it in the scenario editor):</p><ul>{items}</ul>")
    s = entry.scenario
    stars = "★" * s.difficulty + "☆" * (5 - s.difficulty)
    objectives = "".join(f"<li>{_esc(o)}</li>" for o in s.learning_objectives) or "<li>-</li>"
    targets = ", ".join(t.label.replace("_", " ") for t in s.targets) or "-"
    limit = f"{s.time_limit_s / 60:.0f} min" if s.time_limit_s >= 60 else f"{s.time_limit_s:.0f} s"
    return (
        f"<h3>{_esc(s.title)}</h3>"
        f"<p><b>Procedure:</b> {_esc(PROCEDURE_NAMES.get(s.procedure, s.procedure))}<br>"
        f"<b>Difficulty:</b> {stars} ({s.difficulty}/5)<br>"
        f"<b>Mode:</b> {_esc(s.mode)} &nbsp; <b>Time limit:</b> {limit}<br>"
        f"<b>Devices:</b> {_esc(', '.join(i.device for i in s.instruments))}<br>"
        f"<b>Targets:</b> {_esc(targets)}<br>"
        f"<b>Version:</b> {_esc(s.version)} by {_esc(s.author or 'unknown')}</p>"
        f"<p>{_esc(s.description.strip())}</p>"
        f"<p><b>Learning objectives</b></p><ul>{objectives}</ul>"
    )


class ScenarioPicker(QWidget):
    """List of scenarios with a details pane; emits the chosen scenario's path.

    Parameters
    ----------
    folder : Path, optional
        Where the scenario files are (default the bundled ``scenarios/``).

    Signals
    -------
    chosen(Path)
        A valid scenario was opened (Open button, double click or Return).
    """

    chosen = Signal(object)  # pathlib.Path

    def __init__(self, folder: Path | str = SCENARIOS_DIR, parent=None) -> None:
        super().__init__(parent)
        self.folder = Path(folder)
        self.setWindowTitle("surgsim: choose a scenario")
        self.entries: list[PickerEntry] = []

        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._show_details)
        self.list.itemActivated.connect(lambda _item: self.open_current())
        self.details = QTextBrowser()
        self.details.setOpenExternalLinks(False)
        self.open_button = QPushButton("Open scenario")
        self.open_button.clicked.connect(self.open_current)
        self.refresh_button = QPushButton("Rescan")
        self.refresh_button.clicked.connect(self.refresh)
        self.status = QLabel()

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.details, stretch=1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, stretch=1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.open_button)
        rl.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.list)
        splitter.addWidget(right)
        splitter.setSizes([320, 520])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.resize(900, 560)
        self.refresh()

    def refresh(self) -> None:
        """Re-read and re-validate the folder's scenario files."""
        self.entries = scan_scenarios(self.folder)
        self.list.clear()
        grey = QBrush(QColor(140, 140, 140))
        for entry in self.entries:
            if entry.valid:
                s = entry.scenario
                text = f"{entry.title}\n   {s.procedure} · difficulty {s.difficulty}/5"
            else:
                text = f"{entry.title}\n   invalid: {len(entry.problems)} problem(s) · {entry.path.name}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
            if not entry.valid:
                item.setForeground(grey)
                item.setToolTip("\n".join(entry.problems))
            self.list.addItem(item)
        n_bad = sum(not e.valid for e in self.entries)
        self.status.setText(f"{len(self.entries) - n_bad} scenario(s)"
                            + (f", {n_bad} invalid file(s)" if n_bad else "")
                            + f" in {self.folder}")
        if self.entries:
            self.list.setCurrentRow(0)
        else:
            self.details.setHtml(f"<p>No scenario files (*.yaml) in {_esc(str(self.folder))}.</p>")
            self.open_button.setEnabled(False)

    def current_entry(self) -> PickerEntry | None:
        row = self.list.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def select(self, path: Path | str) -> bool:
        """Select the entry of ``path``; returns False when it is not listed."""
        target = Path(path).resolve()
        for row, entry in enumerate(self.entries):
            if entry.path.resolve() == target:
                self.list.setCurrentRow(row)
                return True
        return False

    def _show_details(self, row: int) -> None:
        entry = self.entries[row] if 0 <= row < len(self.entries) else None
        if entry is None:
            self.details.clear()
            self.open_button.setEnabled(False)
            return
        self.details.setHtml(describe_html(entry))
        self.open_button.setEnabled(entry.valid)

    def open_current(self) -> Path | None:
        """Emit :attr:`chosen` with the selected scenario's path (None if invalid or none)."""
        entry = self.current_entry()
        if entry is None or not entry.valid:
            return None
        self.chosen.emit(entry.path)
        return entry.path
