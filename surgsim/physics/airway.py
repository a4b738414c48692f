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
* blade: a rigid compound body held by an impedance hand (a 6-DOF spring-damper
  toward the hand target, force and torque limited: :class:`Hand`), so the hand
  force grows with resistance as a wrist's does and the tooth and tissue forces
  are pybullet contact forces; the static wall is rigid, the tongue and
  epiglottis proxies give way on their springs;
* tube: a rigid compound body dragged by a stiff force-limited fixed constraint
  (a styletted tube steered by the wrist). Blade and tube do not collide with
  each other (the rigid tube cannot bend around the handle as a real one does).
  Neither is ever teleported.

Bullet keeps some settings process-wide (the contact breaking threshold): the
world sets them before every step (:data:`CONTACT_BREAKING_M`), so a session
does not depend on other pybullet users in the same interpreter.

pybullet soft bodies are far too slow for this (docs/baselines.md), hence
the spring-mounted proxies.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surgsim.errors import PhysicsError
from surgsim.physics.rotations import (
    matrix_from_quat,
    matrix_from_rotvec,
    normalized,
    quat_conjugate,
    quat_from_matrix,
    quat_multiply,
    rotvec_from_matrix,
    rotvec_from_quat,
)

#: Contact processing threshold of every body, metres (Bullet's default 0.02 m is larger than the glottis).
CONTACT_THRESHOLD = 1e-3
#: Bullet's contact breaking threshold, metres. It is a process-wide global in Bullet
#: (``gContactBreakingThreshold``, also set by any other pybullet client in the process, e.g. the
#: physics benchmark): :meth:`AirwayWorld.step` sets it before every step so that a session does not
#: depend on what ran before it in the same interpreter.
CONTACT_BREAKING_M = 0.02
#: Largest distance (m) and angle (rad) a hand target may lead the device it holds: the blade's
#: impedance hand (the leash bounds its force at about stiffness x LEASH_M) and the tube's stiff hand.
LEASH_M = 0.02
LEASH_RAD = 0.25
STIFF_LEASH_M = 0.01
STIFF_LEASH_RAD = 0.15
#: The tube starts (and passes the mouth) this far to the patient's right (-x) of the midline blade, m.
TUBE_LATERAL_M = 0.0
#: Contact stiffness (N/m) and damping (N s/m) of the static wall per contact point: mucosa over
#: muscle and fat gives way by millimetres under a blade, unlike the teeth (rigid).
WALL_STIFFNESS: float | None = None
WALL_DAMPING = 40.0
#: Gravity of a supine patient (posterior, +y), m/s^2.
GRAVITY = (0.0, 9.81, 0.0)
#: Natural frequencies (linear, angular) of the hands' spring-dampers, rad/s.
HAND_OMEGA = {"blade": (105.0, 150.0)}
#: Damping ratio of the hands.
HAND_DAMPING = 0.8
#: The blade's insertion arc passes this far below the upper incisal edge (toward the lower), metres.
BLADE_ENTRY_BELOW_INCISOR_M = 0.012
#: ... or this fraction of the inter-incisor gap when that is more.
BLADE_ENTRY_GAP_FRACTION = 0.3
#: Collision filter groups (rays can select what occludes the view).
ANATOMY_GROUP = 1  # teeth, tongue, epiglottis: what hides the glottis
INSTRUMENT_GROUP = 2
WALL_GROUP = 4  # the static wall: compliant soft tissue the proxies stand for; not an occluder


@contextlib.contextmanager
def _quiet_stdio():
    """Send file descriptors 1 and 2 to /dev/null for the block (pybullet's C code prints its build
    banner at import and ``argv[0]=`` at connect); Python's and C's buffers are flushed on both sides,
    and the descriptors are restored even when the block raises."""
    import ctypes

    libc = ctypes.CDLL(None)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    libc.fflush(None)
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        libc.fflush(None)  # C's buffered stdout (a pipe) would otherwise reach the restored descriptor
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _connect_direct():
    """(pybullet module, a new DIRECT BulletClient), quietly (:func:`_quiet_stdio`)."""
    with _quiet_stdio():
        import pybullet as p
        from pybullet_utils import bullet_client

        client = bullet_client.BulletClient(connection_mode=p.DIRECT)
    return p, client


