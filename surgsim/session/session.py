"""The fixed-step session loop: scenario + case + device physics + input log.

A session is a pure function of (scenario, case, seed, input log): inputs are
keyed by physics step index and applied before that step runs, the physics is
deterministic, so :func:`replay` reproduces a recorded log exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from surgsim.errors import ScenarioError
from surgsim.scoring.log import Event, InputEvent, SessionLog
from surgsim.session.loop import SteppedSession, play  # noqa: F401 (play: re-exported, shared loop)

#: Physics step, seconds.
DT = 1e-3
#: Physics steps between recorded samples (100 Hz).
RECORD_EVERY = 10
#: Velocity fraction removed per step: blood drag plus the polymer's internal
#: damping. At 0.02 a free span of catheter in the aorta kept ringing at ~7 Hz
#: with 0.5 m/s node speeds after the hand stopped; 0.1 settles within ~50 ms.
DAMPING = 0.1

#: Actions a trainee can send: (unit, lowest, highest value); values are clipped.
ACTIONS: dict[str, tuple[str, float, float]] = {
    "advance": ("m/s", -0.1, 0.1),  # insertion speed of the hub
    "rotate": ("rad/s", -2 * np.pi, 2 * np.pi),  # hub rotation speed
    "pedal": ("on/off", 0.0, 1.0),  # live fluoroscopy while 1
    "cine": ("on/off", 0.0, 1.0),  # cine acquisition while 1
    "inject": ("ml", 0.0, 20.0),  # hand injection of contrast from the tip
    "carm_lao": ("rad", -np.pi / 2, np.pi / 2),  # C-arm LAO (+) / RAO (-)
    "carm_cran": ("rad", -np.pi / 4, np.pi / 4),  # C-arm cranial (+) / caudal (-)
    "roadmap": ("on/off", 0.0, 1.0),  # show the last contrast image as an overlay
    "select_device": ("index", 0.0, 1.0),  # hand on the catheter (0) or the guidewire (1)
    "finish": ("", 0.0, 0.0),  # end the attempt
}
#: Hand injection rate, ml/s.
INJECT_RATE_ML_S = 4.0


SAMPLE_KEYS = ("t", "tip", "depth", "rotation", "wall_force", "tip_force", "contacts",
               "fluoro", "contrast_ml", "dose")


@dataclass(frozen=True)
class Target:
    """A scenario target resolved on the case's centerlines."""

    id: str
    label: str
    point: np.ndarray  # (3,) metres
    tolerance: float  # metres
    hold: float  # seconds


