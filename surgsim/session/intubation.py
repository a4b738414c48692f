"""The orotracheal intubation session: airway phantom + pybullet blade and tube + oxygen model.

Mirrors :class:`surgsim.session.session.Session` (``apply`` / ``step`` /
``advance_time`` / ``finished`` / ``log`` / ``score``) so that
:func:`surgsim.session.session.play` drives it unchanged. A session is a pure
function of (scenario, variant, seed, input log): inputs are keyed by physics
step, pybullet runs in its own deterministic DIRECT client, and the oxygen
model advances by a fixed interval at every record, so :func:`replay`
reproduces a log bit for bit.

Inputs are held 6-DOF hand velocities of the laryngoscope and of the tube (in
the world frame, LPS) that drag the devices through force-limited
constraints (never teleported), plus ``cuff``, ``ventilate`` and ``finish``.

Detection runs at every record from the phantom's exact truth geometry:
attempts (the blade tip passing the incisors), tube tip location, depth mark at
the incisors, tip-to-carina distance, cuff relative to the cords and the
blade-on-upper-incisor force (axial along the tooth and levering across it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from surgsim.errors import ScenarioError
from surgsim.scoring.log import Event, InputEvent, SessionLog

#: Physics step, seconds (pybullet at 250 Hz).
DT = 0.004
#: Physics steps between recorded samples (125 Hz).
RECORD_EVERY = 2
#: Head extension used for the case (sniffing position), radians; clipped to the variant's limit.
HEAD_EXTENSION = 0.3
#: The blade tip counts as withdrawn (attempt over) this far in front of the incisors, metres.
WITHDRAW_MARGIN_M = 0.01

_LIN = ("m/s", -0.2, 0.2)
_ANG = ("rad/s", -2.0, 2.0)
#: Actions: (unit, lowest, highest value); values are clipped. Velocities are held until changed.
ACTIONS: dict[str, tuple[str, float, float]] = {
    **{f"{dev}_{ax}": (_LIN if ax[0] == "v" else _ANG)
       for dev in ("blade", "tube") for ax in ("vx", "vy", "vz", "wx", "wy", "wz")},
    "cuff": ("on/off", 0.0, 1.0),  # cuff inflated while 1
    "ventilate": ("on/off", 0.0, 1.0),  # bag ventilation through the tube while 1
    "finish": ("", 0.0, 0.0),
}

#: Tube tip locations (the ``tube_location`` channel stores the index).
LOCATIONS: tuple[str, ...] = ("outside", "pharynx", "trachea", "right_main_bronchus",
                              "left_main_bronchus", "oesophagus")

SAMPLE_KEYS = ("t", "tip", "depth", "wall_force", "contacts", "blade_tip", "tube_tip", "tube_depth",
               "tip_to_carina", "tube_location", "cuff_below_cords", "blade_past_incisors",
               "incisor_force", "incisor_axial", "incisor_lever", "blade_hand_force", "spo2", "sao2",
               "heart_rate", "ventilated", "cuff")


def variant_of(scenario, variant: str | None = None) -> str:
    """Airway phantom variant of a scenario: ``case.phantom`` ``"airway-<variant>"``.

    Raises
    ------
    ScenarioError
        When the scenario does not name an airway phantom (and no variant is given).
    """
    from surgsim.cases.airway_phantom import VARIANTS

    if variant is None:
        phantom = getattr(scenario.case, "phantom", None) or ""
        if not phantom.startswith("airway-"):
            raise ScenarioError(
                f"scenario {scenario.id}: case.phantom {phantom!r} is not an airway phantom; "
                f"use one of {', '.join('airway-' + v for v in VARIANTS)}")
        variant = phantom[len("airway-"):]
    if variant not in VARIANTS:
        raise ScenarioError(f"scenario {scenario.id}: unknown airway variant {variant!r}; "
                            f"choose one of {', '.join(VARIANTS)}")
    return variant


class AirwayGeometry:
    """Detection geometry of one airway design (metres, LPS), from the phantom's truth."""

    def __init__(self, design):
        from surgsim.cases.airway_phantom import truth_of

        self.truth = t = truth_of(design)
        L = t.landmarks
        self.mouth = L["mouth_centre"]
        self.glottis = L["glottis_centre"]
        self.carina = L["carina"]
        self.upper_incisor = L["upper_incisor"]
        self.tooth_axis = t.upper_incisor_axis / np.linalg.norm(t.upper_incisor_axis)
        # the incisor plane holds both incisal edges and the left-right axis
        gap = L["upper_incisor"] - L["lower_incisor"]
        d = np.cross(gap, [1.0, 0.0, 0.0])
        if d @ (L["laryngeal_inlet"] - self.mouth) < 0.0:
            d = -d
        #: normal of the incisor plane (through the mouth centre), pointing into the mouth
        self.into_mouth = d / np.linalg.norm(d)
        self.glottis_normal = t.glottis_normal / np.linalg.norm(t.glottis_normal)
        tr = t.centerlines["trachea"]
        self.trachea_axis = (tr[-1] - tr[0]) / np.linalg.norm(tr[-1] - tr[0])
        self.trachea_radius = float(t.radii["trachea"].max())
        self.lines = {k: t.centerlines[k] for k in ("trachea", "right_main_bronchus",
                                                   "left_main_bronchus", "oesophagus")}
        self.radii = {k: float(t.radii[k].max()) for k in self.lines}
        oe = t.centerlines["oesophagus"]
        self.oesophagus_entrance = oe[0]
        self.oesophagus_axis = (oe[-1] - oe[0]) / np.linalg.norm(oe[-1] - oe[0])

    def past_incisors(self, p: np.ndarray) -> float:
        """Signed distance (m) of a point past the incisor plane (positive inside the mouth)."""
        return float((np.asarray(p) - self.mouth) @ self.into_mouth)

    def below_cords(self, p: np.ndarray) -> float:
        """Signed distance (m) of a point below the glottic plane (positive in the trachea)."""
        return float((np.asarray(p) - self.glottis) @ self.glottis_normal)

    @staticmethod
    def _dist_to_line(p: np.ndarray, pts: np.ndarray) -> float:
        a, b = pts[:-1], pts[1:]
        ab = b - a
        tt = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.einsum("ij,ij->i", ab, ab), 0.0, 1.0)
        return float(np.min(np.linalg.norm(a + tt[:, None] * ab - p, axis=1)))

    def locate(self, p: np.ndarray) -> str:
        """Where a tube tip at ``p`` (3,) metres is: one of :data:`LOCATIONS`."""
        p = np.asarray(p, float)
        if self.past_incisors(p) <= 0.0:
            return "outside"
        margin = 0.004
        below_carina = float((p - self.carina) @ self.trachea_axis) > 0.0
        if self.below_cords(p) > 0.0:
            if below_carina:
                dr = self._dist_to_line(p, self.lines["right_main_bronchus"])
                dl = self._dist_to_line(p, self.lines["left_main_bronchus"])
                return "right_main_bronchus" if dr <= dl else "left_main_bronchus"
            if self._dist_to_line(p, self.lines["trachea"]) <= self.trachea_radius + margin:
                return "trachea"
        if (float((p - self.oesophagus_entrance) @ self.oesophagus_axis) > 0.0
                and self._dist_to_line(p, self.lines["oesophagus"]) <= self.radii["oesophagus"] + margin):
            return "oesophagus"
        return "pharynx"

    def tip_to_carina(self, p: np.ndarray) -> float:
        """Distance (m) of a tip above the carina along the trachea (negative below it)."""
        return float((self.carina - np.asarray(p)) @ self.trachea_axis)

    def depth_at_incisors(self, centerline: np.ndarray, marks: np.ndarray) -> float:
        """Tube depth mark (m from the tip) where the tube crosses the incisor plane.

        Parameters
        ----------
        centerline : (n, 3) float, metres, tip first
        marks : (n,) float, metres from the tip
        """
        h = (centerline - self.mouth) @ self.into_mouth
        if h[0] <= 0.0:
            return 0.0
        out = np.flatnonzero(h <= 0.0)
        if out.size == 0:
            return float(marks[-1])
        k = int(out[0])
        f = h[k - 1] / (h[k - 1] - h[k])
        return float(marks[k - 1] + f * (marks[k] - marks[k - 1]))

    def incisor_components(self, force: np.ndarray) -> tuple[float, float]:
        """Axial (along the tooth, toward its root) and levering (transverse) parts of a force (3,) N."""
        axial = float(force @ self.tooth_axis)
        lever = float(np.linalg.norm(force - axial * self.tooth_axis))
        return axial, lever


