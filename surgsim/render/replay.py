"""Drawing a recorded attempt at any time t, with pyvista and no Qt.

A :class:`~surgsim.scoring.log.SessionLog` records the tip, not the device's
shape. :class:`ReplayTrack` therefore has two sources:

* :meth:`ReplayTrack.from_log` (default, instant): the tip path up to t and a
  tip marker, read straight from the log's samples.
* :meth:`ReplayTrack.resimulate` (seconds of CPU: the attempt is re-run with
  :func:`surgsim.session.session.play`): the same, plus the device's node
  positions snapshotted at every recorded sample (100 Hz), so the whole
  catheter is drawn. The re-run must reproduce the log's tip samples exactly
  (a session is a pure function of scenario, case, seed and inputs), otherwise
  :class:`~surgsim.errors.ReplayMismatchError` is raised.

:class:`ReplayScene` draws a track (and optionally an expert's *ghost* track
in another colour) in any pyvista plotter; :func:`force_path` builds the tip
path coloured by wall force used by the debrief.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("VTK_SMP_BACKEND_IN_USE", "STDThread")

import pyvista as pv  # noqa: E402

from surgsim.errors import ReplayMismatchError  # noqa: E402
from surgsim.render.scene import LUMEN_COLOR, TARGET_COLOR, device_polyline  # noqa: E402
from surgsim.scoring.log import SessionLog  # noqa: E402

__all__ = [
    "GHOST_COLOR",
    "TRAINEE_COLOR",
    "ReplayScene",
    "ReplayState",
    "ReplayTrack",
    "force_path",
    "target_points",
]

TRAINEE_COLOR = (0.2, 0.45, 1.0)
GHOST_COLOR = (1.0, 0.65, 0.1)
#: Drawn radius of a device / tip marker, metres (thick enough to see at arch scale).
DRAW_RADIUS = 1.2e-3


@dataclass(frozen=True)
class ReplayState:
    """What a track shows at one time.

    Attributes
    ----------
    t : float
        Time of the sample shown, seconds (the last sample at or before the asked time).
    index : int
        Its sample index.
    tip : (3,) float, metres
        Tip position.
    path : (index + 1, 3) float, metres
        Tip path from the start up to ``t``.
    wall_force : float
        Wall force at ``t``, newtons.
    shape : (n, 3) float, metres, or None
        Device node positions (only for re-simulated tracks).
    """

    t: float
    index: int
    tip: np.ndarray
    path: np.ndarray
    wall_force: float
    shape: np.ndarray | None


@dataclass(frozen=True)
class ReplayTrack:
    """The samples of one attempt, indexed by time.

    Attributes
    ----------
    t : (m,) float, seconds
    tip : (m, 3) float, metres
    wall_force : (m,) float, newtons
    shapes : (m, n, 3) float, metres, or None
        Device node positions at every sample (:meth:`resimulate` only).
    """

    t: np.ndarray
    tip: np.ndarray
    wall_force: np.ndarray
    shapes: np.ndarray | None = None

    @classmethod
    def from_log(cls, log: SessionLog) -> ReplayTrack:
        """The tip path of a recorded log (no device shape)."""
        t = np.asarray(log.samples.get("t", ()), float)
        tip = np.asarray(log.samples.get("tip", np.zeros((0, 3))), float).reshape(-1, 3)
        if len(t) == 0 or len(tip) != len(t):
            raise ReplayMismatchError(
                f"log of scenario {log.scenario_id!r} has {len(t)} time samples and {len(tip)} tip "
                "samples; a replay needs at least one sample of each, equally many"
            )
        force = np.asarray(log.samples.get("wall_force", np.zeros(len(t))), float)
        if len(force) != len(t):
            force = np.zeros(len(t))
        return cls(t, tip, force)

    @classmethod
    def resimulate(cls, scenario, case, log: SessionLog) -> ReplayTrack:
        """Re-run ``log``'s inputs and keep the device shape at every recorded sample.

        Raises
        ------
        ReplayMismatchError
            The re-run's tip samples differ from the log's (wrong scenario or case).
        """
        from surgsim.session.session import Session, play

        class _Snapshotting(Session):
            """A session that also keeps the rod's nodes at each recorded sample."""

            def _record(self) -> None:
                super()._record()
                if not hasattr(self, "shapes"):
                    self.shapes = []
                self.shapes.append(np.asarray(self.rod.state().positions, float).copy())

        session = play(_Snapshotting(scenario, case, seed=log.seed), log.inputs)
        track = cls.from_log(log)
        rerun = np.asarray(session.log().samples["tip"], float)
        if rerun.shape != track.tip.shape or not np.array_equal(rerun, track.tip):
            raise ReplayMismatchError(
                f"re-running the inputs of scenario {log.scenario_id!r} did not reproduce the "
                f"recorded tip path ({len(rerun)} vs {len(track.tip)} samples); replay it with "
                "the scenario version and case it was recorded on"
            )
        return cls(track.t, track.tip, track.wall_force, np.stack(session.shapes))

    @property
    def duration(self) -> float:
        """Time of the last sample, seconds."""
        return float(self.t[-1])

    def index_at(self, t: float) -> int:
        """Index of the last sample at or before ``t`` (clamped to the samples)."""
        i = int(np.searchsorted(self.t, t + 1e-9, side="right")) - 1
        return int(np.clip(i, 0, len(self.t) - 1))

    def state_at(self, t: float) -> ReplayState:
        """What the track shows at time ``t`` (seconds)."""
        i = self.index_at(t)
        return ReplayState(
            t=float(self.t[i]),
            index=i,
            tip=self.tip[i].copy(),
            path=self.tip[: i + 1],
            wall_force=float(self.wall_force[i]),
            shape=None if self.shapes is None else self.shapes[i],
        )


