"""Catheter and guidewire dynamics: an implicit rod in a vessel's distance field.

Model
-----
The device is ``N`` nodes ``x_i`` (metres, LPS) at a uniform rest spacing
``l = length / (N - 1)``; node 0 is the distal tip, node ``i`` lies ``s_i = i l``
from it. Each node has the lumped mass ``rho_lin * l`` (half at the tip).

Energies (per time step, minimised by a few Gauss-Newton iterations):

- inertia ``m_i / (2 dt^2) |x_i - x*_i|^2`` with ``x* = x + dt v + dt^2 f_ext / m``
  (implicit Euler);
- stretch ``k_s / 2 (|x_i - x_i+1| - l)^2``, ``k_s = EA / l``, linearised along the
  current segment direction (its Gauss-Newton Hessian ``k_s t t^T``);
- bending ``k_b / 2 |x_i-1 - 2 x_i + x_i+1 - d_i|^2``, ``k_b = EI / l^3`` (Euler-Bernoulli
  for small deflections); ``d_i = 2 l sin(phi_i / 2) n_i`` is the rest second
  difference of the pre-shaped tip (rest curvature ``kappa_i``, turning angle
  ``phi_i = |kappa_i| l``) turned into the current material frame;
- wall contact ``w / 2 (n . p - c)^2`` on contact points ``p`` closer than the
  device radius ``r`` to the wall: every free node and every segment midpoint
  (so a segment cannot straddle a thin wall or a sharp carina); ``n`` is the
  distance field's gradient (a trilinear blend of central differences, so it is
  continuous across voxels) and ``c`` the plane where ``phi = -r``. Contacts
  are unilateral (one that pulls is released and the step iterates again; a
  released point that a later iterate pushes more than the activation margin
  into the wall is a contact again).
  The active set carries over: a point that pressed in the last solve stays
  active up to ``r / 4`` from the wall (not just the activation margin of
  ``0.02 r``), so a point that slides over a convex stretch of wall (an ostium
  lip) within an iteration is not dropped for a whole solve; dropping it let
  the load throw the node deep into the wall, the next iteration answered with
  a penalty force of tens of newtons, and the step-to-step chatter of a jammed
  or caught device (tip speeds of metres per second, 10 ms wall forces of
  4-11 N) grew from there. A
  regularised Coulomb friction term
  ``mu lambda / max(|dp_t|, eps) |P_t (p - p_old)|^2 / 2`` resists tangential
  sliding with about ``mu`` times the normal force ``lambda`` (proportionally
  less below ``friction_stick_speed``; a contact whose friction exceeds 1.5
  ``mu lambda`` earns another iteration).

Each iteration turns the frames, finds contacts, assembles one symmetric
positive definite matrix over the free nodes with coordinates interleaved
(``(x0, y0, z0, x1, ...)``, 6 sub-diagonals) and solves it by banded Cholesky:
O(N) per iteration, all compiled with numba. A contact point that moved more
than ``r / 2`` in one iteration has its path sampled, so it cannot hop across a
wall. After the iterations every node and midpoint is projected onto
``phi <= -r``; the projection moves positions only and removes velocity into
the wall, so recovering from penetration never adds energy. Velocities are
``v = (x_new - x) / dt * (1 - damping)``.

Material frame and torsion: a frame is parallel-transported from the hub along
the current centreline after being turned about the access direction by the
hub angle, i.e. the device is torsionally rigid and the tip turns 1:1 with the
hub (finite torsional stiffness, whip, is not modelled).

Insertion: the device slides through a sheath that ends at ``access_point``
and points along ``access_direction``. ``depth`` is the length inside the
body (``inside`` = nodes with ``s_i < depth``). Held nodes lie on the straight
line ``access - (s_i - depth) * access_direction``; the first two held nodes
set the clamped slope, and the discrete clamp acts half a segment behind the
first held node, so nodes with ``s_i >= depth - l`` are held: the clamp then sits
within half a segment of the entry (a cantilever of length ``depth`` bends as
beam theory says). The solver moves the ``free`` nodes ``s_i < depth - l``.
Advancing moves the held line. The axial force the sheath transmits to the
free part (from the elastic terms that couple held and free nodes) is the
push force: while it is at ``max_push_force`` an advance is ignored (the hand
slips), and a step that would take it past the limit is redone with a
smaller advance that lands on the limit; pulling back is limited the same way
in tension (a hooked tip cannot be torn out).

Contact force: the normal force on a node is the multiplier ``w (n . p - c)``
of its contact point in the last solve plus half of each adjacent midpoint's,
i.e. the wall's reaction in newtons (a rod pushed against a wall by a load F
reports F); a node that only the final projection put back gets
``m * correction / dt^2``.

Limits: uniform node spacing (pre-shaped tips need ``l`` at most about a third
of the tip length; :class:`DeviceSpec` refuses shapes that turn more than 135
degrees at one node); uniform stiffness here (no floppy guidewire tip; the compiled
kernels take stretch and bending stiffness, contact radius and friction per
segment, node or contact point, which :mod:`surgsim.physics.coaxial` uses); rigid
torsion; the clamp position is quantised to half a segment; friction creeps
slowly under a steady load below the Coulomb limit; a tip that snaps into a
new position (slipping off an edge) can need 10-30 iterations for one step,
more than the few a step takes, so for a few hundred milliseconds such a
snap can still report one-step forces well above the push limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surgsim.errors import PhysicsError
from surgsim.instruments.catheter import DeviceSpec
from surgsim.physics import _rodkernels as _k

__all__ = ["RodSolver", "RodState", "sample_sdf", "tube_sdf"]

_STATUS = {
    _k.ERR_NOT_FINITE: "a node position or velocity became NaN or infinite",
    _k.ERR_NOT_SPD: "the rod's system matrix is not positive definite",
}


@dataclass
class RodState:
    """A snapshot of the rod (arrays are copies).

    Attributes
    ----------
    positions, velocities : (n, 3) float, metres and m/s (LPS); node 0 is the tip
    depth : float, metres inserted
    hub_angle : float, radians of hub rotation
    contact_force : (n,) float, newtons of normal wall force per node
    in_contact : (n,) bool
    inside : (n,) bool, nodes past the entry (arc length from the tip < depth)
    free : (n,) bool, nodes the solver moves (the rest are held by the sheath)
    tip_position : (3,) float, metres
    tip_direction : (3,) float, unit vector pointing distally
    step : int, steps taken
    push_force : float, newtons of axial force transmitted at the entry (compression > 0)
    tip_angle : float, radians the tip frame has turned about its tangent since the start
    """

    positions: np.ndarray
    velocities: np.ndarray
    depth: float
    hub_angle: float
    contact_force: np.ndarray
    in_contact: np.ndarray
    inside: np.ndarray
    tip_position: np.ndarray
    tip_direction: np.ndarray
    step: int
    push_force: float = 0.0
    tip_angle: float = 0.0
    free: np.ndarray | None = None


def _vec3(value, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise PhysicsError(f"{name} must be 3 finite numbers (metres, LPS), got {value!r}")
    return arr


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotate ``v`` about the unit ``axis`` by ``angle`` radians (Rodrigues)."""
    c, s = math.cos(angle), math.sin(angle)
    return v * c + np.cross(axis, v) * s + axis * np.dot(axis, v) * (1.0 - c)