class IntubationSession:
    """One attempt at an intubation scenario.

    Parameters
    ----------
    scenario : Scenario
        ``procedure: intubation``; ``case.phantom`` ``airway-<variant>``;
        instruments: one laryngoscope blade and one tube from
        :data:`surgsim.instruments.airway.AIRWAY_DEVICES`;
        ``patient.physiology`` a preset of :mod:`surgsim.physiology.oxygen`.
    seed : int, optional
        Defaults to the scenario's seed (recorded; the physics is deterministic).
    variant : str, optional
        Airway variant overriding the scenario's phantom.
    """

    def __init__(self, scenario, seed: int | None = None, variant: str | None = None):
        from surgsim.cases.airway_phantom import PARAMS, design
        from surgsim.instruments.airway import BLADES, TUBES
        from surgsim.physics.airway import AirwayWorld, start_poses
        from surgsim.physiology.oxygen import PRESETS, OxygenModel

        self.scenario = scenario
        self.seed = int(scenario.seed if seed is None else seed)
        self.dt = DT
        self.variant = variant_of(scenario, variant)
        blades = [i.device for i in scenario.instruments if i.device in BLADES]
        tubes = [i.device for i in scenario.instruments if i.device in TUBES]
        if not blades or not tubes:
            raise ScenarioError(
                f"scenario {scenario.id}: an intubation needs one laryngoscope blade "
                f"({', '.join(BLADES)}) and one tube ({', '.join(TUBES)}) in 'instruments'")
        self.blade_spec, self.tube_spec = BLADES[blades[0]], TUBES[tubes[0]]
        physiology = scenario.patient.physiology
        if physiology not in PRESETS:
            raise ScenarioError(f"scenario {scenario.id}: patient.physiology {physiology!r} is not "
                                f"a preset ({', '.join(PRESETS)})")
        ext = min(HEAD_EXTENSION, PARAMS[self.variant].max_extension)
        self.design = design(self.variant, ext)
        self.geometry = AirwayGeometry(self.design)
        self.world = AirwayWorld(self.design, self.blade_spec, self.tube_spec, DT,
                                 *start_poses(self.design, self.blade_spec, self.tube_spec))
        self.oxygen = OxygenModel(physiology)
        self.oxygen.airway, self.oxygen.fio2 = "open", 0.21  # apnoea, mask off
        self._tube_pts, self._tube_marks = self.tube_spec.centerline(0.005)
        self.reference_path_length = float(np.linalg.norm(self.geometry.glottis - self.geometry.mouth))
        self.step_index = 0
        self.commands: dict[str, float] = {k: 0.0 for k in ACTIONS if k != "finish"}
        self.inputs: list[InputEvent] = []
        self.events: list[Event] = []
        self._samples: dict[str, list] = {k: [] for k in SAMPLE_KEYS}
        self.attempts = 0
        self._in_attempt = False
        self._flags: set[str] = set()
        self._was_ventilating = False
        self.finished = False
        self._record()

    # ------------------------------------------------------------------ inputs
    @property
    def time(self) -> float:
        """Seconds since the start."""
        return self.step_index * self.dt

    def apply(self, action: str, value: float = 0.0) -> None:
        """Apply an input now (before the next physics step) and log it.

        Raises
        ------
        ValueError
            For an unknown action.
        """
        if self.finished:
            return
        if action not in ACTIONS:
            raise ValueError(f"unknown intubation action {action!r}; known: {', '.join(ACTIONS)}")
        _, lo, hi = ACTIONS[action]
        value = float(np.clip(value, lo, hi))
        self.inputs.append(InputEvent(self.step_index, action, value))
        if action == "finish":
            self._finish("trainee")
        else:
            self.commands[action] = value

    # ------------------------------------------------------------------ stepping
    def _hand_velocities(self, dev: str) -> tuple[np.ndarray, np.ndarray]:
        c = self.commands
        return (np.array([c[f"{dev}_vx"], c[f"{dev}_vy"], c[f"{dev}_vz"]]),
                np.array([c[f"{dev}_wx"], c[f"{dev}_wy"], c[f"{dev}_wz"]]))

    def step(self, n_steps: int = 1) -> None:
        """Run ``n_steps`` physics steps (recording and detecting on the way)."""
        limit_steps = int(round(self.scenario.time_limit_s / self.dt))
        w = self.world
        while n_steps > 0 and not self.finished:
            if self.step_index >= limit_steps:
                self._finish("time_limit")
                break
            bv, bw = self._hand_velocities("blade")
            tv, tw = self._hand_velocities("tube")
            w.move_hand(w.blade_hand, bv, bw, self.dt)
            w.move_hand(w.tube_hand, tv, tw, self.dt)
            w.step()
            self.step_index += 1
            n_steps -= 1
            if self.step_index % RECORD_EVERY == 0:
                self._physiology(RECORD_EVERY * self.dt)
                self._record()

    def advance_time(self, seconds: float) -> int:
        """Run as many steps as fit in ``seconds`` of simulated time; returns the count."""
        n = int(seconds / self.dt)
        before = self.step_index
        self.step(n)
        return self.step_index - before

    # ------------------------------------------------------------------ state
    def blade_tip(self) -> np.ndarray:
        """(3,) blade tip position, metres."""
        pos, rot = self.world.pose(self.world.blade)
        return pos + rot @ self.blade_spec.tip

    def tube_centerline(self) -> np.ndarray:
        """(n, 3) tube centreline in the world, tip first, metres (marks: ``tube_spec.centerline(0.005)``)."""
        pos, rot = self.world.pose(self.world.tube)
        return pos + self._tube_pts @ rot.T

    def tube_state(self) -> dict:
        """Tube tip, location, depth at the incisors, tip-to-carina, cuff below the cords."""
        g = self.geometry
        line = self.tube_centerline()
        tip = line[0]
        loc = g.locate(tip)
        cuff_end = line[int(np.searchsorted(self._tube_marks, self.tube_spec.cuff_from_tip_m[1]))]
        in_airway = loc in ("trachea", "right_main_bronchus", "left_main_bronchus")
        return {"tip": tip, "location": loc, "depth": g.depth_at_incisors(line, self._tube_marks),
                "tip_to_carina": g.tip_to_carina(tip),
                "cuff_below_cords": bool(in_airway and g.below_cords(cuff_end) > 0.0)}

    def _physiology(self, dt: float) -> None:
        ts = self.tube_state()
        ox = self.oxygen
        venting = self.commands["ventilate"] >= 0.5
        if venting and ts["cuff_below_cords"]:
            ox.airway, ox.fio2 = "ventilated", 1.0
        else:
            ox.airway, ox.fio2 = "open", 0.21  # apnoea (an oesophageal tube ventilates the stomach)
        t = self.time
        if venting and not self._was_ventilating:  # a breath starts
            if ts["location"] == "oesophagus":
                self.events.append(Event(t, "oesophageal_ventilation", {"depth_m": round(ts["depth"], 6)}))
                self._once("oesophageal_intubation", {"depth_m": round(ts["depth"], 6)})
            elif ts["cuff_below_cords"]:
                self._once("intubation_confirmed", {"attempt": self.attempts,
                                                    "location": ts["location"],
                                                    "depth_m": round(ts["depth"], 6)})
                if ts["location"] != "trachea":
                    self._once("endobronchial_intubation", {"location": ts["location"]})
        self._was_ventilating = venting
        ox.step(dt)

    def _once(self, kind: str, data: dict | None = None) -> None:
        if kind not in self._flags:
            self._flags.add(kind)
            self.events.append(Event(self.time, kind, dict(data or {})))

    def _record(self) -> None:
        w, g, s = self.world, self.geometry, self._samples
        ts = self.tube_state()
        btip = self.blade_tip()
        f_up, _ = w.contact_force(w.blade, w.upper_teeth)
        axial, lever = g.incisor_components(f_up)
        wall = [w.contact_force(w.tube, b)[1] for b in (w.wall, w.tongue, w.epiglottis)]
        contacts = sum(len(w.c.getContactPoints(w.tube, b)) for b in (w.wall, w.tongue, w.epiglottis))
        ox = self.oxygen.state
        s["t"].append(self.time)
        s["tip"].append(ts["tip"].copy())
        s["depth"].append(ts["depth"])
        s["wall_force"].append(float(max(wall)))
        s["contacts"].append(int(contacts))
        s["blade_tip"].append(btip)
        s["tube_tip"].append(ts["tip"].copy())
        s["tube_depth"].append(ts["depth"])
        s["tip_to_carina"].append(ts["tip_to_carina"])
        s["tube_location"].append(LOCATIONS.index(ts["location"]))
        s["cuff_below_cords"].append(int(ts["cuff_below_cords"]))
        past = g.past_incisors(btip)
        s["blade_past_incisors"].append(int(past > 0.0))
        s["incisor_force"].append(float(np.linalg.norm(f_up)))
        s["incisor_axial"].append(max(axial, 0.0))
        s["incisor_lever"].append(lever)
        s["blade_hand_force"].append(w.hand_force(w.blade_hand))
        s["spo2"].append(float(ox.displayed_spo2))
        s["sao2"].append(float(ox.arterial_saturation))
        s["heart_rate"].append(float(ox.heart_rate_bpm))
        s["ventilated"].append(int(self.oxygen.airway == "ventilated"))
        s["cuff"].append(int(self.commands["cuff"] >= 0.5))
        self._detect(ts, past)

    def _detect(self, ts: dict, blade_past: float) -> None:
        t = self.time
        if not self._in_attempt and blade_past > 0.0:
            self._in_attempt = True
            self.attempts += 1
            self.events.append(Event(t, "attempt_started", {"attempt": self.attempts}))
        elif self._in_attempt and blade_past < -WITHDRAW_MARGIN_M:
            self._in_attempt = False
            self.events.append(Event(t, "attempt_ended", {"attempt": self.attempts}))
        if ts["location"] == "trachea" and ts["cuff_below_cords"]:
            self._once("tube_in_trachea", {"depth_m": round(ts["depth"], 6),
                                           "tip_to_carina_m": round(ts["tip_to_carina"], 6)})
        elif ts["location"] == "right_main_bronchus":
            self._once("tube_in_right_main_bronchus", {"depth_m": round(ts["depth"], 6)})
        elif ts["location"] == "oesophagus":
            self._once("tube_in_oesophagus", {"depth_m": round(ts["depth"], 6)})
        if self._samples["spo2"][-1] < 0.90 and self.oxygen.airway != "ventilated":
            self._once("desaturation", {"spo2": round(self._samples["spo2"][-1], 6)})

    def _finish(self, reason: str) -> None:
        if self.finished:
            return
        if self.step_index % RECORD_EVERY:
            self._record()
        if LOCATIONS[self._samples["tube_location"][-1]] == "oesophagus":
            self._once("oesophageal_intubation", {"at": "finish"})  # left in the oesophagus, unrecognised
        self.events.append(Event(self.time, "finish", {"reason": reason}))
        self.finished = True
        self.world.close()

    # ------------------------------------------------------------------ results
    def log(self) -> SessionLog:
        """The session log so far (a copy)."""
        s = self._samples
        samples = {}
        for k in SAMPLE_KEYS:
            a = np.asarray(s[k])
            if k in ("tip", "blade_tip", "tube_tip"):
                a = np.asarray(a, float).reshape(-1, 3)
            elif a.dtype.kind in "iub":
                a = a.astype(int)
            else:
                a = a.astype(float)
            samples[k] = a
        return SessionLog(
            scenario_id=self.scenario.id,
            scenario_hash=self.scenario.content_hash(),
            seed=self.seed,
            dt=self.dt,
            inputs=list(self.inputs),
            samples=samples,
            events=sorted(self.events, key=lambda e: e.t),
            reference_path_length=self.reference_path_length,
        )

    def score(self):
        """Score the attempt so far with the scenario's rubric."""
        from surgsim.scoring.rubric import score

        return score(self.log(), self.scenario)


