"""Input devices, abstracted: what the trainee's hands do, turned into session actions.

A device (keyboard, gamepad, haptic catheter interface) reports *controls*:
continuous axes in -1..1 (advance, rotate) and buttons (pedal, inject, ...).
:class:`ControlMapper` turns changes of those controls into timestamped
session actions (``Session.apply``), so every device produces the same input
log and replays identically. A new device only has to fill a
:class:`ControlFrame`; the mapping, speeds and logging stay here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Hub speed at full axis deflection.
MAX_ADVANCE = 0.03  # m/s
MAX_ROTATE = 1.5  # rad/s
#: Speed factor of the fine (precision) modifier.
FINE = 0.25

#: Buttons that hold a state while pressed (action value 1 while held, 0 on release).
HOLD_BUTTONS = {"pedal": "pedal", "cine": "cine"}


@dataclass
class ControlFrame:
    """What a device reports at one instant.

    Attributes
    ----------
    advance, rotate : float
        Axes in -1..1 (push/pull, clockwise/anticlockwise at full deflection).
    fine : bool
        Precision modifier held.
    buttons : set of str
        Held buttons, e.g. ``{"pedal"}``.
    """

    advance: float = 0.0
    rotate: float = 0.0
    fine: bool = False
    buttons: set[str] = field(default_factory=set)


class ControlMapper:
    """Send the actions that a new :class:`ControlFrame` implies to ``session``.

    Only changes are sent, so a device polled at any rate produces the same
    input log as one that reports events.
    """

    def __init__(self, session) -> None:
        self.session = session
        self._last = ControlFrame()

    def update(self, frame: ControlFrame) -> list[tuple[str, float]]:
        """Apply ``frame``; returns the actions sent."""
        sent: list[tuple[str, float]] = []
        scale = FINE if frame.fine else 1.0
        speeds = {
            "advance": _clip(frame.advance) * MAX_ADVANCE * scale,
            "rotate": _clip(frame.rotate) * MAX_ROTATE * scale,
        }
        for action, value in speeds.items():
            if value != self.session.commands.get(action, 0.0):
                sent.append((action, value))
        for button, action in HOLD_BUTTONS.items():
            held = button in frame.buttons
            if held != (button in self._last.buttons):
                sent.append((action, 1.0 if held else 0.0))
        if not self.session.finished:
            for action, value in sent:
                self.session.apply(action, value)
        self._last = ControlFrame(frame.advance, frame.rotate, frame.fine, set(frame.buttons))
        return sent

    def press(self, action: str, value: float = 0.0) -> None:
        """A one-shot control (inject, C-arm step, finish)."""
        if not self.session.finished:
            self.session.apply(action, value)


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, float(x)))
