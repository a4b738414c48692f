"""The fluoroscopy monitor: shows frames rendered by surgsim.render.fluoro.

Live while the beam is on; otherwise the last image is held, as on a real
angiosuite monitor.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy


class FluoroView(QLabel):
    """A grey-scale monitor for (h, w) uint8 frames."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("fluoro_view")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(256, 256)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("background: black; color: #9a9a9a;")
        self.setText("Fluoroscopy: preparing...")
        self.frame: np.ndarray | None = None

    def show_frame(self, frame: np.ndarray) -> None:
        """Display ``frame``, (h, w) uint8."""
        self.frame = np.ascontiguousarray(frame, dtype=np.uint8)
        h, w = self.frame.shape
        image = QImage(self.frame.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        side = max(min(self.width(), self.height()), 64)
        self.setPixmap(QPixmap.fromImage(image).scaled(
            side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
