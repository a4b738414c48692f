"""The off-screen 3D view shown as an image (no QOpenGLWidget in the window)."""

from __future__ import annotations

import os

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    pytest.skip("GUI tests need a display: run them under xvfb-run", allow_module_level=True)

pytest.importorskip("pytestqt")

import pyvista as pv  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtOpenGLWidgets import QOpenGLWidget  # noqa: E402

from surgsim.gui.offscreen_view import OffscreenView  # noqa: E402


@pytest.fixture
def view(qtbot):
    v = OffscreenView(size=(320, 240), interactive=True)
    qtbot.addWidget(v)
    v.plotter.set_background("black")
    v.plotter.add_mesh(pv.Cube(x_length=1.0, y_length=0.2, z_length=0.5), color="red")
    v.plotter.camera_position = [(0.0, -4.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
    v.resize(320, 240)
    v.show()
    qtbot.waitExposed(v)
    v.redraw()
    return v


def test_the_image_shows_the_scene_and_is_on_the_label(view):
    img = view.image()
    assert img.shape == (240, 320, 3)
    centre, corner = img[120, 160], img[5, 5]
    assert centre[0] > 150 and centre[1] < 80  # the red box in the middle
    assert corner.max() < 80  # background
    assert view.pixmap().width() == 320 and view.frames >= 1
    assert not view.findChildren(QOpenGLWidget)


def test_a_drag_turns_the_camera_and_the_wheel_zooms(view, qtbot):
    before = np.array(view.plotter.camera_position[0])
    img0 = view.image()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(view, QPoint(160, 100))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(160, 100))
    after = np.array(view.plotter.camera_position[0])
    assert np.linalg.norm(after - before) > 0.5  # 60 px = 24 degrees about the box
    assert np.linalg.norm(after) == pytest.approx(np.linalg.norm(before), rel=1e-6)
    assert not np.array_equal(view.image(), img0)  # redrawn from the new side
    angle = view.plotter.camera.view_angle
    ev = QWheelEvent(QPointF(160, 120), QPointF(160, 120), QPoint(0, 0), QPoint(0, 240),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    view.wheelEvent(ev)
    assert view.plotter.camera.view_angle < angle  # two notches closer


def test_the_image_follows_the_widget_size(view, qtbot):
    view.resize(400, 300)
    qtbot.waitUntil(lambda: list(view.plotter.window_size) == [400, 300])
    assert view.image().shape == (300, 400, 3)


def test_a_closed_view_does_not_draw(view):
    frames = view.frames
    view.close()
    view.redraw()
    assert view.frames == frames


def test_a_render_scale_draws_fewer_pixels_shown_at_the_widget_size(qtbot):
    v = OffscreenView(size=(400, 300), render_scale=0.5)
    qtbot.addWidget(v)
    v.plotter.set_background("black")
    v.plotter.add_mesh(pv.Sphere(radius=0.5), color="white")
    v.resize(400, 300)
    v.show()
    qtbot.waitExposed(v)
    v.redraw()
    assert list(v.plotter.window_size) == [200, 150] and v.image().shape == (150, 200, 3)
    assert (v.pixmap().width(), v.pixmap().height()) == (400, 300)
    with pytest.raises(ValueError, match="render_scale"):
        OffscreenView(render_scale=2.0)


def test_thousands_of_frames_keep_the_interpreter_alive(view):
    import sys

    before = sys.getrefcount(None)
    for _ in range(3000):
        view.redraw()
    # the QImage(buffer) constructor dropped a reference to None per frame until None was freed
    assert sys.getrefcount(None) >= before - 100


def test_label_updates_and_paint_overrides_keep_none_alive(qtbot):
    """The Qt binding must not drop references to None per call (PySide6 6.12.0 did: see pyproject)."""
    import sys

    from PySide6.QtGui import QPainter
    from PySide6.QtWidgets import QLabel, QWidget

    class Painted(QWidget):
        def paintEvent(self, event):  # noqa: N802 (Qt API)
            QPainter(self).end()

    label, painted = QLabel(), Painted()
    qtbot.addWidget(label)
    qtbot.addWidget(painted)
    painted.show()
    qtbot.waitExposed(painted)
    before = sys.getrefcount(None)
    for i in range(500):
        label.setText(str(i))
        painted.repaint()
    assert sys.getrefcount(None) >= before - 50