class Session(SteppedSession):
    """One attempt at an endovascular scenario (the loop: :class:`surgsim.session.loop.SteppedSession`).

    Parameters
    ----------
    scenario : Scenario
        The validated scenario.
    case : VesselCase
        Its anatomy.
    seed : int, optional
        Defaults to the scenario's seed. Recorded in the log.
    """

    def __init__(self, scenario, case, seed: int | None = None):
        from surgsim.instruments.catheter import CATALOGUE
        from surgsim.physics.coaxial import CoaxialSolver
        from surgsim.physics.rod import RodSolver
        from surgsim.session.imaging import Imaging

        self.scenario = scenario
        self.case = case
        self.seed = int(scenario.seed if seed is None else seed)
        self.dt = DT
        if not scenario.instruments:
            raise ScenarioError(f"scenario {scenario.id}: no instruments listed")
        specs = [self._device_spec(i, instrument, CATALOGUE)
                 for i, instrument in enumerate(scenario.instruments)]
        distance = case.distance
        catheters = [sp for sp in specs if sp.kind == "catheter"]
        wires = [sp for sp in specs if sp.kind == "guidewire"]
        if catheters and wires:
            # a guidewire inside a catheter: one coaxial rod, the hand on one device at a time
            self.spec = catheters[0]
            self.rod = CoaxialDrive(
                CoaxialSolver(
                    catheters[0], wires[0], distance.values, distance.voxel_from_world,
                    case.access, case.access_direction, dt=DT,
                    catheter_depth=scenario.start.initial_depth_m,
                    wire_depth=scenario.start.initial_depth_m + 0.02, damping=DAMPING,
                ),
                catheters[0], wires[0],
            )
        else:
            self.spec = specs[0]
            self.rod = RodSolver(
                self.spec,
                distance.values,
                distance.voxel_from_world,
                case.access,
                case.access_direction,
                dt=DT,
                initial_depth=scenario.start.initial_depth_m, damping=DAMPING,
            )
        rotation = scenario.start.hub_rotation
        if rotation:
            self.rod.step(0.0, rotation)
        self.imaging = Imaging(case.centerlines)
        self.targets = [self._resolve_target(t) for t in scenario.targets]
        self.reference_path_length = self._reference_length()
        self.step_index = 0
        self.commands: dict[str, float] = {"advance": 0.0, "rotate": 0.0}
        self.inputs: list[InputEvent] = []
        self.events: list[Event] = []
        self._samples: dict[str, list] = {k: [] for k in SAMPLE_KEYS}
        self._inside_since: dict[str, float | None] = {t.id: None for t in self.targets}
        self.reached: set[str] = set()
        self._perforated = False
        self.finished = False
        self._record()

    # ------------------------------------------------------------------ setup
    def _device_spec(self, index: int, instrument, catalogue):
        """The catalogue device of ``instruments[index]`` with the scenario's overrides."""
        from dataclasses import replace

        try:
            spec = catalogue[instrument.device]
        except KeyError as exc:
            raise ScenarioError(
                f"scenario {self.scenario.id}: instruments[{index}].device {instrument.device!r} is not "
                f"in the device catalogue ({', '.join(sorted(catalogue))})"
            ) from exc
        changes = {}
        if instrument.length_m is not None:
            changes["length"] = instrument.length_m
        if instrument.n_nodes is not None:
            changes["n_nodes"] = instrument.n_nodes
        if instrument.tip_angle is not None:
            changes["tip_angle"] = instrument.tip_angle
        return replace(spec, **changes) if changes else spec

    def _resolve_target(self, t) -> Target:
        branches = self.case.centerlines.branches
        if t.label not in branches:
            raise ScenarioError(
                f"scenario {self.scenario.id}: target {t.id!r} names label {t.label!r}, but the case "
                f"has only {', '.join(sorted(branches))}"
            )
        point = np.asarray(self.case.centerlines.point_at(t.label, t.distance_from_ostium_m), float)
        return Target(t.id, t.label, point, float(t.tolerance_m), float(t.hold_s))

    def _reference_length(self) -> float:
        if not self.targets:
            return 0.0
        t0 = self.scenario.targets[0]
        return float(
            self.case.centerlines.path_length(self.case.access, t0.label, t0.distance_from_ostium_m)
        )

    # ------------------------------------------------------------------ inputs
    def apply(self, action: str, value: float = 0.0) -> None:
        """Apply an input now (before the next physics step) and log it.

        Raises
        ------
        ValueError
            For an unknown action.
        """
        value = self._take_input(action, value, ACTIONS)
        if value is None:
            return
        imaging = self.imaging
        if action == "finish":
            self._finish("trainee")
        elif action in ("advance", "rotate"):
            self.commands[action] = value
        elif action == "select_device":
            if isinstance(self.rod, CoaxialDrive):
                self.rod.select("guidewire" if value >= 0.5 else "catheter")
            self.commands["advance"] = self.commands["rotate"] = 0.0  # the hand lets go
        elif action == "pedal":
            imaging.set_pedal(value >= 0.5)
        elif action == "cine":
            imaging.set_cine(value >= 0.5)
        elif action == "roadmap":
            imaging.set_roadmap(value >= 0.5)
        elif action == "carm_lao":
            imaging.set_carm(value, imaging.cran)
        elif action == "carm_cran":
            imaging.set_carm(imaging.lao, value)
        elif action == "inject" and value > 0:
            imaging.inject(value, INJECT_RATE_ML_S, self.rod.state().tip_position)

    # ------------------------------------------------------------------ stepping (SteppedSession hooks)
    record_every = RECORD_EVERY

    def _advance_physics(self, n_steps: int) -> None:
        self.rod.run(n_steps, self.commands["advance"] * self.dt, self.commands["rotate"] * self.dt)

    def _on_record(self) -> None:
        # imaging advances in whole record intervals: the same floating-point
        # sums whatever chunks the caller asked for (replay is bit-exact)
        self.imaging.step(RECORD_EVERY * self.dt)
        self._record()
        self._check_events()

    def _record(self) -> None:
        s = self.rod.state()
        force = self.rod.take_mean_contact_force()  # mean over the record interval
        self._samples["t"].append(self.time)
        self._samples["tip"].append(np.asarray(s.tip_position, float).copy())
        self._samples["depth"].append(float(s.depth))
        self._samples["rotation"].append(float(s.hub_angle))
        self._samples["wall_force"].append(float(force.max()) if force.size else 0.0)
        self._samples["tip_force"].append(float(force[-1]) if force.size else 0.0)
        self._samples["contacts"].append(int(np.count_nonzero(s.in_contact)))
        self._samples["fluoro"].append(1 if self.imaging.live else 0)
        self._samples["contrast_ml"].append(float(self.imaging.contrast_ml))
        self._samples["dose"].append(float(self.imaging.dose))

    def _check_events(self) -> None:
        t = self.time
        tip = self._samples["tip"][-1]
        for target in self.targets:
            if target.id in self.reached:
                continue
            inside = np.linalg.norm(tip - target.point) <= target.tolerance
            since = self._inside_since[target.id]
            if not inside:
                self._inside_since[target.id] = None
            elif since is None:
                self._inside_since[target.id] = t
            elif t - since >= target.hold - 1e-9:
                self.reached.add(target.id)
                self.events.append(Event(t, "target_reached", {"target": target.id, "label": target.label}))
        threshold = self.scenario.complications.perforation_force_n
        force = self._samples["wall_force"][-1]
        if threshold and force > threshold and not self._perforated:
            self._perforated = True
            self.events.append(Event(t, "perforation", {"force_n": round(force, 6)}))

    def _finish(self, reason: str) -> None:
        if self.finished:
            return
        if self.step_index % RECORD_EVERY:
            self._record()
        self.events.append(Event(self.time, "finish", {"reason": reason}))
        self.finished = True

    # ------------------------------------------------------------------ results
    def log(self) -> SessionLog:
        """The session log so far (a copy)."""
        s = self._samples
        samples = {
            "t": np.asarray(s["t"], float),
            "tip": np.asarray(s["tip"], float).reshape(-1, 3),
            "depth": np.asarray(s["depth"], float),
            "rotation": np.asarray(s["rotation"], float),
            "wall_force": np.asarray(s["wall_force"], float),
            "tip_force": np.asarray(s["tip_force"], float),
            "contacts": np.asarray(s["contacts"], int),
            "fluoro": np.asarray(s["fluoro"], int),
            "contrast_ml": np.asarray(s["contrast_ml"], float),
            "dose": np.asarray(s["dose"], float),
        }
        events = sorted(self.events + list(self.imaging.events), key=lambda e: e.t)
        return SessionLog(
            scenario_id=self.scenario.id,
            scenario_hash=self.scenario.content_hash(),
            seed=self.seed,
            dt=self.dt,
            inputs=list(self.inputs),
            samples=samples,
            events=events,
            reference_path_length=self.reference_path_length,
        )