def replay(scenario, log: SessionLog, variant: str | None = None) -> IntubationSession:
    """Re-run a recorded log's inputs; the result's log equals the original's."""
    from surgsim.session.session import play

    return play(IntubationSession(scenario, seed=log.seed, variant=variant), log.inputs)


# ---------------------------------------------------------------------- input logs


def parse_inputs(data: object, source: str = "<inputs>") -> list[InputEvent]:
    """Intubation input-log document to events: the shared format of
    :mod:`surgsim.session.inputs` with this session's actions and 4 ms step."""
    from surgsim.session import inputs

    return inputs.parse_inputs(data, source, actions=ACTIONS, dt=DT, procedure="intubation")


def load_inputs(path: Path | str) -> list[InputEvent]:
    """Read an intubation input log (YAML or JSON)."""
    from surgsim.session import inputs

    return inputs.load_inputs(Path(path), actions=ACTIONS, dt=DT, procedure="intubation")


def dump_inputs(events: list[InputEvent], path: Path | str, header: str = "") -> None:
    """Write input events as a YAML intubation input log (by step, exact)."""
    import yaml

    lines = "".join(f"# {h}\n" for h in header.splitlines()) if header else ""
    lines += yaml.safe_dump({"dt": DT}) + "inputs:\n"  # one flow mapping per event (compact, exact floats)
    lines += "".join("- " + yaml.safe_dump(e.to_dict(), default_flow_style=True, sort_keys=False,
                                           width=10000).strip() + "\n" for e in events)
    Path(path).write_text(lines, encoding="utf-8")


