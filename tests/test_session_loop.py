"""The shared fixed-step session loop (surgsim.session.loop): chunking, cadence, time limit, inputs, play."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from surgsim.scoring.log import InputEvent
from surgsim.session.loop import SteppedSession, play

ACTIONS = {"push": ("m/s", -1.0, 1.0), "finish": ("", 0.0, 0.0)}


class Toy(SteppedSession):
    """A session whose 'physics' is a float sum that depends on the chunking if the loop gets it wrong."""

    record_every = 4

    def __init__(self, time_limit_s: float = 1.0):
        self.scenario = SimpleNamespace(time_limit_s=time_limit_s)
        self.dt = 0.01
        self.step_index = 0
        self.finished = False
        self.inputs: list[InputEvent] = []
        self.push = 0.0
        self.x = 0.0
        self.slow = 0.0  # a model advanced by whole record intervals only
        self.records: list[tuple[int, float, float]] = []
        self.chunks: list[int] = []
        self.reason = None

    def _advance_physics(self, n_steps: int) -> None:
        self.chunks.append(n_steps)
        for _ in range(n_steps):
            self.x = self.x * 0.999 + self.push * self.dt

    def _on_record(self) -> None:
        self.slow += self.record_every * self.dt
        self.records.append((self.step_index, self.x, self.slow))

    def _finish(self, reason: str) -> None:
        if not self.finished:
            self.finished, self.reason = True, reason

    def apply(self, action: str, value: float = 0.0) -> None:
        value = self._take_input(action, value, ACTIONS, "toy action")
        if value is None:
            return
        if action == "finish":
            self._finish("trainee")
        else:
            self.push = value

    def log(self):
        return self.records


def test_chunks_never_cross_a_record_boundary_and_any_chunking_gives_the_same_records():
    a, b = Toy(), Toy()
    a.apply("push", 0.3)
    b.apply("push", 0.3)
    a.step(37)
    for n in (1, 2, 5, 3, 11, 15):  # 37 steps in uneven pieces
        b.step(n)
    assert a.records == b.records and a.step_index == b.step_index == 37
    assert len(a.records) == 9 and [r[0] for r in a.records] == list(range(4, 37, 4))
    assert max(a.chunks) <= Toy.record_every and max(b.chunks) <= Toy.record_every
    assert a.time == pytest.approx(0.37)


def test_time_limit_finishes_the_session_on_the_limit_step():
    s = Toy(time_limit_s=0.1)  # 10 steps
    s.step(25)
    assert s.finished and s.reason == "time_limit" and s.step_index == 10
    s.step(5)
    assert s.step_index == 10  # nothing runs after the end


def test_advance_time_counts_whole_steps():
    s = Toy()
    assert s.advance_time(0.095) == 9 and s.step_index == 9


def test_inputs_are_clipped_logged_by_step_and_ignored_after_the_end():
    s = Toy()
    s.step(3)
    s.apply("push", 5.0)
    assert s.push == 1.0 and s.inputs == [InputEvent(3, "push", 1.0)]
    with pytest.raises(ValueError, match="unknown toy action 'pull'"):
        s.apply("pull", 1.0)
    s.apply("finish")
    s.apply("push", 0.5)
    assert s.push == 1.0 and len(s.inputs) == 2 and s.reason == "trainee"


def test_play_applies_inputs_at_their_step_and_ends_the_log():
    s = play(Toy(), [InputEvent(6, "push", 0.2), InputEvent(2, "push", 0.1)], max_steps=20)
    assert [(e.step, e.value) for e in s.inputs] == [(2, 0.1), (6, 0.2)]
    assert s.finished and s.reason == "end_of_inputs" and s.step_index == 20
    with pytest.raises(ValueError, match="earlier"):
        t = Toy()
        t.step(5)
        play(t, [InputEvent(2, "push", 0.1)])


def test_both_sessions_run_on_the_shared_loop():
    from surgsim.session.intubation import IntubationSession
    from surgsim.session.session import Session

    for cls in (Session, IntubationSession):
        assert issubclass(cls, SteppedSession)
        for name in ("step", "advance_time", "time", "score"):
            assert getattr(cls, name) is getattr(SteppedSession, name), (cls, name)


def test_an_intubation_session_gives_the_same_log_whatever_the_chunks():
    from surgsim.scenarios.model import Scenario
    from surgsim.session.intubation import IntubationSession

    sc = Scenario.model_validate({
        "id": "airway-loop", "title": "t", "version": "1.0", "procedure": "intubation",
        "case": {"phantom": "airway-child"}, "patient": {"physiology": "child"},
        "instruments": [{"id": "blade", "device": "macintosh_3"}, {"id": "tube", "device": "ett_6_0"}],
        "time_limit_s": 60, "rubric": {"metrics": [{"metric": "time_s", "pass": 60, "excellent": 30}]}})
    inputs = [InputEvent(0, "blade_vz", -0.03), InputEvent(17, "tube_vy", 0.02),
              InputEvent(45, "blade_vz", 0.0), InputEvent(61, "finish", 0.0)]
    a = play(IntubationSession(sc), inputs)
    b = IntubationSession(sc)
    for e in inputs:  # the GUI's way: uneven timer slices between inputs
        while b.step_index < e.step:
            b.step(min(3, e.step - b.step_index))
        b.apply(e.action, e.value)
    la, lb = a.log(), b.log()
    assert la.hash() == lb.hash()
    assert len(la.samples["t"]) == 61 // 2 + 2  # a record every 2 steps, one at the start, one at finish
    assert np.all(np.diff(la.samples["t"]) > 0)
