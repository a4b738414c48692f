"""Device-neutral controls become the same session actions whatever the polling rate."""

from __future__ import annotations

import pytest

from surgsim.session.controls import MAX_ADVANCE, ControlFrame, ControlMapper


class FakeSession:
    def __init__(self):
        self.commands = {"advance": 0.0, "rotate": 0.0}
        self.finished = False
        self.applied = []

    def apply(self, action, value=0.0):
        self.applied.append((action, value))
        if action in self.commands:
            self.commands[action] = value


def test_only_changes_are_sent():
    s = FakeSession()
    m = ControlMapper(s)
    for _ in range(5):  # a gamepad polled five times with the stick pushed
        m.update(ControlFrame(advance=1.0))
    assert s.applied == [("advance", pytest.approx(MAX_ADVANCE))]
    m.update(ControlFrame(advance=1.0, fine=True))
    assert s.applied[-1] == ("advance", pytest.approx(MAX_ADVANCE * 0.25))
    m.update(ControlFrame(advance=0.0, buttons={"pedal"}))
    assert s.applied[-2:] == [("advance", 0.0), ("pedal", 1.0)]
    m.update(ControlFrame())
    assert s.applied[-1] == ("pedal", 0.0)


def test_axes_are_clipped_and_finished_sessions_ignore_input():
    s = FakeSession()
    m = ControlMapper(s)
    m.update(ControlFrame(rotate=-7.0))
    assert s.applied[-1][1] == pytest.approx(-1.5)
    s.finished = True
    m.update(ControlFrame())
    m.press("inject", 5.0)
    assert len(s.applied) == 1