# ---------------------------------------------------------------------- scripted attempts
#: Interval of the scripted velocity inputs, seconds.
SCRIPT_INTERVAL_S = 0.04


def _lumen_sdf(design):
    """Signed distance (m, positive inside the instrument space) on the lumen grid, and its sampler."""
    from scipy.ndimage import distance_transform_edt, map_coordinates

    from surgsim.cases.airway_phantom import lumen_mask

    mask, wfv = lumen_mask(design, 2.0)
    h = wfv[0, 0]
    sdf = (distance_transform_edt(mask) - distance_transform_edt(~mask)) * h
    origin = wfv[:3, 3]

    def sample(pts: np.ndarray) -> np.ndarray:
        ijk = (np.asarray(pts) - origin) / h  # (n, 3) as (i, j, k) = (x, y, z)
        return map_coordinates(sdf, [ijk[:, 2], ijk[:, 1], ijk[:, 0]], order=1, mode="nearest")

    return sample


def _sagittal_rot(theta: float) -> np.ndarray:
    """Tube orientation whose tip axis x = (0, cos, sin)(theta) and stylet bend toward z (sagittal)."""
    x = np.array([0.0, np.cos(theta), np.sin(theta)])
    z = np.array([0.0, x[2], -x[1]])
    return np.column_stack([x, np.cross(z, x), z])


