"""A guidewire inside a catheter (one combined rod): stiffness, shapes, contact, limits."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surgsim.errors import PhysicsError
from surgsim.instruments import CATALOGUE
from surgsim.physics import tube_sdf
from surgsim.physics.coaxial import CoaxialSolver

DT = 1e-3
X = np.array([1.0, 0.0, 0.0])
ACCESS = np.array([-0.04, 0.0, 0.0])
R_BEND = 0.05  # curved tube: centreline radius of curvature, m
LUMEN = 0.006  # curved tube: lumen radius, m

ANGLED = CATALOGUE["angled_5fr"]
STRAIGHT = CATALOGUE["straight_5fr"]
J_WIRE = CATALOGUE["guidewire_035"]
# an Amplatz-like stiff 0.035 in wire with a straight tip (EI about 7x the catheter's)
STIFF_WIRE = dataclasses.replace(J_WIRE, name="stiff_035", youngs_modulus=40e9, tip_shape="straight",
                                 tip_angle=0.0, tip_length=0.0)
STRAIGHT_WIRE = dataclasses.replace(J_WIRE, name="straight_035", tip_shape="straight", tip_angle=0.0,
                                    tip_length=0.0)


def curved_tube_phi(p: np.ndarray) -> np.ndarray:
    """Exact signed distance to the curved tube: inlet along +x (x <= 0), a quarter torus
    turning toward +y (centre (0, R, 0)), outlet along +y (x = R)."""
    p = np.atleast_2d(p)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    d = np.full(len(p), np.inf)
    m = x <= 0
    d[m] = np.hypot(y[m], z[m])
    ang = np.arctan2(x, R_BEND - y)
    m = (ang >= 0) & (ang <= np.pi / 2)
    rr = np.hypot(x, y - R_BEND)
    d[m] = np.minimum(d[m], np.hypot(rr[m] - R_BEND, z[m]))
    m = y >= R_BEND
    d[m] = np.minimum(d[m], np.hypot(x[m] - R_BEND, z[m]))
    return d - LUMEN


@pytest.fixture(scope="module")
def curved_tube():
    th = np.linspace(0.0, np.pi / 2, 91)
    arc = np.stack([R_BEND * np.sin(th), R_BEND - R_BEND * np.cos(th), 0 * th], 1)
    centerline = np.vstack([[[-0.06, 0, 0]], arc, [[R_BEND, R_BEND + 0.10, 0]]])
    values, vfw, _ = tube_sdf(centerline, LUMEN, spacing=0.5e-3, margin=2e-3)
    return values, vfw


@pytest.fixture(scope="module")
def dead_end():
    """A straight tube along +x closed (hemispherical end) at x = 0.05."""
    values, vfw, _ = tube_sdf(np.array([[-0.06, 0, 0], [0.05, 0, 0]]), LUMEN, spacing=0.5e-3,
                              margin=2e-3, closed_end=True)
    return values, vfw


def in_plane_angle(d: np.ndarray) -> float:
    """Angle (degrees) of a direction from +x toward +y."""
    return math.degrees(math.atan2(d[1], d[0]))


def segment_points(x: np.ndarray, k: int = 5) -> np.ndarray:
    t = np.linspace(0.0, 1.0, k)[None, :, None]
    return (x[:-1, None, :] * (1 - t) + x[1:, None, :] * t).reshape(-1, 3)


# -- 1. the wire straightens the catheter's tip; the shape returns without it --------------
def test_stiff_wire_straightens_the_angled_tip_and_the_shape_returns_when_withdrawn():
    cat, wire = ANGLED, STIFF_WIRE
    rod = CoaxialSolver(cat, wire, None, None, [0, 0, 0], X, dt=DT, catheter_depth=0.10,
                        wire_depth=0.10, reference_normal=[0, 1, 0], wire_soft_length=0.0)
    rod.run(1500)
    combined = in_plane_angle(rod.state().catheter.tip_direction)
    expected = 45.0 * cat.EI / (cat.EI + wire.EI)  # (EI_c kappa_c + EI_w * 0) / (EI_c + EI_w)
    assert combined == pytest.approx(expected, abs=1.0)
    assert abs(combined) < 6.0  # nearly straight with the wire at the tip
    # pull the wire back 5 cm (at 5 cm/s): the catheter's own shape returns
    rod.run(1000, wire_advance=-0.05e-3)
    rod.run(1000)
    s = rod.state()
    assert s.wire.depth == pytest.approx(0.05, abs=1e-9) and s.catheter.depth == pytest.approx(0.10)
    assert s.leading == "catheter"
    assert in_plane_angle(s.catheter.tip_direction) == pytest.approx(45.0, abs=3.0)
    # and advancing it again straightens the tip again (no hysteresis in the model)
    rod.run(1000, wire_advance=0.05e-3)
    rod.run(1000)
    assert in_plane_angle(rod.state().catheter.tip_direction) == pytest.approx(combined, abs=0.5)


def test_a_j_wire_pulled_back_inside_the_catheter_barely_bends_it():
    """The floppy distal end of a J wire withdrawn 5 cm into the catheter turns the catheter's
    tip by a few degrees only, while the wire's stiff shaft inside the tip halves its angle."""
    rod = CoaxialSolver(ANGLED, J_WIRE, None, None, [0, 0, 0], X, dt=DT, catheter_depth=0.10,
                        wire_depth=0.15, reference_normal=[0, 1, 0])
    rod.run(1500)
    expected = 45.0 * ANGLED.EI / (ANGLED.EI + J_WIRE.EI)  # the shaft covers the bend
    assert in_plane_angle(rod.state().catheter.tip_direction) == pytest.approx(expected, abs=1.5)
    rod.run(2000, wire_advance=-0.05e-3)  # wire tip 5 cm behind the catheter's
    rod.run(1500)
    s = rod.state()
    assert s.wire.depth == pytest.approx(0.05, abs=1e-9)
    assert in_plane_angle(s.catheter.tip_direction) == pytest.approx(45.0, abs=8.0)


