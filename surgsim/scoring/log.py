"""The session log: everything scoring, records and replay need from an attempt.

A session is a pure function of (scenario, anatomy, seed, input log). The log
keeps the input log (what the trainee did, by physics step index, so replay is
exact) and samples of the state at a fixed record rate (what metrics read).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Sample channels every endovascular log carries, with their shapes and units.
SAMPLE_CHANNELS: dict[str, str] = {
    "t": "(m,) float, seconds since the start of the attempt",
    "tip": "(m, 3) float, metres (LPS): distal tip position of the active device",
    "depth": "(m,) float, metres: inserted length of the active device",
    "rotation": "(m,) float, radians: hub rotation of the active device",
    "wall_force": "(m,) float, newtons: largest normal wall force on any node",
    "tip_force": "(m,) float, newtons: normal wall force on the distal tip node",
    "contacts": "(m,) int: number of nodes in wall contact",
    "fluoro": "(m,) int: 1 while the X-ray beam is on (fluoroscopy pedal or cine)",
    "contrast_ml": "(m,) float, millilitres: contrast injected so far",
    "dose": "(m,) float, Gy m^2: dose-area product so far",
}


@dataclass(frozen=True)
class InputEvent:
    """One trainee input, applied before physics step ``step`` runs.

    Attributes
    ----------
    step : int
        Physics step index (time = step * dt) at which the input takes effect.
    action : str
        What the input sets, e.g. ``"advance"`` (m/s), ``"rotate"`` (rad/s),
        ``"finish"`` (ends the attempt).
    value : float
        The new value (SI units of the action).
    """

    step: int
    action: str
    value: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"step": int(self.step), "action": self.action, "value": float(self.value)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputEvent:
        return cls(step=int(d["step"]), action=str(d["action"]), value=float(d.get("value", 0.0)))


@dataclass(frozen=True)
class Event:
    """A discrete event of the session (target reached, perforation...)."""

    t: float
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t": float(self.t), "kind": self.kind, "data": dict(self.data)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(t=float(d["t"]), kind=str(d["kind"]), data=dict(d.get("data", {})))


@dataclass
class SessionLog:
    """What one attempt produced.

    Attributes
    ----------
    scenario_id, scenario_hash : str
        The scenario and the hash of its exact content.
    seed : int
        Random seed of the session.
    dt : float
        Physics step, seconds.
    inputs : list of InputEvent
        The input log, in step order.
    samples : dict of str to ndarray
        Recorded channels (see :data:`SAMPLE_CHANNELS`), all with the same length.
    events : list of Event
        Discrete events in time order.
    reference_path_length : float
        Centerline length from access to target, metres (for economy of motion).
    """

    scenario_id: str
    scenario_hash: str
    seed: int
    dt: float
    inputs: list[InputEvent] = field(default_factory=list)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    reference_path_length: float = 0.0

    @property
    def duration(self) -> float:
        """Seconds from start to the last sample."""
        t = self.samples.get("t")
        return float(t[-1]) if t is not None and len(t) else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (arrays as nested lists)."""
        return {
            "scenario_id": self.scenario_id,
            "scenario_hash": self.scenario_hash,
            "seed": int(self.seed),
            "dt": float(self.dt),
            "inputs": [e.to_dict() for e in self.inputs],
            "samples": {k: np.asarray(v).tolist() for k, v in self.samples.items()},
            "events": [e.to_dict() for e in self.events],
            "reference_path_length": float(self.reference_path_length),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionLog:
        return cls(
            scenario_id=d["scenario_id"],
            scenario_hash=d["scenario_hash"],
            seed=int(d["seed"]),
            dt=float(d["dt"]),
            inputs=[InputEvent.from_dict(e) for e in d.get("inputs", [])],
            samples={k: np.asarray(v) for k, v in d.get("samples", {}).items()},
            events=[Event.from_dict(e) for e in d.get("events", [])],
            reference_path_length=float(d.get("reference_path_length", 0.0)),
        )

    def to_bytes(self) -> bytes:
        """Compressed canonical JSON (what records store)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return zlib.compress(text.encode("utf-8"), 6)

    @classmethod
    def from_bytes(cls, blob: bytes) -> SessionLog:
        return cls.from_dict(json.loads(zlib.decompress(blob).decode("utf-8")))

    def input_hash(self) -> str:
        """SHA-256 of the canonical input log (what replay must reproduce from)."""
        text = json.dumps([e.to_dict() for e in self.inputs], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def hash(self) -> str:
        """SHA-256 of the whole log, independent of how it is stored.

        Metadata, inputs and events as canonical JSON, then each sample channel's
        kind, shape and little-endian bytes in name order: milliseconds for a
        10-minute log, and equal after a :meth:`to_bytes` / :meth:`from_bytes`
        round trip.
        """
        h = hashlib.sha256()
        meta = self.to_dict_without_samples()
        h.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        for name in sorted(self.samples):
            a = np.asarray(self.samples[name])
            kind = "f" if a.dtype.kind == "f" else "i"
            a = np.ascontiguousarray(a, dtype="<f8" if kind == "f" else "<i8")
            h.update(f"|{name}|{kind}|{a.shape}|".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def to_dict_without_samples(self) -> dict[str, Any]:
        """:meth:`to_dict` less the (large) sample arrays."""
        return {
            "scenario_id": self.scenario_id,
            "scenario_hash": self.scenario_hash,
            "seed": int(self.seed),
            "dt": float(self.dt),
            "inputs": [e.to_dict() for e in self.inputs],
            "events": [e.to_dict() for e in self.events],
            "reference_path_length": float(self.reference_path_length),
        }
