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
  device radius ``r`` to the wall (``w`` = :data:`WALL_STIFFNESS`, a compliant wall whose
  stiffness per contact point does not depend on the node spacing): every free node and
  every segment midpoint
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
  ``mu lambda / max(|u|, eps) |u|^2 / 2`` resists the slip ``u`` of the rod's surface
  at the contact, ``u = P_t (p - p_old) + r da b`` (tangential displacement plus the
  spin ``da`` about the rod's tangent ``t`` times the radius, ``b = t x n``; one
  Coulomb cone for sliding and turning, so a rod turned while it is pushed turns more
  freely), with about ``mu`` times the normal force ``lambda`` (proportionally
  less below ``friction_stick_speed``, or :data:`SPIN_STICK_SPEED` in the twist solve;
  a contact whose friction exceeds 1.5 ``mu lambda`` earns another iteration);
- twist ``G J / (2 l) (theta_i - theta_i-1)^2`` (``G = E / (2 (1 + nu))``, ``J`` the
  polar moment) with rotational inertia ``rho J l`` per segment: ``theta_s`` is the
  material frame's rotation on segment ``s`` relative to the hub's frame parallel-
  transported along the centreline (0 for a torsionally rigid device; the held
  segments keep 0, they turn with the hub). The rest curvature turns with the twist,
  so a pre-shaped tip held in a curve resists turning and stores torque.

Each iteration turns the frames, finds contacts, solves the twist with the centreline
fixed (a tridiagonal system: inertia, twist, the bending energy's dependence on the
twist and the friction against spin; one Newton step), then assembles one symmetric
positive definite matrix over the free nodes with coordinates interleaved
(``(x0, y0, z0, x1, ...)``, 6 sub-diagonals) and solves it by banded Cholesky:
O(N) per iteration, all compiled with numba. A contact point that moved more
than ``r / 2`` in one iteration has its path sampled, so it cannot hop across a
wall. After the iterations every node and midpoint is projected onto
``phi <= -r``; the projection moves positions only and removes velocity into
the wall, so recovering from penetration never adds energy. Velocities are
``v = (x_new - x) / dt * (1 - damping)``.

Material frame and torsion: the reference frame is parallel-transported from the
hub along the current centreline after being turned about the access direction by
the hub angle; each segment's material frame is it turned by the segment's twist.
In a straight, free lumen the twist relaxes to 0 within a step (the shaft's
rotational inertia is tiny) and the tip turns 1:1 with the hub; where friction or
a pre-shaped tip in a curve holds the tip, the hub's rotation winds the shaft up
(the tip lags, ``hub_torque`` grows up to what the contacts hold) until the tip
slips and catches up (whip). Pushing releases stored twist (sliding shares the
friction cone). ``torsion=False`` gives the rigid device of earlier versions.

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

Contact stiffness and resolution: the wall penalty is a fixed stiffness per contact
point, so a point load (a tip pressed on the wall) reports the same newtons at any
node count, and the trilinear ripple of a coarse distance field cannot bend a finely
discretised rod into reporting huge forces (with a stiffness growing like ``EI / l^3``
a 200-node catheter on the default case reported one-step wall forces of ~250 N).
Each step's solve indents the compliant wall by ``lambda / w`` (0.1 mm at 2 N) and the
final projection removes it, so positions never stay in the wall.

Limits: uniform node spacing (pre-shaped tips need ``l`` at most about a third
of the tip length; :class:`DeviceSpec` refuses shapes that turn more than 135
degrees at one node); uniform stiffness here (no floppy guidewire tip; the compiled
kernels take stretch and bending stiffness, contact radius and friction per
segment, node or contact point, which :mod:`surgsim.physics.coaxial` uses); the part
outside the body (hub to sheath) is torsionally rigid; the twist is carried by the
reference frame when the centreline moves (no friction against that geometric
rotation); the clamp position is quantised to half a segment; friction creeps
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

__all__ = ["SPIN_STICK_SPEED", "WALL_STIFFNESS", "RodSolver", "RodState", "sample_sdf", "tube_sdf"]

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