def _yawed(rot: np.ndarray, tip: np.ndarray, geometry: AirwayGeometry, lateral: float) -> np.ndarray:
    """Yaw a sagittal tube pose (3, 3) about its bend axis so it crosses the incisors ``lateral`` m to the right.

    The tip stays where it is (``tip`` (3,) m); the tube leaves the mouth at its right
    corner, beside the midline blade, as in the usual technique.
    """
    inside = geometry.past_incisors(tip)
    if inside <= 0.01 or abs(rot[0, 1]) < 1e-6:
        return rot
    s_inc = inside / max(float(rot[:, 0] @ geometry.into_mouth), 0.3)  # tip to incisors along the tube
    sin_psi = float(np.clip((tip[0] + lateral) / (s_inc * rot[0, 1]), -0.5, 0.5))
    psi = np.arcsin(sin_psi)
    c, s = np.cos(psi), np.sin(psi)
    return rot @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _tracheal_reach(design, geometry: AirwayGeometry, tube, depth_m: float) -> float:
    """How far below the glottis (m, along the trachea) the tip goes for the depth mark ``depth_m`` at the incisors.

    Found on the planned final pose (sagittal, yawed to the right corner of the mouth).
    """
    from surgsim.physics.airway import TUBE_LATERAL_M

    pts, marks = tube.centerline(0.005)
    n = geometry.glottis_normal
    theta = float(np.arctan2(n[2], n[1]))
    k = 0.09
    for _ in range(4):
        tip = geometry.glottis + k * n
        rot = _yawed(plan_tube_poses(design, tube, tip[None], theta)[0], tip, geometry, TUBE_LATERAL_M)
        k += depth_m - geometry.depth_at_incisors(tip + pts @ rot.T, marks)
    return float(k)


