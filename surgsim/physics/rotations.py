"""Small rotation conversions in plain numpy for the per-step physics loops.

``scipy.spatial.transform.Rotation`` is general (stacks of rotations, array-API
dispatch) and costs 20-40 microseconds a call in object set-up alone; the
airway world converts a few single rotations at every 4 ms step, where that
was a third of the physics' time. These functions do the same conversions for
one rotation (checked against scipy in ``tests/test_rotations.py``).
Quaternions are (x, y, z, w), as pybullet and scipy write them.
"""

from __future__ import annotations

import math

import numpy as np


def matrix_from_quat(q) -> np.ndarray:
    """(3, 3) rotation matrix of a quaternion (x, y, z, w) (normalised first)."""
    x, y, z, w = (float(v) for v in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
        [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
        [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
    ])


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) of a (3, 3) rotation matrix (Shepperd's method), w >= 0."""
    m = np.asarray(m, float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    diag = (m[0, 0], m[1, 1], m[2, 2])
    k = int(np.argmax((diag[0], diag[1], diag[2], tr)))
    if k == 3:
        s = 2.0 * math.sqrt(max(1.0 + tr, 0.0))
        q = np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s])
    else:
        i, j, n = k, (k + 1) % 3, (k + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[n, n], 0.0))
        q = np.empty(4)
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[n] = (m[n, i] + m[i, n]) / s
        q[3] = (m[n, j] - m[j, n]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0.0 else q


def rotvec_from_quat(q) -> np.ndarray:
    """Rotation vector (3,) of a quaternion (x, y, z, w), radians (angle in [0, pi])."""
    q = np.asarray(q, float)
    if q[3] < 0.0:
        q = -q
    s = math.sqrt(float(q[0] * q[0] + q[1] * q[1] + q[2] * q[2]))
    angle = 2.0 * math.atan2(s, float(q[3]))
    if s < 1e-12:  # small angle: 2 v / w to second order
        return 2.0 * q[:3] / float(q[3])
    return q[:3] * (angle / s)


def rotvec_from_matrix(m: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) of a (3, 3) rotation matrix, radians."""
    return rotvec_from_quat(quat_from_matrix(m))


def matrix_from_rotvec(v) -> np.ndarray:
    """(3, 3) rotation matrix of a rotation vector (radians), by Rodrigues' formula."""
    v = np.asarray(v, float)
    a = math.sqrt(float(v @ v))
    if a < 1e-12:
        k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
        return np.eye(3) + k
    u = v / a
    k = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return np.eye(3) + math.sin(a) * k + (1.0 - math.cos(a)) * (k @ k)


def quat_multiply(a, b) -> np.ndarray:
    """Quaternion product a * b (x, y, z, w): rotate by b, then by a."""
    ax, ay, az, aw = (float(t) for t in a)
    bx, by, bz, bw = (float(t) for t in b)
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def quat_conjugate(q) -> np.ndarray:
    """Inverse of a unit quaternion (x, y, z, w)."""
    q = np.asarray(q, float)
    return np.array([-q[0], -q[1], -q[2], q[3]])


def normalized(q) -> np.ndarray:
    """A quaternion scaled to unit length."""
    q = np.asarray(q, float)
    return q / math.sqrt(float(q @ q))
