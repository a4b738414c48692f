"""The intubation world (pybullet, DIRECT mode, own client, deterministic).

Bodies:

* the airway wall: one static concave triangle mesh, the surface of
  :func:`surgsim.cases.airway_phantom.lumen_mask` (air, tongue and epiglottis
  space, oesophagus, and the space in front of the mouth);
* upper and lower incisors: static boxes whose contacts with the blade give
  the incisor force;
* tongue and epiglottis: rigid proxies held to their rest poses by explicit
  6-DOF spring-dampers (anchored to mandible and hyoid). The epiglottis' rest
  angle follows the tongue base (hyoepiglottic ligament): pushing the
  vallecula forward tips the epiglottis up. They do not collide with the
  static wall (the wall already leaves room for them);
* blade and tube: rigid compound bodies dragged toward 6-DOF hand targets by
  fixed constraints with a realistic force limit (never teleported).

pybullet soft bodies are far too slow for this (docs/baselines.md), hence
the spring-mounted proxies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from surgsim.errors import PhysicsError

#: Contact breaking threshold, metres (Bullet's default 0.02 m is larger than the glottis).
CONTACT_THRESHOLD = 1e-3
#: Largest distance (m) and angle (rad) a hand target may lead the device it holds.
LEASH_M = 0.01
LEASH_RAD = 0.15
#: The tube starts (and passes the mouth) this far to the patient's right (-x) of the midline blade, m.
TUBE_LATERAL_M = 0.022
#: Collision filter groups (rays can select what occludes the view).
ANATOMY_GROUP = 1  # teeth, tongue, epiglottis: what hides the glottis
INSTRUMENT_GROUP = 2
WALL_GROUP = 4  # the static wall: compliant soft tissue the proxies stand for; not an occluder


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion of a rotation matrix (3, 3)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(m).as_quat()


def matrix_from_quat(q) -> np.ndarray:
    """(3, 3) rotation matrix of an (x, y, z, w) quaternion."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(np.asarray(q, float)).as_matrix()


def _rotvec_between(q_from, q_to) -> np.ndarray:
    """Rotation vector (3,) taking orientation q_from to q_to (world frame), radians."""
    from scipy.spatial.transform import Rotation

    return (Rotation.from_quat(q_to) * Rotation.from_quat(q_from).inv()).as_rotvec()


@dataclass
class Spring:
    """A 6-DOF spring-damper holding a proxy body to its rest pose."""

    body: int
    rest_pos: np.ndarray
    rest_quat: np.ndarray
    k: float  # N/m
    c: float  # N s/m
    k_rot: float  # N m / rad
    c_rot: float  # N m s / rad


@dataclass
class Hand:
    """A hand holding a device through a force-limited fixed constraint."""

    body: int
    constraint: int
    grip_local: np.ndarray  # (3,) grip point in the body frame
    target_pos: np.ndarray  # world position of the grip
    target_rot: np.ndarray  # (3, 3) world orientation of the body
    max_force: float


