"""The orotracheal intubation session: airway phantom + pybullet blade and tube + oxygen model.

Shares the endovascular :class:`surgsim.session.session.Session`'s loop
(:class:`surgsim.session.loop.SteppedSession`: ``apply`` / ``step`` /
``advance_time`` / ``finished`` / ``log`` / ``score``), so that
:func:`surgsim.session.loop.play` drives it unchanged. A session is a pure
function of (scenario, variant, seed, input log): inputs are keyed by physics
step, pybullet runs in its own deterministic DIRECT client, and the oxygen
model advances by a fixed interval at every record, so :func:`replay`
reproduces a log bit for bit.

Inputs are held 6-DOF hand velocities of the laryngoscope and of the tube (in
the world frame, LPS) that move hand targets dragging the devices (the blade
through a force- and torque-limited spring-damper hand, the tube through a
force-limited constraint; never teleported), plus ``cuff``, ``ventilate``,
``head_extension`` and ``finish``. The glottic view (POGO and its Cormack-Lehane
grade) is ray cast from the operator's eye or the video-laryngoscope camera every
:data:`POGO_EVERY` steps.

``head_extension`` repositions the head (extension at the atlanto-occipital joint,
quantised to :data:`HEAD_STEP`, limited by the neck: the anatomy's ``max_extension``)
while no instrument is in the mouth (blade tip and tube tip in front of the
incisors): the design, its detection geometry and the physics world are rebuilt
for the new head, and both instruments start again from their start poses in
front of the new mouth (repositioning a head takes both hands: laryngoscope and
tube are put down and picked up again, so nothing is moved through the anatomy).
With an instrument in the mouth the request is refused (event
``head_move_refused``) and nothing changes. The scenario may set the starting
head (``start.head_extension_deg``; default :data:`HEAD_EXTENSION`, the sniffing
position).

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
from surgsim.session.loop import SteppedSession

#: Physics step, seconds (pybullet at 250 Hz).
DT = 0.004
#: Physics steps between recorded samples (125 Hz).
RECORD_EVERY = 2
#: Head extension used for the case (sniffing position), radians; clipped to the variant's limit.
HEAD_EXTENSION = 0.3
#: Head extensions are quantised to this step, radians (about 2.9 degrees): a bounded set of anatomies
#: (wall and render meshes are cached per extension) and exact replays.
HEAD_STEP = 0.05
#: Named head positions (extension at the atlanto-occipital joint, radians; the neck may limit them).
HEAD_POSITIONS: dict[str, float] = {"neutral": 0.0, "sniffing": HEAD_EXTENSION, "full extension": 0.6}
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
    # reposition the head: extension (quantised to HEAD_STEP, limited by the neck), only with no
    # instrument in the mouth
    "head_extension": ("rad", 0.0, 0.6),
    "finish": ("", 0.0, 0.0),
}
#: Actions that are not held commands (``IntubationSession.commands`` does not list them).
_EVENT_ACTIONS = ("finish", "head_extension")

#: Tube tip locations (the ``tube_location`` channel stores the index).
LOCATIONS: tuple[str, ...] = ("outside", "pharynx", "trachea", "right_main_bronchus",
                              "left_main_bronchus", "oesophagus")

SAMPLE_KEYS = ("t", "tip", "depth", "wall_force", "contacts", "blade_tip", "tube_tip", "tube_depth",
               "tip_to_carina", "tube_location", "cuff_below_cords", "blade_past_incisors",
               "incisor_force", "incisor_axial", "incisor_lever", "blade_hand_force", "spo2", "sao2",
               "heart_rate", "ventilated", "cuff", "pogo", "cormack_lehane", "head_extension")

#: Physics steps between glottic-view ray casts (the ``pogo`` channel holds the last value: 25 Hz).
POGO_EVERY = 10
#: Spacing (m) of the points sampling the glottic opening for POGO.
POGO_GRID_M = 0.0015
#: The direct-laryngoscopy eye: on the glottis-to-mouth line, this far beyond the mouth, metres.
EYE_DISTANCE_M = 0.30
#: Cormack-Lehane grade from POGO: grade 1 at or above the first, grade 2 at or above the second;
#: below that grade 3 when the epiglottis is seen, 4 when it is not.
CL_POGO = (0.85, 0.05)


def quantise_extension(value: float) -> float:
    """A head extension (radians) clipped to the ``head_extension`` action's range, on the :data:`HEAD_STEP` grid.

    Raises
    ------
    ValueError
        For a value that is not a finite number.
    """
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"head extension {value!r} is not a finite number of radians")
    _, lo, hi = ACTIONS["head_extension"]
    return round(round(float(np.clip(value, lo, hi)) / HEAD_STEP) * HEAD_STEP, 9)


def cormack_lehane(pogo: float, epiglottis_seen: bool) -> int:
    """Cormack-Lehane grade (1-4) of a view: its POGO (0-1) and whether the epiglottis is seen.

    Grade 1 shows (nearly) the whole glottic opening, grade 2 part of it, grade 3
    only the epiglottis and grade 4 not even the epiglottis (thresholds :data:`CL_POGO`;
    POGO 100 % is grade 1 and 0 % grade 3 or 4, Levitan 1998, Ochroch 1999).
    """
    if pogo >= CL_POGO[0]:
        return 1
    if pogo >= CL_POGO[1]:
        return 2
    return 3 if epiglottis_seen else 4


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

    def operator_eye(self, distance_m: float = EYE_DISTANCE_M) -> np.ndarray:
        """The laryngoscopist's eye (3,) m: on the glottis-to-mouth line, ``distance_m`` beyond the mouth."""
        u = (self.mouth - self.glottis) / np.linalg.norm(self.mouth - self.glottis)
        return self.mouth + distance_m * u

    def glottis_samples(self, spacing_m: float = POGO_GRID_M) -> np.ndarray:
        """Points (n, 3) m on a square grid of ``spacing_m`` inside the glottic outline (its plane)."""
        from surgsim.cases.airway_phantom import _polygon_inside

        poly = self.truth.glottis_outline
        e1 = np.array([1.0, 0.0, 0.0])
        e2 = np.cross(self.glottis_normal, e1)
        e2 /= np.linalg.norm(e2)
        rel = poly - self.glottis
        uv = np.stack([rel @ e1, rel @ e2], 1)
        lo, hi = uv.min(0), uv.max(0)
        gu = np.arange(lo[0] + 0.5 * spacing_m, hi[0], spacing_m)
        gv = np.arange(lo[1] + 0.5 * spacing_m, hi[1], spacing_m)
        uu, vv = np.meshgrid(gu, gv, indexing="ij")
        inside = _polygon_inside(uv, uu, vv)
        pts = self.glottis + uu[inside][:, None] * e1 + vv[inside][:, None] * e2
        return pts if len(pts) else self.glottis[None].copy()

    def incisor_components(self, force: np.ndarray) -> tuple[float, float]:
        """Axial (along the tooth, toward its root) and levering (transverse) parts of a force (3,) N."""
        axial = float(force @ self.tooth_axis)
        lever = float(np.linalg.norm(force - axial * self.tooth_axis))
        return axial, lever


