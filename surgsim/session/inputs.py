"""Input log files: what a trainee did, as timed actions.

Format (YAML or JSON)::

    dt: 0.001               # physics step the steps refer to (optional, default 1 ms)
    inputs:
      - {t: 0.0, action: advance, value: 0.05}    # t in seconds ...
      - {step: 4000, action: rotate, value: 1.0}  # ... or a physics step index
      - {t: 12.5, action: finish}

Times are rounded to the nearest physics step, so a log is exact once loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from surgsim.errors import ScenarioError
from surgsim.scoring.log import InputEvent
from surgsim.session.session import ACTIONS, DT


def parse_inputs(data: object, source: str = "<inputs>", *, actions=None, dt: float = DT,
                 procedure: str = "the simulator") -> list[InputEvent]:
    """Turn a parsed input-log document into input events sorted by step.

    ``actions`` (default: the endovascular :data:`ACTIONS`) and ``dt`` (the
    session's physics step) let other sessions (intubation) share the format.

    Raises
    ------
    ScenarioError
        Naming ``source`` and the entry when an entry is malformed.
    """
    if isinstance(data, list):
        data = {"inputs": data}
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
        raise ScenarioError(f"{source}: expected a mapping with an 'inputs' list")
    actions = ACTIONS if actions is None else actions
    step_dt = dt
    dt = float(data.get("dt", step_dt))
    if dt != step_dt:
        raise ScenarioError(f"{source}: dt {dt} differs from {procedure}'s step {step_dt}; re-record the log")
    events: list[InputEvent] = []
    for n, entry in enumerate(data["inputs"]):
        where = f"{source}: inputs[{n}]"
        if not isinstance(entry, dict):
            raise ScenarioError(f"{where}: expected a mapping like {{t: 1.0, action: advance, value: 0.05}}")
        action = entry.get("action")
        if action not in actions:
            raise ScenarioError(f"{where}.action: {action!r} is not one of {', '.join(actions)}")
        if ("t" in entry) == ("step" in entry):
            raise ScenarioError(f"{where}: give exactly one of 't' (seconds) or 'step'")
        try:
            step = int(entry["step"]) if "step" in entry else int(round(float(entry["t"]) / dt))
            value = float(entry.get("value", 0.0))
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"{where}: {exc}") from exc
        if step < 0:
            raise ScenarioError(f"{where}: negative time")
        events.append(InputEvent(step, action, value))
    events.sort(key=lambda e: e.step)  # stable: same-step inputs keep file order
    return events


def load_inputs(path: Path, *, actions=None, dt: float = DT,
                procedure: str = "the simulator") -> list[InputEvent]:
    """Read an input log file (YAML or JSON); see :func:`parse_inputs` for the options."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the input log ({exc.strerror})") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
    return parse_inputs(data, str(path), actions=actions, dt=dt, procedure=procedure)


def dump_inputs(events: list[InputEvent], path: Path) -> None:
    """Write input events as a YAML input log (by step, exact)."""
    doc = {"dt": DT, "inputs": [e.to_dict() for e in events]}
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