def _track_inputs(dev: str, keyframes: list[tuple[float, np.ndarray, np.ndarray]], grip_local: np.ndarray,
                  interval: float = SCRIPT_INTERVAL_S) -> list[InputEvent]:
    """Held hand velocities (one input set per ``interval``) that carry a device's grip through keyframes.

    keyframes : list of (t seconds, (3,) origin position m, (3, 3) rotation); linear positions, slerped rotations.
    """
    from scipy.spatial.transform import Rotation, Slerp

    ts = np.array([k[0] for k in keyframes])
    pos = np.array([k[1] for k in keyframes])
    slerp = Slerp(ts, Rotation.from_matrix(np.array([k[2] for k in keyframes])))
    grid = np.arange(ts[0], ts[-1] + 1e-9, interval)
    if grid[-1] < ts[-1] - 1e-9:
        grid = np.append(grid, ts[-1])
    rots = slerp(grid)
    origin = np.stack([np.interp(grid, ts, pos[:, a]) for a in range(3)], 1)
    grip = origin + rots.apply(grip_local)
    out: list[InputEvent] = []
    for k in range(len(grid) - 1):
        span = grid[k + 1] - grid[k]
        v = (grip[k + 1] - grip[k]) / span
        w = (rots[k + 1] * rots[k].inv()).as_rotvec() / span
        step = int(round(grid[k] / DT))
        for name, val in zip(("vx", "vy", "vz", "wx", "wy", "wz"), (*v, *w), strict=True):
            out.append(InputEvent(step, f"{dev}_{name}", float(round(val, 9))))
    stop = int(round(grid[-1] / DT))
    out += [InputEvent(stop, f"{dev}_{n}", 0.0) for n in ("vx", "vy", "vz", "wx", "wy", "wz")]
    return out


