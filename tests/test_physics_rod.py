"""The catheter/guidewire rod solver against beam theory, geometry and its own invariants."""

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
from surgsim.physics import RodSolver, sample_sdf, tube_sdf

DT = 1e-3  # the benchmark's step
ITERS = 3  # the benchmark's iterations
R_BEND = 0.05  # curved tube: centreline radius of curvature, m
LUMEN = 0.006  # curved tube: lumen radius, m
ACCESS = np.array([-0.04, 0.0, 0.0])
X = np.array([1.0, 0.0, 0.0])


# -- exact geometry (independent of the solver's grid) ---------------------------------
def curved_tube_phi(p: np.ndarray) -> np.ndarray:
    """Exact signed distance to the curved tube: inlet along +x (x <= 0, y = z = 0), a
    quarter torus turning toward +y (centre (0, R, 0)), outlet along +y (x = R)."""
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


def curved_tube_arclength(p: np.ndarray) -> np.ndarray:
    """Arc length along the curved tube's centreline of the closest centreline point."""
    p = np.atleast_2d(p)
    x, y = p[:, 0], p[:, 1]
    s = np.where(x <= 0, x, 0.0)
    ang = np.clip(np.arctan2(x, R_BEND - y), 0, np.pi / 2)
    s = np.where((x > 0) & (y < R_BEND), R_BEND * ang, s)
    return np.where(y >= R_BEND, R_BEND * np.pi / 2 + (y - R_BEND), s)


@pytest.fixture(scope="module")
def curved_tube():
    th = np.linspace(0.0, np.pi / 2, 91)
    arc = np.stack([R_BEND * np.sin(th), R_BEND - R_BEND * np.cos(th), 0 * th], 1)
    centerline = np.vstack([[[-0.06, 0, 0]], arc, [[R_BEND, R_BEND + 0.10, 0]]])
    values, vfw, _ = tube_sdf(centerline, LUMEN, spacing=0.5e-3, margin=2e-3)
    return values, vfw


@pytest.fixture(scope="module")
def straight_tube():
    values, vfw, _ = tube_sdf(np.array([[-0.06, 0, 0], [0.2, 0, 0]]), LUMEN, spacing=0.5e-3,
                              margin=2e-3)
    return values, vfw


@pytest.fixture(scope="module")
def dead_end():
    """A straight tube along +x closed (hemispherical end) at x = 0.05."""
    values, vfw, _ = tube_sdf(np.array([[-0.06, 0, 0], [0.05, 0, 0]]), LUMEN, spacing=0.5e-3,
                              margin=2e-3, closed_end=True)
    return values, vfw


def segment_points(x: np.ndarray, k: int = 5) -> np.ndarray:
    """Points along every segment of the rod (k per segment, ends included)."""
    t = np.linspace(0.0, 1.0, k)[None, :, None]
    return (x[:-1, None, :] * (1 - t) + x[1:, None, :] * t).reshape(-1, 3)


# -- 1. beam theory ----------------------------------------------------------------------
def clamp_length(rod: RodSolver) -> float:
    """Cantilever length: the discrete clamp acts half a segment behind the first held node
    (documented in surgsim.physics.rod), which is within half a segment of ``depth``."""
    length = (rod.free.sum() + 0.5) * rod.spec.segment_length
    assert abs(length - rod.depth) <= 0.5 * rod.spec.segment_length + 1e-12
    return length


def test_cantilever_tip_load_matches_beam_theory():
    spec = CATALOGUE["straight_5fr"]
    length, force = 0.3, 5e-5  # small deflection (about 1 % of the length)
    fext = np.zeros((spec.n_nodes, 3))
    fext[0, 2] = -force
    rod = RodSolver(spec, None, None, [0, 0, 0], X, dt=DT, iterations=ITERS,
                    initial_depth=length, external_force=fext)
    rod.run(3000)
    deflection = -rod.positions[0, 2]
    theory = force * clamp_length(rod) ** 3 / (3 * spec.EI)
    assert deflection == pytest.approx(theory, rel=0.05)
    assert np.abs(rod.velocities).max() < 1e-5  # converged to rest


def test_cantilever_gravity_droop_matches_beam_theory():
    spec = CATALOGUE["straight_5fr"]
    length, g = 0.1, 9.81
    rod = RodSolver(spec, None, None, [0, 0, 0], X, dt=DT, iterations=ITERS,
                    initial_depth=length, gravity=[0, 0, -g])
    rod.run(3000)
    droop = -rod.positions[0, 2]
    w = spec.linear_density * g
    theory = w * clamp_length(rod) ** 4 / (8 * spec.EI)
    assert droop == pytest.approx(theory, rel=0.05)