def _rotvec_between(q_from, q_to) -> np.ndarray:
    """Rotation vector (3,) taking orientation q_from to q_to (world frame), radians."""
    return rotvec_from_quat(quat_multiply(normalized(q_to), quat_conjugate(normalized(q_from))))


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
    """A hand holding a device: a force- and torque-limited 6-DOF spring-damper (impedance).

    The hand pulls the device's grip toward its target with ``k (target - grip) - c v``
    plus the device's weight, clipped to ``max_force`` newtons, and turns it toward the
    target orientation with ``k_rot angle - c_rot w`` clipped to ``max_torque`` N m. A
    device blocked by the anatomy therefore meets a hand force that grows with how far
    the hand has gone ahead of it (at most the leash), as a wrist does; the contact
    forces it causes are pybullet's contact forces.
    """

    body: int
    constraint: int  # -1: the hand is an impedance, not a pybullet constraint
    grip_local: np.ndarray  # (3,) grip point in the body frame
    target_pos: np.ndarray  # world position of the grip
    target_rot: np.ndarray  # (3, 3) world orientation of the body
    max_force: float  # N
    max_torque: float = 0.0  # N m
    k: float = 0.0  # N/m
    c: float = 0.0  # N s/m
    k_rot: float = 0.0  # N m/rad
    c_rot: float = 0.0  # N m s/rad
    weight: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) N, carried by the hand
    force: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) N, last applied
    torque: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) N m about the grip, last applied
    leash_m: float = 0.02  # largest lead of the target over the grip, m
    leash_rad: float = 0.25  # and over the orientation, rad


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
        Force limits of the hands holding the blade and the tube, newtons.
    hand_torque_nm : float
        Torque limit of the hand holding the blade, N m (the tube's hand is a stiff
        constraint whose torque limit is ``tube_force_n`` in N m).
    """

    def __init__(self, design, blade, tube, dt: float, blade_pose, tube_pose,
                 hand_force_n: float = 80.0, tube_force_n: float = 25.0,
                 wall_triangles: int = 12000, hand_torque_nm: float = 6.0):
        p, self.c = _connect_direct()
        self.p = p
        self.dt = float(dt)
        c = self.c
        c.resetSimulation()
        c.setPhysicsEngineParameter(fixedTimeStep=self.dt, numSolverIterations=30,
                                    deterministicOverlappingPairs=1, numSubSteps=0,
                                    contactBreakingThreshold=CONTACT_BREAKING_M)
        c.setGravity(*GRAVITY)  # supine: gravity points posterior (+y)
        self.design = design
        self.blade_spec = blade
        self.tube_spec = tube
        self.wall_mesh = wall_mesh(design, wall_triangles)
        self.wall = self._static_mesh(self.wall_mesh)
        # the wall bounds soft tissue: compliant contacts (a spring-damper per contact point)
        if WALL_STIFFNESS is not None:
            c.changeDynamics(self.wall, -1, contactStiffness=WALL_STIFFNESS, contactDamping=WALL_DAMPING)
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
        # the rigid styletted tube cannot bend around the handle as a real tube does beside the
        # blade's flange: the two instruments pass through each other
        c.setCollisionFilterPair(self.blade, self.tube, -1, -1, 0)
        for b in (self.wall, self.upper_teeth, self.lower_teeth, self.tongue, self.epiglottis,
                  self.blade, self.tube):
            c.changeDynamics(b, -1, contactProcessingThreshold=CONTACT_THRESHOLD)
        c.setCollisionFilterGroupMask(self.wall, -1, WALL_GROUP, 0xFFFF)
        for b in (self.upper_teeth, self.lower_teeth, self.tongue, self.epiglottis):
            c.setCollisionFilterGroupMask(b, -1, ANATOMY_GROUP, 0xFFFF)
        for b in (self.blade, self.tube):
            c.setCollisionFilterGroupMask(b, -1, INSTRUMENT_GROUP, 0xFFFF)
        grip_b = np.array([0.0, 0.0, 0.6 * blade.handle_length_m])
        self.blade_hand = self._hand(self.blade, grip_b, *blade_pose, hand_force_n, hand_torque_nm,
                                     HAND_OMEGA["blade"])
        pts, s = tube.centerline()
        grip_t = pts[int(np.searchsorted(s, 0.27))]
        self.tube_hand = self._stiff_hand(self.tube, grip_t, *tube_pose, tube_force_n)
        self.hands = (self.blade_hand,)  # impedance hands (the tube's is a pybullet constraint)

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

    def _stiff_hand(self, body, grip_local, pos, rot, max_force) -> Hand:
        """A hand holding a device through a stiff fixed constraint limited to ``max_force`` (N and N m).

        Used for the tube: a stiff wrist steering a styletted tube (its forces are not scored).
        """
        c, p = self.c, self.p
        grip_world = np.asarray(pos) + rot @ grip_local
        cid = c.createConstraint(body, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], grip_local.tolist(),
                                 grip_world.tolist(), [0, 0, 0, 1], quat_from_matrix(rot).tolist())
        c.changeConstraint(cid, grip_world.tolist(), quat_from_matrix(rot).tolist(), maxForce=max_force)
        return Hand(body, cid, np.asarray(grip_local, float), grip_world, np.asarray(rot, float),
                    float(max_force), float(max_force), leash_m=STIFF_LEASH_M, leash_rad=STIFF_LEASH_RAD)

    def _hand(self, body, grip_local, pos, rot, max_force, max_torque, omega) -> Hand:
        """A hand whose spring-dampers have natural frequencies ``omega`` = (linear, angular) rad/s.

        Stiffness and damping follow the device's mass and principal inertias (critically
        damped at ``HAND_DAMPING``), so every axis stays well inside the explicit step's
        stability limit (omega dt < 2).
        """
        info = self.c.getDynamicsInfo(body, -1)
        mass, inertia = float(info[0]), np.asarray(info[2], float)
        w_lin, w_rot = omega
        grip_world = np.asarray(pos) + rot @ grip_local
        return Hand(body, -1, np.asarray(grip_local, float), grip_world, np.asarray(rot, float),
                    float(max_force), float(max_torque), k=mass * w_lin**2,
                    c=2.0 * HAND_DAMPING * mass * w_lin, k_rot=inertia * w_rot**2,
                    c_rot=2.0 * HAND_DAMPING * inertia * w_rot,
                    weight=-mass * np.asarray(GRAVITY), leash_m=LEASH_M, leash_rad=LEASH_RAD)

    # ------------------------------------------------------------------ driving
    def move_hand(self, hand: Hand, velocity, angular_velocity, dt: float) -> None:
        """Move a hand target by a world velocity (m/s) and angular velocity (rad/s) over dt."""
        hand.target_pos = hand.target_pos + np.asarray(velocity, float) * dt
        w = np.asarray(angular_velocity, float)
        if np.any(w):
            hand.target_rot = matrix_from_rotvec(w * dt) @ hand.target_rot
        # the hand stays on the handle: a blocked device stops the hand (leash)
        pos, rot = self.pose(hand.body)
        grip = pos + rot @ hand.grip_local
        off = hand.target_pos - grip
        dist = float(np.linalg.norm(off))
        if dist > hand.leash_m:
            hand.target_pos = grip + off * (hand.leash_m / dist)
        rv = rotvec_from_matrix(hand.target_rot @ rot.T)
        ang = float(np.linalg.norm(rv))
        if ang > hand.leash_rad:
            hand.target_rot = matrix_from_rotvec(rv * (hand.leash_rad / ang)) @ rot
        if hand.constraint >= 0:
            self.c.changeConstraint(hand.constraint, hand.target_pos.tolist(),
                                    quat_from_matrix(hand.target_rot).tolist(), maxForce=hand.max_force)

    def _apply_springs(self) -> None:
        c = self.c
        # hyoepiglottic coupling: the epiglottis tips forward as the tongue base moves anteriorly
        tpos, _ = c.getBasePositionAndOrientation(self.tongue)
        disp = np.asarray(tpos) - self.tongue_spring.rest_pos
        forward = -disp[1] - 0.5 * disp[2]  # anterior (-y) and caudal (-z)
        angle = float(np.clip(forward / 0.012, 0.0, 1.0)) * np.radians(70.0)
        # +x rotation tips the tip anteriorly
        rot = matrix_from_rotvec(np.array([angle, 0.0, 0.0]))
        q_rot = np.array([np.sin(0.5 * angle), 0.0, 0.0, np.cos(0.5 * angle)])
        base = self._epi_base
        self.epi_spring.rest_pos = base + rot @ (self._epi_rest_pos0 - base)
        self.epi_spring.rest_quat = quat_multiply(q_rot, normalized(self._epi_rest_quat0))
        for s in (self.tongue_spring, self.epi_spring):
            pos, q = c.getBasePositionAndOrientation(s.body)
            v, w = c.getBaseVelocity(s.body)
            f = -s.k * (np.asarray(pos) - s.rest_pos) - s.c * np.asarray(v)
            tq = s.k_rot * _rotvec_between(q, s.rest_quat) - s.c_rot * np.asarray(w)
            c.applyExternalForce(s.body, -1, f.tolist(), list(pos), self.p.WORLD_FRAME)
            c.applyExternalTorque(s.body, -1, tq.tolist(), self.p.WORLD_FRAME)

    def _apply_hands(self) -> None:
        """Apply each hand's spring-damper force (at the centre of mass) and torque."""
        c = self.c
        for h in self.hands:
            pos, q = c.getBasePositionAndOrientation(h.body)
            v, w = c.getBaseVelocity(h.body)
            rot = matrix_from_quat(q)
            grip = np.asarray(pos) + rot @ h.grip_local
            f = h.k * (h.target_pos - grip) - h.c * np.asarray(v) + h.weight
            fn = float(np.linalg.norm(f))
            if fn > h.max_force:
                f *= h.max_force / fn
            rv = rot.T @ rotvec_from_matrix(h.target_rot @ rot.T)  # body frame
            tq = rot @ (h.k_rot * rv - h.c_rot * (rot.T @ np.asarray(w)))
            tn = float(np.linalg.norm(tq))
            if tn > h.max_torque:
                tq *= h.max_torque / tn
            h.force, h.torque = f, tq
            c.applyExternalForce(h.body, -1, f.tolist(), list(pos), self.p.WORLD_FRAME)
            c.applyExternalTorque(h.body, -1, tq.tolist(), self.p.WORLD_FRAME)

    def step(self, n: int = 1) -> None:
        """Advance n steps."""
        for _ in range(n):
            self._apply_hands()
            self._apply_springs()
            # process-wide in Bullet: pin it for this world's step (see CONTACT_BREAKING_M)
            self.c.setPhysicsEngineParameter(contactBreakingThreshold=CONTACT_BREAKING_M)
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
        """Magnitude of the force the hand applied at the last step (weight included), newtons."""
        if hand.constraint >= 0:
            return float(np.linalg.norm(self.c.getConstraintState(hand.constraint)[:3]))
        return float(np.linalg.norm(hand.force))

    def hand_torque(self, hand: Hand) -> float:
        """Magnitude of the torque the hand applied at the last step, N m."""
        return float(np.linalg.norm(hand.torque))

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

    def ray_hits(self, origin: np.ndarray, targets: np.ndarray, include_instruments: bool = False) -> np.ndarray:
        """First body (n,) int hit on the way from ``origin`` (3,) to each target (n, 3), metres; -1 for none.

        Same occluders as :meth:`ray_visible`; rays end 0.5 % short of their targets.
        """
        origin = np.asarray(origin, float)
        tg = np.atleast_2d(np.asarray(targets, float))
        ends = origin + (tg - origin) * 0.995
        mask = ANATOMY_GROUP | (INSTRUMENT_GROUP if include_instruments else 0)
        res = self.c.rayTestBatch([origin.tolist()] * len(tg), ends.tolist(), collisionFilterMask=mask)
        return np.array([r[0] for r in res], int)

    def epiglottis_tip(self) -> np.ndarray:
        """(3,) world position of the epiglottis proxy's free tip, metres."""
        pos, rot = self.pose(self.epiglottis)
        return pos + rot @ np.array([0.0, 0.0, self.design.epiglottis.half[2] / 1000.0])

    def close(self) -> None:
        """Disconnect the pybullet client."""
        try:
            self.c.disconnect()
        except Exception:  # noqa: BLE001 (already disconnected)
            pass