def _scenario_params(scenario, variant: str, tube) -> tuple:
    """Airway parameters of a scenario (a patient's trachea when it names one); the tube must fit it.

    Raises
    ------
    ScenarioError
        Unusable trachea case, or a tube wider than the patient's trachea.
    """
    from surgsim.cases.patient_airway import lower_trachea_diameter_m, scenario_airway_params
    from surgsim.errors import SurgsimError
    from surgsim.instruments.airway import TUBES

    try:
        params, notes = scenario_airway_params(scenario.case, variant)
    except SurgsimError as exc:
        raise ScenarioError(f"scenario {scenario.id}: case.trachea_case_id: {exc}") from None
    lumen = lower_trachea_diameter_m(params)
    if tube.outer_diameter_m >= lumen:
        fits = [t.name for t in TUBES.values() if t.outer_diameter_m < lumen]
        raise ScenarioError(
            f"scenario {scenario.id}: tube {tube.name} (outer diameter {tube.outer_diameter_m * 1e3:.1f} mm) does "
            f"not fit this trachea (lumen {lumen * 1e3:.1f} mm); choose a smaller tube in 'instruments'"
            + (f" ({', '.join(fits)})" if fits else " (none of the catalogue's tubes fits)"))
    return params, notes


class IntubationSession(SteppedSession):
    """One attempt at an intubation scenario (the loop: :class:`surgsim.session.loop.SteppedSession`).

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
        from surgsim.instruments.airway import BLADES, TUBES
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
        #: the anatomy's parameters (the variant's, or with a patient's trachea) and notes on them
        self.params, self.anatomy_notes = _scenario_params(scenario, self.variant, self.tube_spec)
        self.oxygen = OxygenModel(physiology)
        self.oxygen.airway, self.oxygen.fio2 = "open", 0.21  # apnoea, mask off
        self._tube_pts, self._tube_marks = self.tube_spec.centerline(0.005)
        self._build_airway(self._start_extension())
        self.step_index = 0
        self.commands: dict[str, float] = {k: 0.0 for k in ACTIONS if k not in _EVENT_ACTIONS}
        self.inputs: list[InputEvent] = []
        self.events: list[Event] = []
        self._samples: dict[str, list] = {k: [] for k in SAMPLE_KEYS}
        self.attempts = 0
        self._in_attempt = False
        self._flags: set[str] = set()
        self._was_ventilating = False
        #: the log carries the ``head_extension`` channel: the scenario set the head, or it was moved
        self._head_logged = getattr(scenario.start, "head_extension_deg", None) is not None
        self.finished = False
        self._record()

    def _start_extension(self) -> float:
        """The starting head extension (radians): the scenario's ``start.head_extension_deg``
        (quantised, :func:`quantise_extension`) or :data:`HEAD_EXTENSION`, within the neck's limit.

        Raises
        ------
        ScenarioError
            When the scenario's head extension is beyond the anatomy's ``max_extension``.
        """
        limit = float(self.params.max_extension)
        deg = getattr(self.scenario.start, "head_extension_deg", None)
        if deg is None:
            return min(HEAD_EXTENSION, limit)
        ext = quantise_extension(np.radians(deg))
        if ext > limit + 1e-9:
            raise ScenarioError(
                f"scenario {self.scenario.id}: start.head_extension_deg {deg:g} ({ext:.2f} rad on the "
                f"{HEAD_STEP} rad grid) is beyond what this neck allows: at most "
                f"{np.degrees(limit):.1f} deg ({limit:.2f} rad) for airway-{self.variant}")
        return ext

    def _build_airway(self, extension: float, poses=None) -> None:
        """(Re)build the anatomy for a head extension (radians): design, detection geometry, physics world.

        ``poses``: ((blade pos, rot), (tube pos, rot)) to start the instruments at
        (default: :func:`surgsim.physics.airway.start_poses`).
        """
        from surgsim.cases.airway_phantom import design
        from surgsim.physics.airway import AirwayWorld, start_poses

        self.head_extension = float(extension)
        self.design = design(self.params, self.head_extension)
        self.geometry = AirwayGeometry(self.design)
        if poses is None:
            poses = start_poses(self.design, self.blade_spec, self.tube_spec)
        self.world = AirwayWorld(self.design, self.blade_spec, self.tube_spec, DT, *poses)
        self._glottis_pts = self.geometry.glottis_samples()
        self._view = (0.0, 4)
        self.reference_path_length = float(np.linalg.norm(self.geometry.glottis - self.geometry.mouth))

    # ------------------------------------------------------------------ inputs
    def apply(self, action: str, value: float = 0.0) -> None:
        """Apply an input now (before the next physics step) and log it.

        ``head_extension`` is logged on the :data:`HEAD_STEP` grid (the request; the
        events say whether the head moved).

        Raises
        ------
        ValueError
            For an unknown action, or a head extension that is not a finite number.
        """
        if action == "head_extension":
            value = quantise_extension(value)  # logged on the grid: replays build the same anatomy
        value = self._take_input(action, value, ACTIONS, "intubation action")
        if value is None:
            return
        if action == "finish":
            self._finish("trainee")
        elif action == "head_extension":
            self._reposition_head(value)
        else:
            self.commands[action] = value

    # ------------------------------------------------------------------ head position
    def instruments_in_mouth(self) -> list[str]:
        """The instruments (``"blade"``, ``"tube"``) whose tip is past the incisors now."""
        g = self.geometry
        tips = {"blade": self.blade_tip(), "tube": self.tube_centerline()[0]}
        return [name for name, tip in tips.items() if g.past_incisors(tip) > 0.0]

    def head_target(self, extension: float) -> float:
        """The head extension (radians) a ``head_extension`` request of ``extension`` gives:
        quantised (:func:`quantise_extension`), then limited by the neck (``max_extension``)."""
        return round(min(quantise_extension(extension), float(self.params.max_extension)), 9)

    def _reposition_head(self, requested: float) -> None:
        """Rebuild the airway for a new head extension, or refuse with an instrument in the mouth.

        The instruments restart from the new head's start poses (they were outside
        the mouth); the held hand commands, the oxygen model and the attempt count
        carry on. Records ``head_repositioned`` or ``head_move_refused``; a request
        for the current extension does nothing.
        """
        target = self.head_target(requested)
        current = self.head_extension
        if abs(target - current) < 1e-9:
            return
        inside = self.instruments_in_mouth()
        if inside:
            self.events.append(Event(self.time, "head_move_refused", {
                "requested_rad": round(requested, 9), "extension_rad": round(current, 9),
                "in_mouth": ", ".join(inside)}))
            return
        keep = {k: getattr(self, k) for k in ("head_extension", "design", "geometry", "world",
                                               "_glottis_pts", "_view", "reference_path_length")}
        try:
            self._build_airway(target)
        except BaseException:
            if self.world is not keep["world"]:
                self.world.close()
            for k, v in keep.items():  # a failed build leaves the session as it was
                setattr(self, k, v)
            raise
        keep["world"].close()
        self._head_logged = True
        self._view = self.glottic_view()  # the view of the new head now, not at the next cast
        self.events.append(Event(self.time, "head_repositioned", {
            "from_rad": round(current, 9), "extension_rad": round(target, 9),
            "requested_rad": round(requested, 9)}))

    # ------------------------------------------------------------------ stepping
    def _hand_velocities(self, dev: str) -> tuple[np.ndarray, np.ndarray]:
        c = self.commands
        return (np.array([c[f"{dev}_vx"], c[f"{dev}_vy"], c[f"{dev}_vz"]]),
                np.array([c[f"{dev}_wx"], c[f"{dev}_wy"], c[f"{dev}_wz"]]))

    # SteppedSession hooks: the hands move at every physics step; physiology and detection
    # run at every record
    record_every = RECORD_EVERY

    def _advance_physics(self, n_steps: int) -> None:
        w = self.world
        bv, bw = self._hand_velocities("blade")
        tv, tw = self._hand_velocities("tube")
        for _ in range(n_steps):
            w.move_hand(w.blade_hand, bv, bw, self.dt)
            w.move_hand(w.tube_hand, tv, tw, self.dt)
            w.step()

    def _on_record(self) -> None:
        self._physiology(RECORD_EVERY * self.dt)
        self._record()

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

    def view_origin(self) -> np.ndarray:
        """(3,) m: the video-laryngoscope camera for a video blade, else the operator's eye."""
        if self.blade_spec.video:
            pos, rot = self.world.pose(self.world.blade)
            cam, _ = self.blade_spec.camera()
            return pos + rot @ cam
        return self.geometry.operator_eye()

    def glottic_view(self) -> tuple[float, int]:
        """Percentage of glottic opening seen now (POGO, fraction 0-1) and its Cormack-Lehane grade.

        Rays from :meth:`view_origin` to points filling the glottic outline; the
        teeth, tongue and epiglottis occlude (the instruments do not). POGO is the
        fraction of the opening's area whose rays arrive.
        """
        w = self.world
        origin = self.view_origin()
        pogo = float(np.mean(w.ray_hits(origin, self._glottis_pts) < 0))
        epi = w.epiglottis_tip()
        pos, _ = w.pose(w.epiglottis)
        seen = bool(np.any(w.ray_hits(origin, np.stack([epi, pos])) == w.epiglottis))
        return pogo, cormack_lehane(pogo, seen)

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
        if self.step_index % POGO_EVERY == 0:
            self._view = self.glottic_view()
        s["pogo"].append(self._view[0])
        s["cormack_lehane"].append(self._view[1])
        s["head_extension"].append(self.head_extension)  # radians (in the log once the head moved)
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
    def latest(self, channel: str):
        """The last recorded value of a sample channel (one of :data:`SAMPLE_KEYS`), in O(1).

        Returns a float or int for a scalar channel, a copy (3,) float for a vector one
        (``tip``, ``blade_tip``, ``tube_tip``, metres), or None before the first record.
        Cheap enough to call every frame, unlike :meth:`log`, which copies every channel.

        Raises
        ------
        KeyError
            For a channel the session does not record.
        """
        if channel not in self._samples:
            raise KeyError(f"unknown intubation sample channel {channel!r}; known: {', '.join(SAMPLE_KEYS)}")
        values = self._samples[channel]
        if not values:
            return None
        v = values[-1]
        return np.array(v, float) if isinstance(v, np.ndarray) else v

    def log(self) -> SessionLog:
        """The session log so far (a copy).

        The ``head_extension`` channel (radians) is left out while the head stayed at
        the simulator's default start: such a log is exactly what sessions made before
        the head could move (their recorded hashes still verify on replay).
        """
        s = self._samples
        samples = {}
        for k in SAMPLE_KEYS:
            if k == "head_extension" and not self._head_logged:
                continue
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