# -- 2. torque transmission ---------------------------------------------------------------
def _lateral_angle(rod: RodSolver) -> float:
    """Angle (about +x) of the tip's offset from the shaft axis, in the y-z plane."""
    tip = rod.positions[0]
    return math.atan2(tip[2], tip[1])


def test_hub_rotation_turns_a_straight_rods_tip_frame_one_to_one(straight_tube):
    values, vfw = straight_tube
    rod = RodSolver(CATALOGUE["straight_5fr"], values, vfw, ACCESS, X, dt=DT, iterations=ITERS,
                    initial_depth=0.1)
    rod.run(1000, 0.0, 2 * math.pi / 1000)
    rod.run(100)
    assert rod.hub_angle == pytest.approx(2 * math.pi)
    assert math.degrees(abs(rod.tip_angle() - 2 * math.pi)) < 3.0
    _, m1 = rod.material_frame()
    assert np.dot(m1[0], m1[-1]) > 0.999  # tip frame back where it started


def test_hub_rotation_whirls_an_angled_tip_once_per_turn(straight_tube):
    values, vfw = straight_tube
    spec = CATALOGUE["angled_5fr"]
    rod = RodSolver(spec, values, vfw, ACCESS, X, dt=DT, iterations=ITERS, initial_depth=0.1,
                    reference_normal=[0, 1, 0])
    rod.run(300)
    start = _lateral_angle(rod)
    assert math.cos(start) > 0.9  # the tip bends toward the reference normal (+y)
    turned, last = 0.0, start
    for k in range(100):  # one hub turn over one second
        rod.run(10, 0.0, 2 * math.pi / 1000)
        now = _lateral_angle(rod)
        turned += math.remainder(now - last, 2 * math.pi)
        last = now
        if k == 24:
            assert math.degrees(abs(turned - math.pi / 2)) < 15.0  # a quarter turn lags little
    rod.run(200)
    turned += math.remainder(_lateral_angle(rod) - last, 2 * math.pi)
    assert math.degrees(abs(turned - 2 * math.pi)) < 5.0
    # the tip slid around the wall: it touched it and stayed in the lumen
    assert (rod.wall_distance() + spec.outer_radius).max() < 0.1e-3


# -- 3. pre-shaped tips -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["angled_5fr", "cobra_5fr", "simmons_5fr", "pigtail_5fr",
                                  "guidewire_035"])
def test_free_preshaped_tip_relaxes_to_its_rest_angle(name):
    spec = CATALOGUE[name]
    expected = {"angled_5fr": 45.0, "cobra_5fr": 110.0, "simmons_5fr": 135.0,
                "pigtail_5fr": 360.0, "guidewire_035": 180.0}[name]
    rod = RodSolver(spec, None, None, [0, 0, 0], X, dt=DT, iterations=ITERS,
                    initial_depth=0.15, reference_normal=[0, 1, 0])
    rod.run(1500)
    d = rod.tip_direction()
    angle = math.degrees(math.atan2(d[1], d[0]))  # in-plane angle from the shaft (+x)
    assert abs(math.remainder(angle - expected, 360.0)) < 5.0
    assert abs(d[2]) < 1e-6  # planar shape stays in its plane


def test_preshaped_device_starts_in_its_rest_shape(curved_tube):
    """No snap at the start: the inserted part begins in its rest shape when it fits."""
    values, vfw = curved_tube
    for spec, wall in ((CATALOGUE["guidewire_035"], True), (CATALOGUE["cobra_5fr"], False)):
        rod = RodSolver(spec, values if wall else None, vfw if wall else None, ACCESS, X,
                        dt=DT, iterations=ITERS, initial_depth=0.03)
        start = rod.positions.copy()
        forces = []
        for _ in range(5):
            rod.step()
            forces.append(abs(rod.push_force))
        assert max(forces) < 0.05
        assert np.abs(rod.positions - start).max() < 1e-4