def sample_sdf(
    sdf_values: np.ndarray, sdf_voxel_from_world: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Trilinearly sample a signed distance field and its gradient.

    Parameters
    ----------
    sdf_values : (nk, nj, ni) float, metres (negative inside the lumen)
    sdf_voxel_from_world : (4, 4) float
        Maps homogeneous LPS metres to fractional voxel indices (i, j, k).
    points : (m, 3) float, metres

    Returns
    -------
    phi : (m,) float, metres
    grad : (m, 3) float, world gradient (unit length for a true distance field)

    Notes
    -----
    Outside the grid a point is clamped to the grid's faces: where the face value
    is inside the lumen (a vessel cut by the grid border) the vessel continues
    straight; elsewhere the distance to the grid is added, so the gradient leads
    back toward the grid.
    """
    values = np.ascontiguousarray(sdf_values, dtype=np.float32)
    vfw = np.ascontiguousarray(sdf_voxel_from_world, dtype=np.float64)
    wfv = np.ascontiguousarray(np.linalg.inv(vfw))
    pts = np.ascontiguousarray(np.atleast_2d(points), dtype=np.float64)
    phi = np.empty(pts.shape[0])
    grad = np.empty((pts.shape[0], 3))
    _k.sdf_sample_many(values, vfw, wfv, pts, phi, grad)
    return phi, grad


def tube_sdf(
    centerline: np.ndarray,
    radius: float,
    spacing: float = 0.5e-3,
    margin: float = 3.0e-3,
    closed_start: bool = False,
    closed_end: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance field of a round tube around a polyline (synthetic vessels, tests).

    Parameters
    ----------
    centerline : (m, 3) float, metres (m >= 2)
    radius : float, metres (lumen radius)
    spacing : float, metres (isotropic voxel size)
    margin : float, metres of grid beyond the tube on every side
    closed_start, closed_end : bool
        A closed end is a hemispherical dead end; an open end continues
        straight along its last segment (inside the grid; beyond it the
        solver's clamping continues it too).

    Returns
    -------
    values : (nk, nj, ni) float32, metres, negative inside the lumen
    voxel_from_world : (4, 4) float
    world_from_voxel : (4, 4) float
    """
    pts = np.asarray(centerline, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] < 2 or not np.all(np.isfinite(pts)):
        raise PhysicsError("tube_sdf: centerline must be an (m >= 2, 3) array of finite metres")
    if not (radius > 0 and spacing > 0 and margin >= 0):
        raise PhysicsError("tube_sdf: radius and spacing must be > 0 and margin >= 0")
    lo = pts.min(axis=0) - radius - margin
    hi = pts.max(axis=0) + radius + margin
    shape_ijk = np.maximum(np.ceil((hi - lo) / spacing).astype(int) + 1, 2)
    world_from_voxel = np.eye(4)
    world_from_voxel[:3, :3] *= spacing
    world_from_voxel[:3, 3] = lo
    values = np.empty((shape_ijk[2], shape_ijk[1], shape_ijk[0]), dtype=np.float32)
    _k.polyline_tube_sdf(pts, float(radius), world_from_voxel, bool(closed_start),
                         bool(closed_end), values)
    return values, np.linalg.inv(world_from_voxel), world_from_voxel


class RodSolver:
    """Implicit rod simulation of one catheter or guidewire in a vessel lumen.

    Parameters
    ----------
    spec : DeviceSpec
    sdf_values : (nk, nj, ni) float or None
        Signed distance to the lumen wall, metres, negative inside the lumen;
        ``None`` for a device in free space (no wall).
    sdf_voxel_from_world : (4, 4) float or None
        Maps homogeneous LPS metres to fractional voxel indices (i, j, k).
    access_point : (3,) float, metres
        Where the sheath ends inside the lumen (the entry).
    access_direction : (3,) float
        Insertion direction at the entry (normalised here).
    dt : float, seconds
    iterations : int
        Gauss-Newton iterations per step (at least; see ``extra_iterations``).
    initial_depth : float, metres
        Inserted at the start, laid out in the device's rest shape from the entry
        (straight along the access direction if the rest shape does not fit).
    damping : float
        Fraction of the velocity removed per step (blood drag and numerical damping).
    gravity : (3,) float or None, m/s^2 (default: none, a device in blood is near neutral buoyancy)
    external_force : (n, 3) float or None, newtons per node (constant loads, for tests)
    reference_normal : (3,) float or None
        Direction the tip's curve points at hub angle 0 (projected perpendicular
        to the access direction); default: the world axis least aligned with it.
    contact_stiffness : float or None, N/m (default: ``max(k_s, 100 k_b, 1e4)``)
    extra_iterations : int
        Iterations a step may add to ``iterations`` while a contact pulls on the
        wall, a friction contact has not settled (stick to slip) or a segment's
        length is off by more than 1 % (a large rotation within the step).
    friction_stick_speed : float, m/s
        Regularisation of Coulomb friction: below this sliding speed the friction
        force grows in proportion to the speed up to ``mu`` times the normal force.
    max_rotation_speed : float, rad/s
        Fastest hub rotation a hand applies (default two turns a second); faster
        rotation inputs are clipped, because with rigid torsion an arbitrarily fast
        twist would drive the tip against the wall with arbitrary force.
    """

    def __init__(
        self,
        spec: DeviceSpec,
        sdf_values: np.ndarray | None,
        sdf_voxel_from_world: np.ndarray | None,
        access_point,
        access_direction,
        dt: float = 1e-3,
        iterations: int = 3,
        initial_depth: float = 0.02,
        damping: float = 0.02,
        gravity=None,
        external_force: np.ndarray | None = None,
        reference_normal=None,
        contact_stiffness: float | None = None,
        extra_iterations: int = 3,
        friction_stick_speed: float = 0.02,
        max_rotation_speed: float = 4.0 * math.pi,
    ) -> None:
        if not isinstance(spec, DeviceSpec):
            raise PhysicsError(f"spec must be a DeviceSpec, got {type(spec).__name__}")
        if not (math.isfinite(dt) and 0 < dt <= 0.01):
            raise PhysicsError(f"dt must be in (0, 0.01] s, got {dt!r}")
        if not (isinstance(iterations, (int, np.integer)) and 1 <= iterations <= 100):
            raise PhysicsError(f"iterations must be an integer in 1..100, got {iterations!r}")
        if not (isinstance(extra_iterations, (int, np.integer)) and 0 <= extra_iterations <= 20):
            raise PhysicsError(f"extra_iterations must be an integer in 0..20, got {extra_iterations!r}")
        if not (math.isfinite(max_rotation_speed) and max_rotation_speed > 0):
            raise PhysicsError(f"max_rotation_speed must be > 0 rad/s, got {max_rotation_speed!r}")
        self.max_rotation_speed = float(max_rotation_speed)
        if not (math.isfinite(friction_stick_speed) and friction_stick_speed > 0):
            raise PhysicsError(f"friction_stick_speed must be > 0 m/s, got {friction_stick_speed!r}")
        if not (math.isfinite(damping) and 0.0 <= damping < 1.0):
            raise PhysicsError(f"damping must be in [0, 1), got {damping!r}")
        self.spec = spec
        self.dt = float(dt)
        self.iterations = int(iterations)
        n = spec.n_nodes
        h = spec.segment_length
        self._n = n
        self._l = h

        self._access = _vec3(access_point, "access_point")
        direc = _vec3(access_direction, "access_direction")
        norm = np.linalg.norm(direc)
        if norm < 1e-12:
            raise PhysicsError("access_direction must not be the zero vector")
        self._dir = direc / norm
        if reference_normal is None:
            ref = np.eye(3)[int(np.argmin(np.abs(self._dir)))]
        else:
            ref = _vec3(reference_normal, "reference_normal")
        ref = ref - ref.dot(self._dir) * self._dir
        if np.linalg.norm(ref) < 1e-9:
            raise PhysicsError("reference_normal must not be parallel to access_direction")
        self._uref = ref / np.linalg.norm(ref)

        # wall
        if sdf_values is None:
            self._has_wall = False
            self._sdf = np.zeros((2, 2, 2), dtype=np.float32) - 1.0
            self._vfw = np.eye(4)
            self._wfv = np.eye(4)
        else:
            values = np.ascontiguousarray(sdf_values, dtype=np.float32)
            if values.ndim != 3 or min(values.shape) < 2:
                raise PhysicsError(
                    f"sdf_values must be a 3D (nk, nj, ni) array with at least 2 voxels per axis, "
                    f"got shape {values.shape}"
                )
            if not np.all(np.isfinite(values)):
                raise PhysicsError("sdf_values contains NaN or infinite values: rebuild the distance field")
            if sdf_voxel_from_world is None:
                raise PhysicsError("sdf_voxel_from_world is required with sdf_values")
            vfw = np.ascontiguousarray(sdf_voxel_from_world, dtype=np.float64)
            if vfw.shape != (4, 4) or not np.all(np.isfinite(vfw)) or abs(np.linalg.det(vfw[:3, :3])) < 1e-12:
                raise PhysicsError("sdf_voxel_from_world must be an invertible finite 4x4 matrix")
            self._has_wall = True
            self._sdf = values
            self._vfw = vfw
            self._wfv = np.ascontiguousarray(np.linalg.inv(vfw))
            phi0, _ = sample_sdf(values, vfw, self._access[None])
            if phi0[0] > -spec.outer_radius:
                raise PhysicsError(
                    f"access_point {self._access.tolist()} is {1e3 * (phi0[0] + spec.outer_radius):.2f} mm "
                    "too close to or outside the lumen wall: place the sheath end inside the vessel, "
                    "at least one device radius from the wall"
                )

        # parameters
        ks = spec.EA / h
        kb = spec.EI / h**3
        wc = float(contact_stiffness) if contact_stiffness is not None else max(ks, 100.0 * kb, 1e4)
        if not (math.isfinite(wc) and wc > 0):
            raise PhysicsError(f"contact_stiffness must be positive, got {contact_stiffness!r}")
        prm = np.zeros(_k.N_PARAMS)
        prm[_k.P_L] = h
        prm[_k.P_DT] = self.dt
        prm[_k.P_KS] = ks
        prm[_k.P_KB] = kb
        prm[_k.P_WC] = wc
        prm[_k.P_MU] = spec.friction
        prm[_k.P_DAMP] = damping
        prm[_k.P_R] = spec.outer_radius
        prm[_k.P_FMAX] = spec.max_push_force
        prm[_k.P_EPS] = friction_stick_speed * self.dt
        prm[_k.P_VMAX] = 20.0
        prm[_k.P_MARGIN] = 0.02 * spec.outer_radius
        prm[_k.P_ADH] = 0.0
        prm[_k.P_EXTRA] = extra_iterations
        prm[_k.P_FTOL] = 1.5
        prm[_k.P_HOLD] = 0.25 * spec.outer_radius
        self._prm = prm
        # uniform material along the rod (the kernels take per-segment/-node/-point arrays)
        self._ks_seg = np.full(n - 1, ks)
        self._kb_node = np.full(n, kb)
        self._rad_pt = np.full(2 * n, spec.outer_radius)
        self._mu_pt = np.full(2 * n, spec.friction)

        self._mass = np.full(n, spec.linear_density * h)
        self._mass[0] *= 0.5
        self._gravity = None if gravity is None else _vec3(gravity, "gravity")
        self.set_external_force(np.zeros((n, 3)) if external_force is None else external_force)

        kappa = spec.rest_curvature()
        mag = np.linalg.norm(kappa, axis=1)
        amp = 2.0 * h * np.sin(0.5 * mag * h)
        self._bend_c = np.zeros((n, 2))
        nz = mag > 0
        self._bend_c[nz] = kappa[nz] * (amp[nz] / mag[nz])[:, None]

        # state
        self._sc = np.zeros(_k.N_SCALARS)
        self._sc[_k.S_DEPTH_MAX] = (n - 2) * h
        if not (math.isfinite(initial_depth) and 0 <= initial_depth <= (n - 2) * h):
            raise PhysicsError(
                f"initial_depth must be in [0, {(n - 2) * h:.3f}] m for this device, got {initial_depth!r}"
            )
        self._sc[_k.S_DEPTH] = float(initial_depth)
        s = np.arange(n) * h
        straight = self._access[None, :] - (s - initial_depth)[:, None] * self._dir[None, :]
        n_free = _k._nfree(float(initial_depth), h, n)
        shaped = self._rest_shape(straight, n_free, kappa)
        self._x = straight
        if self._has_wall:
            inside = s < initial_depth
            for candidate in (shaped, straight):
                phi, _ = sample_sdf(self._sdf, self._vfw, candidate[inside])
                bad = np.nonzero(phi > -spec.outer_radius + 1e-4)[0]
                if not bad.size:
                    self._x = candidate
                    break
            else:
                raise PhysicsError(
                    f"initial_depth {initial_depth:.3f} m: the straight inserted part leaves the "
                    f"lumen {initial_depth - s[bad[-1]]:.3f} m past access_point; start with a "
                    "smaller initial_depth and advance the device"
                )
        else:
            self._x = shaped
        self._v = np.zeros((n, 3))
        # contact points: the nodes, then the segment midpoints
        self._lam = np.zeros(2 * n)
        self._cforce = np.zeros(n)
        self._facc = np.zeros(n)
        self._facc_steps = 0
        self._incontact = np.zeros(n, dtype=np.bool_)
        self._active = np.zeros(2 * n, dtype=np.bool_)
        self._released = np.zeros(2 * n, dtype=np.bool_)
        self._nrm = np.zeros((2 * n, 3))
        self._cpl = np.zeros(2 * n)
        self._y = np.zeros((n, 3))
        self._ystar = np.zeros((n, 3))
        self._tseg = np.zeros((n - 1, 3))
        self._useg = np.zeros((n - 1, 3))
        self._dvec = np.zeros((n, 3))
        self._Ab = np.zeros((3 * n, _k.BAND + 1))
        self._rhs = np.zeros(3 * n)
        self._sol = np.zeros(3 * n)
        self._tipst = np.zeros(6)
        self._saved = np.zeros(8 * n + 6 + _k.N_SCALARS)
        _k.compute_frames(self._x, self._dir, self._uref, 0.0, self._tseg, self._useg)
        self._tipst[:3] = self._tseg[0]
        self._tipst[3:] = self._useg[0]
        self._sc[_k.S_TIP_INIT] = 1.0
        self._step = 0

    def _rest_shape(self, straight: np.ndarray, n_free: int, kappa: np.ndarray) -> np.ndarray:
        """The free nodes laid out in the device's rest shape (hub angle 0) from the clamp.

        Starting a pre-shaped device straight would make its tip snap into shape in
        the first step; starting in the rest shape avoids that transient.
        """
        x = straight.copy()
        h = self._l
        t = self._dir.copy()
        m1 = self._uref.copy()
        for i in range(n_free - 1, -1, -1):
            k = kappa[i + 1]
            mag = float(np.hypot(k[0], k[1]))
            if mag > 0.0:
                m2 = np.cross(t, m1)
                normal = (k[0] * m1 + k[1] * m2) / mag
                axis = np.cross(t, normal)
                axis /= np.linalg.norm(axis)
                ang = mag * h
                t = _rotate(t, axis, ang)
                m1 = _rotate(m1, axis, ang)
            x[i] = x[i + 1] + h * t
        return x

    # -- inputs ----------------------------------------------------------------------
    def set_external_force(self, forces: np.ndarray) -> None:
        """Set constant external forces on the nodes (newtons, (n, 3)); gravity is added."""
        f = np.asarray(forces, dtype=np.float64)
        if f.shape != (self._n, 3) or not np.all(np.isfinite(f)):
            raise PhysicsError(f"external_force must be a finite ({self._n}, 3) array of newtons")
        self._fext = f.copy()
        if self._gravity is not None:
            self._fext += self._mass[:, None] * self._gravity[None, :]

    def step(self, advance: float = 0.0, rotate: float = 0.0) -> None:
        """Advance one time step.

        Parameters
        ----------
        advance : float, metres pushed in this step (negative pulls back)
        rotate : float, radians of hub rotation this step (clipped to
            ``max_rotation_speed * dt``)
        """
        self.run(1, advance, rotate)

    def run(self, n_steps: int, advance_per_step: float = 0.0, rotate_per_step: float = 0.0) -> None:
        """Take ``n_steps`` steps in compiled code with constant inputs per step.

        Raises
        ------
        PhysicsError
            If an input is not finite or the state became invalid.
        """
        n_steps = int(n_steps)
        adv = float(advance_per_step)
        rot = float(rotate_per_step)
        if n_steps < 0 or not (math.isfinite(adv) and math.isfinite(rot)):
            raise PhysicsError(
                f"run needs n_steps >= 0 and finite advance/rotate, got {n_steps}, {adv!r}, {rot!r}"
            )
        if n_steps == 0:
            return
        rot_max = self.max_rotation_speed * self.dt
        rot = min(max(rot, -rot_max), rot_max)
        status = _k.run_steps(
            n_steps, adv, rot, self._x, self._v, self._fext, self._mass, self._bend_c, self._sc,
            self._tipst, self._prm, self.iterations,
            self._access, self._dir, self._uref, self._sdf, self._vfw, self._wfv, self._has_wall,
            self._lam, self._cforce, self._incontact, self._active, self._released, self._nrm,
            self._cpl, self._y, self._ystar, self._tseg, self._useg, self._dvec, self._Ab,
            self._rhs, self._sol, self._saved, self._facc,
            self._ks_seg, self._kb_node, self._rad_pt, self._mu_pt,
        )  # fmt: skip
        self._step += n_steps
        self._facc_steps += n_steps
        if status != _k.OK:
            raise PhysicsError(
                f"rod solver failed near step {self._step} ({self.spec.name}): "
                f"{_STATUS.get(status, status)}; reduce dt or the push speed and report the input log"
            )

    def take_mean_contact_force(self) -> np.ndarray:
        """Mean normal contact force per node since the last call, (n,) float, newtons.

        What a force sensor of finite bandwidth reads: one-step reactions of
        the penetration recovery (a node crossing a sharp ostium edge) average
        out, sustained pressure does not. Resets the accumulator.
        """
        steps = max(self._facc_steps, 1)
        mean = self._facc / steps if self._facc_steps else self._cforce.copy()
        self._facc[:] = 0.0
        self._facc_steps = 0
        return mean

    # -- readouts --------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        """(n, 3) float, metres (live view, do not modify); node 0 is the tip."""
        return self._x

    @property
    def velocities(self) -> np.ndarray:
        """(n, 3) float, m/s (live view)."""
        return self._v

    @property
    def depth(self) -> float:
        """Inserted length, metres."""
        return float(self._sc[_k.S_DEPTH])

    @property
    def hub_angle(self) -> float:
        """Hub rotation since the start, radians."""
        return float(self._sc[_k.S_HUB])

    @property
    def push_force(self) -> float:
        """Axial force transmitted at the entry in the last step, newtons (compression > 0)."""
        return float(self._sc[_k.S_PUSH])

    @property
    def contact_force(self) -> np.ndarray:
        """(n,) float, newtons of normal wall force per node (live view)."""
        return self._cforce

    @property
    def in_contact(self) -> np.ndarray:
        """(n,) bool (live view)."""
        return self._incontact

    @property
    def inside(self) -> np.ndarray:
        """(n,) bool: nodes past the entry (arc length from the tip below ``depth``)."""
        return np.arange(self._n) * self._l < self.depth

    @property
    def free(self) -> np.ndarray:
        """(n,) bool: nodes the solver moves (the rest are held by the sheath)."""
        n_free = _k._nfree(self.depth, self._l, self._n)
        out = np.zeros(self._n, dtype=bool)
        out[:n_free] = True
        return out

    @property
    def step_count(self) -> int:
        """Steps taken since construction."""
        return self._step

    @property
    def max_depth(self) -> float:
        """Largest possible depth (two nodes stay in the sheath), metres."""
        return float(self._sc[_k.S_DEPTH_MAX])

    def tip_direction(self) -> np.ndarray:
        """(3,) unit vector from node 1 to the tip (distal)."""
        d = self._x[0] - self._x[1]
        return d / max(np.linalg.norm(d), 1e-12)

    def tip_angle(self) -> float:
        """Rotation of the tip's material frame about its tangent since the start, radians.

        Accumulated step by step (not wrapped), comparing the tip frame with the
        previous one parallel-transported to the current tip tangent. With the
        tip tangent fixed (a straight rod in a straight vessel) this equals the
        hub rotation; a tip whose tangent sweeps a cone (a curved tip whirled by
        the hub) also picks up the cone's solid angle (geometric phase).
        """
        return float(self._sc[_k.S_TWIST])

    def material_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Segment tangents and first material directions.

        Returns
        -------
        tangents : (n - 1, 3) float, unit, segment s points from node s + 1 to node s
        m1 : (n - 1, 3) float, unit, perpendicular to the tangents
        """
        t = np.zeros((self._n - 1, 3))
        u = np.zeros((self._n - 1, 3))
        _k.compute_frames(self._x, self._dir, self._uref, self.hub_angle, t, u)
        return t, u

    def wall_distance(self, points: np.ndarray | None = None) -> np.ndarray:
        """Signed distance (metres) of ``points`` (default: the nodes) to the lumen wall."""
        pts = self._x if points is None else points
        if not self._has_wall:
            return np.full(len(np.atleast_2d(pts)), -np.inf)
        return sample_sdf(self._sdf, self._vfw, pts)[0]

    def state(self) -> RodState:
        """A copy of the current state."""
        return RodState(
            positions=self._x.copy(),
            velocities=self._v.copy(),
            depth=self.depth,
            hub_angle=self.hub_angle,
            contact_force=self._cforce.copy(),
            in_contact=self._incontact.copy(),
            inside=self.inside,
            tip_position=self._x[0].copy(),
            tip_direction=self.tip_direction(),
            step=self._step,
            push_force=self.push_force,
            tip_angle=self.tip_angle(),
            free=self.free,
        )
