"""Surfaces from masks: closed, manifold, right size, right place, right orientation."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim.anatomy.surface import mesh_quality, surface_from_mask
from surgsim.errors import AnatomyError


def _rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _affine(spacing, rot=None, origin=(0.0, 0.0, 0.0)):
    w = np.eye(4)
    w[:3, :3] = (np.eye(3) if rot is None else rot) @ np.diag(spacing)
    w[:3, 3] = origin
    return w


def _sphere_mask(world_from_voxel, shape, centre, radius):
    k, j, i = np.indices(shape)
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    xyz = ijk @ world_from_voxel[:3, :3].T + world_from_voxel[:3, 3]
    return (np.linalg.norm(xyz - centre, axis=1) < radius).reshape(shape)


def test_sphere_closed_right_volume_and_outward_normals_in_rotated_anisotropic_world():
    rot = _rotation([1, 2, 3], 0.7)
    spacing = (0.6e-3, 0.7e-3, 1.1e-3)
    w = _affine(spacing, rot, origin=(0.10, -0.05, 0.30))
    shape = (40, 60, 70)
    centre = w[:3, :3] @ np.array([35.0, 30.0, 20.0]) + w[:3, 3]
    radius = 15e-3
    mask = _sphere_mask(w, shape, centre, radius)
    mesh = surface_from_mask(mask, w, target_triangles=20_000)
    q = mesh_quality(mesh)
    assert q["watertight"] and q["manifold"]
    assert q["n_triangles"] <= 20_000
    analytic = 4.0 / 3.0 * np.pi * radius**3
    assert q["volume_m3"] == pytest.approx(analytic, rel=0.03)
    assert q["area_m2"] == pytest.approx(4 * np.pi * radius**2, rel=0.05)
    # points in world metres, on the sphere
    pts = np.asarray(mesh.points)
    r = np.linalg.norm(pts - centre, axis=1)
    assert np.abs(r - radius).max() < 1.0e-3
    # normals point out
    n = np.asarray(mesh.point_data["Normals"])
    radial = (pts - centre) / r[:, None]
    assert np.mean(np.sum(n * radial, axis=1) > 0.5) > 0.99


def test_reflected_world_keeps_normals_outward_and_volume_positive():
    spacing = (1e-3, 1e-3, 1e-3)
    w = _affine(spacing)
    w[:3, 0] *= -1.0  # i runs toward patient right: determinant < 0
    shape = (30, 30, 30)
    centre = w[:3, :3] @ np.array([15.0, 15.0, 15.0]) + w[:3, 3]
    mask = _sphere_mask(w, shape, centre, 10e-3)
    mesh = surface_from_mask(mask, w, target_triangles=None)
    q = mesh_quality(mesh)
    assert q["watertight"] and q["manifold"]
    assert q["volume_m3"] > 0
    pts = np.asarray(mesh.points)
    n = np.asarray(mesh.point_data["Normals"])
    assert np.mean(np.sum(n * (pts - centre), axis=1) > 0) > 0.99


def test_tube_cut_by_the_volume_border_is_closed_and_has_the_right_volume():
    spacing = (0.8e-3, 0.8e-3, 1.5e-3)
    w = _affine(spacing)
    shape = (50, 40, 40)  # 75 mm long along k, touching both end faces
    k, j, i = np.indices(shape)
    x, y = i * spacing[0], j * spacing[1]
    radius = 9e-3
    mask = (x - 16e-3) ** 2 + (y - 16e-3) ** 2 < radius**2
    mesh = surface_from_mask(mask, w, target_triangles=8_000)
    q = mesh_quality(mesh)
    assert q["watertight"] and q["manifold"]
    assert 7_000 <= q["n_triangles"] <= 8_000
    # the padded surface closes half a voxel beyond the first and last slice centres
    length = shape[0] * spacing[2]
    assert q["volume_m3"] == pytest.approx(np.pi * radius**2 * length, rel=0.04)
    zs = np.asarray(mesh.points)[:, 2]
    assert zs.min() == pytest.approx(-0.5 * spacing[2], abs=0.3 * spacing[2])


def test_decimation_reaches_the_budget_and_keeps_the_shape():
    w = _affine((0.5e-3, 0.5e-3, 0.5e-3))
    shape = (70, 70, 70)
    centre = np.array([17.5e-3, 17.5e-3, 17.5e-3])
    mask = _sphere_mask(w, shape, centre, 15e-3)
    full = surface_from_mask(mask, w, target_triangles=None)
    n_full = mesh_quality(full)["n_triangles"]
    assert n_full > 30_000
    for budget in (10_000, 2_000):
        mesh = surface_from_mask(mask, w, target_triangles=budget)
        q = mesh_quality(mesh)
        assert 0.95 * budget <= q["n_triangles"] <= budget
        assert q["watertight"] and q["manifold"]
        assert q["volume_m3"] == pytest.approx(mesh_quality(full)["volume_m3"], rel=0.01)


def test_noisy_many_component_mask_is_repaired_to_a_closed_manifold():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((40, 45, 50)), 1.2) > 0.53
    w = _affine((1e-3, 1e-3, 1e-3))
    full = mesh_quality(surface_from_mask(mask, w, target_triangles=None))
    mesh = surface_from_mask(mask, w, target_triangles=15_000)
    q = mesh_quality(mesh)
    assert q["watertight"] and q["manifold"]
    assert q["n_triangles"] < full["n_triangles"] / 2
    # decimation and the repair change the enclosed volume little
    assert q["volume_m3"] == pytest.approx(full["volume_m3"], rel=0.05)


def test_mesh_quality_reports_holes_and_nonmanifold_edges():
    import pyvista as pv

    sphere = pv.Sphere(radius=0.01).triangulate()
    q = mesh_quality(sphere)
    assert q["watertight"] and q["manifold"] and q["volume_m3"] > 0
    opened = sphere.remove_cells([0, 1, 2])
    assert not mesh_quality(opened)["watertight"]
    # three triangles on one edge
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)
    faces = np.array([3, 0, 1, 2, 3, 1, 0, 3, 3, 0, 1, 4])
    q3 = mesh_quality(pv.PolyData(pts, faces))
    assert not q3["manifold"] and q3["nonmanifold_edges"] == 1


def test_empty_mask_and_bad_transform_raise_anatomy_error():
    with pytest.raises(AnatomyError, match="empty"):
        surface_from_mask(np.zeros((5, 5, 5), bool), np.eye(4))
    with pytest.raises(AnatomyError, match="world_from_voxel"):
        surface_from_mask(np.ones((5, 5, 5), bool), np.zeros((4, 4)))