class BladeArc:
    """The blade's insertion path: it turns about the centre of its own curve.

    The blade's centreline is an arc of radius ``curve_radius_m``; turning the
    blade about that arc's centre slides it along itself, so it enters between
    the incisors and follows the dorsum of the tongue to the vallecula, as the
    Macintosh technique does. The arc lies in the sagittal plane, passes
    :data:`BLADE_ENTRY_BELOW_INCISOR_M` (or :data:`BLADE_ENTRY_GAP_FRACTION` of the gap) below the upper incisal edge and ends
    with the tip in the vallecula.

    Attributes
    ----------
    centre : (3,) float, metres
    sigma : float
        +1 or -1: the sense (about +x) in which insertion turns the blade.
    phi_entry : float
        Insertion angle (rad) of the start pose: the tip 2 cm before the mouth
        along the arc. Angle 0 is the tip in the vallecula.
    """

    def __init__(self, design, blade):
        L = {k: v / 1000.0 for k, v in design.landmarks_mm.items()}
        up, lo = L["upper_incisor"], L["lower_incisor"]
        gap = float(np.linalg.norm(lo - up))
        m = up + max(BLADE_ENTRY_BELOW_INCISOR_M, BLADE_ENTRY_GAP_FRACTION * gap) * (lo - up) / gap
        v = L["vallecula"].copy()
        m[0] = v[0] = 0.0
        R = blade.curve_radius_m
        chord = float(np.linalg.norm(v - m))
        if chord >= 2.0 * R:
            raise PhysicsError(f"blade {blade.name}: mouth to vallecula {chord:.3f} m exceeds the blade's "
                               "curve diameter; use a larger blade")
        u = (v - m) / chord
        n = np.cross([1.0, 0.0, 0.0], u)
        h = np.sqrt(R * R - 0.25 * chord * chord)
        cands = [0.5 * (m + v) + sg * h * n for sg in (1.0, -1.0)]
        # concave side anterior (-y), toward the floor of the mouth: the blade passes over the tongue's
        # dorsum (with the head neutral the tongue's centre lies behind the mouth-to-vallecula chord, so
        # the candidate nearer the tongue would curve the blade the wrong way)
        self.centre = min(cands, key=lambda c: float(c[1]))
        self.radius = R
        self.blade = blade
        ang = [np.arctan2(*(p - self.centre)[[2, 1]]) for p in (m, v)]
        d = (ang[1] - ang[0] + np.pi) % (2.0 * np.pi) - np.pi
        self.sigma = 1.0 if d > 0 else -1.0
        self._theta_tip = ang[1]
        self.phi_entry = abs(d) + 0.02 / R

    def pose(self, phi: float) -> tuple[np.ndarray, np.ndarray]:
        """Blade heel (3,) m and rotation (3, 3) with the tip ``phi`` rad short of the vallecula."""
        R, c = self.radius, self.centre
        th_tip = self._theta_tip - self.sigma * phi
        th_heel = th_tip - self.sigma * self.blade.length_m / R
        heel = c + R * np.array([0.0, np.cos(th_heel), np.sin(th_heel)])
        x = self.sigma * np.array([0.0, -np.sin(th_heel), np.cos(th_heel)])  # tangent toward the tip
        z = (c - heel) / R  # toward the centre: the concave (tongue, handle) side
        return heel, np.column_stack([x, np.cross(z, x), z])


