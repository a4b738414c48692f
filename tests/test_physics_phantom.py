"""Both rod solvers in the default phantom's aorta: no wall escape at hand speeds up to 0.1 m/s.

The default case's distance field is coarse (1.4 x 1.4 x 2 mm voxels) and its arch has
three branch ostia, the places where pybullet chains and capsule models tunnel. A catheter
(and a wire with a catheter over it) is driven at the fastest advance a trainee can send
(0.1 m/s, :data:`surgsim.session.session.ACTIONS`) toward each branch and checked every
10 ms; random hand inputs within the action limits must never break the solver.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surgsim.instruments import CATALOGUE
from surgsim.physics import CoaxialSolver, RodSolver, sample_sdf
from surgsim.session.session import ACTIONS, DAMPING, DT

V_MAX = ACTIONS["advance"][2]  # 0.1 m/s
W_MAX = ACTIONS["rotate"][2]  # 2 pi rad/s
PEN = 0.3e-3  # largest penetration of a node into the wall (m)
SEG_PEN = 0.0  # the centreline between two nodes never leaves the lumen


def _penetration(solver, radius: np.ndarray) -> tuple[float, float]:
    """Deepest free node into the wall (phi + r) and deepest point on a free segment (phi), m."""
    free = solver.free
    n = int(free.sum())
    if n == 0:
        return -1.0, -1.0
    x = solver.positions[: n + 1]
    nodes = solver.wall_distance(x[:n]) + radius[:n]
    t = np.linspace(0.0, 1.0, 5)[None, :, None]
    seg = (x[:-1, None, :] * (1 - t) + x[1:, None, :] * t).reshape(-1, 3)
    return float(nodes.max()), float(solver.wall_distance(seg).max())


def _rod(case, name="angled_5fr"):
    d = case.distance
    return RodSolver(CATALOGUE[name], d.values, d.voxel_from_world, case.access, case.access_direction,
                     dt=DT, initial_depth=0.02, damping=DAMPING)


def _coaxial(case):
    d = case.distance
    return CoaxialSolver(CATALOGUE["angled_5fr"], CATALOGUE["guidewire_035"], d.values, d.voxel_from_world,
                         case.access, case.access_direction, dt=DT, catheter_depth=0.02, wire_depth=0.04,
                         damping=DAMPING)


@pytest.mark.parametrize("hub_turn", [0.0, 0.5, 1.0, 1.5])
def test_catheter_pushed_at_100_mm_s_stays_in_the_lumen(default_case, hub_turn):
    """An angled catheter turned toward one side (its tip then finds a different branch or runs
    round the arch) and pushed at 0.1 m/s from the femoral access 45 cm in."""
    rod = _rod(default_case)
    rod.run(int(round(hub_turn * math.pi / (W_MAX * DT))), 0.0, W_MAX * DT)
    r = np.full(rod.n_nodes, rod.spec.outer_radius)
    worst_node = worst_seg = top = -1.0
    while rod.depth < 0.45:
        rod.run(10, V_MAX * DT)
        top = max(top, float(rod.positions[0, 2]))
        node, seg = _penetration(rod, r)
        worst_node, worst_seg = max(worst_node, node), max(worst_seg, seg)
        assert np.all(np.isfinite(rod.positions)) and np.all(np.isfinite(rod.contact_force))
    assert worst_node < PEN, f"a node went {worst_node * 1e3:.2f} mm into the wall"
    assert worst_seg <= SEG_PEN, f"a segment left the lumen by {worst_seg * 1e3:.2f} mm"
    assert rod.depth > 0.3  # it was not simply blocked at the entry
    # the tip went up past the arch's ostia (z of the branch origins is about +0.035 m), into a
    # branch or round the arch
    assert top > 0.03


def test_coaxial_pair_pushed_at_100_mm_s_stays_in_the_lumen(default_case):
    """The wire leads at 0.1 m/s, the catheter follows over it at 0.1 m/s, then both together."""
    rod = _coaxial(default_case)
    worst_node = worst_seg = -1.0
    plan = [(0.0, V_MAX, 2500), (V_MAX, 0.0, 2000), (V_MAX, V_MAX, 800)]  # (catheter, wire, steps)
    for cat, wire, steps in plan:
        for _ in range(steps // 10):
            rod.run(10, catheter_advance=cat * DT, wire_advance=wire * DT)
            node, seg = _penetration(rod, rod.contact_radius())
            worst_node, worst_seg = max(worst_node, node), max(worst_seg, seg)
    assert worst_node < PEN, f"a node went {worst_node * 1e3:.2f} mm into the wall"
    assert worst_seg <= SEG_PEN, f"a segment left the lumen by {worst_seg * 1e3:.2f} mm"
    s = rod.state()
    assert s.wire.depth > 0.25 and s.catheter.depth > 0.2
    assert np.all(np.isfinite(s.positions))


_hand = st.lists(
    st.tuples(
        st.integers(5, 60),  # 10 ms chunks
        st.floats(ACTIONS["advance"][1], ACTIONS["advance"][2]),
        st.floats(ACTIONS["rotate"][1], ACTIONS["rotate"][2]),
        st.sampled_from([0, 1]),  # the hand on the catheter or on the wire (coaxial)
    ),
    min_size=1, max_size=6,
)


def _check(solver, radius) -> None:
    x, v = solver.positions, solver.velocities
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(v))
    assert np.all(np.isfinite(solver.contact_force)) and math.isfinite(solver.push_force)
    assert np.abs(v).max() <= 20.0 + 1e-9  # the node speed cap: no explosion
    assert solver.contact_force.max() < 50.0
    node, seg = _penetration(solver, radius)
    assert node < PEN and seg <= SEG_PEN
    inside = solver.inside
    assert sample_sdf(solver._sdf, solver._vfw, x[inside])[0].max(initial=-1.0) < 0.0  # no escape


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=_hand, coaxial=st.booleans(), start=st.floats(0.1, 0.3))
def test_random_hand_inputs_never_break_either_solver(default_case, seq, coaxial, start):
    """Any hand input within the session's action limits (advance, retract, turn, switch
    device) from anywhere along the aorta: finite, bounded, in the lumen."""
    solver = _coaxial(default_case) if coaxial else _rod(default_case)
    for _ in range(int(round((start - 0.02) / (V_MAX * DT))) // 10):  # reach the start depth
        if coaxial:
            solver.run(10, V_MAX * DT, 0.0, V_MAX * DT, 0.0)
        else:
            solver.run(10, V_MAX * DT)
    for chunks, adv, rot, hand in seq:
        for _ in range(chunks):
            if coaxial and hand == 1:
                solver.run(10, wire_advance=adv * DT, wire_rotate=rot * DT)
            elif coaxial:
                solver.run(10, catheter_advance=adv * DT, catheter_rotate=rot * DT)
            else:
                solver.run(10, adv * DT, rot * DT)
            radius = solver.contact_radius() if coaxial else np.full(solver.n_nodes, solver.spec.outer_radius)
            _check(solver, radius)