class CoaxialDrive:
    """A guidewire inside a catheter driven by one hand: the session's advance and
    rotate go to the selected device. Presents the :class:`RodSolver` interface the
    session, scene and fluoroscopy read (``run``, ``state``, ``positions``,
    ``take_mean_contact_force``); ``state().depth``/``hub_angle`` are the selected
    device's, ``tip_position`` the leading tip's.
    """

    def __init__(self, solver, catheter, wire) -> None:
        self.solver = solver
        self.specs = {"catheter": catheter, "guidewire": wire}
        self.selected = "catheter"

    @property
    def spec(self):
        """The selected device's spec."""
        return self.specs[self.selected]

    def select(self, device: str) -> None:
        if device not in self.specs:
            raise ValueError(f"unknown device {device!r}; choose catheter or guidewire")
        self.selected = device

    def run(self, n_steps: int, advance_per_step: float = 0.0, rotate_per_step: float = 0.0) -> None:
        if self.selected == "guidewire":
            self.solver.run(n_steps, wire_advance=advance_per_step, wire_rotate=rotate_per_step)
        else:
            self.solver.run(n_steps, catheter_advance=advance_per_step, catheter_rotate=rotate_per_step)

    def step(self, advance: float = 0.0, rotate: float = 0.0) -> None:
        self.run(1, advance, rotate)

    @property
    def positions(self) -> np.ndarray:
        return self.solver.positions

    def take_mean_contact_force(self) -> np.ndarray:
        return self.solver.take_mean_contact_force()

    def state(self):
        from surgsim.physics.rod import RodState

        s = self.solver.state()
        held = s.wire if self.selected == "guidewire" else s.catheter
        lead = s.wire if s.leading == "wire" else s.catheter
        return RodState(
            positions=s.positions, velocities=s.velocities, depth=held.depth,
            hub_angle=held.hub_angle, contact_force=s.contact_force, in_contact=s.in_contact,
            inside=s.inside, tip_position=lead.tip_position, tip_direction=lead.tip_direction,
            step=s.step, push_force=held.push_force,
        )


def replay(scenario, case, log: SessionLog) -> Session:
    """Re-run a recorded log's inputs; the result's log equals the original's."""
    return play(Session(scenario, case, seed=log.seed), log.inputs)
