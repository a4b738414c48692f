"""The numpy rotation conversions of the physics loops agree with scipy's Rotation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from surgsim.physics.rotations import (
    matrix_from_quat,
    matrix_from_rotvec,
    quat_conjugate,
    quat_from_matrix,
    quat_multiply,
    rotvec_from_matrix,
    rotvec_from_quat,
)


@pytest.fixture(scope="module")
def rotations():
    rng = np.random.default_rng(7)
    r = list(Rotation.random(300, random_state=rng))
    # the awkward ones: identity, tiny angles, half turns about each axis and near them
    r += [Rotation.identity(), Rotation.from_rotvec([1e-9, -2e-9, 0.0]), Rotation.from_rotvec([0.0, 0.0, 1e-5])]
    for axis in np.eye(3):
        r += [Rotation.from_rotvec(np.pi * axis), Rotation.from_rotvec((np.pi - 1e-7) * axis)]
    return r


def _same_rotation(q1, q2):
    return min(np.abs(q1 - q2).max(), np.abs(q1 + q2).max())


def test_matrix_and_quaternion_round_trip(rotations):
    for r in rotations:
        q, m = r.as_quat(), r.as_matrix()
        assert np.abs(matrix_from_quat(q) - m).max() < 1e-12
        assert np.abs(matrix_from_quat(3.0 * q) - m).max() < 1e-12  # normalised first
        mine = quat_from_matrix(m)
        assert mine[3] >= 0.0 and _same_rotation(mine, q) < 1e-12


def test_rotation_vectors(rotations):
    for r in rotations:
        v = r.as_rotvec()
        assert np.abs(matrix_from_rotvec(v) - r.as_matrix()).max() < 1e-12
        mine = rotvec_from_matrix(r.as_matrix())
        if np.linalg.norm(v) < np.pi - 1e-6:  # a half turn is +v or -v
            assert np.abs(mine - v).max() < 1e-9
        assert np.abs(Rotation.from_rotvec(mine).as_matrix() - r.as_matrix()).max() < 1e-9
        assert np.abs(rotvec_from_quat(r.as_quat()) - rotvec_from_matrix(r.as_matrix())).max() < 1e-9


def test_quaternion_products(rotations):
    for a, b in zip(rotations[:-1], rotations[1:], strict=True):
        assert _same_rotation(quat_multiply(a.as_quat(), b.as_quat()), (a * b).as_quat()) < 1e-12
        assert _same_rotation(quat_conjugate(a.as_quat()), a.inv().as_quat()) < 1e-15