#: Wall contact stiffness per contact point, N/m: the vessel wall as a compliant surface
#: that a 2 N push indents by 0.1 mm at one point. It does not depend on the node spacing,
#: so a point load comes back as the same newtons at any resolution. (A stiffness scaled
#: with the rod's EA / l or EI / l^3, as before, grew as l^-3: where the lumen's distance
#: field is coarse (1.4 x 1.4 x 2 mm voxels on the default case) its trilinear ripple then
#: bent a 200-node rod node by node and reported one-step wall forces of hundreds of newtons.)
#: Positions do not depend on it: each step ends with every node projected out of the wall.
WALL_STIFFNESS = 2.0e4
#: Regularisation of Coulomb friction against the rod's spin, m/s of surface speed: below it
#: the friction torque grows in proportion to the speed. A hub turned at 1-10 rad/s moves a
#: 5 Fr catheter's surface at 1-8 mm/s, so this is far below the translational
#: ``friction_stick_speed``, or a tip pressed on the wall would hardly resist turning.
SPIN_STICK_SPEED = 1.0e-4
_STATUS = {
    _k.ERR_NOT_FINITE: "a node position or velocity became NaN or infinite",
    _k.ERR_NOT_SPD: "the rod's system matrix is not positive definite",
}


def _check_solver_args(dt, iterations, extra_iterations, damping, friction_stick_speed,
                       max_rotation_speed) -> None:
    """Raise :class:`PhysicsError` for a step setting out of range (shared by both solvers)."""
    if not (math.isfinite(dt) and 0 < dt <= 0.01):
        raise PhysicsError(f"dt must be in (0, 0.01] s, got {dt!r}")
    if not (isinstance(iterations, (int, np.integer)) and 1 <= iterations <= 100):
        raise PhysicsError(f"iterations must be an integer in 1..100, got {iterations!r}")
    if not (isinstance(extra_iterations, (int, np.integer)) and 0 <= extra_iterations <= 20):
        raise PhysicsError(f"extra_iterations must be an integer in 0..20, got {extra_iterations!r}")
    if not (math.isfinite(damping) and 0.0 <= damping < 1.0):
        raise PhysicsError(f"damping must be in [0, 1), got {damping!r}")
    if not (math.isfinite(friction_stick_speed) and friction_stick_speed > 0):
        raise PhysicsError(f"friction_stick_speed must be > 0 m/s, got {friction_stick_speed!r}")
    if not (math.isfinite(max_rotation_speed) and max_rotation_speed > 0):
        raise PhysicsError(f"max_rotation_speed must be > 0 rad/s, got {max_rotation_speed!r}")