def replay(scenario, log: SessionLog, variant: str | None = None) -> IntubationSession:
    """Re-run a recorded log's inputs; the result's log equals the original's."""
    from surgsim.session.loop import play

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
#: How far the scripted expert lifts the blade along the handle once its tip is in the vallecula, metres.
LIFT_M = 0.025
#: How far the scripted novice rocks the blade back on the upper incisors, radians.
LEVER_RAD = 0.3
#: How far the scripted novice pushes the tube into the oesophagus before seeing that it is not between
#: the cords, metres (a hesitant push: less to undo when it is withdrawn).
NOVICE_OESOPHAGUS_DEPTH_M = 0.012
#: A tube slipping into the oesophagus passes this far behind (posterior to) the midpoint of the
#: laryngeal inlet and the oesophageal entrance (behind the aryepiglottic folds), metres.
OESOPHAGEAL_BEHIND_FOLDS_M = 0.006


_SDF_CACHE: dict = {}


def _lumen_sdf(design):
    """Signed distance (m, positive inside the instrument space) on the lumen grid, and its sampler.

    The grid is computed once per (parameters, extension) and kept (read-only) for later plans.
    """
    from scipy.ndimage import distance_transform_edt, map_coordinates

    from surgsim.cases.airway_phantom import lumen_mask

    key = (design.params, round(float(design.extension), 9))
    if key not in _SDF_CACHE:
        mask, wfv = lumen_mask(design, 2.0)
        sdf = (distance_transform_edt(mask) - distance_transform_edt(~mask)) * wfv[0, 0]
        sdf.setflags(write=False)
        _SDF_CACHE[key] = (sdf, wfv)
    sdf, wfv = _SDF_CACHE[key]
    h = wfv[0, 0]
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