# -- 4. wall contact ----------------------------------------------------------------------
@pytest.mark.parametrize("speed", [0.02, 0.1, 1.0])
@pytest.mark.parametrize("name", ["angled_5fr", "guidewire_035"])
def test_push_through_curved_tube_stays_in_lumen(curved_tube, speed, name):
    values, vfw = curved_tube
    spec = CATALOGUE[name]
    rod = RodSolver(spec, values, vfw, ACCESS, X, dt=DT, iterations=ITERS, initial_depth=0.02)
    advance = speed * DT
    total = 0.16
    chunk = max(1, int(round(0.0005 / advance)))  # check every 0.5 mm of insertion
    steps = int(round(total / advance))
    worst_node = worst_segment = -np.inf
    touched = False
    for _ in range(0, steps, chunk):
        rod.run(chunk, advance, 0.0)
        s = rod.state()
        pts = s.positions[s.free]
        worst_node = max(worst_node, (curved_tube_phi(pts) + spec.outer_radius).max())
        seg = segment_points(s.positions[: s.free.sum() + 1])
        worst_segment = max(worst_segment, curved_tube_phi(seg).max())
        assert np.all(np.isfinite(s.contact_force)) and s.contact_force.min() >= 0.0
        assert np.all(s.contact_force[s.in_contact] > 0)
        assert s.contact_force.max() < 5.0
        touched |= bool(s.in_contact.any())
        # nodes keep their order along the vessel (no node jumps across a wall)
        arc = curved_tube_arclength(s.positions[s.inside])
        assert np.all(np.diff(arc) < 1.5 * spec.segment_length)
    assert worst_node <= 0.5e-3, f"penetration {worst_node * 1e3:.2f} mm"
    assert worst_segment <= 0.0, "a segment crosses the wall"
    assert touched
    s = rod.state()
    assert s.depth == pytest.approx(0.02 + total, abs=1e-6)  # never blocked
    # the distal end followed the curve into the outlet (a J tip points back, so look at
    # the most advanced of the distal nodes)
    distal = s.positions[:10]
    assert curved_tube_arclength(distal).max() > R_BEND * np.pi / 2 + 0.02
    assert np.all(np.abs(distal[:, 0] - R_BEND) < LUMEN)


def test_rod_resting_on_a_wall_reports_the_load(straight_tube):
    """A rod lying on the lumen floor: the wall carries its weight node by node, and a
    load F pressing the tip into the wall comes back as F.

    The wall is compliant (a beam on an elastic foundation): within its characteristic
    length (about 4 mm here) of the free end the load shifts a few per cent between the
    half-mass tip and its neighbours, conserving their sum."""
    values, vfw = straight_tube
    spec = CATALOGUE["straight_5fr"]
    g = 9.81
    floor = -(LUMEN - spec.outer_radius) + 1e-6  # the sheath holds the rod 1 um above the floor
    rod = RodSolver(spec, values, vfw, [-0.04, floor, 0.0], X, dt=DT, iterations=ITERS,
                    initial_depth=0.12, gravity=[0, -g, 0])
    rod.run(500)
    node_weight = spec.linear_density * g * spec.segment_length
    far = rod.free.sum() - 10  # away from the clamp, which carries the nodes next to it
    assert rod.contact_force[0] == pytest.approx(node_weight / 2, rel=0.05)  # half-mass tip
    assert rod.contact_force[:3].sum() == pytest.approx(2.5 * node_weight, rel=0.005)
    np.testing.assert_allclose(rod.contact_force[1:3], node_weight, rtol=0.05)
    np.testing.assert_allclose(rod.contact_force[3:far], node_weight, rtol=0.02)
    assert (rod.wall_distance() + spec.outer_radius).max() < 1e-6

    rod = RodSolver(spec, values, vfw, [-0.04, floor, 0.0], X, dt=DT, iterations=ITERS,
                    initial_depth=0.12)
    force = 0.05
    fext = np.zeros((spec.n_nodes, 3))
    fext[0, 1] = -force
    rod.set_external_force(fext)
    rod.run(500)
    assert rod.contact_force.sum() == pytest.approx(force, rel=0.02)
    assert rod.contact_force[0] == pytest.approx(force, rel=0.05)
    assert (rod.wall_distance() + spec.outer_radius).max() < 1e-6


def _coarse(centerline, closed_end=False):
    """A tube's distance field on 1.5 mm voxels, about as coarse as the default case's."""
    values, vfw, _ = tube_sdf(np.asarray(centerline, float), LUMEN, spacing=1.5e-3, margin=3e-3,
                              closed_end=closed_end)
    return values, vfw


