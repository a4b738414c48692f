"""Replay window: a recorded attempt in the 3D scene with a timeline scrubber and an expert ghost.

The scene is :class:`surgsim.render.replay.ReplayScene`; by default it draws the
tip path up to the scrubbed time and a tip marker straight from the log (instant).
With ``resimulate=True`` the attempt is re-run once (seconds) to draw the whole
device as well (see :class:`surgsim.render.replay.ReplayTrack`).
"""

from __future__ import annotations

import os
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

os.environ.setdefault("QT_API", "pyside6")

from pyvistaqt import QtInteractor  # noqa: E402

from surgsim.render.replay import ReplayScene, ReplayTrack, target_points  # noqa: E402

__all__ = ["ReplayWindow"]

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)


class ReplayWindow(QWidget):
    """Play a recorded attempt with a time scrubber; optionally an expert's attempt as a ghost.

    Parameters
    ----------
    scenario : Scenario
        The scenario the attempt was recorded on (targets; re-simulation).
    case : VesselCase
        Its anatomy.
    log : SessionLog
        The trainee's attempt (drawn in blue).
    ghost_log : SessionLog, optional
        An expert's attempt at the same scenario, drawn half transparent in orange
        at the same time since the start.
    resimulate : bool
        Re-run the attempt(s) to draw the device's shape, not only the tip.

    Attributes
    ----------
    slider : QSlider
        One position per recorded sample of the longer attempt (100 Hz).
    play_button : QPushButton
    scene : ReplayScene

    Signals
    -------
    time_changed(float)
        The shown time, seconds.
    """

    time_changed = Signal(float)

    def __init__(self, scenario, case, log, ghost_log=None, resimulate: bool = False,
                 parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"surgsim replay: {scenario.title}")
        self.resize(1100, 800)
        if resimulate:
            track = ReplayTrack.resimulate(scenario, case, log)
            ghost = ReplayTrack.resimulate(scenario, case, ghost_log) if ghost_log else None
        else:
            track = ReplayTrack.from_log(log)
            ghost = ReplayTrack.from_log(ghost_log) if ghost_log else None

        self.plotter = QtInteractor(self)
        self.scene = ReplayScene(self.plotter, case, track, ghost, target_points(scenario, case))
        self.timeline = np.asarray(self.scene.timeline, float)

        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._toggle)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, len(self.timeline) - 1)
        self.slider.setPageStep(max(1, len(self.timeline) // 20))
        self.slider.valueChanged.connect(self._on_slider)
        self.speed = QComboBox()
        for s in SPEEDS:
            self.speed.addItem(f"{s:g}x", s)
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.time_label = QLabel()
        self.time_label.setMinimumWidth(260)

        bar = QHBoxLayout()
        bar.addWidget(self.play_button)
        bar.addWidget(self.slider, stretch=1)
        bar.addWidget(self.speed)
        bar.addWidget(self.time_label)
        layout = QVBoxLayout(self)
        layout.addWidget(self.plotter.interactor, stretch=1)
        layout.addLayout(bar)

        self.timer = QTimer(self)
        self.timer.setInterval(33)
        self.timer.timeout.connect(self._tick)
        self._play_clock = 0.0
        self._play_t0 = 0.0
        self.seek(0.0)

    # ------------------------------------------------------------------ time
    @property
    def time(self) -> float:
        """The shown time, seconds."""
        return self.scene.time

    def seek(self, t: float) -> None:
        """Show time ``t`` (seconds; moves the scrubber to the sample at or before it)."""
        i = int(np.clip(np.searchsorted(self.timeline, t + 1e-9, side="right") - 1,
                        0, len(self.timeline) - 1))
        if self.slider.value() != i:
            self.slider.setValue(i)  # -> _on_slider
        else:
            self._show(float(self.timeline[i]))

    def _on_slider(self, index: int) -> None:
        self._show(float(self.timeline[index]))
        if self.timer.isActive():  # the user dragged while playing: continue from there
            self._play_t0 = self.time
            self._play_clock = time.perf_counter()

    def _show(self, t: float) -> None:
        state, ghost = self.scene.show(t)
        text = f"t = {state.t:6.2f} s   force {state.wall_force:4.2f} N"
        if ghost is not None:
            gap = np.linalg.norm(state.tip - ghost.tip) * 1000
            text += f"   expert {gap:5.1f} mm away"
        self.time_label.setText(text)
        self.plotter.render()
        self.time_changed.emit(state.t)

    # ------------------------------------------------------------------ playback
    def play(self) -> None:
        self.play_button.setChecked(True)

    def pause(self) -> None:
        self.play_button.setChecked(False)

    def _toggle(self, on: bool) -> None:
        if on:
            if self.slider.value() >= len(self.timeline) - 1:
                self.seek(0.0)
            self._play_t0 = self.time
            self._play_clock = time.perf_counter()
            self.play_button.setText("Pause")
            self.timer.start()
        else:
            self.timer.stop()
            self.play_button.setText("Play")

    def _tick(self) -> None:
        speed = float(self.speed.currentData())
        t = self._play_t0 + (time.perf_counter() - self._play_clock) * speed
        if t >= self.timeline[-1]:
            t = float(self.timeline[-1])
            self.pause()
        i = int(np.clip(np.searchsorted(self.timeline, t + 1e-9, side="right") - 1,
                        0, len(self.timeline) - 1))
        self.slider.blockSignals(True)
        self.slider.setValue(i)
        self.slider.blockSignals(False)
        self._show(float(self.timeline[i]))

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.timer.stop()
        self.plotter.close()
        super().closeEvent(event)