def plan_tube_poses(design, tube, tip_path: np.ndarray, theta0: float | None = None,
                    avoid=None) -> list[np.ndarray]:
    """For each tube tip position (n, 3) m, the sagittal orientation keeping the tube in the lumen.

    The orientation angle is searched near the previous one, minimising the squared
    penetration of the tube's centreline into the lumen's boundary (signed distance)
    plus ``avoid(points (m, 3)) -> (m,)`` penetration depths (m) of space to keep out of.
    """
    from surgsim.cases.airway_phantom import _sd_box

    sample = _lumen_sdf(design)
    pts, _ = tube.centerline(0.01)
    r = 0.5 * tube.outer_diameter_m + 0.002

    def teeth(line: np.ndarray) -> np.ndarray:  # signed distance (m) to the nearer incisor box
        mm = line * 1000.0
        return np.minimum(*(_sd_box(b, mm[:, 0], mm[:, 1], mm[:, 2]) for b in
                            (design.upper_teeth, design.lower_teeth))) / 1000.0

    rots = []
    prev = theta0
    for p in tip_path:
        cands = np.linspace(-np.pi, np.pi, 361) if prev is None else prev + np.linspace(-0.25, 0.25, 51)
        best = None
        for th in cands:
            R = _sagittal_rot(th)
            line = p + pts @ R.T
            cost = float(np.sum(np.minimum(sample(line) - r, 0.0) ** 2))
            cost += float(np.sum(np.minimum(teeth(line) - r, 0.0) ** 2))
            if avoid is not None:
                cost += float(np.sum(np.asarray(avoid(line)) ** 2))
            cost += 1e-7 * (0.0 if prev is None else (th - prev) ** 2)
            if best is None or cost < best[0]:
                best = (cost, th)
        prev = best[1]
        rots.append(_sagittal_rot(prev))
    return rots