# -- 2. a protruding J wire leads the way ----------------------------------------------------
def test_protruding_j_wire_takes_its_own_shape():
    rod = CoaxialSolver(STRAIGHT, J_WIRE, None, None, [0, 0, 0], X, dt=DT, catheter_depth=0.10,
                        wire_depth=0.13, reference_normal=[0, 1, 0])
    rod.run(1500)
    s = rod.state()
    assert s.leading == "wire"
    cat_dir, wire_dir = s.catheter.tip_direction, s.wire.tip_direction
    assert np.dot(cat_dir, X) > 0.999  # the straight catheter stays straight
    turned = math.degrees(math.acos(np.clip(np.dot(cat_dir, wire_dir), -1, 1)))
    assert turned == pytest.approx(180.0, abs=10.0)  # the J curls back
    # which nodes carry what: wire only beyond the catheter tip, both behind it
    beyond = np.arange(rod.n_nodes) * rod.segment_length < 0.03 - 1e-9
    assert np.all(s.device[beyond] == 1) and np.all(s.device[~beyond] == 3)
    np.testing.assert_allclose(rod.contact_radius()[beyond], J_WIRE.outer_radius)
    assert rod.contact_radius()[~beyond].max() == pytest.approx(STRAIGHT.outer_radius)
    # the wire's hub turns its J 1:1 (rigid torsion), the catheter stays put
    rod.run(500, wire_rotate=math.pi / 500)
    rod.run(1000)
    s2 = rod.state()
    assert s2.wire.hub_angle == pytest.approx(math.pi) and s2.catheter.hub_angle == 0.0
    lateral = s2.wire.tip_position - s.catheter.tip_position
    before = s.wire.tip_position - s.catheter.tip_position
    assert np.dot(lateral[1:], before[1:]) < 0  # the J's curl swung to the other side
    np.testing.assert_allclose(s2.catheter.tip_direction, cat_dir, atol=2e-3)