def planned_tube_depth_m(design, geometry: AirwayGeometry, tube, tip_above_carina_m: float | None = None) -> float:
    """Depth mark at the incisors (m) that puts the tube's tip ``tip_above_carina_m`` above the carina.

    The tip lies on the glottis' axis (as a tube passed through the cords goes),
    the tube on its planned pose (sagittal curve clear of the lumen's wall,
    leaving the right corner of the mouth). Default height:
    :data:`surgsim.anatomy.trachea.TIP_ABOVE_CARINA_M` (5 cm).
    """
    from surgsim.anatomy.trachea import TIP_ABOVE_CARINA_M
    from surgsim.physics.airway import TUBE_LATERAL_M

    h = TIP_ABOVE_CARINA_M if tip_above_carina_m is None else float(tip_above_carina_m)
    n, a = geometry.glottis_normal, geometry.trachea_axis
    k = (float((geometry.carina - geometry.glottis) @ a) - h) / float(n @ a)
    tip = geometry.glottis + k * n
    pts, marks = tube.centerline(0.005)
    rot = _yawed(plan_tube_poses(design, tube, tip[None], float(np.arctan2(n[2], n[1])))[0], tip, geometry,
                 TUBE_LATERAL_M)
    return float(geometry.depth_at_incisors(tip + pts @ rot.T, marks))


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