def start_poses(design, blade, tube) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Initial blade and tube poses: outside the open mouth, aimed into it.

    The blade lies in the sagittal plane on its insertion arc (:class:`BladeArc`)
    with its tip 2 cm in front of the mouth; the tube waits in front of the
    mouth, :data:`TUBE_LATERAL_M` to the patient's right of the blade, parallel
    to the sagittal plane and aimed along the mouth-to-glottis line.

    Returns
    -------
    ((3,) heel position m, (3, 3) rotation), ((3,) tube tip position m, (3, 3) rotation)
    """
    L = {k: v / 1000.0 for k, v in design.landmarks_mm.items()}
    mouth = L["mouth_centre"]
    arc = BladeArc(design, blade)
    heel, rb = arc.pose(arc.phi_entry)
    g = L["glottis_centre"]
    xt = (g - mouth) / np.linalg.norm(g - mouth)
    start = mouth + np.array([-TUBE_LATERAL_M, 0.0, 0.0]) - 0.03 * xt
    zt = np.cross(xt, [1.0, 0.0, 0.0])
    zt = zt if zt[1] < 0 else -zt
    rt = np.column_stack([xt, np.cross(zt, xt), zt])
    return (heel, rb), (start, rt)


_MESH_CACHE: dict = {}


def wall_mesh(design, triangles: int = 12000):
    """Airway wall surface (pyvista PolyData, metres) from the design's lumen mask.

    Built once per (parameters, extension, budget) and cached; every call returns
    a fresh copy, so a caller that edits its mesh in place (a renderer scaling or
    re-normalising it) cannot change the wall of a later session.
    """
    from surgsim.anatomy.surface import surface_from_mask
    from surgsim.cases.airway_phantom import lumen_mask

    key = (design.params, round(float(design.extension), 9), int(triangles))
    if key not in _MESH_CACHE:
        disk_key = _wall_cache_key(design, triangles)
        mesh = _read_cached_wall(disk_key)
        if mesh is None:
            mask, wfv = lumen_mask(design, 2.0)
            mesh = surface_from_mask(mask, wfv, target_triangles=triangles, smooth_iterations=10)
            _write_cached_wall(disk_key, mesh)
        _MESH_CACHE[key] = mesh
    return _MESH_CACHE[key].copy(deep=True)


def _wall_cache_key(design, triangles: int) -> str:
    """Disk cache key of a wall mesh: the generator's and surface pipeline's sources, the design, the budget."""
    import hashlib
    import json
    from dataclasses import asdict

    from surgsim.anatomy import surface
    from surgsim.cases import airway_phantom

    def digest(module) -> str:
        return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()

    return json.dumps({"wall_cache_version": 1, "generator_version": airway_phantom.GENERATOR_VERSION,
                       "generator_sha256": digest(airway_phantom), "surface_sha256": digest(surface),
                       "params": asdict(design.params), "extension": round(float(design.extension), 9),
                       "triangles": int(triangles)}, sort_keys=True, default=str)


def _wall_cache_folder(key: str) -> Path:
    import hashlib

    from surgsim.paths import cache_dir

    return cache_dir() / "airway-wall" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _read_cached_wall(key: str):
    """The cached wall mesh under ``key``, or None (missing, stale or damaged: it is rebuilt)."""
    import shutil
    import warnings

    import pyvista as pv

    folder = _wall_cache_folder(key)
    try:
        if (folder / "key.json").read_text(encoding="utf-8") != key:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a reader's complaint means a damaged file
            mesh = pv.read(folder / "wall.vtp")
        if not mesh.n_cells:
            raise ValueError("empty wall mesh")
        return mesh
    except FileNotFoundError:
        return None
    except (OSError, ValueError, Warning):
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _write_cached_wall(key: str, mesh) -> None:
    """Write atomically (temporary folder renamed into place); an unwritable cache only costs a rebuild."""
    import shutil
    import tempfile

    folder = _wall_cache_folder(key)
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        mesh.save(tmp / "wall.vtp", binary=True)
        (tmp / "key.json").write_text(key, encoding="utf-8")
        tmp.rename(folder)
    except OSError:
        pass
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