def test_wire_leads_round_a_bend_and_the_catheter_tracks_over_it(curved_tube):
    values, vfw = curved_tube
    rod = CoaxialSolver(ANGLED, J_WIRE, values, vfw, ACCESS, X, dt=DT, catheter_depth=0.02,
                        wire_depth=0.03)
    rod.run(1800, wire_advance=0.1e-3)  # 18 cm of wire at 10 cm/s: round the bend
    s = rod.state()
    outlet_y = R_BEND + 0.03
    assert s.wire.tip_position[1] > outlet_y  # the wire is well into the outlet
    wire_tip = s.wire.tip_position
    rod.run(1500, catheter_advance=0.1e-3)  # 15 cm of catheter over it
    s = rod.state()
    assert s.catheter.depth == pytest.approx(0.17, abs=1e-6)
    assert s.catheter.tip_position[1] > R_BEND + 0.005  # the catheter followed round the bend
    assert abs(s.catheter.tip_position[0] - R_BEND) < LUMEN
    assert np.linalg.norm(s.wire.tip_position - wire_tip) < 0.01  # the wire stayed where it was
    inside = s.positions[s.free]
    assert (curved_tube_phi(inside) + rod.contact_radius()[s.free]).max() < 0.5e-3


# -- 3. combined stiffness -------------------------------------------------------------------
@pytest.mark.parametrize("part", ["overlap", "catheter", "wire"])
def test_cantilever_matches_beam_theory_with_the_stiffness_present(part):
    cat, wire = STRAIGHT, STRAIGHT_WIRE
    length, force = 0.3, {"overlap": 5e-5, "catheter": 3e-5, "wire": 2e-5}[part]
    depths = {"overlap": (length, length), "catheter": (length, 0.0), "wire": (0.0, length)}[part]
    ei = {"overlap": cat.EI + wire.EI, "catheter": cat.EI, "wire": wire.EI}[part]
    fext = np.zeros((200, 3))
    fext[0, 2] = -force
    rod = CoaxialSolver(cat, wire, None, None, [0, 0, 0], X, dt=DT, catheter_depth=depths[0],
                        wire_depth=depths[1], damping=0.02, wire_soft_length=0.0,
                        external_force=fext)
    rod.run(3000)
    clamp = (rod.free.sum() + 0.5) * rod.segment_length  # as for one device (rod.py)
    theory = force * clamp**3 / (3 * ei)
    assert -rod.positions[0, 2] == pytest.approx(theory, rel=0.05)
    assert np.abs(rod.velocities).max() < 1e-5


# -- 4. smooth crossing of the tips ------------------------------------------------------------
@pytest.mark.parametrize("where", ["free", "tube"])
def test_wire_tip_crossing_the_catheter_tip_is_smooth(curved_tube, where):
    """Withdrawing the leading J wire through the catheter tip and advancing it out again:
    the material at every node changes gradually and, in free space, no node jumps (in the
    tube the J emerging against the wall may snap, as a real one does)."""
    values, vfw = curved_tube if where == "tube" else (None, None)
    rod = CoaxialSolver(ANGLED, J_WIRE, values, vfw, ACCESS, X, dt=DT, catheter_depth=0.02,
                        wire_depth=0.03, reference_normal=[0, 1, 0])
    rod.run(600, 0.1e-3, 0.0, 0.1e-3, 0.0)  # 0.08 and 0.09 m (into the bend)
    rod.run(1000)
    x_prev, ei_prev, r_prev = rod.positions.copy(), rod.bending_stiffness(), rod.contact_radius()
    worst_move = worst_ei = worst_r = worst_pen = 0.0
    leaders = []
    for adv in [-0.02e-3] * 1000 + [0.02e-3] * 1000:  # 2 cm/s back 2 cm, then out again
        rod.run(1, wire_advance=adv)
        s = rod.state()
        leaders.append(s.leading)
        worst_move = max(worst_move, np.linalg.norm(rod.positions - x_prev, axis=1).max())
        worst_ei = max(worst_ei, np.abs(rod.bending_stiffness() - ei_prev).max())
        worst_r = max(worst_r, np.abs(rod.contact_radius() - r_prev).max())
        if where == "tube":
            worst_pen = max(worst_pen, (curved_tube_phi(s.positions[s.free])
                                        + rod.contact_radius()[s.free]).max())
        x_prev, ei_prev, r_prev = rod.positions.copy(), rod.bending_stiffness(), rod.contact_radius()
    switches = sum(a != b for a, b in zip(leaders[:-1], leaders[1:], strict=True))
    assert switches == 2  # the wire tip went into the catheter and came out again
    # per 0.02 mm step: the material moves by 1/125 of a 2.5 mm cell
    assert worst_ei < 0.01 * (ANGLED.EI + J_WIRE.EI)  # a jump would be 100 %
    assert worst_r < 0.005e-3  # a jump would be 0.39 mm
    if where == "free":
        assert worst_move < 0.05e-3  # 2.5x the hand's 0.02 mm per step
    else:
        assert worst_pen < 0.5e-3