def _arc_keys(arc, t0: float, t1: float, phi0: float, phi1: float,
              interval: float = SCRIPT_INTERVAL_S) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Blade keyframes (t s, heel (3,) m, rotation (3, 3)) turning along its arc from phi0 to phi1 rad."""
    n = max(1, int(np.ceil((t1 - t0) / interval)))
    out = []
    for t in np.linspace(t0, t1, n + 1):
        s = _smoothstep((t - t0) / (t1 - t0))
        out.append((float(t), *arc.pose(phi0 + (phi1 - phi0) * s)))
    return out


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


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


class _Script:
    """What a scripted attempt needs about one case: design, geometry, devices, arcs and grips."""

    def __init__(self, variant, blade: str, tube: str, depth_m: float, extension: float | None = None):
        from surgsim.cases.airway_phantom import PARAMS
        from surgsim.cases.airway_phantom import design as make_design
        from surgsim.instruments.airway import BLADES, TUBES
        from surgsim.physics.airway import BladeArc, start_poses

        self.bl, self.tu = BLADES[blade], TUBES[tube]
        P = PARAMS[variant] if isinstance(variant, str) else variant
        #: the head extension planned for (radians); None: the session's default start
        self.extension = None if extension is None else \
            round(min(quantise_extension(extension), float(P.max_extension)), 9)
        self.d = make_design(P, min(HEAD_EXTENSION, P.max_extension) if extension is None else self.extension)
        self.g = AirwayGeometry(self.d)
        _, (self.tip0, self.rt) = start_poses(self.d, self.bl, self.tu)
        self.arc = BladeArc(self.d, self.bl)
        self.depth_m = depth_m
        self.grip_b = np.array([0.0, 0.0, 0.6 * self.bl.handle_length_m])
        pts, s = self.tu.centerline()
        self.grip_t = pts[int(np.searchsorted(s, 0.27))]
        self.theta0 = float(np.arctan2(self.rt[2, 0], self.rt[1, 0]))
        self.events: list[InputEvent] = []

    # ---------------------------------------------------------------- blade
    def blade_in(self, t0: float, duration: float, pause_s: float = 0.0) -> tuple[float, list]:
        """Blade along its arc into the vallecula (halting ``pause_s`` halfway); returns (t end, keys)."""
        arc = self.arc
        if pause_s > 0.0:
            half = 0.5 * arc.phi_entry
            keys = _arc_keys(arc, t0, t0 + 0.5 * duration, arc.phi_entry, half)
            keys += _arc_keys(arc, t0 + 0.5 * duration + pause_s, t0 + duration + pause_s, half, 0.0)
        else:
            keys = _arc_keys(arc, t0, t0 + duration, arc.phi_entry, 0.0)
        return keys[-1][0], keys

    def lift(self, keys: list, t0: float, duration: float, lift_m: float = 0.0) -> list:
        """Lift along the handle (up and toward the feet) by ``lift_m`` (default :data:`LIFT_M`)."""
        _, heel, rot = keys[-1]
        up = np.array([0.0, -1.0, -1.0]) / np.sqrt(2.0)
        return keys + [(t0 + duration, heel + (lift_m or LIFT_M) * up, rot)]

    def lever(self, keys: list, t0: float, angle: float, duration: float) -> list:
        """Rock the blade back on the upper incisors: press its palatal face onto their edge, then turn
        the handle back (the tip comes forward) by ``angle`` rad about that edge."""
        from scipy.spatial.transform import Rotation

        _, heel, rot = keys[-1]
        edge = self.g.upper_incisor.copy()
        edge[0] = 0.0
        pts, _ = self.bl.centerline(60)
        world = heel + pts @ rot.T
        k = int(np.argmin(np.linalg.norm(world - edge, axis=1)))
        gap = edge - world[k]
        press = gap - (0.5 * self.bl.thickness_m) * gap / np.linalg.norm(gap)
        heel_p = heel + press + 0.002 * gap / np.linalg.norm(gap)  # 2 mm into the tooth: contact
        out = keys + [(t0 + 0.6, heel_p, rot)]
        n = max(2, int(np.ceil(duration / SCRIPT_INTERVAL_S)))
        for j in range(1, n + 1):
            a = -angle * _smoothstep(j / n)  # -x turn: tip anterior, handle back
            r = Rotation.from_rotvec([a, 0.0, 0.0]).as_matrix()
            out.append((t0 + 0.6 + duration * j / n, edge + r @ (heel_p - edge), r @ rot))
        return out

    def blade_out(self, keys: list, t0: float, duration: float) -> list:
        """Undo any levering, then back out along the arc."""
        _, heel, rot = keys[-1]
        _, heel_in, rot_in = _arc_keys(self.arc, 0.0, 1.0, 0.0, 0.0)[-1]
        shift = heel - heel_in if np.allclose(rot, rot_in) else np.zeros(3)
        out = keys + [(t0 + 0.8, heel_in + shift, rot_in)]
        out += [(t, h + shift, r) for t, h, r in _arc_keys(self.arc, t0 + 1.0, t0 + duration, 0.0,
                                                            self.arc.phi_entry)]
        return out

    # ---------------------------------------------------------------- tube
    def tube_path(self, placement: str, oesophagus_depth_m: float = 0.025) -> tuple[np.ndarray, list]:
        """Tip path (n, 3) m from the tube's start and the planned orientations (n - 1 rotations).

        ``oesophagus_depth_m``: how far past the oesophageal entrance an oesophageal path goes.
        """
        from surgsim.physics.airway import TUBE_LATERAL_M

        g, L, tu = self.g, self.g.truth.landmarks, self.tu
        n = g.glottis_normal
        if placement == "trachea":
            # over the lifted epiglottis: keep to the laryngeal (posterior) side of the inlet
            back = np.array([0.0, 0.006, 0.0])
            via = [L["mouth_centre"] + 0.01 * g.into_mouth, L["laryngeal_inlet"] + back, g.glottis + 0.01 * n,
                   g.glottis + _tracheal_reach(self.d, g, tu, self.depth_m) * n]
        elif placement == "oesophagus":
            oe = g.oesophagus_entrance
            back = np.array([0.0, 0.003, 0.0])  # behind the arytenoids, the posterior side of the oesophagus
            # halfway from the laryngeal inlet to the oesophagus, behind the aryepiglottic folds
            folds = np.array([0.0, OESOPHAGEAL_BEHIND_FOLDS_M, 0.0])
            via = [L["mouth_centre"] + 0.01 * g.into_mouth,
                   L["laryngeal_inlet"] + 0.5 * (oe - L["laryngeal_inlet"]) + folds,
                   oe + back, oe + oesophagus_depth_m * g.oesophagus_axis + back]
        else:
            raise ValueError(f"unknown tube placement {placement!r}")
        lateral = np.array([-TUBE_LATERAL_M, -0.5 * TUBE_LATERAL_M, 0.0, 0.0])
        via = [v + np.array([x, 0.0, 0.0]) for v, x in zip(via, lateral, strict=True)]
        start = self.tip0 + np.array([-TUBE_LATERAL_M - self.tip0[0], 0.0, 0.0])
        path = [start]
        for a, b in zip([start] + via[:-1], via, strict=True):
            m = max(1, int(np.ceil(np.linalg.norm(b - a) / 0.004)))
            path += [a + (b - a) * q for q in np.linspace(0, 1, m + 1)[1:]]
        path = np.array(path)
        avoid = None
        if placement == "oesophagus":  # keep the tube out of the larynx and trachea in front of it
            a, b = g.glottis + 0.01 * n, g.carina
            r_keep = g.trachea_radius + 0.5 * tu.outer_diameter_m

            def avoid(line: np.ndarray) -> np.ndarray:
                u = np.clip((line - a) @ (b - a) / float((b - a) @ (b - a)), 0.0, 1.0)
                dist = np.linalg.norm(a + u[:, None] * (b - a) - line, axis=1)
                return np.maximum(r_keep - dist, 0.0) * 3.0

        rots = plan_tube_poses(self.d, tu, path[1:] * np.array([0.0, 1.0, 1.0]), self.theta0, avoid)
        rots = [_yawed(R, q, g, TUBE_LATERAL_M) for R, q in zip(rots, path[1:], strict=True)]
        return path, rots

    def tube_keys(self, path: np.ndarray, rots: list, t_go: float, speed: float, t_start: float = 0.0,
                  start: tuple | None = None, stall_at: float | None = None, stall_s: float = 0.0) -> list:
        """Keyframes carrying the tube along ``path`` at ``speed`` m/s from ``t_go``.

        From ``t_start`` it first moves from ``start`` (pose (tip (3,), rot (3, 3)); default the
        start pose) to the path's start beside the mouth, parallel to the sagittal plane (1.5 s),
        and waits there. ``stall_at`` (a fraction of the path) holds it for ``stall_s`` seconds.
        """
        seg = np.linalg.norm(np.diff(path, axis=0), axis=1) / speed
        ts = t_go + np.concatenate([[0.0], np.cumsum(seg)])
        if stall_at is not None:
            k = int(stall_at * (len(ts) - 1))
            ts[k + 1:] += stall_s
        p0, r0 = start if start is not None else (self.tip0, self.rt)
        keys = [(t_start, p0, r0)]
        if t_go > t_start + 1.5 + 1e-6:
            keys.append((t_start + 1.5, path[0], _sagittal_rot(self.theta0)))
        keys += [(float(t), q, R) for t, q, R in zip(ts, path, [_sagittal_rot(self.theta0)] + rots, strict=True)]
        return keys

    @staticmethod
    def reverse(keys: list, t0: float, speed: float) -> list:
        """The same poses back to the first, from ``t0`` at ``speed`` m/s (withdrawing)."""
        back = keys[::-1]
        out = [(t0, back[0][1], back[0][2])]
        for (_, p0, _), (_, p1, r1) in zip(back[:-1], back[1:], strict=True):
            out.append((out[-1][0] + max(float(np.linalg.norm(p1 - p0)) / speed, SCRIPT_INTERVAL_S), p1, r1))
        return out

    def add(self, dev: str, keys: list) -> None:
        grip = self.grip_b if dev == "blade" else self.grip_t
        self.events += _track_inputs(dev, keys, grip)

    def switch(self, t: float, action: str, value: float) -> None:
        self.events.append(InputEvent(int(round(t / DT)), action, float(value)))

    def done(self, t_finish: float) -> list[InputEvent]:
        self.switch(t_finish, "finish", 0.0)
        self.events.sort(key=lambda e: e.step)
        return self.events


#: Scripted attempt kinds (:func:`scripted_attempt`).
SCRIPT_KINDS = ("expert", "oesophageal", "novice", "levering", "laryngoscopy")


def scripted_attempt(variant="adult", kind: str = "expert", blade: str = "macintosh_3",
                     tube: str = "ett_7_5", depth_m: float = 0.215,
                     extension: float | None = None) -> list[InputEvent]:
    """A scripted attempt as an input log (hand velocities, cuff, bag, finish).

    ``variant``: an airway variant name or its :class:`~surgsim.cases.airway_phantom.AirwayParams`.
    ``extension``: head extension (radians) to set first (a ``head_extension`` input at step 0,
    quantised and limited by the neck as the session does) and to plan for; None keeps the
    scenario's default start (:data:`HEAD_EXTENSION`).

    Kinds (:data:`SCRIPT_KINDS`):

    * ``"expert"``: blade along its curve into the vallecula in 3 s, lift along the handle
      (no tooth contact), tube through the cords to the depth mark ``depth_m`` at the
      incisors, cuff up, ventilate, blade out;
    * ``"oesophageal"``: the same view, but the tube slips behind the arytenoids into the
      oesophagus and is ventilated there (unrecognised);
    * ``"novice"``: hesitant and slow; levers the blade on the upper incisors instead of
      lifting; the first tube goes into the oesophagus, is recognised (not ventilated) and
      withdrawn; a second laryngoscopy (levering again) places the tube in the trachea;
    * ``"levering"``: blade in and levered on the upper incisors, no tube (a force test);
    * ``"laryngoscopy"``: the expert's blade alone (in, lift, hold, out), no tube (a view test).

    The tube's orientation along its path is planned on the lumen's signed distance
    (:func:`plan_tube_poses`).
    """
    if kind not in SCRIPT_KINDS:
        raise ValueError(f"unknown scripted attempt {kind!r}; use one of {', '.join(SCRIPT_KINDS)}")
    sc = _Script(variant, blade, tube, depth_m, extension)
    if sc.extension is not None:  # first, before any hand moves (a stable sort keeps it first)
        sc.switch(0.0, "head_extension", quantise_extension(extension))
    if kind in ("levering", "laryngoscopy"):
        t, keys = sc.blade_in(0.0, 3.0)
        keys = sc.lever(keys, t, LEVER_RAD, 1.5) if kind == "levering" else sc.lift(keys, t, 1.5)
        keys = sc.blade_out(keys + [(keys[-1][0] + 2.0, keys[-1][1], keys[-1][2])], keys[-1][0] + 2.0, 3.0)
        sc.add("blade", keys)
        return sc.done(keys[-1][0] + 1.0)
    if kind in ("expert", "oesophageal"):
        t, keys = sc.blade_in(0.0, 3.0)
        keys = sc.lift(keys, t, 1.5)
        t_view = keys[-1][0]
        path, rots = sc.tube_path("trachea" if kind == "expert" else "oesophagus")
        tkeys = sc.tube_keys(path, rots, t_view + 1.0, 0.03)
        sc.add("tube", tkeys)
        t_end = tkeys[-1][0] + 0.5
        if kind == "expert":
            t_cuff = t_end
        else:  # ventilated as soon as the tip is past the oesophageal entrance (unrecognised)
            k = int(np.argmin(np.linalg.norm(path - sc.g.oesophagus_entrance, axis=1)))
            t_cuff = tkeys[k][0] + 0.55
        sc.switch(t_cuff, "cuff", 1.0)
        sc.switch(t_cuff + 0.2, "ventilate", 1.0)
        sc.add("blade", sc.blade_out(keys + [(t_end + 1.0, keys[-1][1], keys[-1][2])], t_end + 1.0, 3.0))
        return sc.done(t_end + 20.0)
    # novice: two laryngoscopies, levering, slow and hesitant, oesophagus first (recognised)
    t, keys = sc.blade_in(0.0, 5.0, pause_s=1.5)
    keys = sc.lever(keys, t + 0.5, LEVER_RAD, 2.0)
    t_view = keys[-1][0]
    path, rots = sc.tube_path("oesophagus", NOVICE_OESOPHAGUS_DEPTH_M)
    tkeys = sc.tube_keys(path, rots, t_view + 1.0, 0.02, stall_at=0.5, stall_s=1.5)
    t_out = tkeys[-1][0] + 2.5  # looks, sees no tube between the cords
    back = sc.reverse(tkeys[1:], t_out, 0.04)
    sc.add("tube", tkeys + back)
    t_blade = back[-1][0] + 0.5
    keys = sc.blade_out(keys + [(t_blade, keys[-1][1], keys[-1][2])], t_blade, 3.0)
    sc.add("blade", keys)
    # second laryngoscopy after a pause
    t2 = keys[-1][0] + 4.0
    t, keys = sc.blade_in(t2, 4.0)
    keys = sc.lever(keys, t + 0.3, 0.7 * LEVER_RAD, 1.5)
    t_view = keys[-1][0]
    path, rots = sc.tube_path("trachea")
    tkeys = sc.tube_keys(path, rots, t_view + 1.0, 0.02, t_start=back[-1][0] + 0.5,
                         start=(back[-1][1], back[-1][2]), stall_at=0.7, stall_s=1.0)
    sc.add("tube", tkeys)
    t_end = tkeys[-1][0] + 1.5
    sc.switch(t_end, "cuff", 1.0)
    sc.switch(t_end + 0.4, "ventilate", 1.0)
    sc.add("blade", sc.blade_out(keys + [(t_end + 1.5, keys[-1][1], keys[-1][2])], t_end + 1.5, 3.0))
    return sc.done(t_end + 20.0)
