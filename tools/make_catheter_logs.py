#!/usr/bin/env python
"""Generate the scripted expert input logs of the catheter scenarios, robustly.

Usage::

    python tools/make_catheter_logs.py [SCENARIO_ID ...] [--check] [--dry-run]

An expert log is found closed-loop: a scripted hand (:class:`Hand`) runs the
scenario's session and acts on what an expert sees on fluoroscopy (the tip's
branch and how far into it, :meth:`CenterlineGraph.locate`), e.g. "withdraw at
1 cm/s until the tip drops into the brachiocephalic ostium". The inputs it sent
are the log. A log is kept only if it reaches the target and passes with its hub
speeds changed by -5 % and +5 % (:func:`perturb`: the same hand distances and
angles at 0.95x / 1.05x the speed), i.e. it does not sit on a tipping point of the
physics; candidates (hub angles, depths, speeds) are tried in order until one is.
Novice logs are fixed scripts (:data:`NOVICES`), written as they are.

``--check`` only replays the existing logs (nominal and perturbed) and reports.
Run from the repository root; rerun after a change of the device physics.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surgsim.paths import SCENARIOS_DIR  # noqa: E402
from surgsim.scoring.log import InputEvent  # noqa: E402

DT = 1e-3
#: Speed factors a kept expert log must also reach its target with.
PERTURBATIONS = (0.95, 1.05)


# -- replay and robustness ----------------------------------------------------------------
def perturb(events: list[InputEvent], k: float) -> list[InputEvent]:
    """The same log with every hub speed times ``k`` and every stretch during which the hand
    moves (advance or rotate non-zero) lasting ``1 / k`` as long: the same distances and
    angles at another speed. Pauses keep their length."""
    out: list[InputEvent] = []
    moving = {"advance": 0.0, "rotate": 0.0}
    last_old = last_new = 0
    for e in sorted(events, key=lambda e: e.step):
        span = e.step - last_old
        stretched = any(v != 0.0 for v in moving.values())
        last_new += int(round(span / k)) if stretched else span
        last_old = e.step
        value = e.value * k if e.action in moving else e.value
        if e.action in moving:
            moving[e.action] = e.value
        out.append(InputEvent(last_new, e.action, value))
    return out


@dataclass
class Outcome:
    reached: bool
    passed: bool
    total: float
    time_s: float


def play_log(scenario, case, events: list[InputEvent]) -> Outcome:
    """Play ``events`` through a fresh session of ``scenario`` on ``case``."""
    from surgsim.session.session import Session, play

    session = play(Session(scenario, case), events)
    result = session.score()
    return Outcome(bool(session.reached), bool(result.passed), float(result.total), session.time)


def robust(scenario, case, events: list[InputEvent], verbose: bool = True) -> bool:
    """Reaches the target and passes at the nominal speeds and at every :data:`PERTURBATIONS`."""
    for k in (1.0, *PERTURBATIONS):
        out = play_log(scenario, case, events if k == 1.0 else perturb(events, k))
        if verbose:
            print(f"    x{k:.2f}: reached {out.reached} passed {out.passed} score {out.total:.1f} "
                  f"T {out.time_s:.1f} s", flush=True)
        if not (out.reached and out.passed):
            return False
    return True


# -- a scripted hand that watches the tip -------------------------------------------------
class Hand:
    """Drives a session with the trainee's actions, checking the tip every 10 ms."""

    def __init__(self, scenario, case) -> None:
        from surgsim.session.session import Session

        self.case = case
        self.session = Session(scenario, case)

    def where(self) -> tuple[str, float]:
        """The tip's branch and arc length along it (m)."""
        label, s, _ = self.case.centerlines.locate(self.session.rod.state().tip_position)
        return label, s

    def wait(self, seconds: float) -> None:
        self.session.advance_time(seconds)

    def rotate(self, angle: float, speed: float) -> None:
        """Turn the hub by ``angle`` rad at ``speed`` rad/s, then let go."""
        if angle == 0.0:
            return
        self.session.apply("rotate", math.copysign(speed, angle))
        self.session.step(int(round(abs(angle) / speed / DT)))
        self.session.apply("rotate", 0.0)

    def advance(self, speed: float, distance: float | None = None, until=None, limit: float = 20.0) -> bool:
        """Move the hub at ``speed`` m/s for ``distance`` m of hand motion, or until ``until()``
        is true (checked every 10 ms; at most ``limit`` s); then stop. Returns whether the
        condition (if any) was met."""
        self.session.apply("advance", speed)
        met = until is None
        if distance is not None:
            self.session.step(int(round(abs(distance / speed) / DT)))
        else:
            for _ in range(int(limit / 0.01)):
                self.session.step(10)
                if until():
                    met = True
                    break
        self.session.apply("advance", 0.0)
        return met

    def finish(self, hold: float) -> list[InputEvent]:
        self.wait(hold)
        self.session.apply("finish")
        return list(self.session.inputs)


