"""The angiosuite's imaging state: C-arm, fluoroscopy, dose and contrast.

:class:`Imaging` is a pure, deterministic state machine advanced with the
session's time (:meth:`Imaging.step`). It does no rendering: the fluoroscopy
renderer (:mod:`surgsim.render.fluoro`) reads its C-arm angles, whether the
beam is on, the contrast concentration along the centerlines and the roadmap.

C-arm
-----
``lao`` (radians): rotation about the patient's long axis, positive LAO (the
detector toward the patient's left), negative RAO; limited to
+-:data:`LAO_LIMIT`. ``cran`` (radians): tilt toward the head, positive
cranial, negative caudal; limited to +-:data:`CRAN_LIMIT`. Angles are set
directly (the GUI steps them in increments).

Beam and dose
-------------
The fluoroscopy pedal is live while held; a cine (acquisition) run is live
while its control is held and counts as one run each time it starts.
``fluoro_time`` accumulates the seconds of fluoroscopy (cine excluded, as
angiosuites report it), ``cine_time`` those of cine. The dose proxy is the
dose-area product (DAP) in Gy m^2 (1 Gy cm^2 = 1e-4 Gy m^2):
``rate * thickness factor * seconds`` with :data:`FLUORO_DAP_RATE` (1 Gy cm^2
per minute, low-dose pulsed fluoroscopy of an adult chest) and
:data:`CINE_DAP_RATE` (ten times more). The automatic exposure control raises
the output for a thicker path: the factor is
``1 + LATERAL_DOSE_GAIN sin^2(lao)`` times ``1 / cos(cran)``.

Contrast
--------
An injection of ``volume_ml`` at ``rate_ml_s`` from the catheter tip starts
now and lasts ``volume_ml / rate_ml_s`` seconds. The tip is located on the
centerline graph (nearest branch and arc length). Blood flows from the aortic
root through the arch into the branches and down the descending aorta: in the
root branch (the aorta, whose centerline runs from the access end to the
root) blood flows toward arc length 0; in every other branch from its
junction toward its distal end. Contrast fills the lumen downstream of the
tip along the graph:

- concentration (fraction of undiluted contrast) at the tip
  ``c0 = rate / (rate + Q)``, with the local blood flow ``Q`` from Murray's
  law ``Q = Q_AORTA (r / r_aorta)^3`` (``r`` the lumen radius at the tip,
  ``r_aorta`` the median aortic radius), unchanged downstream (the flow
  splits but the mixture does not change);
- a point at path length ``d`` downstream sees the injected box of duration
  ``T`` delayed by ``d / FLOW_SPEED`` and smoothed by first-order mixing with
  the time constant ``tau = TAU_MIX + DISPERSION * d / FLOW_SPEED``: with
  ``u = t - t0 - d / FLOW_SPEED``, ``g = 0`` for ``u < 0``,
  ``1 - exp(-u / tau)`` while ``u <= T``, then
  ``(1 - exp(-T / tau)) exp(-(u - T) / tau)`` (wash-out);
- reflux: up to ``REFLUX_LENGTH * rate / (rate + Q)`` upstream of the tip
  (into the parent around the junction when the branch is shorter), with
  ``REFLUX_FRACTION * c0`` at the tip falling linearly to 0, and the tip's
  time profile.

Injections add and the sum is clipped to 1. :meth:`Imaging.concentration`
gives, per branch, the concentration at its centerline points.

Roadmap
-------
While the beam is live, the peak concentration of the latest injection is
accumulated point by point; it becomes the roadmap (the last contrast image,
kept as an overlay) together with the C-arm angles and table position it was
taken at, sampled every :data:`ROADMAP_PERIOD` of simulated time. Moving the
C-arm or the table during the capture restarts it; the overlay applies at its
own angles once the injection has washed out (:meth:`Imaging.roadmap_valid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from surgsim.errors import ScenarioError
from surgsim.scoring.log import Event

#: C-arm rotation limit, LAO/RAO, radians.
LAO_LIMIT = math.radians(90.0)
#: C-arm angulation limit, cranial/caudal, radians.
CRAN_LIMIT = math.radians(45.0)
#: Dose-area product rate of fluoroscopy, Gy m^2 per second (1 Gy cm^2 / min).
FLUORO_DAP_RATE = 1.0e-4 / 60.0
#: Dose-area product rate of a cine (acquisition) run, Gy m^2 per second.
CINE_DAP_RATE = 10.0 * FLUORO_DAP_RATE
#: Extra exposure of a lateral view relative to a frontal one (AEC, thicker path).
LATERAL_DOSE_GAIN = 1.5

#: Largest table offset from the start position along each axis, metres.
TABLE_LIMIT = 0.25

#: Blood flow through the ascending aorta (cardiac output 5 L/min), ml/s.
Q_AORTA_ML_S = 5000.0 / 60.0
#: Mean speed a contrast front travels with the blood, m/s.
FLOW_SPEED = 0.25
#: Mixing time constant at the catheter tip, seconds.
TAU_MIX = 0.15
#: Growth of the mixing time constant per second of transit (dispersion).
DISPERSION = 0.5
#: Longest reflux upstream of the tip (reached when the injection outruns the flow), metres.
REFLUX_LENGTH = 0.04
#: Concentration of the reflux at the tip, fraction of the downstream concentration.
REFLUX_FRACTION = 0.5
#: Largest injection rate (power injector), ml/s; larger requests are clipped.
MAX_RATE_ML_S = 30.0
#: Largest single injection, ml; larger requests are clipped.
MAX_VOLUME_ML = 100.0
#: Concentration below which a point counts as free of contrast.
VISIBLE = 1e-3
#: Simulated seconds between two roadmap samples (the peak is sampled, not integrated).
ROADMAP_PERIOD = 0.01


def _profile(u: np.ndarray, duration: float, tau: np.ndarray) -> np.ndarray:
    """Box of ``duration`` seconds convolved with an exponential of time constant ``tau``.

    Parameters
    ----------
    u : (n,) float, seconds since the contrast front's arrival
    duration : float, seconds
    tau : (n,) float, seconds

    Returns
    -------
    (n,) float in [0, 1]
    """
    u = np.asarray(u, dtype=float)
    tau = np.broadcast_to(np.asarray(tau, dtype=float), u.shape)
    out = np.zeros_like(u)
    rising = (u >= 0.0) & (u <= duration)
    out[rising] = 1.0 - np.exp(-u[rising] / tau[rising])
    after = u > duration
    peak = 1.0 - np.exp(-duration / tau[after])
    out[after] = peak * np.exp(-(u[after] - duration) / tau[after])
    return out


@dataclass(frozen=True)
class Injection:
    """One contrast injection, located on the centerline graph.

    Attributes
    ----------
    t0 : float, seconds (session time at the start)
    volume_ml, rate_ml_s : float
    label : str, branch holding the tip
    arclength : float, metres along that branch
    c0 : float, concentration at the tip (fraction of undiluted contrast)
    reflux_length : float, metres
    downstream : dict label -> (n,) float, metres of path downstream of the tip (inf: not downstream)
    upstream : dict label -> (n,) float, metres of reflux path upstream (inf: none)
    """

    t0: float
    volume_ml: float
    rate_ml_s: float
    label: str
    arclength: float
    c0: float
    reflux_length: float
    downstream: dict = field(repr=False)
    upstream: dict = field(repr=False)

    @property
    def duration(self) -> float:
        """Seconds the injection lasts."""
        return self.volume_ml / self.rate_ml_s

    def delivered_ml(self, t: float) -> float:
        """Millilitres injected by session time ``t``."""
        return float(min(self.volume_ml, max(0.0, t - self.t0) * self.rate_ml_s))

    def concentration(self, t: float) -> dict[str, np.ndarray]:
        """Concentration this injection causes at time ``t``, per branch ((n,) float)."""
        out = {}
        for label, d in self.downstream.items():
            c = np.zeros(d.shape)
            sel = np.isfinite(d)
            if sel.any():
                transit = d[sel] / FLOW_SPEED
                tau = TAU_MIX + DISPERSION * transit
                c[sel] = self.c0 * _profile(t - self.t0 - transit, self.duration, tau)
            up = self.upstream[label]
            sel = np.isfinite(up)
            if sel.any() and self.reflux_length > 0:
                g = _profile(np.array([t - self.t0]), self.duration, np.array([TAU_MIX]))[0]
                w = np.clip(1.0 - up[sel] / self.reflux_length, 0.0, 1.0)
                c[sel] = np.maximum(c[sel], REFLUX_FRACTION * self.c0 * g * w)
            out[label] = c
        return out

    def finished(self, t: float) -> bool:
        """True once the contrast has washed out everywhere (below :data:`VISIBLE`)."""
        d_max = max((float(np.max(d[np.isfinite(d)], initial=0.0)) for d in self.downstream.values()),
                    default=0.0)
        tau_max = TAU_MIX + DISPERSION * d_max / FLOW_SPEED
        u = t - self.t0 - d_max / FLOW_SPEED - self.duration
        return u > tau_max * math.log(max(self.c0, VISIBLE) / VISIBLE) and u > 0


@dataclass(frozen=True)
class Roadmap:
    """The last contrast image: peak concentration per branch and the C-arm angles.

    Attributes
    ----------
    lao, cran : float, radians
    concentration : dict label -> (n,) float
    time : float, seconds (when it was last updated)
    table : (3,) float, metres (table offset it was taken at)
    """

    lao: float
    cran: float
    concentration: dict
    time: float
    table: np.ndarray = field(default_factory=lambda: np.zeros(3))


class Imaging:
    """Angiosuite state: C-arm, pedal, fluoroscopy time, dose and contrast.

    Parameters
    ----------
    centerlines : CenterlineGraph
        Labelled centerlines; the root branch (parent None) carries the inflow
        at its end (the aortic root) and flows toward its start.
    """

    def __init__(self, centerlines) -> None:
        branches = centerlines.branches
        if not branches:
            raise ScenarioError("Imaging: the centerline graph is empty; build the case's centerlines first")
        self.centerlines = centerlines
        self._arc = {k: np.asarray(c.arclength, dtype=float) for k, c in branches.items()}
        self._radii = {k: np.asarray(c.radii, dtype=float) for k, c in branches.items()}
        self._parent = {k: c.parent for k, c in branches.items()}
        self._children: dict[str, list[tuple[str, float]]] = {k: [] for k in branches}
        for k, c in branches.items():
            if c.parent is not None:
                self._children[c.parent].append((k, centerlines.junction(k)))
        roots = [k for k, p in self._parent.items() if p is None]
        root_r = np.concatenate([self._radii[k] for k in roots])
        root_r = root_r[np.isfinite(root_r) & (root_r > 0)]
        self.r_ref = float(np.median(root_r)) if root_r.size else 0.0125
        self.time = 0.0
        self.lao = 0.0
        self.cran = 0.0
        self.table = np.zeros(3)
        self.pedal = False
        self.cine = False
        self.fluoro_time = 0.0
        self.cine_time = 0.0
        self.cine_runs = 0
        self.dose = 0.0
        self.roadmap: Roadmap | None = None
        self.roadmap_enabled = True
        self.injections: list[Injection] = []
        self.events: list[Event] = []
        self._delivered_done = 0.0  # ml of injections already pruned
        self._capture: dict[str, np.ndarray] | None = None
        self._capture_angles: tuple[float, float] | None = None
        self._capture_id = -1
        self._n_injections = 0
        self._next_sample = 0.0

    # ------------------------------------------------------------------ inputs
    @property
    def live(self) -> bool:
        """True while X-rays are on (fluoroscopy pedal or cine)."""
        return self.pedal or self.cine

    def set_pedal(self, pressed: bool) -> None:
        """Press (True) or release the fluoroscopy pedal."""
        pressed = bool(pressed)
        if pressed != self.pedal:
            self.events.append(Event(self.time, "fluoro_on" if pressed else "fluoro_off", {}))
        self.pedal = pressed

    def set_cine(self, acquiring: bool) -> None:
        """Start (True) or stop a cine (acquisition) run; each start counts one run."""
        acquiring = bool(acquiring)
        if acquiring and not self.cine:
            self.cine_runs += 1
            self.events.append(Event(self.time, "cine_run", {"run": self.cine_runs}))
        self.cine = acquiring

    def set_carm(self, lao: float, cran: float) -> None:
        """Set the C-arm angles (radians; clipped to the limits).

        Parameters
        ----------
        lao : float, radians, positive LAO, negative RAO
        cran : float, radians, positive cranial, negative caudal
        """
        if not (math.isfinite(lao) and math.isfinite(cran)):
            raise ScenarioError(f"set_carm: angles must be finite radians, got lao={lao!r}, cran={cran!r}")
        self.lao = float(np.clip(lao, -LAO_LIMIT, LAO_LIMIT))
        self.cran = float(np.clip(cran, -CRAN_LIMIT, CRAN_LIMIT))

    def rotate_carm(self, d_lao: float, d_cran: float) -> None:
        """Turn the C-arm by increments (radians; the result is clipped to the limits)."""
        self.set_carm(self.lao + d_lao, self.cran + d_cran)

    def set_table(self, offset) -> None:
        """Move the table (pan): offset of the isocentre from its start, (3,) metres (clipped)."""
        off = np.asarray(offset, dtype=float).reshape(-1)
        if off.shape != (3,) or not np.all(np.isfinite(off)):
            raise ScenarioError(f"set_table: offset must be 3 finite metres, got {offset!r}")
        self.table = np.clip(off, -TABLE_LIMIT, TABLE_LIMIT)

    def set_roadmap(self, enabled: bool) -> None:
        """Show (True) or hide the roadmap overlay."""
        self.roadmap_enabled = bool(enabled)

    def clear_roadmap(self) -> None:
        """Forget the roadmap."""
        self.roadmap = None
        self._capture = None
        self._capture_angles = None

    def local_flow_ml_s(self, label: str, arclength: float) -> float:
        """Blood flow at a centerline position from Murray's law, ml/s."""
        r = float(np.interp(arclength, self._arc[label], self._radii[label]))
        if not math.isfinite(r) or r <= 0:
            r = self.r_ref
        return float(min(Q_AORTA_ML_S, Q_AORTA_ML_S * (r / self.r_ref) ** 3))

    def inject(self, volume_ml: float, rate_ml_s: float, tip_point) -> Injection:
        """Start a contrast injection from the catheter tip now.

        Parameters
        ----------
        volume_ml : float, millilitres (clipped to (0, MAX_VOLUME_ML])
        rate_ml_s : float, ml per second (clipped to (0, MAX_RATE_ML_S])
        tip_point : (3,) float, metres (LPS), the catheter tip

        Returns
        -------
        Injection

        Raises
        ------
        ScenarioError
            Non-finite or non-positive volume or rate, or a non-finite tip.
        """
        tip = np.asarray(tip_point, dtype=float).reshape(-1)
        if tip.shape != (3,) or not np.all(np.isfinite(tip)):
            raise ScenarioError(f"inject: tip_point must be 3 finite metres (LPS), got {tip_point!r}")
        if not (math.isfinite(volume_ml) and math.isfinite(rate_ml_s) and volume_ml > 0 and rate_ml_s > 0):
            raise ScenarioError(
                f"inject: volume_ml and rate_ml_s must be positive, got {volume_ml!r} ml at {rate_ml_s!r} ml/s"
            )
        volume = float(min(volume_ml, MAX_VOLUME_ML))
        rate = float(min(rate_ml_s, MAX_RATE_ML_S))
        label, s, _ = self.centerlines.locate(tip)
        q = self.local_flow_ml_s(label, s)
        c0 = rate / (rate + q)
        reflux = REFLUX_LENGTH * c0
        down = {k: np.full(a.shape, np.inf) for k, a in self._arc.items()}
        self._fill_downstream(down, label, s, 0.0, self._flow_dir(label))
        up = {k: np.full(a.shape, np.inf) for k, a in self._arc.items()}
        self._fill_upstream(up, label, s, 0.0, reflux)
        for k in up:  # reflux only where the flow does not already carry contrast
            up[k][np.isfinite(down[k])] = np.inf
        inj = Injection(self.time, volume, rate, label, float(s), float(c0), float(reflux), down, up)
        self.injections.append(inj)
        self._n_injections += 1
        self.events.append(Event(self.time, "injection", {
            "volume_ml": volume, "rate_ml_s": rate, "label": label, "arclength_m": round(float(s), 6),
        }))
        if self.live:
            self._start_capture()
        return inj

    # ------------------------------------------------------------------ flow graph
    def _flow_dir(self, label: str) -> int:
        """+1 where blood flows toward increasing arc length, -1 for the root (aorta)."""
        return -1 if self._parent[label] is None else 1

    def _fill_downstream(self, out: dict, label: str, s: float, d0: float, direction: int) -> None:
        arc = self._arc[label]
        if direction > 0:
            sel = arc >= s - 1e-9
            d = d0 + (arc - s)
        else:
            sel = arc <= s + 1e-9
            d = d0 + (s - arc)
        out[label][sel] = np.minimum(out[label][sel], d[sel])
        for child, j in self._children[label]:
            if (direction > 0 and j >= s - 1e-9) or (direction < 0 and j <= s + 1e-9):
                self._fill_downstream(out, child, 0.0, d0 + abs(j - s), 1)

    def _fill_upstream(self, out: dict, label: str, s: float, u0: float, length: float) -> None:
        """Mark reflux up to ``length`` metres of path against the flow from (label, s)."""
        if u0 >= length:
            return
        arc = self._arc[label]
        rest = length - u0
        if self._flow_dir(label) > 0:  # upstream = toward the junction (s decreasing)
            sel = (arc <= s + 1e-9) & (arc >= s - rest)
            u = u0 + (s - arc)
            reached_start = s - rest < 0.0
            over = u0 + s
        else:  # the root: upstream = toward its end (the aortic root)
            sel = (arc >= s - 1e-9) & (arc <= s + rest)
            u = u0 + (arc - s)
            reached_start = False
            over = 0.0
        out[label][sel] = np.minimum(out[label][sel], u[sel])
        parent = self._parent[label]
        if reached_start and parent is not None:
            # the reflux leaves the ostium: spread both ways along the parent
            j = self.centerlines.junction(label)
            parc = self._arc[parent]
            left = length - over
            sel = np.abs(parc - j) <= left
            u = over + np.abs(parc - j)
            out[parent][sel] = np.minimum(out[parent][sel], u[sel])

    # ------------------------------------------------------------------ time
    def step(self, dt: float) -> None:
        """Advance the imaging state by ``dt`` seconds (call with the session's step)."""
        if not (math.isfinite(dt) and dt >= 0):
            raise ScenarioError(f"Imaging.step: dt must be a finite number of seconds >= 0, got {dt!r}")
        factor = (1.0 + LATERAL_DOSE_GAIN * math.sin(self.lao) ** 2) / math.cos(self.cran)
        if self.pedal and not self.cine:
            self.fluoro_time += dt
            self.dose += FLUORO_DAP_RATE * factor * dt
        if self.cine:
            self.cine_time += dt
            self.dose += CINE_DAP_RATE * factor * dt
        self.time += dt
        # forget washed-out injections (their volume stays counted)
        keep = []
        for inj in self.injections:
            if inj.finished(self.time):
                self._delivered_done += inj.volume_ml
            else:
                keep.append(inj)
        self.injections = keep
        self._update_roadmap()

    @property
    def contrast_ml(self) -> float:
        """Contrast injected so far (delivered at the injection rate), ml."""
        return self._delivered_done + sum(inj.delivered_ml(self.time) for inj in self.injections)

    def concentration(self) -> dict[str, np.ndarray]:
        """Contrast concentration now at each branch's centerline points.

        Returns
        -------
        dict label -> (n,) float in [0, 1], fraction of undiluted contrast at the
        points of ``centerlines.branches[label]`` (about 1 mm apart).
        """
        total = {k: np.zeros(a.shape) for k, a in self._arc.items()}
        for inj in self.injections:
            for k, c in inj.concentration(self.time).items():
                total[k] += c
        for k in total:
            np.clip(total[k], 0.0, 1.0, out=total[k])
        return total

    def contrast_visible(self) -> bool:
        """True while any centerline point holds contrast above :data:`VISIBLE`."""
        return any(float(c.max(initial=0.0)) > VISIBLE for c in self.concentration().values())

    # ------------------------------------------------------------------ roadmap
    def _start_capture(self) -> None:
        self._capture = {k: np.zeros(a.shape) for k, a in self._arc.items()}
        self._capture_angles = (self.lao, self.cran, *self.table.tolist())
        self._capture_id = self._n_injections
        self._next_sample = self.time

    def _update_roadmap(self) -> None:
        if not self.live or not self.injections:
            return
        if self.time + 1e-12 < self._next_sample:
            return
        self._next_sample = self.time + ROADMAP_PERIOD
        if self._capture is None or self._capture_id != self._n_injections or \
                self._capture_angles != (self.lao, self.cran, *self.table.tolist()):
            self._start_capture()
        conc = self.concentration()
        peak = 0.0
        for k, c in conc.items():
            np.maximum(self._capture[k], c, out=self._capture[k])
            peak = max(peak, float(self._capture[k].max(initial=0.0)))
        if peak > VISIBLE:
            self.roadmap = Roadmap(self._capture_angles[0], self._capture_angles[1],
                                   {k: v.copy() for k, v in self._capture.items()}, self.time,
                                   np.array(self._capture_angles[2:]))

    def roadmap_valid(self, tolerance: float = math.radians(0.5)) -> bool:
        """True when the roadmap overlay applies now.

        A roadmap exists, is enabled, was taken at the current angles and table,
        and no injection is still in flight (while contrast flows the live image
        shows it and the roadmap is being captured).
        """
        r = self.roadmap
        return bool(r is not None and self.roadmap_enabled and not self.injections
                    and abs(r.lao - self.lao) <= tolerance
                    and abs(r.cran - self.cran) <= tolerance
                    and np.allclose(r.table, self.table, atol=1e-6, rtol=0.0))

    def hud(self) -> dict[str, float]:
        """Figures for a HUD: fluoro time (s), cine runs, dose (Gy m^2), contrast (ml), angles (deg)."""
        return {
            "fluoro_time_s": self.fluoro_time,
            "cine_runs": float(self.cine_runs),
            "dose_gy_m2": self.dose,
            "contrast_ml": self.contrast_ml,
            "lao_deg": math.degrees(self.lao),
            "cran_deg": math.degrees(self.cran),
        }
