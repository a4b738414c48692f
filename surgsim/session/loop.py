"""The fixed-step loop every session shares: inputs by step, physics in chunks, records on a cadence.

A session (endovascular :class:`surgsim.session.session.Session`, intubation
:class:`surgsim.session.intubation.IntubationSession`) is a pure function of
(scenario, case, seed, input log). :class:`SteppedSession` holds the part of
that contract that does not depend on the procedure:

* inputs are validated, clipped and logged by physics step index
  (:meth:`SteppedSession._take_input`), and applied before that step runs;
* :meth:`SteppedSession.step` runs the physics in chunks that never cross a
  record boundary or the scenario's time limit, and records at every
  ``record_every``-th step, so the same inputs give the same floating-point
  sums whatever chunks a caller (GUI timer, :func:`play`) asks for;
* :func:`play` feeds an input log through a session until it finishes.

A subclass provides ``scenario`` (``time_limit_s``), ``dt`` (s), ``record_every``
(steps), ``step_index``, ``finished``, ``inputs`` and the hooks
:meth:`~SteppedSession._advance_physics`, :meth:`~SteppedSession._on_record`,
:meth:`~SteppedSession._finish` and ``log()``.
"""

from __future__ import annotations

import numpy as np

from surgsim.scoring.log import InputEvent


class SteppedSession:
    """Mixin: the fixed-step session loop (see the module docstring)."""

    #: Physics steps between recorded samples (set by each session class).
    record_every: int = 1

    # ------------------------------------------------------------------ hooks
    def _advance_physics(self, n_steps: int) -> None:
        """Run ``n_steps`` physics steps with the current commands (no recording)."""
        raise NotImplementedError

    def _on_record(self) -> None:
        """Called after every ``record_every``-th step: advance slow models, record, detect events."""
        raise NotImplementedError

    def _finish(self, reason: str) -> None:
        """End the attempt (``reason``: ``"trainee"``, ``"time_limit"``, ``"end_of_inputs"``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared loop
    @property
    def time(self) -> float:
        """Seconds since the start."""
        return self.step_index * self.dt

    def _take_input(self, action: str, value: float, actions: dict, what: str = "action") -> float | None:
        """Validate, clip and log an input at the current step.

        Returns the clipped value, or None when the session has finished (the
        input is then ignored and not logged).

        Raises
        ------
        ValueError
            For an action not in ``actions`` (``{name: (unit, lowest, highest)}``).
        """
        if self.finished:
            return None
        if action not in actions:
            raise ValueError(f"unknown {what} {action!r}; known: {', '.join(actions)}")
        _, lo, hi = actions[action]
        value = float(np.clip(value, lo, hi))
        self.inputs.append(InputEvent(self.step_index, action, value))
        return value

    def step(self, n_steps: int = 1) -> None:
        """Run ``n_steps`` physics steps (recording and checking events on the way)."""
        limit_steps = int(round(self.scenario.time_limit_s / self.dt))
        every = self.record_every
        while n_steps > 0 and not self.finished:
            to_record = every - (self.step_index % every)
            chunk = min(n_steps, to_record, limit_steps - self.step_index)
            if chunk <= 0:
                self._finish("time_limit")
                break
            self._advance_physics(chunk)
            self.step_index += chunk
            n_steps -= chunk
            if self.step_index % every == 0:
                self._on_record()

    def advance_time(self, seconds: float) -> int:
        """Run as many steps as fit in ``seconds`` of simulated time; returns the count."""
        n = int(seconds / self.dt)
        before = self.step_index
        self.step(n)
        return self.step_index - before

    def score(self):
        """Score the attempt so far with the scenario's rubric."""
        from surgsim.scoring.rubric import score

        return score(self.log(), self.scenario)


def play(session, inputs: list[InputEvent], max_steps: int | None = None):
    """Feed an input log through ``session`` until it finishes; returns the session.

    Inputs are applied at their step index. Without a ``finish`` input the
    session runs to the scenario's time limit (or ``max_steps``).

    Raises
    ------
    ValueError
        For an input earlier than the session's current step.
    """
    for event in sorted(inputs, key=lambda e: e.step):
        if session.finished:
            break
        if event.step < session.step_index:
            raise ValueError(f"input at step {event.step} is earlier than the session ({session.step_index})")
        session.step(event.step - session.step_index)
        session.apply(event.action, event.value)
    if not session.finished:
        remaining = (max_steps if max_steps is not None else 10**9) - session.step_index
        session.step(max(remaining, 0))
        if not session.finished:
            session._finish("end_of_inputs")
    return session
