"""Signed distance field of a lumen mask: accuracy, sign, clamping, gradient, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim.anatomy.distance import DistanceField, distance_field_from_mask
from surgsim.errors import AnatomyError

SPACING = np.array([0.8e-3, 0.8e-3, 1.2e-3])  # i, j, k
CENTRE = np.array([20.3e-3, 19.6e-3])  # tube axis (x, y), off the voxel grid
RADIUS = 7e-3
SHAPE = (60, 50, 50)  # k, j, i: the tube runs along k through both end faces


def _tube():
    w = np.diag([*SPACING, 1.0])
    k, j, i = np.indices(SHAPE)
    x, y = i * SPACING[0], j * SPACING[1]
    mask = (x - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 < RADIUS**2
    return mask, w


def _analytic(points):
    return np.hypot(points[:, 0] - CENTRE[0], points[:, 1] - CENTRE[1]) - RADIUS


@pytest.fixture(scope="module")
def tube_field():
    mask, w = _tube()
    return distance_field_from_mask(mask, w, margin=5e-3)


def _points(n, rng, r_max):
    r = rng.uniform(0, r_max, n)
    a = rng.uniform(0, 2 * np.pi, n)
    z = rng.uniform(5e-3, 60e-3, n)
    return np.column_stack([CENTRE[0] + r * np.cos(a), CENTRE[1] + r * np.sin(a), z])


def test_matches_the_analytic_distance_within_half_a_voxel(tube_field):
    rng = np.random.default_rng(0)
    p = _points(20_000, rng, RADIUS + 4.5e-3)  # inside the 5 mm margin
    d = tube_field.sample(p)
    exact = _analytic(p)
    err = np.abs(d - exact)
    near_wall = np.abs(exact) < 3e-3
    half_voxel = 0.5 * SPACING[:2].max()
    assert err[near_wall].max() <= half_voxel
    # away from the axis (where the field has a kink that sampling rounds off)
    off_axis = np.hypot(p[:, 0] - CENTRE[0], p[:, 1] - CENTRE[1]) > 2 * SPACING.max()
    assert err[off_axis].max() <= half_voxel * 1.2
    assert abs(np.mean(d[near_wall] - exact[near_wall])) < 0.1e-3  # no bias


def test_sign_convention_and_dtype(tube_field):
    assert tube_field.values.dtype == np.float32
    on_axis = np.array([[CENTRE[0], CENTRE[1], 30e-3]])
    assert tube_field.sample(on_axis)[0] == pytest.approx(-RADIUS, abs=0.6e-3)
    outside = np.array([[CENTRE[0] + RADIUS + 3e-3, CENTRE[1], 30e-3]])
    assert tube_field.sample(outside)[0] == pytest.approx(3e-3, abs=0.4e-3)


def test_grid_is_cropped_to_the_lumen_plus_margin(tube_field):
    mask, w = _tube()
    assert tube_field.values.shape[0] == SHAPE[0]  # the tube spans every slice
    assert tube_field.values.shape[1] < SHAPE[1] and tube_field.values.shape[2] < SHAPE[2]
    corner = tube_field.world_from_voxel[:3, 3]
    assert corner[0] == pytest.approx(CENTRE[0] - RADIUS - 5e-3, abs=SPACING[0])
    assert tube_field.nbytes == tube_field.values.size * 4
    # voxel_from_world inverts world_from_voxel
    assert np.allclose(tube_field.voxel_from_world @ tube_field.world_from_voxel, np.eye(4))


def test_points_beyond_the_grid_take_the_nearest_value_so_the_tube_continues(tube_field):
    inside_beyond_ends = np.array(
        [[CENTRE[0] + 2e-3, CENTRE[1], -0.05], [CENTRE[0] + 2e-3, CENTRE[1], 0.5]]
    )
    inside_at_end = np.array(
        [[CENTRE[0] + 2e-3, CENTRE[1], 0.0], [CENTRE[0] + 2e-3, CENTRE[1], (SHAPE[0] - 1) * SPACING[2]]]
    )
    assert np.allclose(tube_field.sample(inside_beyond_ends), tube_field.sample(inside_at_end))
    assert np.all(tube_field.sample(inside_beyond_ends) < 0)
    far_side = np.array([[1.0, CENTRE[1], 30e-3]])
    edge = np.array([[tube_field.world_from_voxel[0, 3] + (tube_field.values.shape[2] - 1) * SPACING[0], CENTRE[1], 30e-3]])
    assert tube_field.sample(far_side)[0] == pytest.approx(tube_field.sample(edge)[0])
    # no gradient along the clamped axis
    g = tube_field.gradient(inside_beyond_ends)
    assert np.allclose(g[:, 2], 0.0)


def test_gradient_points_out_of_the_lumen_with_unit_length(tube_field):
    rng = np.random.default_rng(1)
    p = _points(2000, rng, RADIUS + 4e-3)
    r = np.hypot(p[:, 0] - CENTRE[0], p[:, 1] - CENTRE[1])
    keep = (r > 2e-3) & (p[:, 2] > 3e-3) & (p[:, 2] < 65e-3)
    p, r = p[keep], r[keep]
    g = tube_field.gradient(p)
    radial = np.column_stack([(p[:, 0] - CENTRE[0]) / r, (p[:, 1] - CENTRE[1]) / r, np.zeros(len(r))])
    cos = np.sum(g * radial, axis=1) / np.linalg.norm(g, axis=1)
    assert np.percentile(cos, 5) > 0.9
    assert np.median(np.linalg.norm(g, axis=1)) == pytest.approx(1.0, abs=0.05)
    # central differences of sample() over one voxel agree with gradient()
    # (gradient() interpolates node differences, so it is the smoother of the two)
    h = SPACING.max()
    num = np.column_stack([
        (tube_field.sample(p + h * e) - tube_field.sample(p - h * e)) / (2 * h) for e in np.eye(3)
    ])
    assert np.median(np.linalg.norm(num - g, axis=1)) < 0.05


def test_isotropic_resampling_keeps_accuracy_and_reports_memory():
    mask, w = _tube()
    fine = distance_field_from_mask(mask, w, margin=4e-3, spacing=0.5e-3)
    assert np.allclose(fine.spacing, 0.5e-3)
    assert fine.values.dtype == np.float32
    coarse_cells = np.prod(distance_field_from_mask(mask, w, margin=4e-3).values.shape)
    assert fine.values.size > 3 * coarse_cells
    rng = np.random.default_rng(2)
    p = _points(5000, rng, RADIUS + 3.5e-3)
    exact = _analytic(p)
    near = np.abs(exact) < 3e-3
    # cubic resampling may overshoot the native field by a few per cent of a voxel
    assert np.abs(fine.sample(p) - exact)[near].max() <= 0.55 * SPACING[:2].max()


def test_rotated_grid_gives_the_same_distances():
    rot = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])  # a proper rotation
    assert np.linalg.det(rot) == pytest.approx(1.0)
    mask, w = _tube()
    w_rot = np.eye(4)
    w_rot[:3, :3] = rot @ w[:3, :3]
    w_rot[:3, 3] = [0.1, -0.2, 0.3]
    field = distance_field_from_mask(mask, w_rot)
    rng = np.random.default_rng(3)
    p_local = _points(3000, rng, RADIUS + 4e-3)
    p_world = p_local @ rot.T + w_rot[:3, 3]
    exact = _analytic(p_local)
    near = np.abs(exact) < 3e-3
    assert np.abs(field.sample(p_world) - exact)[near].max() <= 0.5 * SPACING[:2].max()
    # the gradient is a world vector: rotated with the grid
    g = field.gradient(p_world[near])
    radial_local = np.column_stack([p_local[near, 0] - CENTRE[0], p_local[near, 1] - CENTRE[1], np.zeros(near.sum())])
    radial_world = radial_local @ rot.T
    cos = np.sum(g * radial_world, axis=1) / np.linalg.norm(g, axis=1) / np.linalg.norm(radial_world, axis=1)
    assert np.median(cos) > 0.98


def test_sphere_distances_in_all_directions():
    sp = 1e-3
    n = 41
    k, j, i = np.indices((n, n, n))
    c = np.array([20.4, 19.7, 20.1]) * sp
    pts = np.stack([i, j, k], -1) * sp
    mask = np.linalg.norm(pts - c, axis=-1) < 12e-3
    field = distance_field_from_mask(mask, np.diag([sp, sp, sp, 1.0]))
    rng = np.random.default_rng(4)
    d = rng.normal(size=(4000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = rng.uniform(4e-3, 16e-3, 4000)
    p = c + d * r[:, None]
    exact = r - 12e-3
    err = field.sample(p) - exact
    assert np.abs(err[np.abs(exact) < 3e-3]).max() <= 0.5 * sp
    assert np.abs(err).max() <= 0.7 * sp  # deeper in, the sampled medial kink rounds off
    assert abs(err.mean()) < 0.1 * sp


def test_errors():
    with pytest.raises(AnatomyError, match="empty"):
        distance_field_from_mask(np.zeros((4, 4, 4), bool), np.eye(4))
    with pytest.raises(AnatomyError, match="spacing"):
        mask, w = _tube()
        distance_field_from_mask(mask, w, spacing=-1.0)
    field = DistanceField(values=np.zeros((3, 3, 3), np.float32), world_from_voxel=np.eye(4))
    with pytest.raises(AnatomyError, match="shape"):
        field.sample(np.zeros((4, 2)))
