"""Airway devices and the pybullet intubation world (blade, tube, teeth, tissue proxies)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from surgsim.cases.airway_phantom import design
from surgsim.instruments.airway import AIRWAY_DEVICES, BLADES, TUBES
from surgsim.physics.airway import AirwayWorld, start_poses


def test_catalogue_has_the_blades_and_tube_sizes():
    assert {"macintosh_3", "macintosh_4", "miller_2", "video_mac_3"} <= set(BLADES)
    ids = sorted(round(t.inner_diameter_m * 1e3, 1) for t in TUBES.values())
    assert ids == [6.0, 6.5, 7.0, 7.5, 8.0, 8.5]
    assert all(t.outer_diameter_m > t.inner_diameter_m for t in TUBES.values())
    assert BLADES["video_mac_3"].video and not BLADES["macintosh_3"].video
    # Miller is nearly straight, Macintosh curved: tip height off the chord line
    assert abs(BLADES["miller_2"].tip[2]) < 0.01 < abs(BLADES["macintosh_3"].tip[2])
    pts, depth = TUBES["ett_7_5"].centerline()
    assert depth[-1] == pytest.approx(0.32)
    assert np.allclose(np.linalg.norm(np.diff(pts, axis=0), axis=1), np.diff(depth), atol=1e-3)
    assert "bougie_15fr" in AIRWAY_DEVICES


@pytest.fixture(scope="module")
def world():
    d = design("adult", 0.3)
    blade, tube = BLADES["macintosh_3"], TUBES["ett_7_5"]
    w = AirwayWorld(d, blade, tube, 0.004, *start_poses(d, blade, tube))
    yield w
    w.close()


def _blade_tip(w):
    pos, rot = w.pose(w.blade)
    return pos + rot @ w.blade_spec.tip


def test_start_pose_is_free_and_aimed_into_the_mouth(world):
    world.step(10)
    _, f_wall = world.contact_force(world.blade, world.wall)
    assert f_wall == 0.0
    L = {k: v / 1000 for k, v in world.design.landmarks_mm.items()}
    tip = _blade_tip(world)
    assert 0.01 < np.linalg.norm(tip - L["mouth_centre"]) < 0.04


def test_hand_drags_the_blade_through_a_force_limited_constraint(world):
    """The blade follows the hand target with a lag (it is not teleported)."""
    start, _ = world.pose(world.blade)
    v = np.array([0.0, -0.05, 0.0])  # withdraw away from the patient, in free space
    lags = []
    for _ in range(50):
        world.move_hand(world.blade_hand, v, [0, 0, 0], world.dt)
        world.step()
        pos, rot = world.pose(world.blade)
        lags.append(np.linalg.norm(world.blade_hand.target_pos - (pos + rot @ world.blade_hand.grip_local)))
    end, _ = world.pose(world.blade)
    assert end[1] - start[1] == pytest.approx(-0.05 * 50 * world.dt, abs=2e-3)
    assert max(lags) > 1e-6  # driven dynamically, lags its target
    assert world.hand_force(world.blade_hand) <= world.blade_hand.max_force * 1.5


def test_blade_pressing_on_the_upper_incisors_gives_a_bounded_tooth_force():
    d = design("adult", 0.3)
    blade, tube = BLADES["macintosh_3"], TUBES["ett_7_5"]
    bp, tp = start_poses(d, blade, tube)
    # put the blade's palatal face (-z, away from the handle) 6 mm from the incisal edge, 3 cm
    # along the blade, then push the blade onto the tooth along that face's normal
    up = d.landmarks_mm["upper_incisor"] / 1000
    rot = bp[1]
    n_pal = rot @ np.array([0.0, 0.0, -1.0])
    pts, _ = blade.centerline(27)  # 5 mm apart
    heel = up - 0.006 * n_pal - rot @ (pts[6] - [0.0, 0.0, 0.5 * blade.thickness_m])
    w = AirwayWorld(d, blade, tube, 0.004, (heel, rot), tp, hand_force_n=40.0)
    try:
        peak = 0.0
        for _ in range(150):
            w.move_hand(w.blade_hand, 0.06 * n_pal, [0, 0, 0], w.dt)
            w.step()
            _, f = w.contact_force(w.blade, w.upper_teeth)
            peak = max(peak, f)
        assert 2.0 < peak < 200.0
    finally:
        w.close()


def test_tongue_proxy_is_displaced_and_springs_back():
    d = design("adult", 0.0)
    blade, tube = BLADES["macintosh_3"], TUBES["ett_7_5"]
    w = AirwayWorld(d, blade, tube, 0.004, *start_poses(d, blade, tube))
    try:
        w.step(250)  # settle under gravity (supine: the tongue sags posteriorly)
        rest = np.asarray(w.c.getBasePositionAndOrientation(w.tongue)[0])
        sag = rest - w.tongue_spring.rest_pos
        assert 0.0 < sag[1] < 0.003  # posterior, about m g / k
        w.c.resetBaseVelocity(w.tongue, [0.0, -1.5, 0.0], [0, 0, 0])
        moved = 0.0
        for _ in range(10):
            w.step()
            moved = max(moved, np.linalg.norm(np.asarray(w.c.getBasePositionAndOrientation(w.tongue)[0]) - rest))
        assert moved > 1e-3
        w.step(250)
        back = np.linalg.norm(np.asarray(w.c.getBasePositionAndOrientation(w.tongue)[0]) - rest)
        assert back < 0.3 * moved
        # the epiglottis tips anteriorly while the tongue base is pushed forward
        tip0 = w.epi_spring.rest_pos.copy()
        w.c.resetBasePositionAndOrientation(w.tongue, (rest + [0, -0.014, -0.004]).tolist(),
                                            w.tongue_spring.rest_quat.tolist())
        w._apply_springs()
        assert w.epi_spring.rest_pos[1] < tip0[1] - 0.003
    finally:
        w.close()


def test_glottis_view_is_blocked_by_the_tongue_and_clears_when_it_is_moved():
    d = design("adult", 0.3)
    blade, tube = BLADES["macintosh_3"], TUBES["ett_7_5"]
    w = AirwayWorld(d, blade, tube, 0.004, *start_poses(d, blade, tube))
    try:
        L = {k: v / 1000 for k, v in d.landmarks_mm.items()}
        g = L["glottis_centre"]
        eye = g + 0.30 * (L["mouth_centre"] - g) / np.linalg.norm(L["mouth_centre"] - g)
        pts = d.glottis_outline_mm / 1000
        targets = np.vstack([g, 0.5 * (pts + g)])
        blocked = w.ray_visible(eye, targets).mean()
        # move tongue and epiglottis out of the way (as a well-placed blade does)
        far = [0.0, -0.5, 0.5]
        w.c.resetBasePositionAndOrientation(w.tongue, far, [0, 0, 0, 1])
        w.c.resetBasePositionAndOrientation(w.epiglottis, far, [0, 0, 0, 1])
        clear = w.ray_visible(eye, targets).mean()
        assert blocked < 0.5
        assert clear > blocked
    finally:
        w.close()


def test_physics_rate_with_blade_in_contact():
    """Steps per second with the blade pushing on the tongue and the wall (target >= 120)."""
    d = design("adult", 0.3)
    blade, tube = BLADES["macintosh_3"], TUBES["ett_7_5"]
    w = AirwayWorld(d, blade, tube, 0.004, *start_poses(d, blade, tube))
    try:
        t0 = time.perf_counter()
        n = 400
        contact_steps = 0
        for _ in range(n):
            pos, rot = w.pose(w.blade)
            centre = pos + rot @ np.array([0, 0, -blade.curve_radius_m])
            wv = rot[:, 1] * 0.35
            v = np.cross(wv, w.blade_hand.target_pos - centre)
            w.move_hand(w.blade_hand, v, wv, w.dt)
            w.step()
            contact_steps += bool(w.c.getContactPoints(w.blade))
        rate = n / (time.perf_counter() - t0)
        print(f"airway physics: {rate:.0f} steps/s, {contact_steps} of {n} steps in contact")
        assert contact_steps > n // 4
        assert rate >= 120
    finally:
        w.close()


# ---------------------------------------------------------------------- forces of a lift and of levering
def _scenario():
    from surgsim.scenarios.model import Scenario

    return Scenario.model_validate({
        "id": "airway-test", "title": "t", "version": "1.0", "procedure": "intubation",
        "case": {"phantom": "airway-adult"}, "patient": {"physiology": "adult"},
        "instruments": [{"id": "blade", "device": "macintosh_3"}, {"id": "tube", "device": "ett_7_5"}],
        "time_limit_s": 60, "rubric": {"metrics": [{"metric": "time_s", "pass": 60, "excellent": 30}]}})


@pytest.fixture(scope="module")
def lift_and_lever():
    """Blade-only scripted laryngoscopies: a lift along the handle, and levering on the incisors."""
    from surgsim.session.intubation import IntubationSession, scripted_attempt
    from surgsim.session.session import play

    return {kind: play(IntubationSession(_scenario()), scripted_attempt("adult", kind)).log().samples
            for kind in ("laryngoscopy", "levering")}


def test_a_lift_along_the_handle_needs_a_realistic_force_and_spares_the_teeth(lift_and_lever):
    """Lifting the tongue: 10-50 N at the handle, expert incisor contact below 20 N."""
    sm = lift_and_lever["laryngoscopy"]
    assert 10.0 < sm["blade_hand_force"].max() < 50.0
    assert sm["incisor_force"].max() < 20.0
    assert sm["blade_hand_force"].max() < 0.8 * 80.0  # not saturated at the hand's limit


def test_levering_on_the_upper_incisors_loads_them_with_a_levering_component(lift_and_lever):
    """Rocking the handle back on the teeth: a clearly higher incisor force, transverse part reported."""
    lift, lever = lift_and_lever["laryngoscopy"], lift_and_lever["levering"]
    peak = lever["incisor_force"].max()
    assert peak > 36.0 and peak > 2.0 * max(lift["incisor_force"].max(), 10.0)
    assert lever["incisor_lever"].max() > 10.0
    k = int(np.argmax(lever["incisor_force"]))
    assert lever["incisor_axial"][k] ** 2 + lever["incisor_lever"][k] ** 2 == pytest.approx(
        lever["incisor_force"][k] ** 2, rel=0.05)
    assert peak < 200.0


def test_wall_mesh_disk_cache_gives_the_same_mesh_and_rebuilds_a_damaged_entry(monkeypatch, tmp_path):
    from surgsim.physics import airway

    monkeypatch.setenv("SURGSIM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(airway, "_MESH_CACHE", {})
    d = design("child", 0.1)
    built = airway.wall_mesh(d, triangles=3000)
    folder = airway._wall_cache_folder(airway._wall_cache_key(d, 3000))
    assert (folder / "wall.vtp").is_file()
    monkeypatch.setattr(airway, "_MESH_CACHE", {})
    loaded = airway.wall_mesh(d, triangles=3000)  # read back from disk: bit for bit (replays depend on it)
    assert loaded.points.dtype == built.points.dtype
    assert np.array_equal(loaded.points, built.points) and np.array_equal(loaded.faces, built.faces)
    (folder / "wall.vtp").write_bytes(b"<VTKFile damaged")
    monkeypatch.setattr(airway, "_MESH_CACHE", {})
    rebuilt = airway.wall_mesh(d, triangles=3000)
    assert np.array_equal(rebuilt.points, built.points)