def in_branch(hand: Hand, label: str, s_min: float):
    def cond() -> bool:
        lab, s = hand.where()
        return lab == label and s >= s_min
    return cond


# -- expert techniques ------------------------------------------------------------------------
def expert_lsa(scenario, case, p) -> tuple[list[InputEvent], str] | None:
    """Angled tip left posterior (hub ``p[0]`` rad), up the descending aorta at ``p[1]`` m/s to
    0.27 m, then 2 cm/s until the tip is ``p[2]`` m into the left subclavian; hold."""
    hub, fast, stop = p
    hand = Hand(scenario, case)
    hand.rotate(hub, 2.0)
    hand.advance(fast, 0.25)
    if not hand.advance(0.02, until=in_branch(hand, "left_subclavian", stop), limit=6.0):
        return None
    return hand.finish(1.6), (
        f"Leave the angled tip pointing posterior{'' if hub == 0 else ' (hub turned a little)'}, "
        f"toward the outer curve of the arch where the left subclavian leaves it; advance briskly "
        f"({100 * fast:.0f} cm/s) up the descending aorta, slow to 2 cm/s as the tip reaches the arch "
        f"so that it slides along the outer curve into the subclavian ostium, stop "
        f"{100 * stop:.1f} cm in, hold."
    )


def expert_from_ascending(label: str, what: str):
    """Round the arch into the ascending aorta, turn the tip up, withdraw until it drops into
    ``label``, then advance it in to the target depth and hold."""

    def plan(scenario, case, p) -> tuple[list[InputEvent], str] | None:
        hub, depth, up, engage, stop = p
        hand = Hand(scenario, case)
        hand.rotate(hub, 2.0)
        hand.advance(0.05, depth - 0.06)
        hand.advance(0.02, 0.04)
        hand.wait(0.3)
        hand.rotate(up, 0.5)
        hand.wait(0.3)
        if not hand.advance(-0.01, until=in_branch(hand, label, engage), limit=6.0):
            return None
        hand.wait(0.3)
        if not hand.advance(0.01, until=in_branch(hand, label, stop), limit=4.0):
            return None
        return hand.finish(1.6), (
            f"Turn the angled tip anterior ({math.degrees(hub):.0f} deg), advance up the descending "
            f"aorta and slowly round the arch into the ascending aorta ({100 * depth:.0f} cm in), "
            f"turn the tip up ({math.degrees(up):.0f} deg more) while it is free, withdraw at 1 cm/s "
            f"until it drops into the {what} ostium, pause, advance it gently "
            f"{100 * stop:.1f} cm into the artery and hold."
        )

    return plan


