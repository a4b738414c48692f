"""Session: wires scenario, anatomy, devices and physics into a fixed-step loop with an input log."""

from surgsim.session.session import ACTIONS, DT, RECORD_EVERY, Session, play, replay

__all__ = ["ACTIONS", "DT", "RECORD_EVERY", "Session", "play", "replay"]