# -- 5. wall contact: no tunnelling -------------------------------------------------------------
@pytest.mark.parametrize("lead", ["wire", "catheter"])
def test_push_through_curved_tube_at_100_mm_per_s_stays_in_lumen(curved_tube, lead):
    values, vfw = curved_tube
    depths = (0.02, 0.05) if lead == "wire" else (0.05, 0.02)
    rod = CoaxialSolver(ANGLED, J_WIRE, values, vfw, ACCESS, X, dt=DT, catheter_depth=depths[0],
                        wire_depth=depths[1])
    advance = 0.1 * DT
    worst_node = worst_seg = -np.inf
    for _ in range(int(0.14 / advance) // 5):
        rod.run(5, advance, 0.0, advance, 0.0)
        s = rod.state()
        free = s.positions[s.free]
        worst_node = max(worst_node, (curved_tube_phi(free) + rod.contact_radius()[s.free]).max())
        worst_seg = max(worst_seg, curved_tube_phi(segment_points(s.positions[: s.free.sum() + 1])).max())
        assert np.all(np.isfinite(s.contact_force)) and s.contact_force.min() >= 0.0
    assert worst_node <= 0.5e-3, f"penetration {worst_node * 1e3:.2f} mm"
    assert worst_seg <= 0.0, "a segment crosses the wall"
    s = rod.state()
    assert s.depth == pytest.approx(max(depths) + 0.14, abs=1e-6)  # never blocked
    assert s.positions[:10, 1].max() > R_BEND + 0.02  # round the bend into the outlet
    assert np.all(np.abs(s.positions[:10, 0] - R_BEND) < LUMEN)


# -- 6. push force limits per device ------------------------------------------------------------
def test_push_force_is_limited_per_device(dead_end):
    values, vfw = dead_end
    wire = dataclasses.replace(STRAIGHT_WIRE, max_push_force=1.0)
    cat = STRAIGHT  # 2 N
    rod = CoaxialSolver(cat, wire, values, vfw, ACCESS, X, dt=DT, catheter_depth=0.02,
                        wire_depth=0.04)
    cap = 0.05 + LUMEN - wire.outer_radius  # where the wire's tip stops
    # the wire alone into the dead end at 10 cm/s: stops at the wire's 1 N
    forces = []
    for _ in range(150):
        rod.run(10, wire_advance=0.1e-3)
        forces.append(rod.push_force)
    s = rod.state()
    assert s.wire.tip_position[0] == pytest.approx(cap, abs=1.5e-3)
    assert s.wire.depth < 0.04 + 0.15 - 0.03  # much of the push was refused
    assert 0.95 * wire.max_push_force < max(forces) < 1.1 * wire.max_push_force
    assert s.wire.push_force == pytest.approx(s.push_force)
    assert s.catheter.depth == pytest.approx(0.02)
    # the catheter over it up to the cap: now the catheter drives, up to its own 2 N
    forces = []
    for _ in range(150):
        rod.run(10, catheter_advance=0.1e-3)
        forces.append(rod.push_force)
    s = rod.state()
    assert s.leading == "catheter"
    assert s.catheter.tip_position[0] == pytest.approx(0.05 + LUMEN - cat.outer_radius, abs=1.5e-3)
    assert 0.95 * cat.max_push_force < max(forces) < 1.1 * cat.max_push_force
    assert (rod.wall_distance()[s.free] + rod.contact_radius()[s.free]).max() < 0.5e-3
    # pulling the catheter back relieves the load
    rod.run(100, catheter_advance=-0.1e-3)
    assert rod.push_force < cat.max_push_force


def test_catheter_behind_the_wire_is_stopped_by_its_own_limit(curved_tube):
    """A catheter sliding over a leading wire stalls once its sliding resistance (friction
    on the wall load of the nodes it covers) reaches its push limit."""
    values, vfw = curved_tube
    weak = dataclasses.replace(ANGLED, max_push_force=0.005)
    rod = CoaxialSolver(weak, J_WIRE, values, vfw, ACCESS, X, dt=DT, catheter_depth=0.02,
                        wire_depth=0.03)
    rod.run(1500, wire_advance=0.1e-3)
    rod.run(1500, catheter_advance=0.1e-3)
    s = rod.state()
    assert s.catheter.depth < 0.02 + 0.15 - 0.02  # stalled on the way
    assert s.catheter.push_force == pytest.approx(weak.max_push_force, rel=0.5)
    free = CoaxialSolver(ANGLED, J_WIRE, values, vfw, ACCESS, X, dt=DT, catheter_depth=0.02,
                         wire_depth=0.03)
    free.run(1500, wire_advance=0.1e-3)
    free.run(1500, catheter_advance=0.1e-3)
    assert free.catheter_depth == pytest.approx(0.17, abs=1e-6)  # the 2 N catheter got through


# -- 7. robustness and determinism ---------------------------------------------------------------
_inputs = st.lists(
    st.tuples(st.integers(1, 120), st.floats(-1e-3, 1e-3), st.floats(-0.05, 0.05),
              st.floats(-1e-3, 1e-3), st.floats(-0.05, 0.05)),
    min_size=1, max_size=5,
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=_inputs, cat=st.sampled_from(["cobra_5fr", "angled_5fr", "simmons_5fr"]))
def test_random_inputs_never_break_the_coaxial_rod(curved_tube, seq, cat):
    values, vfw = curved_tube
    rod = CoaxialSolver(CATALOGUE[cat], J_WIRE, values, vfw, ACCESS, X, dt=DT, catheter_depth=0.03,
                        wire_depth=0.035)
    for n, adv_c, rot_c, adv_w, rot_w in seq:
        rod.run(n, adv_c, rot_c, adv_w, rot_w)
        s = rod.state()
        assert np.all(np.isfinite(s.positions)) and np.all(np.isfinite(s.velocities))
        assert np.all(np.isfinite(s.contact_force)) and math.isfinite(s.push_force)
        pen = curved_tube_phi(s.positions[s.free]) + rod.contact_radius()[s.free]
        assert pen.max(initial=-1.0) <= 0.5e-3
        assert 0.0 <= s.wire.depth <= rod.max_depth and 0.0 <= s.catheter.depth <= rod.max_depth
        assert s.depth == max(s.wire.depth, s.catheter.depth)


def test_same_inputs_give_bit_identical_states(curved_tube):
    values, vfw = curved_tube
    runs = []
    for _ in range(2):
        rod = CoaxialSolver(CATALOGUE["cobra_5fr"], J_WIRE, values, vfw, ACCESS, X, dt=DT,
                            catheter_depth=0.02, wire_depth=0.03)
        for k in range(20):
            rod.run(5, 1e-4 * (k % 3), 0.01 * (k % 5 - 2), 1e-4 * (k % 2), 0.02 * (k % 3 - 1))
        rod.run(300, 1e-4, 0.002, 0.5e-4, -0.003)
        runs.append(rod.state())
    a, b = runs
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.velocities, b.velocities)
    assert np.array_equal(a.contact_force, b.contact_force)
    assert a.push_force == b.push_force and a.wire.depth == b.wire.depth
    assert a.catheter.push_force == b.catheter.push_force