def expert_simmons(scenario, case, p) -> tuple[list[InputEvent], str] | None:
    """Simmons curve turned a quarter turn before the arch, brisk climb at ``p[0]`` m/s and
    2 cm/s over the arch into the ascending aorta (``p[1]`` m in), the hub turned ``p[2]``
    rad there (the reverse curve lying in the arch holds the tip: the shaft winds up and the
    stored torque turns the curve toward the ostium), then a slow pull-down at 1 cm/s until
    the tip is ``p[3]`` m into the brachiocephalic; hold."""
    fast, depth, turn, stop = p
    hand = Hand(scenario, case)
    hand.rotate(math.pi / 2, 2.0)
    hand.wait(0.1)
    hand.advance(fast, 0.25)
    hand.advance(0.02, depth - 0.27)
    hand.wait(0.3)
    hand.rotate(turn, 1.0)
    hand.wait(0.3)
    if not hand.advance(-0.01, until=in_branch(hand, "brachiocephalic", stop), limit=8.0):
        return None
    return hand.finish(1.6), (
        f"Turn the hub a quarter turn first so that the Simmons curve faces the patient's right, "
        f"advance briskly ({100 * fast:.0f} cm/s) up the straight descending aorta and at 2 cm/s over "
        f"the elongated arch into the ascending aorta ({100 * depth:.0f} cm in). Turn the hub "
        f"{abs(turn) / (2 * math.pi):.1f} turns {'counter-' if turn < 0 else ''}clockwise there: the "
        f"reverse curve lying in the arch holds the tip, the shaft stores the torque and turns the "
        f"curve toward the ostium. Pull down slowly (1 cm/s) until the tip drops "
        f"{100 * stop:.1f} cm into the brachiocephalic trunk, and hold."
    )


#: scenario id -> list of (kind suffix, technique, candidate parameter tuples in order)
EXPERTS = {
    "catheter-lsa-basic": [
        ("expert", expert_lsa, list(product([0.0], [0.05], [0.03, 0.028, 0.032]))),
        ("expert2", expert_lsa, list(product([0.0], [0.04], [0.03, 0.028, 0.032]))),
    ],
    "catheter-lcca-basic": [
        ("expert", expert_from_ascending("left_common_carotid", "left common carotid"),
         list(product([math.pi], [0.37, 0.38, 0.36], [2.0, 1.6, 2.4], [0.012, 0.015], [0.028, 0.03]))),
    ],
    "catheter-bca-basic": [
        ("expert", expert_from_ascending("brachiocephalic", "brachiocephalic"),
         list(product([math.pi], [0.37, 0.38, 0.36], [2.0, 1.6, 2.4], [0.012, 0.015], [0.028, 0.03]))),
    ],
    "catheter-bct-simmons": [
        ("expert", expert_simmons, list(product([0.05], [0.44], [-10.0, -11.0, -9.0], [0.013, 0.015]))),
        ("expert2", expert_simmons, list(product([0.06], [0.44], [-10.0, -11.0, -9.0], [0.013, 0.015]))),
    ],
}