class _RodBase:
    """State, work arrays, set-up and readouts shared by :class:`RodSolver` and
    :class:`surgsim.physics.coaxial.CoaxialSolver` (one discretised rod in a distance field).

    Subclasses set ``_n``, ``_l``, ``dt``, ``iterations``, the material arrays
    (``_ks_seg``, ``_kb_node``, ``_bend_c``, ``_mass``, ``_rad_pt``, ``_mu_pt``) and call
    :meth:`_init_frame`, :meth:`_init_wall`, :meth:`_init_params`, :meth:`_init_state`.
    """

    _what = "rod"

    # -- set-up ----------------------------------------------------------------------
    def _init_frame(self, access_point, access_direction, reference_normal) -> None:
        """Entry point, insertion direction and the hub's reference normal (unit, perpendicular)."""
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

    def _init_wall(self, sdf_values, sdf_voxel_from_world, radius: float, what: str) -> None:
        """Check and keep the lumen's distance field; the entry must lie ``radius`` inside it."""
        if sdf_values is None:
            self._has_wall = False
            self._sdf = np.zeros((2, 2, 2), dtype=np.float32) - 1.0
            self._vfw = np.eye(4)
            self._wfv = np.eye(4)
            return
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
        if phi0[0] > -radius:
            raise PhysicsError(
                f"access_point {self._access.tolist()} is {1e3 * (phi0[0] + radius):.2f} mm "
                "too close to or outside the lumen wall: place the sheath end inside the vessel, "
                f"at least one {what} radius from the wall"
            )

    def _init_params(self, *, ks: float, kb: float, wc: float, mu: float, damping: float, radius: float,
                     fmax: float, friction_stick_speed: float, extra_iterations: int,
                     twist: bool) -> None:
        """The kernels' parameter array (``_k.P_*``)."""
        if not (math.isfinite(wc) and wc > 0):
            raise PhysicsError(f"contact_stiffness must be positive, got {wc!r}")
        prm = np.zeros(_k.N_PARAMS)
        prm[_k.P_L] = self._l
        prm[_k.P_DT] = self.dt
        prm[_k.P_KS] = ks
        prm[_k.P_KB] = kb
        prm[_k.P_WC] = wc
        prm[_k.P_MU] = mu
        prm[_k.P_DAMP] = damping
        prm[_k.P_R] = radius
        prm[_k.P_FMAX] = fmax
        prm[_k.P_EPS] = friction_stick_speed * self.dt
        prm[_k.P_VMAX] = 20.0
        prm[_k.P_MARGIN] = 0.02 * radius
        prm[_k.P_ADH] = 0.0
        prm[_k.P_EXTRA] = extra_iterations
        prm[_k.P_FTOL] = 1.5
        prm[_k.P_HOLD] = 0.25 * radius
        prm[_k.P_TWIST] = 1.0 if twist else 0.0
        prm[_k.P_EPS_SPIN] = SPIN_STICK_SPEED * self.dt
        self._prm = prm

    def _place(self, shaped: np.ndarray, straight: np.ndarray, depth: float, radius: np.ndarray,
               what: str) -> np.ndarray:
        """The shaped start if its inserted part fits the lumen, else the straight one."""
        if not self._has_wall:
            return shaped
        s = np.arange(self._n) * self._l
        inside = s < depth
        for candidate in (shaped, straight):
            phi, _ = sample_sdf(self._sdf, self._vfw, candidate[inside])
            bad = np.nonzero(phi > -radius[inside] + 1e-4)[0]
            if not bad.size:
                return candidate
        raise PhysicsError(
            f"{what}: the straight inserted part leaves the lumen {depth - s[bad[-1]]:.3f} m past "
            "access_point; start with a smaller initial depth and advance the device"
        )

    def _init_state(self, x: np.ndarray, gravity, external_force) -> None:
        """Positions ``x`` (n, 3), zero velocities, external loads and the kernels' work arrays."""
        n = self._n
        self._gravity = None if gravity is None else _vec3(gravity, "gravity")
        self.set_external_force(np.zeros((n, 3)) if external_force is None else external_force)
        self._x = np.ascontiguousarray(x, dtype=np.float64)
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
        self._saved = np.zeros(10 * n + 6 + _k.N_SCALARS)
        if not hasattr(self, "_tw"):
            self._tw = np.zeros((_k.N_TW, n))
        _k.compute_frames(self._x, self._dir, self._uref, 0.0, self._tseg, self._useg)
        self._tipst[:3] = self._tseg[0]
        self._tipst[3:] = self._useg[0]
        self._sc[_k.S_TIP_INIT] = 1.0
        self._step = 0

    def _kernel_arrays(self) -> tuple:
        """The arrays every compiled step function takes, in its order (after the inputs)."""
        return (
            self._x, self._v, self._fext, self._mass, self._bend_c, self._sc, self._tipst, self._prm,
            self.iterations, self._access, self._dir, self._uref, self._sdf, self._vfw, self._wfv,
            self._has_wall, self._lam, self._cforce, self._incontact, self._active, self._released,
            self._nrm, self._cpl, self._y, self._ystar, self._tseg, self._useg, self._dvec, self._Ab,
            self._rhs, self._sol, self._saved, self._facc, self._ks_seg, self._kb_node,
            self._rad_pt, self._mu_pt, self._tw,
        )  # fmt: skip

    def _finish_run(self, n_steps: int, status: int) -> None:
        self._step += n_steps
        self._facc_steps += n_steps
        if status != _k.OK:
            raise PhysicsError(
                f"{self._what} failed near step {self._step}: {_STATUS.get(status, status)}; "
                "reduce dt or the push speed and report the input log"
            )

    # -- inputs ----------------------------------------------------------------------
    def set_external_force(self, forces: np.ndarray) -> None:
        """Set constant external forces on the nodes (newtons, (n, 3)); gravity is added.

        Gravity uses the node masses at the call (a coaxial pair's change as the devices slide).
        """
        f = np.asarray(forces, dtype=np.float64)
        if f.shape != (self._n, 3) or not np.all(np.isfinite(f)):
            raise PhysicsError(f"external_force must be a finite ({self._n}, 3) array of newtons")
        self._fext = f.copy()
        if self._gravity is not None:
            self._fext += self._mass[:, None] * self._gravity[None, :]

    def take_mean_contact_force(self) -> np.ndarray:
        """Mean normal contact force per node since the last call, (n,) float, newtons.

        What a force sensor of finite bandwidth reads: one-step reactions of
        the penetration recovery (a node crossing a sharp ostium edge) average
        out, sustained pressure does not. Resets the accumulator.
        """
        mean = self._facc / self._facc_steps if self._facc_steps else self._cforce.copy()
        self._facc[:] = 0.0
        self._facc_steps = 0
        return mean

    # -- readouts --------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        """Nodes of the rod."""
        return self._n

    @property
    def segment_length(self) -> float:
        """Node spacing, metres."""
        return self._l

    @property
    def positions(self) -> np.ndarray:
        """(n, 3) float, metres (live view, do not modify); node 0 is the distal end."""
        return self._x

    @property
    def velocities(self) -> np.ndarray:
        """(n, 3) float, m/s (live view)."""
        return self._v

    @property
    def depth(self) -> float:
        """Inserted length (of the distal end), metres."""
        return float(self._sc[_k.S_DEPTH])

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
        """(n,) bool: nodes past the entry (arc length from the distal end below ``depth``)."""
        return np.arange(self._n) * self._l < self.depth

    @property
    def free(self) -> np.ndarray:
        """(n,) bool: nodes the solver moves (the rest are held by the sheath)."""
        out = np.zeros(self._n, dtype=bool)
        out[: _k._nfree(self.depth, self._l, self._n)] = True
        return out

    @property
    def step_count(self) -> int:
        """Steps taken since construction."""
        return self._step

    @property
    def max_depth(self) -> float:
        """Largest possible depth (two nodes stay in the sheath), metres."""
        return float(self._sc[_k.S_DEPTH_MAX])

    @property
    def iterations_last_step(self) -> int:
        """Global solves the last step took."""
        return int(self._sc[_k.S_ITERS])

    def wall_distance(self, points: np.ndarray | None = None) -> np.ndarray:
        """Signed distance (metres) of ``points`` (default: the nodes) to the lumen wall."""
        pts = self._x if points is None else points
        if not self._has_wall:
            return np.full(len(np.atleast_2d(pts)), -np.inf)
        return sample_sdf(self._sdf, self._vfw, pts)[0]