def scripted_attempt(variant: str = "adult", kind: str = "expert", blade: str = "macintosh_3",
                     tube: str = "ett_7_5", depth_m: float = 0.212) -> list[InputEvent]:
    """A scripted attempt as an input log: ``kind`` ``"expert"`` (trachea) or ``"oesophageal"``.

    The blade goes in along its chord to the vallecula and lifts along the handle; the tube
    tip then follows the airway (or the pharynx into the oesophagus) with its orientation
    planned on the lumen's signed distance, to the depth mark ``depth_m`` at the incisors
    (approximately); cuff up, ventilate, finish.
    """
    from surgsim.cases.airway_phantom import PARAMS
    from surgsim.cases.airway_phantom import design as make_design
    from surgsim.instruments.airway import BLADES, TUBES
    from surgsim.physics.airway import TUBE_LATERAL_M, start_poses

    bl, tu = BLADES[blade], TUBES[tube]
    d = make_design(variant, min(HEAD_EXTENSION, PARAMS[variant].max_extension))
    g = AirwayGeometry(d)
    (heel0, rb), (tip0, rt) = start_poses(d, bl, tu)
    L = g.truth.landmarks
    # blade: chord to the vallecula, then lift along the handle (up and toward the feet)
    d_in = L["vallecula"] - L["mouth_centre"]
    reach = np.linalg.norm(d_in) + 0.02
    d_in /= np.linalg.norm(d_in)
    heel1 = heel0 + reach * d_in
    lift = np.array([0.0, -1.0, -1.0]) / np.sqrt(2.0)
    heel2 = heel1 + 0.015 * lift
    t_in, t_lift = 3.0, 4.5
    grip_b = np.array([0.0, 0.0, 0.6 * bl.handle_length_m])
    events = _track_inputs("blade", [(0.0, heel0, rb), (t_in, heel1, rb), (t_lift, heel2, rb)], grip_b)
    # tube tip path
    n = g.glottis_normal
    if kind == "expert":
        # over the lifted epiglottis: keep to the laryngeal (posterior) side of the inlet
        back = np.array([0.0, 0.006, 0.0])
        via = [L["mouth_centre"] + 0.01 * g.into_mouth, L["laryngeal_inlet"] + back, g.glottis + 0.01 * n,
               g.glottis + _tracheal_reach(d, g, tu, depth_m) * n]
    elif kind == "oesophageal":
        oe = g.oesophagus_entrance
        # behind the arytenoids, keeping to the posterior side of the oesophagus
        back = np.array([0.0, 0.003, 0.0])
        via = [L["mouth_centre"] + 0.01 * g.into_mouth, L["laryngeal_inlet"] + 0.5 * (oe - L["laryngeal_inlet"]),
               oe + back, oe + 0.025 * g.oesophagus_axis + back]
    else:
        raise ValueError(f"unknown scripted attempt {kind!r}; use 'expert' or 'oesophageal'")
    # the tube passes to the patient's right of the midline blade and joins the midline at the inlet
    lateral = np.array([-TUBE_LATERAL_M, -0.5 * TUBE_LATERAL_M, 0.0, 0.0])
    via = [v + np.array([x, 0.0, 0.0]) for v, x in zip(via, lateral, strict=True)]
    start = tip0 + np.array([-TUBE_LATERAL_M - tip0[0], 0.0, 0.0])
    path = [start]
    for a, b in zip([start] + via[:-1], via, strict=True):
        m = max(1, int(np.ceil(np.linalg.norm(b - a) / 0.004)))
        path += [a + (b - a) * s for s in np.linspace(0, 1, m + 1)[1:]]
    path = np.array(path)
    theta0 = float(np.arctan2(rt[2, 0], rt[1, 0]))
    avoid = None
    if kind == "oesophageal":  # keep the tube out of the larynx and trachea in front of the oesophagus
        a, b = g.glottis + 0.01 * n, g.carina
        r_keep = g.trachea_radius + 0.5 * tu.outer_diameter_m

        def avoid(line: np.ndarray) -> np.ndarray:
            u = np.clip((line - a) @ (b - a) / float((b - a) @ (b - a)), 0.0, 1.0)
            dist = np.linalg.norm(a + u[:, None] * (b - a) - line, axis=1)
            return np.maximum(r_keep - dist, 0.0) * 3.0

    rots = plan_tube_poses(d, tu, path[1:] * np.array([0.0, 1.0, 1.0]), theta0, avoid)
    rots = [_yawed(R, q, g, TUBE_LATERAL_M) for R, q in zip(rots, path[1:], strict=True)]
    speed = 0.03  # m/s along the path
    ts = t_lift + 1.0 + np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1) / speed)])
    pts, s = tu.centerline()
    grip_t = pts[int(np.searchsorted(s, 0.27))]
    # before the blade goes in: move the tube beside the blade's plane and turn it parallel to it
    keys = [(0.0, tip0, rt), (1.5, path[0], _sagittal_rot(theta0))]
    keys += [(float(t), p, R) for t, p, R in zip(ts, path, [_sagittal_rot(theta0)] + rots, strict=True)]
    events += _track_inputs("tube", keys, grip_t)
    t_end = float(ts[-1]) + 0.5
    # cuff up and ventilate once the tube is placed (the unrecognised oesophageal tube: as soon as
    # the tip is past the oesophageal entrance, before the rigid tube springs back out)
    t_cuff = t_end if kind == "expert" else float(ts[int(np.argmin(np.linalg.norm(path - via[2], axis=1)))]) + 0.55
    events += [InputEvent(int(round(t_cuff / DT)), "cuff", 1.0),
               InputEvent(int(round((t_cuff + 0.2) / DT)), "ventilate", 1.0)]
    # blade out once the tube is placed
    events += _track_inputs("blade", [(t_end + 1.0, heel2, rb), (t_end + 3.0, heel2 - 0.12 * d_in, rb)], grip_b)
    events.append(InputEvent(int(round((t_end + 20.0) / DT)), "finish", 0.0))
    events.sort(key=lambda e: e.step)
    return events