#: Novice scripts: scenario id -> {suffix: (comment, [(t s, action, value), ...])}
NOVICES = {
    "catheter-lcca-basic": {
        "novice": (
            "Scripted novice attempt at catheter-lcca-basic: fast pushes without steering (the tip goes "
            "into the left subclavian), long pauses, back-and-forth searching and spinning; never "
            "cannulates the left common carotid.",
            [(0.0, "advance", 0.08), (3.5, "advance", 0.0), (5.5, "advance", 0.05), (8.0, "advance", 0.08),
             (9.5, "advance", 0.0), (12.5, "advance", -0.05), (14.5, "advance", 0.0), (14.5, "rotate", -3.0),
             (15.5, "rotate", 0.0), (15.5, "advance", 0.06), (17.5, "advance", 0.0), (21.5, "rotate", 2.0),
             (23.0, "rotate", 0.0), (23.0, "advance", 0.08), (24.5, "advance", -0.04), (26.5, "advance", 0.0),
             (31.5, "advance", 0.05), (33.5, "advance", -0.06), (35.5, "advance", 0.0), (35.5, "rotate", 3.0),
             (36.5, "rotate", 0.0), (37.0, "advance", 0.07), (39.0, "advance", -0.05), (40.5, "advance", 0.0),
             (41.0, "advance", 0.06), (42.5, "advance", 0.0), (45.0, "finish", 0.0)],
        ),
    },
    "catheter-bct-simmons": {
        "novice": (
            "Scripted novice attempt at catheter-bct-simmons: pushes the unoriented Simmons fast over "
            "the arch (it jams at the arch top and loads the wall), pauses, pulls back and spins the hub "
            "the wrong way, pushes again, searches back and forth; never seats the tip in the "
            "brachiocephalic ostium.",
            [(0.0, "advance", 0.08), (3.0, "advance", 0.0), (5.0, "advance", 0.06), (7.0, "advance", 0.08),
             (8.5, "advance", 0.0), (11.0, "advance", -0.04), (13.0, "advance", 0.0), (13.0, "rotate", -3.0),
             (14.5, "rotate", 0.0), (16.0, "advance", 0.07), (18.0, "advance", 0.0), (21.0, "advance", -0.03),
             (23.0, "advance", 0.05), (25.0, "advance", 0.0), (28.0, "rotate", 3.0), (29.5, "rotate", 0.0),
             (30.0, "advance", 0.06), (32.0, "advance", 0.0), (35.0, "advance", -0.05), (37.0, "advance", 0.0),
             (40.0, "advance", 0.07), (41.5, "advance", 0.0), (45.0, "finish", 0.0)],
        ),
        "novice2": (
            "Second scripted novice attempt at catheter-bct-simmons: hesitant and noisy. Orients the curve "
            "the wrong way (toward the patient's left), advances in short jerky pushes with pauses, turns "
            "the hub back and forth while the curve is in the arch, and gives up without seating the tip.",
            [(0.0, "rotate", -2.0), (0.8, "rotate", 0.0), (1.0, "advance", 0.06), (2.5, "advance", 0.0),
             (3.5, "advance", 0.07), (5.0, "advance", 0.0), (6.0, "advance", 0.06), (7.5, "advance", 0.03),
             (9.0, "advance", 0.0), (9.5, "rotate", 2.5), (10.5, "rotate", -2.5), (11.5, "rotate", 0.0),
             (12.5, "advance", 0.04), (14.5, "advance", -0.03), (16.0, "advance", 0.0), (18.0, "advance", 0.05),
             (20.0, "advance", 0.0), (22.0, "rotate", -3.0), (23.5, "rotate", 0.0), (24.0, "advance", 0.07),
             (26.0, "advance", 0.0), (29.0, "advance", -0.04), (31.0, "advance", 0.0), (33.0, "advance", 0.06),
             (35.0, "advance", 0.0), (42.0, "finish", 0.0)],
        ),
    },
    "catheter-bca-basic": {
        "novice": (
            "Scripted novice attempt at catheter-bca-basic: pushes fast without steering (the tip goes "
            "into the left subclavian and jams), long pauses, pulls back and spins the hub, pushes "
            "again round the arch and searches back and forth; never cannulates the brachiocephalic.",
            [(0.0, "advance", 0.08), (4.0, "advance", 0.0), (6.5, "advance", 0.06), (8.0, "advance", 0.0),
             (10.0, "advance", -0.06), (12.0, "advance", 0.0), (12.0, "rotate", 3.0), (13.0, "rotate", 0.0),
             (13.5, "advance", 0.08), (15.5, "advance", 0.0), (18.0, "advance", -0.04), (20.0, "advance", 0.0),
             (20.0, "rotate", -2.5), (21.2, "rotate", 0.0), (21.5, "advance", 0.07), (23.0, "advance", 0.0),
             (26.0, "advance", -0.03), (27.5, "advance", 0.0), (30.0, "finish", 0.0)],
        ),
        "novice2": (
            "Second scripted novice attempt at catheter-bca-basic: hesitant and noisy. Turns the tip "
            "anterior, climbs in short jerky pushes with pauses, turns the hub back and forth in the "
            "arch, pushes the tip hard into the aortic root, withdraws fast past the ostia and gives up.",
            [(0.0, "rotate", 2.0), (1.6, "rotate", 0.0), (1.6, "advance", 0.06), (3.5, "advance", 0.0),
             (4.5, "advance", 0.07), (6.0, "advance", 0.0), (7.0, "advance", 0.06), (8.5, "advance", 0.0),
             (9.0, "rotate", 2.5), (10.0, "rotate", -2.5), (11.0, "rotate", 0.0), (11.5, "advance", 0.08),
             (13.5, "advance", 0.0), (15.0, "advance", -0.05), (17.0, "advance", 0.0), (19.0, "advance", 0.06),
             (20.5, "advance", 0.0), (23.0, "finish", 0.0)],
        ),
    },
}


