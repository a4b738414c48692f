"""A 3D view rendered off-screen by VTK and shown as an image in a plain Qt widget.

A ``QOpenGLWidget`` (pyvistaqt's ``QtInteractor``) makes Qt compose the whole
top-level window through OpenGL at every repaint. With a software renderer
(llvmpipe under Xvfb, no GPU) that composition costs more than drawing the
view itself: measured here, a 640x480 laryngoscope view in a 1500x900 window
ran at 27 frames/s beside one ``QtInteractor`` and at 41 frames/s with none.
:class:`OffscreenView` renders into a VTK off-screen window and hands the pixels
to a ``QLabel`` (a raster copy of 1.2 MB), so the window stays a plain raster
window. Mouse drags turn the camera (azimuth and elevation), the wheel zooms.
A ``render_scale`` below 1 renders fewer pixels (a software renderer's cost
grows with them) and scales the image up to the widget with smoothing.
"""

from __future__ import annotations

import numpy as np
import pyvista as pv
from PySide6.QtCore import QPoint, QSize, Qt
from PySide6.QtGui import QImage, QMouseEvent, QPixmap, QWheelEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkUnsignedCharArray

#: Degrees the camera turns per pixel of mouse drag.
DEGREES_PER_PIXEL = 0.4
#: Zoom factor per wheel notch (120 units).
ZOOM_PER_NOTCH = 1.1


class OffscreenView(QLabel):
    """An off-screen pyvista plotter shown as an image.

    Parameters
    ----------
    parent : QWidget, optional
    size : (int, int)
        Initial image size, pixels; the image follows the widget's size.
    interactive : bool
        Mouse drags turn the camera and the wheel zooms.
    render_scale : float
        Rendered pixels per widget pixel along each axis (0.25 to 1).

    Attributes
    ----------
    plotter : pyvista.Plotter
        Off-screen; add actors and set the camera through it as usual.
    frames : int
        Images drawn so far.
    """

    def __init__(self, parent: QWidget | None = None, size: tuple[int, int] = (640, 480),
                 interactive: bool = False, render_scale: float = 1.0) -> None:
        super().__init__(parent)
        if not 0.25 <= render_scale <= 1.0:
            raise ValueError(f"render_scale {render_scale} must be within 0.25 and 1")
        self.render_scale = float(render_scale)
        self._shown = (int(size[0]), int(size[1]))
        self.plotter = pv.Plotter(off_screen=True, window_size=self._render_size(*self._shown))
        self.plotter.ren_win.SetMultiSamples(0)  # a software renderer pays it on every pixel
        self.interactive = interactive
        self.frames = 0
        self._pixels = vtkUnsignedCharArray()
        self._drag: QPoint | None = None
        self._closed = False
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setStyleSheet("background: black;")

    # ------------------------------------------------------------------ pyvista-like access
    @property
    def ren_win(self):
        """The VTK render window (off-screen)."""
        return self.plotter.ren_win

    @property
    def renderer(self):
        """The plotter's renderer."""
        return self.plotter.renderer

    @property
    def interactor(self) -> OffscreenView:
        """The widget to lay out (itself; as ``QtInteractor.interactor``)."""
        return self

    @property
    def actors(self) -> dict:
        """The plotter's actors by name."""
        return self.plotter.actors

    @property
    def camera(self):
        """The plotter's camera."""
        return self.plotter.camera

    def screenshot(self, return_img: bool = True) -> np.ndarray:
        """Render now and return the image, (h, w, 3) uint8 (as ``Plotter.screenshot``)."""
        self.redraw()
        return self.image()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(*self._shown)

    def _render_size(self, w: int, h: int) -> list[int]:
        return [max(int(round(w * self.render_scale)), 16), max(int(round(h * self.render_scale)), 16)]

    # ------------------------------------------------------------------ drawing
    def redraw(self) -> None:
        """Render the scene now and show the image."""
        if self._closed:
            return
        rw = self.plotter.ren_win
        rw.Render()
        w, h = rw.GetSize()
        rw.GetPixelData(0, 0, w - 1, h - 1, 0, self._pixels, 0)  # back buffer, RGB, bottom row first
        rgb = vtk_to_numpy(self._pixels).reshape(h, w, 3)[::-1]
        # the image owns its pixels: PySide's QImage(buffer, ...) constructor releases a reference
        # it never took (None's, on every call) and brings the interpreter down after a few
        # thousand frames
        img = QImage(w, h, QImage.Format.Format_RGB888)
        row = img.bytesPerLine()
        np.frombuffer(img.bits(), np.uint8, count=row * h).reshape(h, row)[:, :3 * w] = rgb.reshape(h, 3 * w)
        if (w, h) != self._shown:
            img = img.scaled(*self._shown, Qt.AspectRatioMode.IgnoreAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(QPixmap.fromImage(img))  # QPixmap copies the pixels
        self.frames += 1

    def image(self) -> np.ndarray:
        """The last rendered image (before scaling to the widget), (h, w, 3) uint8, top row first."""
        w, h = self.plotter.ren_win.GetSize()
        return vtk_to_numpy(self._pixels).reshape(h, w, 3)[::-1].copy()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        size = event.size()
        shown = (max(int(size.width()), 16), max(int(size.height()), 16))
        if shown != self._shown and not self._closed:
            self._shown = shown
            self.plotter.window_size = self._render_size(*shown)
            self.redraw()

    # ------------------------------------------------------------------ mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        self.setFocus()
        if self.interactive and event.button() == Qt.MouseButton.LeftButton:
            self._drag = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        if self._drag is not None:
            p = event.position().toPoint()
            self.turn(p.x() - self._drag.x(), p.y() - self._drag.y())
            self._drag = p
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        self._drag = None
        super().mouseReleaseEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt API)
        if self.interactive:
            self.zoom(ZOOM_PER_NOTCH ** (event.angleDelta().y() / 120.0))
        super().wheelEvent(event)

    def turn(self, dx: float, dy: float) -> None:
        """Turn the camera about its focal point as a drag of (dx, dy) pixels would, and redraw."""
        cam = self.plotter.renderer.GetActiveCamera()
        cam.Azimuth(-dx * DEGREES_PER_PIXEL)
        cam.Elevation(dy * DEGREES_PER_PIXEL)
        cam.OrthogonalizeViewUp()
        self.plotter.renderer.ResetCameraClippingRange()
        self.redraw()

    def zoom(self, factor: float) -> None:
        """Zoom the camera by ``factor`` (> 1: closer) and redraw."""
        self.plotter.renderer.GetActiveCamera().Zoom(float(factor))
        self.plotter.renderer.ResetCameraClippingRange()
        self.redraw()

    def close(self) -> bool:
        """Release the off-screen window (and close the widget)."""
        if not self._closed:
            self._closed = True
            self.plotter.close()
        return super().close()