def test_bad_inputs_raise_physics_error(curved_tube):
    values, vfw = curved_tube
    thick = dataclasses.replace(J_WIRE, name="thick", outer_diameter=1.2e-3)
    with pytest.raises(PhysicsError, match="does not fit"):
        CoaxialSolver(ANGLED, thick, values, vfw, ACCESS, X)
    with pytest.raises(PhysicsError, match="catheter"):
        CoaxialSolver(J_WIRE, ANGLED, values, vfw, ACCESS, X)
    rod = CoaxialSolver(ANGLED, J_WIRE, values, vfw, ACCESS, X)
    with pytest.raises(PhysicsError, match="finite"):
        rod.run(1, wire_advance=float("nan"))
    with pytest.raises(PhysicsError, match="wire_depth"):
        CoaxialSolver(ANGLED, J_WIRE, values, vfw, ACCESS, X, wire_depth=5.0)
    with pytest.raises(PhysicsError, match="n_nodes"):
        CoaxialSolver(ANGLED, CATALOGUE["guidewire_035"], None, None, [0, 0, 0], X, n_nodes=20)


# -- 8. speed ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_200_node_coaxial_rod_runs_faster_than_real_time(curved_tube):
    values, vfw = curved_tube
    rod = CoaxialSolver(ANGLED, J_WIRE, values, vfw, ACCESS, X, dt=DT, catheter_depth=0.02,
                        wire_depth=0.05, n_nodes=200)
    rod.run(1500, 0.1e-3, 0.0, 0.1e-3, 0.0)  # round the bend (and compiled)
    t0 = time.perf_counter()
    rod.run(1000, 0.05e-3, 0.002, 0.05e-3, 0.0)
    rate = 1000 / (time.perf_counter() - t0)
    print(f"coaxial 200 nodes ({rod.inside.sum()} inside, {rod.in_contact.sum()} in contact): "
          f"{rate:.0f} steps/s")
    assert rod.in_contact.sum() >= 3
    assert rate > 1000