def _fmt_t(step: int) -> str:
    return f"{step * DT:.3f}".rstrip("0").rstrip(".") if step else "0.0"


def write_log(path: Path, comment: str, events: list[InputEvent]) -> None:
    """Write an input log with a wrapped header comment (t in seconds, exact to the step)."""
    import textwrap

    lines = [f"# {line}" for line in textwrap.wrap(comment, 96)]
    lines.append("# Generated by tools/make_catheter_logs.py (rerun it after a change of the device physics).")
    lines += ["dt: 0.001", "inputs:"]
    for e in events:
        value = "" if e.action == "finish" else f", value: {round(e.value, 6)}"
        lines.append(f"- {{t: {_fmt_t(e.step)}, action: {e.action}{value}}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make(scenario_id: str, dry_run: bool) -> bool:
    from surgsim.cases.build import phantom_vessel_case
    from surgsim.scenarios.load import load_scenario

    scenario = load_scenario(SCENARIOS_DIR / f"{scenario_id}.yaml")
    case = phantom_vessel_case(scenario.case.phantom)
    ok = True
    for suffix, technique, candidates in EXPERTS.get(scenario_id, []):
        found = None
        for p in candidates:
            print(f"{scenario_id}.{suffix}: trying {tuple(round(v, 4) for v in p)}", flush=True)
            made = technique(scenario, case, p)
            if made is None:
                print("    the tip never got there", flush=True)
                continue
            events, comment = made
            if robust(scenario, case, events):
                found = (events, comment)
                break
        if found is None:
            print(f"{scenario_id}.{suffix}: NO robust expert log found", flush=True)
            ok = False
            continue
        events, comment = found
        path = SCENARIOS_DIR / "inputs" / f"{scenario_id}.{suffix}.yaml"
        text = f"Scripted {suffix.replace('expert', 'expert attempt ').strip()} at {scenario_id} " \
               f"(input log: hub speeds, m/s and rad/s). {comment}"
        if not dry_run:
            write_log(path, text, events)
            print(f"wrote {path}", flush=True)
    for suffix, (comment, rows) in NOVICES.get(scenario_id, {}).items():
        events = [InputEvent(int(round(t / DT)), a, float(v)) for t, a, v in rows]
        out = play_log(scenario, case, events)
        print(f"{scenario_id}.{suffix}: reached {out.reached} passed {out.passed} score {out.total:.1f}")
        if out.passed:
            ok = False
        if not dry_run:
            write_log(SCENARIOS_DIR / "inputs" / f"{scenario_id}.{suffix}.yaml", comment, events)
    return ok


def check(scenario_id: str) -> bool:
    """Replay the scenario's existing expert logs nominal and perturbed."""
    from surgsim.cases.build import phantom_vessel_case
    from surgsim.scenarios.load import load_scenario
    from surgsim.session.inputs import load_inputs

    scenario = load_scenario(SCENARIOS_DIR / f"{scenario_id}.yaml")
    case = phantom_vessel_case(scenario.case.phantom)
    ok = True
    for path in sorted((SCENARIOS_DIR / "inputs").glob(f"{scenario_id}.expert*.yaml")):
        print(path.name, flush=True)
        ok &= robust(scenario, case, load_inputs(path))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=sorted(set(EXPERTS) | set(NOVICES)))
    parser.add_argument("--check", action="store_true", help="only replay the existing expert logs")
    parser.add_argument("--dry-run", action="store_true", help="search and report, write nothing")
    args = parser.parse_args(argv)
    ok = True
    for sid in args.scenarios:
        ok &= check(sid) if args.check else make(sid, args.dry_run)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