class AirwayWorld:
    """Rigid-body world of one intubation.

    Parameters
    ----------
    design : AirwayDesign
        Anatomy (millimetres) from :func:`surgsim.cases.airway_phantom.design`.
    blade : BladeSpec
    tube : TubeSpec
    dt : float
        Time step, seconds.
    blade_pose, tube_pose : ((3,) float, (3, 3) float)
        Initial world positions (metres) of the blade heel / tube tip and orientations.
    hand_force_n, tube_force_n : float
        Force limits of the hand constraints (also their torque limits, N m).
    """

    def __init__(self, design, blade, tube, dt: float, blade_pose, tube_pose,
                 hand_force_n: float = 80.0, tube_force_n: float = 25.0,
                 wall_triangles: int = 12000):
        import pybullet as p
        from pybullet_utils import bullet_client

        self.p = p
        self.c = bullet_client.BulletClient(connection_mode=p.DIRECT)
        self.dt = float(dt)
        c = self.c
        c.resetSimulation()
        c.setPhysicsEngineParameter(fixedTimeStep=self.dt, numSolverIterations=30,
                                    deterministicOverlappingPairs=1, numSubSteps=0)
        c.setGravity(0.0, 9.81, 0.0)  # supine: gravity points posterior (+y)
        self.design = design
        self.blade_spec = blade
        self.tube_spec = tube
        self.wall_mesh = wall_mesh(design, wall_triangles)
        self.wall = self._static_mesh(self.wall_mesh)
        self.upper_teeth = self._static_box(design.upper_teeth)
        self.lower_teeth = self._static_box(design.lower_teeth)
        self.tongue, self.tongue_spring = self._tongue()
        self.epiglottis, self.epi_spring = self._epiglottis()
        self._epi_rest_quat0 = self.epi_spring.rest_quat.copy()
        self._epi_base = design.landmarks_mm["epiglottis_base"] / 1000.0
        self._epi_rest_pos0 = self.epi_spring.rest_pos.copy()
        self.blade = self._blade_body(blade, *blade_pose)
        self.tube = self._tube_body(tube, *tube_pose)
        for b in (self.tongue, self.epiglottis):
            c.setCollisionFilterPair(b, self.wall, -1, -1, 0)
            c.setCollisionFilterPair(b, self.upper_teeth, -1, -1, 0)
            c.setCollisionFilterPair(b, self.lower_teeth, -1, -1, 0)
        c.setCollisionFilterPair(self.tongue, self.epiglottis, -1, -1, 0)
        for b in (self.wall, self.upper_teeth, self.lower_teeth, self.tongue, self.epiglottis,
                  self.blade, self.tube):
            c.changeDynamics(b, -1, contactProcessingThreshold=CONTACT_THRESHOLD)
        c.setCollisionFilterGroupMask(self.wall, -1, WALL_GROUP, 0xFFFF)
        for b in (self.upper_teeth, self.lower_teeth, self.tongue, self.epiglottis):
            c.setCollisionFilterGroupMask(b, -1, ANATOMY_GROUP, 0xFFFF)
        for b in (self.blade, self.tube):
            c.setCollisionFilterGroupMask(b, -1, INSTRUMENT_GROUP, 0xFFFF)
        grip_b = np.array([0.0, 0.0, 0.6 * blade.handle_length_m])
        self.blade_hand = self._hand(self.blade, grip_b, *blade_pose, hand_force_n)
        pts, s = tube.centerline()
        grip_t = pts[int(np.searchsorted(s, 0.27))]
        self.tube_hand = self._hand(self.tube, grip_t, *tube_pose, tube_force_n)

    # ------------------------------------------------------------------ building
    def _static_mesh(self, mesh) -> int:
        c, p = self.c, self.p
        pts = np.asarray(mesh.points, float)
        tris = mesh.faces.reshape(-1, 4)[:, 1:]
        shape = c.createCollisionShape(p.GEOM_MESH, vertices=pts.tolist(),
                                       indices=tris.reshape(-1).astype(int).tolist(),
                                       flags=p.GEOM_FORCE_CONCAVE_TRIMESH)
        if shape < 0:
            raise PhysicsError("airway wall: pybullet refused the wall mesh; reduce wall_triangles")
        return c.createMultiBody(0.0, shape, -1, [0, 0, 0], [0, 0, 0, 1])

    def _static_box(self, box) -> int:
        c, p = self.c, self.p
        shape = c.createCollisionShape(p.GEOM_BOX, halfExtents=(box.half / 1000.0).tolist())
        return c.createMultiBody(0.0, shape, -1, (box.centre / 1000.0).tolist(),
                                 quat_from_matrix(box.rot).tolist())

    def _spring_body(self, shape, mass, pos, rot, k, k_rot, inertia=None) -> tuple[int, Spring]:
        c = self.c
        q = quat_from_matrix(rot)
        body = c.createMultiBody(mass, shape, -1, pos.tolist(), q.tolist())
        c.changeDynamics(body, -1, linearDamping=0.0, angularDamping=0.0, lateralFriction=0.3)
        if inertia is not None:
            c.changeDynamics(body, -1, mass=mass, localInertiaDiagonal=list(inertia))
        inertia = c.getDynamicsInfo(body, -1)[2]
        i_min = max(min(inertia), 1e-9)
        spring = Spring(body, pos.copy(), q, k, 2.0 * 0.9 * np.sqrt(k * mass), k_rot,
                        2.0 * 0.9 * np.sqrt(k_rot * i_min))
        return body, spring

    def _tongue(self):
        c, p = self.c, self.p
        e = self.design.tongue
        u = np.linspace(0, np.pi, 7)[1:-1]
        v = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        uu, vv = np.meshgrid(u, v)
        local = np.stack([np.sin(uu) * np.cos(vv), np.sin(uu) * np.sin(vv), np.cos(uu)], -1).reshape(-1, 3)
        local = np.vstack([local, [[0, 0, 1.0], [0, 0, -1.0]]]) * (e.radii / 1000.0)
        shape = c.createCollisionShape(p.GEOM_MESH, vertices=local.tolist())
        m = 0.1
        r = e.radii / 1000.0
        inertia = 0.2 * m * np.array([r[1] ** 2 + r[2] ** 2, r[0] ** 2 + r[2] ** 2, r[0] ** 2 + r[1] ** 2])
        return self._spring_body(shape, m, e.centre / 1000.0, e.rot, k=900.0, k_rot=0.6,
                                 inertia=inertia)

    def _epiglottis(self):
        c, p = self.c, self.p
        b = self.design.epiglottis
        shape = c.createCollisionShape(p.GEOM_BOX, halfExtents=(b.half / 1000.0).tolist())
        m = 0.01
        h = 2 * b.half / 1000.0
        inertia = m / 12.0 * np.array([h[1] ** 2 + h[2] ** 2, h[0] ** 2 + h[2] ** 2, h[0] ** 2 + h[1] ** 2])
        inertia = np.maximum(inertia, 2e-7)
        return self._spring_body(shape, m, b.centre / 1000.0, b.rot, k=300.0, k_rot=0.08,
                                 inertia=inertia)

    def _blade_body(self, spec, pos, rot) -> int:
        c, p = self.c, self.p
        pts, _ = spec.centerline(9)
        shapes, positions, orns, halves = [], [], [], []
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            mid = 0.5 * (a + b)
            seg = np.linalg.norm(b - a)
            tt = (b - a) / seg
            nz = np.cross(tt, [0, 1.0, 0])
            m = np.column_stack([tt, [0, 1.0, 0], nz])
            halves.append([0.5 * seg + 0.001, 0.5 * spec.width_m, 0.5 * spec.thickness_m])
            positions.append(mid.tolist())
            orns.append(quat_from_matrix(m).tolist())
            shapes.append(p.GEOM_BOX)
        # handle
        halves.append([0.014, 0.014, 0.5 * spec.handle_length_m])
        positions.append([-0.016, 0.0, 0.5 * spec.handle_length_m + 0.004])
        orns.append([0, 0, 0, 1.0])
        shapes.append(p.GEOM_BOX)
        shape = c.createCollisionShapeArray(shapes, halfExtents=halves, collisionFramePositions=positions,
                                            collisionFrameOrientations=orns)
        body = c.createMultiBody(spec.mass_kg, shape, -1, list(pos), quat_from_matrix(rot).tolist())
        c.changeDynamics(body, -1, lateralFriction=0.2, linearDamping=0.0, angularDamping=0.0,
                         ccdSweptSphereRadius=0.0015)
        return body

    def _tube_body(self, spec, pos, rot) -> int:
        c, p = self.c, self.p
        pts, _ = spec.centerline(0.02)
        r = 0.5 * spec.outer_diameter_m
        shapes, radii, lengths, positions, orns = [], [], [], [], []
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            seg = np.linalg.norm(b - a)
            tt = (b - a) / seg
            # capsule axis = local z
            zz = tt
            xx = np.cross([0, 1.0, 0], zz)
            xx = xx / np.linalg.norm(xx) if np.linalg.norm(xx) > 1e-9 else np.array([1.0, 0, 0])
            yy = np.cross(zz, xx)
            m = np.column_stack([xx, yy, zz])
            shapes.append(p.GEOM_CAPSULE)
            radii.append(r)
            lengths.append(max(seg - r, 1e-3))
            positions.append((0.5 * (a + b)).tolist())
            orns.append(quat_from_matrix(m).tolist())
        shape = c.createCollisionShapeArray(shapes, radii=radii, lengths=lengths,
                                            collisionFramePositions=positions,
                                            collisionFrameOrientations=orns)
        body = c.createMultiBody(spec.mass_kg, shape, -1, list(pos), quat_from_matrix(rot).tolist())
        c.changeDynamics(body, -1, lateralFriction=0.15, linearDamping=0.0, angularDamping=0.0,
                         ccdSweptSphereRadius=0.002)
        return body

    def _hand(self, body, grip_local, pos, rot, max_force) -> Hand:
        c, p = self.c, self.p
        grip_world = np.asarray(pos) + rot @ grip_local
        cid = c.createConstraint(body, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], grip_local.tolist(),
                                 grip_world.tolist(), [0, 0, 0, 1], quat_from_matrix(rot).tolist())
        c.changeConstraint(cid, grip_world.tolist(), quat_from_matrix(rot).tolist(), maxForce=max_force)
        return Hand(body, cid, grip_local, grip_world, np.asarray(rot, float), max_force)

    # ------------------------------------------------------------------ driving
    def move_hand(self, hand: Hand, velocity, angular_velocity, dt: float) -> None:
        """Move a hand target by a world velocity (m/s) and angular velocity (rad/s) over dt."""
        from scipy.spatial.transform import Rotation

        hand.target_pos = hand.target_pos + np.asarray(velocity, float) * dt
        w = np.asarray(angular_velocity, float)
        if np.any(w):
            hand.target_rot = Rotation.from_rotvec(w * dt).as_matrix() @ hand.target_rot
        # the hand stays on the handle: a blocked device stops the hand (leash)
        pos, rot = self.pose(hand.body)
        grip = pos + rot @ hand.grip_local
        off = hand.target_pos - grip
        dist = float(np.linalg.norm(off))
        if dist > LEASH_M:
            hand.target_pos = grip + off * (LEASH_M / dist)
        rv = Rotation.from_matrix(hand.target_rot @ rot.T).as_rotvec()
        ang = float(np.linalg.norm(rv))
        if ang > LEASH_RAD:
            hand.target_rot = Rotation.from_rotvec(rv * (LEASH_RAD / ang)).as_matrix() @ rot
        self.c.changeConstraint(hand.constraint, hand.target_pos.tolist(),
                                quat_from_matrix(hand.target_rot).tolist(), maxForce=hand.max_force)

    def _apply_springs(self) -> None:
        c = self.c
        # hyoepiglottic coupling: the epiglottis tips forward as the tongue base moves anteriorly
        tpos, _ = c.getBasePositionAndOrientation(self.tongue)
        disp = np.asarray(tpos) - self.tongue_spring.rest_pos
        forward = -disp[1] - 0.5 * disp[2]  # anterior (-y) and caudal (-z)
        angle = float(np.clip(forward / 0.012, 0.0, 1.0)) * np.radians(70.0)
        from scipy.spatial.transform import Rotation

        rot = Rotation.from_rotvec([angle, 0.0, 0.0])  # +x rotation tips the tip anteriorly
        base = self._epi_base
        self.epi_spring.rest_pos = base + rot.apply(self._epi_rest_pos0 - base)
        self.epi_spring.rest_quat = (rot * Rotation.from_quat(self._epi_rest_quat0)).as_quat()
        for s in (self.tongue_spring, self.epi_spring):
            pos, q = c.getBasePositionAndOrientation(s.body)
            v, w = c.getBaseVelocity(s.body)
            f = -s.k * (np.asarray(pos) - s.rest_pos) - s.c * np.asarray(v)
            tq = s.k_rot * _rotvec_between(q, s.rest_quat) - s.c_rot * np.asarray(w)
            c.applyExternalForce(s.body, -1, f.tolist(), list(pos), self.p.WORLD_FRAME)
            c.applyExternalTorque(s.body, -1, tq.tolist(), self.p.WORLD_FRAME)

    def step(self, n: int = 1) -> None:
        """Advance n steps."""
        for _ in range(n):
            self._apply_springs()
            self.c.stepSimulation()

    # ------------------------------------------------------------------ queries
    def pose(self, body: int) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and rotation (3, 3) of a body's frame."""
        pos, q = self.c.getBasePositionAndOrientation(body)
        return np.asarray(pos, float), matrix_from_quat(q)

    def contact_force(self, a: int, b: int) -> tuple[np.ndarray, float]:
        """Total contact force vector (3,) on ``b`` from ``a`` (newtons) and its normal magnitude."""
        total = np.zeros(3)
        mag = 0.0
        for cp in self.c.getContactPoints(a, b):
            n = np.asarray(cp[7], float)  # normal on b, pointing from b to a
            fn = float(cp[9])
            f = -n * fn
            f += -np.asarray(cp[11], float) * cp[10] - np.asarray(cp[13], float) * cp[12]
            total += f
            mag += fn
        return total, mag

    def hand_force(self, hand: Hand) -> float:
        """Magnitude of the force the hand constraint applies, newtons."""
        st = self.c.getConstraintState(hand.constraint)
        return float(np.linalg.norm(st[:3]))

    def ray_visible(self, origin: np.ndarray, targets: np.ndarray, include_instruments: bool = False) -> np.ndarray:
        """Which targets (n, 3) are visible from ``origin`` (3,), metres (nothing in between).

        Teeth, tongue and epiglottis occlude; blade and tube only with
        ``include_instruments``. The static wall does not: it bounds soft
        tissue that a laryngoscope compresses and lifts (the proxies stand for
        it). Returns (n,) bool.
        """
        origin = np.asarray(origin, float)
        tg = np.asarray(targets, float)
        ends = origin + (tg - origin) * 0.995
        mask = ANATOMY_GROUP | (INSTRUMENT_GROUP if include_instruments else 0)
        res = self.c.rayTestBatch([origin.tolist()] * len(tg), ends.tolist(), collisionFilterMask=mask)
        return np.array([r[0] < 0 for r in res], bool)

    def close(self) -> None:
        """Disconnect the pybullet client."""
        try:
            self.c.disconnect()
        except Exception:  # noqa: BLE001 (already disconnected)
            pass


