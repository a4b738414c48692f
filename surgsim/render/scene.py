"""The 3D scene of an endovascular session, with pyvista and no Qt.

:class:`EndovascularScene` takes any pyvista plotter (an off-screen
``pyvista.Plotter`` in tests and benchmarks, pyvistaqt's ``QtInteractor`` in
the GUI), adds the anatomy once, and :meth:`EndovascularScene.sync` copies the
session's device state into the scene: the view only reads the session.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("VTK_SMP_BACKEND_IN_USE", "STDThread")

import pyvista as pv  # noqa: E402

LUMEN_COLOR = (0.85, 0.35, 0.35)
DEVICE_COLOR = (0.15, 0.2, 0.9)
TARGET_COLOR = (0.1, 0.8, 0.2)


def device_polyline(points: np.ndarray) -> pv.PolyData:
    """A polyline through ``points`` ((n, 3) float, metres)."""
    n = len(points)
    lines = np.concatenate([[n], np.arange(n)]).astype(np.int64)
    return pv.PolyData(np.asarray(points, dtype=float), lines=lines)


class EndovascularScene:
    """Anatomy, target markers and the device in one pyvista plotter.

    Parameters
    ----------
    plotter : pyvista.BasePlotter
        Where to draw.
    session : Session
        The session whose state is shown.
    """

    def __init__(self, plotter, session) -> None:
        self.plotter = plotter
        self.session = session
        case = session.case
        plotter.set_background((0.08, 0.08, 0.1))
        self.lumen_actor = plotter.add_mesh(
            case.mesh, color=LUMEN_COLOR, opacity=0.45, smooth_shading=True, name="lumen"
        )
        for target in session.targets:
            sphere = pv.Sphere(radius=target.tolerance, center=target.point)
            plotter.add_mesh(sphere, color=TARGET_COLOR, opacity=0.5, name=f"target-{target.id}")
        # drawn at least 1.2 mm thick so a 4-5 Fr device stays visible at arch scale
        self.device_radius = max(session.spec.outer_diameter / 2, 1.2e-3)
        self._device = device_polyline(session.rod.state().positions)
        self.device_actor = plotter.add_mesh(
            self._device.tube(radius=self.device_radius, n_sides=10),
            color=DEVICE_COLOR,
            smooth_shading=True,
            name="device",
        )
        self._tip_shape = pv.Sphere(radius=self.device_radius * 1.6, center=(0.0, 0.0, 0.0))
        self._tip = self._tip_shape.translate(session.rod.state().tip_position)
        self.tip_actor = plotter.add_mesh(self._tip, color="white", name="tip")
        self.reset_camera()

    def reset_camera(self) -> None:
        """Frame the anatomy from the front (anterior view, patient's left on screen right)."""
        bounds = self.session.case.mesh.bounds
        center = np.array([(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2,
                           (bounds[4] + bounds[5]) / 2])
        size = max(bounds[1] - bounds[0], bounds[5] - bounds[4])
        # LPS: anterior is -y; looking from the front at the patient, patient left (+x) is on screen right.
        self.plotter.camera_position = [tuple(center - np.array([0, 2.2 * size, 0])), tuple(center), (0, 0, 1)]

    def sync(self) -> None:
        """Copy the device state of the session into the scene."""
        state = self.session.rod.state()
        tube = device_polyline(state.positions).tube(radius=self.device_radius, n_sides=10)
        self.device_actor.mapper.dataset.copy_from(tube)
        self.tip_actor.mapper.dataset.points = self._tip_shape.points + state.tip_position


def render_session_image(session, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """Render the session's 3D view off-screen; returns an (h, w, 3) uint8 image."""
    plotter = pv.Plotter(off_screen=True, window_size=size)
    try:
        scene = EndovascularScene(plotter, session)
        scene.sync()
        return np.asarray(plotter.screenshot(return_img=True))
    finally:
        plotter.close()