# -- 9. wire-led navigation on the default phantom ---------------------------------------------
@pytest.mark.slow
def test_wire_led_navigation_into_the_left_common_carotid(default_case):
    """Scripted as a trainee watching fluoroscopy would: catheter and wire (2 cm behind the
    catheter tip) up the descending aorta with the angled tip turned anterior, stop at the
    left common carotid's ostium, turn both hubs until the tip points along the branch, lead
    with the J wire 6 cm into the branch, then track the catheter 3 cm over it."""
    case = default_case
    cl = case.centerlines
    rod = CoaxialSolver(ANGLED, J_WIRE, case.distance.values, case.distance.voxel_from_world,
                        case.access, case.access_direction, dt=DT, catheter_depth=0.02,
                        wire_depth=0.0)
    worst = {"force": 0.0, "pen": -1.0}

    def go(seconds, ca=0.0, cr=0.0, wa=0.0, wr=0.0, until=None) -> bool:
        for _ in range(int(round(seconds / 0.01))):  # 10 ms chunks, as the session runs
            rod.run(10, ca * DT, cr * DT, wa * DT, wr * DT)
            worst["force"] = max(worst["force"], rod.take_mean_contact_force().max())
            free = rod.free
            worst["pen"] = max(worst["pen"], (rod.wall_distance()[free] + rod.contact_radius()[free]).max())
            if until is not None and until():
                return True
        return False

    def located(which: str):
        return cl.locate(getattr(rod.state(), which).tip_position)

    aorta = cl.branches["aorta"]
    ostium = cl.junction("left_common_carotid")
    go(math.pi / 2, cr=2.0, wr=2.0)  # angled tip anterior, away from the arch's branches
    go(5.0, ca=0.05, wa=0.05)  # 25 cm up the descending aorta at 5 cm/s
    assert go(5.0, ca=0.02, wa=0.02,
              until=lambda: aorta.project(rod.state().catheter.tip_position)[0] > ostium + 0.0025)
    branch = cl.branches["left_common_carotid"]
    axis = branch.point_at(0.03) - branch.point_at(0.005)
    axis /= np.linalg.norm(axis)
    scores = []
    for _ in range(24):  # one turn of both hubs in 15 degree steps, watching the tip
        go(0.125, cr=2.0, wr=2.0)
        scores.append(float(np.dot(rod.state().catheter.tip_direction, axis)))
    go(0.125 * (int(np.argmax(scores)) + 1), cr=2.0, wr=2.0)
    assert np.dot(rod.state().catheter.tip_direction, axis) > 0.9  # aimed along the branch
    assert go(5.0, wa=0.02, until=lambda: located("wire")[0] == "left_common_carotid"
              and located("wire")[1] > 0.03)  # the wire leads into the branch
    go(1.5, wa=0.02)
    wire_tip = rod.state().wire.tip_position
    go(2.0, ca=0.015)  # the catheter tracks 3 cm over the wire
    s = rod.state()
    label, depth_in_branch, _ = located("catheter")
    assert label == "left_common_carotid" and depth_in_branch > 0.035
    label, wire_in_branch, _ = located("wire")
    assert label == "left_common_carotid" and wire_in_branch > depth_in_branch
    assert s.leading == "wire" and np.linalg.norm(s.wire.tip_position - wire_tip) < 0.005
    assert worst["pen"] < 0.5e-3  # no wall escape anywhere on the way
    assert worst["force"] < 5.0  # 10 ms mean wall force per node, newtons