def force_path(log: SessionLog) -> pv.PolyData:
    """The tip path of ``log`` as a polyline with point data ``wall_force`` (newtons).

    Returns
    -------
    pyvista.PolyData
        (m,) points in metres (LPS), one line through them in time order.
    """
    track = ReplayTrack.from_log(log)
    poly = device_polyline(track.tip)
    poly.point_data["wall_force"] = track.wall_force
    return poly


def target_points(scenario, case) -> list[tuple[str, np.ndarray, float]]:
    """Scenario targets resolved on the case: (id, (3,) point in metres, tolerance in metres).

    Targets whose label the case lacks are skipped (the scenario validator reports them).
    """
    out = []
    branches = case.centerlines.branches
    for t in scenario.targets:
        if t.label in branches:
            point = np.asarray(case.centerlines.point_at(t.label, t.distance_from_ostium_m), float)
            out.append((t.id, point, float(t.tolerance_m)))
    return out


class _TrackActors:
    """The actors of one track: path so far, tip marker and (if known) the device."""

    def __init__(self, plotter, track: ReplayTrack, color, name: str, opacity: float) -> None:
        self.track = track
        first = track.state_at(track.t[0])
        self._path = device_polyline(np.repeat(first.tip[None], 2, axis=0))
        self.path_actor = plotter.add_mesh(
            self._path, color=color, line_width=3, opacity=opacity, name=f"{name}-path"
        )
        self._marker = pv.Sphere(radius=DRAW_RADIUS * 2.5, center=(0.0, 0.0, 0.0))
        self.tip_actor = plotter.add_mesh(
            self._marker.translate(first.tip), color=color, opacity=opacity, name=f"{name}-tip"
        )
        self.device_actor = None
        if track.shapes is not None:
            self.device_actor = plotter.add_mesh(
                device_polyline(first.shape).tube(radius=DRAW_RADIUS, n_sides=10),
                color=color, opacity=opacity, smooth_shading=True, name=f"{name}-device",
            )
        self.state = first

    def show(self, t: float) -> ReplayState:
        state = self.track.state_at(t)
        path = state.path if len(state.path) > 1 else np.repeat(state.path, 2, axis=0)
        self.path_actor.mapper.dataset.copy_from(device_polyline(path))
        self.tip_actor.mapper.dataset.points = self._marker.points + state.tip
        if self.device_actor is not None and state.shape is not None:
            tube = device_polyline(state.shape).tube(radius=DRAW_RADIUS, n_sides=10)
            self.device_actor.mapper.dataset.copy_from(tube)
        self.state = state
        return state


class ReplayScene:
    """Anatomy, targets, a trainee's track and an optional ghost track in a pyvista plotter.

    Parameters
    ----------
    plotter : pyvista.BasePlotter
        Off-screen ``pyvista.Plotter`` or pyvistaqt ``QtInteractor``.
    case : VesselCase
        The anatomy (its ``mesh`` is drawn).
    track : ReplayTrack
        The attempt replayed (drawn in :data:`TRAINEE_COLOR`).
    ghost : ReplayTrack, optional
        An expert's attempt drawn beside it in :data:`GHOST_COLOR`, half transparent.
    targets : list of (id, point, tolerance), optional
        From :func:`target_points`.
    """

    def __init__(self, plotter, case, track: ReplayTrack, ghost: ReplayTrack | None = None,
                 targets=None) -> None:
        self.plotter = plotter
        self.case = case
        plotter.set_background((0.08, 0.08, 0.1))
        plotter.add_mesh(case.mesh, color=LUMEN_COLOR, opacity=0.3, smooth_shading=True,
                         name="lumen")
        for tid, point, tol in targets or []:
            plotter.add_mesh(pv.Sphere(radius=tol, center=point), color=TARGET_COLOR,
                             opacity=0.4, name=f"target-{tid}")
        self.trainee = _TrackActors(plotter, track, TRAINEE_COLOR, "trainee", 1.0)
        self.ghost = _TrackActors(plotter, ghost, GHOST_COLOR, "ghost", 0.6) if ghost else None
        legend = "trainee (blue)" + ("   expert ghost (orange)" if ghost else "")
        plotter.add_text(legend, position="upper_left", font_size=9, color="white", name="legend")
        self.time = 0.0
        self._frame_camera()

    @property
    def duration(self) -> float:
        """The longer of the two tracks, seconds."""
        d = self.trainee.track.duration
        return max(d, self.ghost.track.duration) if self.ghost else d

    @property
    def timeline(self) -> np.ndarray:
        """Sample times of the longer track, seconds: the positions of a time scrubber."""
        if self.ghost and self.ghost.track.duration > self.trainee.track.duration:
            return self.ghost.track.t
        return self.trainee.track.t

    def _frame_camera(self) -> None:
        b = self.case.mesh.bounds
        center = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2])
        size = max(b[1] - b[0], b[5] - b[4])
        self.plotter.camera_position = [tuple(center - np.array([0, 2.2 * size, 0])),
                                        tuple(center), (0, 0, 1)]

    def show(self, t: float) -> tuple[ReplayState, ReplayState | None]:
        """Draw both tracks at time ``t`` (seconds; each clamps to its own samples)."""
        self.time = float(t)
        state = self.trainee.show(t)
        ghost = self.ghost.show(t) if self.ghost else None
        return state, ghost