def _push_forces(spec, values, vfw, speed, depth):
    """The hand pushes ``spec`` at ``speed`` (m/s) to ``depth`` (unless refused at the push
    limit): the one-step peak and the 10 ms-mean peaks of the wall force (N)."""
    rod = RodSolver(spec, values, vfw, ACCESS, X, dt=DT, initial_depth=0.02, damping=0.1)
    one, mean = [], []
    for _ in range(int(round((depth - 0.02) / (speed * DT))) // 10):
        for _ in range(10):
            rod.run(1, speed * DT)
            one.append(rod.contact_force.max())
        mean.append(rod.take_mean_contact_force().max())
    return rod, max(one), np.array(mean)


def test_wall_force_does_not_depend_on_node_count():
    """The same push at 50, 100 and 200 nodes reports the same wall forces (within 20 %).

    Regression: the wall stiffness grew as EI / l^3, and on a coarse distance field (whose
    trilinear ripple a 200-node rod follows node by node) a 200-node catheter sliding round
    a bend reported one-step forces of 12 N and a 10 ms-mean p90 8x the 50-node one's."""
    th = np.linspace(0.0, np.pi / 2, 91)
    arc = np.stack([R_BEND * np.sin(th), R_BEND - R_BEND * np.cos(th), 0 * th], 1)
    bend = _coarse(np.vstack([[[-0.06, 0, 0]], arc, [[R_BEND, R_BEND + 0.10, 0]]]))
    dead = _coarse([[-0.06, 0, 0], [0.05, 0, 0]], closed_end=True)
    sliding, pressed = {}, {}
    for n in (50, 100, 200):
        spec = dataclasses.replace(CATALOGUE["straight_5fr"], n_nodes=n)
        _, peak, mean = _push_forces(spec, *bend, 0.05, 0.2)  # round the bend along its outer wall
        touching = mean[mean > 0]
        assert touching.size > 50  # it slid along the wall for a good part of the push
        assert peak < 0.5  # no one-step spikes
        sliding[n] = (np.percentile(mean, 90), touching.mean())
        rod, peak, mean = _push_forces(spec, *dead, 0.08, 0.16)  # into a dead end, at the push limit
        assert peak < 1.2 * spec.max_push_force
        pressed[n] = mean[-30:].mean()
        assert rod.contact_force[0] == pytest.approx(spec.max_push_force, rel=0.05)
    for values in (sliding[50], sliding[100], sliding[200]):
        np.testing.assert_allclose(values, sliding[100], rtol=0.2)
        assert 0.01 < values[0] < 1.0  # tenths of a newton: a catheter sliding round a bend
    for n in (50, 200):
        assert pressed[n] == pytest.approx(pressed[100], rel=0.2)
    assert 1.5 < pressed[100] < 2.5  # pressed into a dead end with the hand's 2 N


# -- 4a. finite torsion -----------------------------------------------------------------------
def _pressed_rod(straight_tube, mu=0.5, force=1.0, depth=0.3, torsion=True):
    """A straight catheter lying on the floor of a straight tube, its distal 3 nodes pressed
    on the wall with ``force`` newtons."""
    values, vfw = straight_tube
    spec = dataclasses.replace(CATALOGUE["straight_5fr"], friction=mu)
    floor = -(LUMEN - spec.outer_radius) + 1e-6
    fext = np.zeros((spec.n_nodes, 3))
    fext[:3, 1] = -force / 3
    rod = RodSolver(spec, values, vfw, [-0.04, floor, 0.0], X, dt=DT, initial_depth=depth,
                    external_force=fext, damping=0.1, torsion=torsion)
    rod.run(300)
    return rod


def test_torsional_stiffness_comes_from_the_material():
    spec = CATALOGUE["straight_5fr"]
    g = spec.youngs_modulus / (2 * (1 + spec.poisson_ratio))
    j = math.pi * (spec.outer_diameter**4 - spec.inner_diameter**4) / 32
    assert spec.GJ == pytest.approx(g * j)
    assert spec.GJ == pytest.approx(spec.EI / (1 + spec.poisson_ratio))


def test_free_hub_rotation_reaches_the_tip_after_settling(straight_tube):
    values, vfw = straight_tube
    rod = RodSolver(CATALOGUE["straight_5fr"], values, vfw, ACCESS, X, dt=DT, initial_depth=0.2)
    lags = []
    for _ in range(20):
        rod.run(50, 0.0, 2 * math.pi / 1000)  # one turn a second
        lags.append(rod.tip_lag())
    rod.run(200)
    assert math.degrees(max(np.abs(lags))) < 3.0  # nothing holds the tip back
    assert math.degrees(abs(rod.tip_angle() - 2 * math.pi)) < 3.0
    assert abs(rod.hub_torque) < 1e-6


def test_tip_held_by_friction_lags_then_is_bounded_by_the_friction_torque(straight_tube):
    """Turning the hub of a catheter whose tip is pressed on the wall winds the shaft up: the
    tip's lag grows with the hub angle until the stored torque G J lag / L reaches what
    friction holds (mu F r), then the tip turns with the hub at that lag. The stored twist
    stays when the hand stops, and pushing (sliding shares the friction cone) releases it."""
    mu, force = 0.5, 1.0
    rod = _pressed_rod(straight_tube, mu, force)
    spec = rod.spec
    length = (rod.free.sum() + 0.5) * spec.segment_length
    held = rod.contact_force.sum()
    assert held == pytest.approx(force, rel=0.1)
    torque_max = mu * held * spec.outer_radius
    lag_max = torque_max * length / spec.GJ
    hub, lag, torque = [], [], []
    for _ in range(40):  # one turn in 4 s
        rod.run(100, 0.0, 2 * math.pi / 4000)
        hub.append(rod.hub_angle)
        lag.append(rod.tip_lag())
        torque.append(rod.hub_torque)
    hub, lag, torque = map(np.array, (hub, lag, torque))
    early = hub < 0.5 * lag_max
    assert np.all(lag[early] > 0.8 * hub[early])  # at first the tip barely turns
    wound = int(np.argmax(lag > 0.95 * lag.max()))
    assert wound > 3 and np.all(np.diff(lag[: wound + 1]) > 0)  # the lag grows with the hub angle...
    assert lag.max() < 1.05 * lag_max  # ...up to the torque friction holds, and no further
    assert torque.max() < 1.05 * torque_max
    assert lag[-1] > 0.8 * lag_max  # the tip slips at the bound
    rod.run(500)  # the hand lets go of the hub: friction keeps the twist in
    assert rod.tip_lag() > 0.7 * lag_max
    rod.run(200, 0.05e-3)  # pushing 1 cm slides the tip: the twist unwinds, the tip catches up
    assert abs(rod.tip_lag()) < 0.25 * lag_max
    for arr in (lag, torque):
        assert np.all(np.isfinite(arr))


def test_a_rigid_device_turns_its_held_tip_with_the_hub(straight_tube):
    rod = _pressed_rod(straight_tube, torsion=False)
    rod.run(1000, 0.0, 2 * math.pi / 4000)
    assert rod.tip_lag() == 0.0 and rod.hub_torque == 0.0
    assert math.degrees(abs(rod.tip_angle() - math.pi / 2)) < 3.0


def test_preshaped_tip_in_a_bend_lags_and_whips(curved_tube):
    """An angled tip lying in a bend resists turning out of it (the rest curvature turns with
    the twist): the tip falls behind the hub, then snaps ahead of a rigid device's."""
    values, vfw = curved_tube
    rod = RodSolver(CATALOGUE["angled_5fr"], values, vfw, ACCESS, X, dt=DT, initial_depth=0.02,
                    damping=0.1)
    rod.run(2400, 0.05e-3)  # 12 cm: the tip lies in the outlet, the shaft in the bend
    lag = []
    for _ in range(60):  # one turn in 3 s
        rod.run(50, 0.0, 2 * math.pi / 3000)
        lag.append(rod.tip_lag())
    lag = np.degrees(lag)
    k = int(np.argmax(lag))
    assert lag[k] > 20.0  # wound up
    assert lag[k:].min() < lag[k] - 30.0  # released: the tip caught up within the turn
    rod.run(1000)
    assert abs(math.degrees(rod.tip_lag())) < 10.0  # and settles near the rigid device's frame


@pytest.mark.parametrize("speed", [0.1, 1.0])
def test_dead_end_stops_insertion_at_the_push_limit(dead_end, speed):
    values, vfw = dead_end
    spec = CATALOGUE["straight_5fr"]
    rod = RodSolver(spec, values, vfw, ACCESS, X, dt=DT, iterations=ITERS, initial_depth=0.02)
    advance = speed * DT
    forces, depths = [], []
    for _ in range(int(0.15 / advance) // 10):
        rod.run(10, advance, 0.0)
        forces.append(rod.push_force)
        depths.append(rod.depth)
        assert (rod.wall_distance() + spec.outer_radius).max() < 0.5e-3
    # the tip reached the cap (x = 0.05 - lumen + radius) and stopped there
    cap = 0.05 + LUMEN - spec.outer_radius
    assert rod.positions[0, 0] == pytest.approx(cap, abs=1e-3)
    assert depths[-1] < 0.02 + 0.15 - 0.03  # a good part of the push was refused
    assert depths[-1] - depths[len(depths) // 2] < 2e-3  # stalled
    assert max(forces) > 0.95 * spec.max_push_force  # the hand pushed up to the limit...
    assert max(forces) < 1.1 * spec.max_push_force  # ...and no further
    # pulling back relieves the load and depth decreases
    rod.run(100, -advance, 0.0)
    assert rod.push_force < spec.max_push_force
    assert rod.depth < depths[-1]


HAIRPIN_R = 0.005  # centreline radius of the U-turn, m
HAIRPIN_LUMEN = 0.004  # lumen radius: the wall between the two limbs is 2 mm thick


def _hairpin_distance(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the hairpin centreline and the piece closest (0 inlet, 1 U-turn, 2 return)."""
    p = np.atleast_2d(p)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    xi = np.minimum(x, 0.0)  # inlet: y = 0, x <= 0
    d_in = np.sqrt((x - xi) ** 2 + y**2 + z**2)
    ang = np.clip(np.arctan2(x, HAIRPIN_R - y), 0.0, np.pi)  # U-turn about (0, R)
    ang = np.where(x < 0, np.where(y < HAIRPIN_R, 0.0, np.pi), ang)
    cx, cy = HAIRPIN_R * np.sin(ang), HAIRPIN_R - HAIRPIN_R * np.cos(ang)
    d_u = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + z**2)
    d_ret = np.sqrt((x - xi) ** 2 + (y - 2 * HAIRPIN_R) ** 2 + z**2)  # return: y = 2R
    d = np.array([d_in, d_u, d_ret])
    return d.min(axis=0), np.argmin(d, axis=0)


@pytest.mark.parametrize("speed", [0.1, 1.0])
@pytest.mark.parametrize("name", ["straight_5fr", "guidewire_035"])
def test_no_tunnelling_through_a_thin_wall(speed, name):
    """Pushed hard into a U-turn whose two limbs share a 2 mm wall, no node crosses it."""
    th = np.linspace(0.0, np.pi, 61)
    centerline = np.vstack([
        [[-0.08, 0.0, 0.0]],
        np.stack([HAIRPIN_R * np.sin(th), HAIRPIN_R - HAIRPIN_R * np.cos(th), 0 * th], 1),
        [[-0.08, 2 * HAIRPIN_R, 0.0]],
    ])
    values, vfw, _ = tube_sdf(centerline, HAIRPIN_LUMEN, spacing=0.5e-3, margin=2e-3)
    spec = CATALOGUE[name]
    rod = RodSolver(spec, values, vfw, [-0.05, 0, 0], X, dt=DT, iterations=ITERS,
                    initial_depth=0.02)
    advance = speed * DT
    for _ in range(int(0.12 / advance) // 10):
        rod.run(10, advance, 0.0)
        x = rod.positions[rod.inside]
        dist, piece = _hairpin_distance(x)
        assert (dist - HAIRPIN_LUMEN + spec.outer_radius).max() < 0.5e-3
        # consecutive nodes never sit one in each limb, well before the U-turn...
        limb = np.where(x[:, 0] < -0.002, piece, 1)
        assert not np.any((limb[:-1] == 0) & (limb[1:] == 2) | (limb[:-1] == 2) & (limb[1:] == 0))
        # ...and no segment passes through the wall
        seg_dist, _ = _hairpin_distance(segment_points(x))
        assert (seg_dist - HAIRPIN_LUMEN).max() < 0.3e-3, "a segment crosses the wall"
        assert rod.push_force < 1.1 * spec.max_push_force


def test_access_point_outside_the_lumen_is_refused(straight_tube, curved_tube):
    values, vfw = straight_tube
    with pytest.raises(PhysicsError, match="access_point"):
        RodSolver(CATALOGUE["angled_5fr"], values, vfw, [-0.04, 0.02, 0.0], X)
    values, vfw = curved_tube  # straight along x, 0.1 m would cross the bend's wall
    with pytest.raises(PhysicsError, match="initial_depth"):
        RodSolver(CATALOGUE["angled_5fr"], values, vfw, ACCESS, X, initial_depth=0.1)


def test_bad_inputs_raise_physics_error(straight_tube):
    values, vfw = straight_tube
    rod = RodSolver(CATALOGUE["angled_5fr"], values, vfw, ACCESS, X)
    with pytest.raises(PhysicsError, match="finite"):
        rod.step(float("nan"), 0.0)
    with pytest.raises(PhysicsError, match="initial_depth"):
        RodSolver(CATALOGUE["angled_5fr"], values, vfw, ACCESS, X, initial_depth=2.0)
    bad = values.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(PhysicsError, match="NaN"):
        RodSolver(CATALOGUE["angled_5fr"], bad, vfw, ACCESS, X)


# -- 4b. no numerical chatter -----------------------------------------------------------
def _union_sdf(tubes, spacing=0.5e-3):
    """One distance field for several tubes ``(centerline, lumen, closed_start, closed_end)``:
    each is built with :func:`tube_sdf`, then all are sampled on one common grid (min)."""
    fields = [tube_sdf(np.asarray(c, float), lum, spacing=spacing, margin=2e-3, closed_start=cs,
                       closed_end=ce)[:2] for c, lum, cs, ce in tubes]
    pts = np.vstack([np.asarray(c, float) for c, *_ in tubes])
    pad = max(lum for _, lum, *_ in tubes) + 3e-3
    lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
    shape = np.ceil((hi - lo) / spacing).astype(int) + 1
    wfv = np.eye(4)
    wfv[:3, :3] *= spacing
    wfv[:3, 3] = lo
    k, j, i = np.meshgrid(*(np.arange(m) for m in shape[::-1]), indexing="ij")
    world = np.stack([i, j, k], -1).reshape(-1, 3) * spacing + lo
    phi = np.min([sample_sdf(v, vfw, world)[0] for v, vfw in fields], axis=0)
    return phi.reshape(tuple(shape[::-1])).astype(np.float32), np.linalg.inv(wfv)


@pytest.fixture(scope="module")
def dead_end_with_side_branch():
    """A 4 mm tube along +x closed at x = 0.06, with a 2.5 mm side branch (closed) leaving
    at x = 0.02 at 45 degrees toward +y: an ostium lip the tip catches on."""
    a = math.radians(45.0)
    branch = [[0.02, 0.0, 0.0], [0.02 + 0.04 * math.cos(a), 0.04 * math.sin(a), 0.0]]
    return _union_sdf([([[-0.06, 0, 0], [0.06, 0, 0]], 0.004, False, True),
                       (branch, 0.0025, True, True)])


def _drive(rod: RodSolver, plan) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Run ``plan`` [(advance m/s, rotate rad/s, seconds)] in 10 ms chunks as the session does.

    Returns the tip positions every 10 ms (m), the 10 ms-mean peak wall force (N), the
    hand's insertion path (m, what the sheath actually took) and the largest push force (N).
    """
    tips, forces, hand, push = [rod.positions[0].copy()], [], 0.0, 0.0
    for adv, rot, dur in plan:
        for _ in range(int(round(dur / 0.01))):
            before = rod.depth
            rod.run(10, adv * 1e-3, rot * 1e-3)
            hand += abs(rod.depth - before)
            push = max(push, abs(rod.push_force))
            tips.append(rod.positions[0].copy())
            forces.append(rod.take_mean_contact_force().max())
    return np.array(tips), np.array(forces), hand, push


def test_jammed_caught_and_twisted_tip_does_not_chatter(dead_end_with_side_branch):
    """Regression: a hand that keeps pushing a jammed angled catheter, pulls it back with the
    tip caught at an ostium lip and twists it with the tip engaged made the distal part
    chatter (tip path 1.3 times the hand's, 10 ms wall forces of 20 N against a 2 N push
    limit): a pressed contact that slid off the curved wall by more than the activation
    margin within one iteration was dropped for a whole solve and thrown into the wall."""
    values, vfw = dead_end_with_side_branch
    spec = CATALOGUE["angled_5fr"]
    rod = RodSolver(spec, values, vfw, [-0.04, 0, 0], X, dt=DT, initial_depth=0.02, damping=0.1,
                    reference_normal=[0, 1, 0])
    plan = [(0.08, 0, 2.5), (-0.05, 0, 1.0), (0, 3.0, 1.0), (0.05, 0, 1.0), (-0.05, 0, 0.6),
            (0, -3.0, 1.0), (0.08, 0, 1.0)]
    tips, forces, hand, push = _drive(rod, plan)
    assert push > 0.95 * spec.max_push_force  # it did jam at the push limit
    step = np.linalg.norm(np.diff(tips, axis=0), axis=1)
    # the tip goes where the hand sends it, plus the sweep of the 45 degree tip when twisted
    assert step.sum() < 1.1 * hand + 0.02, f"tip path {step.sum():.3f} m for {hand:.3f} m of hand"
    window = np.convolve(step, np.ones(50), "valid") / 0.5  # mean tip speed over 0.5 s
    assert window.max() < 0.16  # twice the fastest hand speed
    assert forces.max() < 2.5 * spec.max_push_force
    assert (rod.wall_distance() + spec.outer_radius).max() < 0.5e-3


@pytest.mark.parametrize("name", ["straight_5fr", "angled_5fr"])
def test_force_at_a_jammed_push_stays_near_the_push_limit(dead_end, name):
    """Pushing on into a dead end at the push limit: the 10 ms-mean wall force (what the
    session records) stays within a small multiple of the limit, and the tip stays put."""
    values, vfw = dead_end
    spec = CATALOGUE[name]
    rod = RodSolver(spec, values, vfw, ACCESS, X, dt=DT, initial_depth=0.02, damping=0.1,
                    reference_normal=[0, 1, 0])
    tips, forces, _, push = _drive(rod, [(0.08, 0.0, 1.5)])  # the tip reaches the cap at ~1 s
    tips, forces, _, push = _drive(rod, [(0.08, 0.0, 1.5)])  # then the hand keeps pushing
    assert push > 0.95 * spec.max_push_force and push < 1.1 * spec.max_push_force
    assert forces.max() < 2.0 * spec.max_push_force
    assert np.linalg.norm(np.diff(tips, axis=0), axis=1).sum() < 0.01  # jammed, not jittering


# -- 5. property test ---------------------------------------------------------------------
_inputs = st.lists(
    st.tuples(st.integers(1, 150), st.floats(-1e-3, 1e-3), st.floats(-0.05, 0.05)),
    min_size=1, max_size=6,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=_inputs, name=st.sampled_from(["cobra_5fr", "guidewire_035", "simmons_5fr"]))
def test_random_inputs_never_break_the_rod(curved_tube, seq, name):
    values, vfw = curved_tube
    spec = CATALOGUE[name]
    rod = RodSolver(spec, values, vfw, ACCESS, X, dt=DT, iterations=ITERS, initial_depth=0.03)
    for n, adv, rot in seq:
        rod.run(n, adv, rot)
        s = rod.state()
        assert np.all(np.isfinite(s.positions)) and np.all(np.isfinite(s.velocities))
        assert np.all(np.isfinite(s.contact_force)) and math.isfinite(s.push_force)
        pen = curved_tube_phi(s.positions[s.free]) + spec.outer_radius
        assert pen.max(initial=-1.0) <= 0.5e-3
        assert 0.0 <= s.depth <= rod.max_depth


# -- 6. determinism -----------------------------------------------------------------------
def test_same_inputs_give_bit_identical_states(curved_tube):
    values, vfw = curved_tube
    runs = []
    for _ in range(2):
        rod = RodSolver(CATALOGUE["cobra_5fr"], values, vfw, ACCESS, X, initial_depth=0.02)
        for k in range(30):
            rod.step(1e-4 * (k % 3), 0.01 * (k % 5 - 2))
        rod.run(400, 1e-4, 0.003)
        runs.append(rod.state())
    a, b = runs
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.velocities, b.velocities)
    assert np.array_equal(a.contact_force, b.contact_force)
    assert a.tip_angle == b.tip_angle and a.push_force == b.push_force


# -- distance field helpers ---------------------------------------------------------------
def test_tube_sdf_and_sampling_match_exact_geometry(curved_tube):
    values, vfw = curved_tube
    rng = np.random.default_rng(1)
    pts = rng.uniform([-0.05, -0.01, -0.007], [0.06, 0.14, 0.007], size=(2000, 3))
    phi, grad = sample_sdf(values, vfw, pts)
    exact = curved_tube_phi(pts)
    near = np.abs(exact) < 0.004
    assert np.abs(phi - exact)[near].max() < 0.1e-3
    ijk = pts @ vfw[:3, :3].T + vfw[:3, 3]
    in_grid = np.all((ijk > 1) & (ijk < np.array(values.shape[::-1]) - 2), axis=1)
    unit = np.linalg.norm(grad[near & in_grid], axis=1)
    assert np.abs(unit - 1).max() < 0.05
    # beyond the grid: the open outlet continues straight, tissue keeps growing
    beyond = np.array([[R_BEND, 0.5, 0.0], [R_BEND, 0.14, 0.05]])
    phi, grad = sample_sdf(values, vfw, beyond)
    assert phi[0] == pytest.approx(-LUMEN, abs=1e-4)
    assert phi[1] > 0.04 and grad[1, 2] > 0.5


# -- benchmark ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("n_nodes", [100, 200])
def test_benchmark_steps_per_second(curved_tube, n_nodes):
    values, vfw = curved_tube
    spec = dataclasses.replace(CATALOGUE["angled_5fr"], n_nodes=n_nodes)
    rod = RodSolver(spec, values, vfw, ACCESS, X, dt=DT, iterations=ITERS, initial_depth=0.02)
    rod.run(1500, 0.1e-3)  # through the bend (and compiled)
    t0 = time.perf_counter()
    rod.run(1000, 0.05e-3, 0.002)  # pushing at 5 cm/s while turning the hub at 2 rad/s
    rate = 1000 / (time.perf_counter() - t0)
    print(f"{n_nodes} nodes ({rod.free.sum()} inside): {rate:.0f} steps/s, "
          f"{rod.in_contact.sum()} nodes in contact")
    assert rod.in_contact.sum() >= 3
    assert rate > (1000 if n_nodes == 100 else 500)