class RodSolver(_RodBase):
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
    contact_stiffness : float or None, N/m per contact point (default :data:`WALL_STIFFNESS`)
    extra_iterations : int
        Iterations a step may add to ``iterations`` while a contact pulls on the
        wall, a friction contact has not settled (stick to slip) or a segment's
        length is off by more than 1 % (a large rotation within the step).
    friction_stick_speed : float, m/s
        Regularisation of Coulomb friction: below this sliding speed the friction
        force grows in proportion to the speed up to ``mu`` times the normal force.
    max_rotation_speed : float, rad/s
        Fastest hub rotation a hand applies (default two turns a second); faster
        rotation inputs are clipped.
    torsion : bool
        Finite torsional stiffness ``G J`` from the spec (default); ``False`` makes the
        device torsionally rigid (the tip frame turns 1:1 with the hub, as before).
    """

    _what = "rod solver"

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
        torsion: bool = True,
    ) -> None:
        if not isinstance(spec, DeviceSpec):
            raise PhysicsError(f"spec must be a DeviceSpec, got {type(spec).__name__}")
        _check_solver_args(dt, iterations, extra_iterations, damping, friction_stick_speed,
                           max_rotation_speed)
        self.max_rotation_speed = float(max_rotation_speed)
        self.spec = spec
        self._what = f"rod solver ({spec.name})"
        self.dt = float(dt)
        self.iterations = int(iterations)
        n = spec.n_nodes
        h = spec.segment_length
        self._n = n
        self._l = h
        self._init_frame(access_point, access_direction, reference_normal)
        self._init_wall(sdf_values, sdf_voxel_from_world, spec.outer_radius, "device")

        ks = spec.EA / h
        kb = spec.EI / h**3
        wc = float(contact_stiffness) if contact_stiffness is not None else WALL_STIFFNESS
        self._init_params(ks=ks, kb=kb, wc=wc, mu=spec.friction, damping=damping,
                          radius=spec.outer_radius, fmax=spec.max_push_force,
                          friction_stick_speed=friction_stick_speed,
                          extra_iterations=extra_iterations, twist=bool(torsion))
        # uniform material along the rod (the kernels take per-segment/-node/-point arrays)
        self._ks_seg = np.full(n - 1, ks)
        self._kb_node = np.full(n, kb)
        self._rad_pt = np.full(2 * n, spec.outer_radius)
        self._mu_pt = np.full(2 * n, spec.friction)
        self._tw = np.zeros((_k.N_TW, n))
        self._tw[_k.TW_KT, 1: n - 1] = spec.GJ / h
        self._tw[_k.TW_IROT, : n - 1] = spec.density * spec.polar_moment * h

        self._mass = np.full(n, spec.linear_density * h)
        self._mass[0] *= 0.5

        kappa = spec.rest_curvature()
        mag = np.linalg.norm(kappa, axis=1)
        amp = 2.0 * h * np.sin(0.5 * mag * h)
        self._bend_c = np.zeros((n, 2))
        nz = mag > 0
        self._bend_c[nz] = kappa[nz] * (amp[nz] / mag[nz])[:, None]

        self._sc = np.zeros(_k.N_SCALARS)
        self._sc[_k.S_DEPTH_MAX] = (n - 2) * h
        if not (math.isfinite(initial_depth) and 0 <= initial_depth <= (n - 2) * h):
            raise PhysicsError(
                f"initial_depth must be in [0, {(n - 2) * h:.3f}] m for this device, got {initial_depth!r}"
            )
        self._sc[_k.S_DEPTH] = float(initial_depth)
        s = np.arange(n) * h
        straight = self._access[None, :] - (s - initial_depth)[:, None] * self._dir[None, :]
        shaped = self._rest_shape(straight, _k._nfree(float(initial_depth), h, n), kappa)
        x = self._place(shaped, straight, float(initial_depth), self._rad_pt[:n],
                        f"initial_depth {initial_depth:.3f} m")
        self._init_state(x, gravity, external_force)

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
        status = _k.run_steps(n_steps, adv, rot, *self._kernel_arrays())
        self._finish_run(n_steps, status)

    # -- readouts --------------------------------------------------------------------
    @property
    def hub_angle(self) -> float:
        """Hub rotation since the start, radians."""
        return float(self._sc[_k.S_HUB])

    @property
    def hub_torque(self) -> float:
        """Torque the hub applies to the free part in the last step, N m (about the access direction).

        The twist the shaft stores: with the tip held by friction it grows as the hub
        turns, up to what the contacts' friction can hold. 0 for a rigid device.
        """
        return float(self._sc[_k.S_TORQUE])

    def twist(self) -> np.ndarray:
        """(n - 1,) float, radians: each segment's material rotation relative to a torsionally
        rigid device (0 everywhere when the hub's rotation reached the tip unchanged;
        negative where the segment lags a hub turned forward)."""
        return self._tw[_k.TW_TH, : self._n - 1].copy()

    def tip_lag(self) -> float:
        """Radians the tip's material frame lags a torsionally rigid device's (hub turned
        forward, tip held back: > 0; a tip that whipped past: < 0)."""
        return float(-self._tw[_k.TW_TH, 0])

    def tip_direction(self) -> np.ndarray:
        """(3,) unit vector from node 1 to the tip (distal)."""
        d = self._x[0] - self._x[1]
        return d / max(np.linalg.norm(d), 1e-12)

    def tip_angle(self) -> float:
        """Rotation of the tip's material frame about its tangent since the start, radians.

        Accumulated step by step (not wrapped): the change of the tip's reference frame
        (compared with the previous one parallel-transported to the current tip tangent)
        plus the change of the tip segment's twist. With the tip tangent fixed (a
        straight rod in a straight vessel) and no twist this equals the hub rotation; a
        tip whose tangent sweeps a cone (a curved tip whirled by the hub) also picks up
        the cone's solid angle (geometric phase).
        """
        return float(self._sc[_k.S_TWIST])

    def material_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Segment tangents and first material directions.

        Returns
        -------
        tangents : (n - 1, 3) float, unit, segment s points from node s + 1 to node s
        m1 : (n - 1, 3) float, unit, perpendicular to the tangents (the reference frame
            turned by the segment's twist)
        """
        t = np.zeros((self._n - 1, 3))
        u = np.zeros((self._n - 1, 3))
        _k.compute_frames(self._x, self._dir, self._uref, self.hub_angle, t, u)
        th = self._tw[_k.TW_TH, : self._n - 1, None]
        u = u * np.cos(th) + np.cross(t, u) * np.sin(th)
        return t, u

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