def start_poses(design, blade, tube) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Initial blade and tube poses: outside the open mouth, aimed into it.

    The blade lies in the sagittal plane with its chord along the line from
    the mouth centre to the vallecula, its tip 2 cm in front of the mouth and
    the handle toward the ceiling; the tube waits in front of the mouth,
    :data:`TUBE_LATERAL_M` to the patient's right of the blade, parallel to the
    sagittal plane and aimed along the mouth-to-glottis line.

    Returns
    -------
    ((3,) heel position m, (3, 3) rotation), ((3,) tube tip position m, (3, 3) rotation)
    """
    L = {k: v / 1000.0 for k, v in design.landmarks_mm.items()}
    mouth, target = L["mouth_centre"], L["vallecula"]
    d_in = (target - mouth) / np.linalg.norm(target - mouth)
    tip_b = blade.tip
    chord = tip_b / np.linalg.norm(tip_b)
    best = None
    for th in np.linspace(-np.pi, np.pi, 3601):
        xw = np.array([0.0, np.cos(th), np.sin(th)])
        for sgn in (1.0, -1.0):  # the handle toward the ceiling (anterior), either flange side
            zw = sgn * np.array([0.0, -np.sin(th), np.cos(th)])
            if zw[1] > 0:
                continue
            cw = chord[0] * xw + chord[2] * zw
            err = float(np.linalg.norm(cw - d_in))
            if best is None or err < best[0] - 1e-12:
                best = (err, xw, zw)
    _, xw, zw = best
    rb = np.column_stack([xw, np.cross(zw, xw), zw])
    heel = mouth - 0.02 * d_in - rb @ tip_b
    g = L["glottis_centre"]
    xt = (g - mouth) / np.linalg.norm(g - mouth)
    start = mouth + np.array([-TUBE_LATERAL_M, 0.0, 0.0]) - 0.03 * xt
    zt = np.cross(xt, [1.0, 0.0, 0.0])
    zt = zt if zt[1] < 0 else -zt
    rt = np.column_stack([xt, np.cross(zt, xt), zt])
    return (heel, rb), (start, rt)


_MESH_CACHE: dict = {}


def wall_mesh(design, triangles: int = 12000):
    """Airway wall surface (pyvista PolyData, metres) from the design's lumen mask (cached)."""
    from surgsim.anatomy.surface import surface_from_mask
    from surgsim.cases.airway_phantom import lumen_mask

    key = (design.params, round(design.extension, 6), triangles)
    if key not in _MESH_CACHE:
        mask, wfv = lumen_mask(design, 2.0)
        _MESH_CACHE[key] = surface_from_mask(mask, wfv, target_triangles=triangles, smooth_iterations=10)
    return _MESH_CACHE[key]
