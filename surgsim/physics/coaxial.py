"""A guidewire inside a catheter: one combined rod with two insertion depths and two hubs.

Model (after SOFA BeamAdapter's "combined instruments", adapted to the implicit rod of
:mod:`surgsim.physics.rod`)
-----------------------------------------------------------------------------------------
Both devices enter through the same sheath, which ends at ``access_point`` and
points along ``access_direction`` (femoral by default in the cases); behind the
entry the devices lie on the sheath's straight line and are held there, each
clamped by its own hub. Inside the body they share one centreline, simulated as
one rod of ``n_nodes`` nodes at a fixed spacing ``l``:

- **Node placement: fixed spacing, nodes switch devices.** Node ``i`` lies ``s_i = i l``
  behind the distal end of the *union* of the two devices, whose depth is
  ``D = max(d_catheter, d_wire)``. Device ``k`` covers ``s >= D - d_k``. The nodes
  are material points of the leading device: pushing it moves the held line and the
  solve carries the push to the free nodes, exactly as for one device; the device
  behind the union's end slides over (catheter) or inside (wire) the leading one, so
  its advance only shifts the stretch it covers along the nodes. When the wire tip
  crosses the catheter tip, ``D`` is continuous (a max), the nodes do not move and
  every material property below is an integral over node cells of a coverage that
  moves continuously with the depths: nothing jumps.
- **Material per node and segment** (recomputed every step by
  :func:`surgsim.physics._rodkernels.coax_properties`): stretch ``EA`` and bending
  ``EI`` are the sums over the devices present (where both are, ``EI_c + EI_w``);
  mass per length likewise. Rest curvature is the stiffness-weighted mean
  ``(EI_c kappa_c + EI_w kappa_w) / (EI_c + EI_w)``, so a stiff wire straightens the
  catheter's pre-shaped tip while inside it and the shape returns when it is pulled
  back; where the wire protrudes it has its own properties and its own J or angled
  tip; where the catheter is alone, the catheter's.
- **Guidewire floppy tip**: real 0.035 in wires have a core ground to a taper over
  their distal 2-5 cm, so the tip is far softer than the shaft. The wire's bending
  stiffness is ``EI_w (q + (1 - q) sigma / L)^4`` (a linear taper of the core diameter)
  over its distal ``L = wire_soft_length``, with ``q^4 = wire_soft_ratio`` the stiffness
  at the very tip (default 1 %); ``wire_soft_length=0`` gives a uniform wire. A J tip
  pulled back into the catheter then barely bends it, as in practice.
- **Hub rotation (how the two frames blend)**: each device is torsionally rigid, so
  its material frame is the common reference frame (parallel-transported from the
  sheath at hub angle 0) turned by *its own* hub angle. The rod's frame stays the
  reference frame; each device's rest curvature vector is turned by its hub angle
  before the stiffness-weighted mean above. This is the exact minimiser of the two
  devices' bending energies ``sum_k EI_k / 2 |kappa - R(theta_k) kappa_k|^2`` on a
  shared centreline: turning the wire's hub turns a protruding J 1:1 and, inside the
  catheter, shifts the combined shape by the wire's share; turning the catheter
  turns its shape. Torsional coupling between the devices (the wire dragging the
  catheter round by friction) is not modelled.
- **Contact radius**: the outer radius of what is present; the catheter's tip tapers
  onto the wire over one segment (as real catheter tips do), which keeps the radius
  continuous when the wire tip crosses the catheter tip. Wall friction is the outer
  device's: the catheter's where it covers the wire, except while the wire leads and
  slides inside a catheter that stays put (the nodes then move with the wire, and
  the catheter's friction is scaled by the fraction of the union's advance the
  catheter itself makes; wire-to-catheter friction is neglected).
- **Push force per device**: the sheath force (the rod's axial force at the entry) is
  carried by the device(s) driving the union's end (advancing at least as far as it);
  the union's advance is refused at the sum of their ``max_push_force`` (and a step
  that overshoots is redone smaller), retraction likewise in tension. A device
  behind the union's end is refused while its sliding resistance reaches its own
  limit: the catheter's friction coefficient times the wall load on the nodes it
  covers, or, for the wire inside the catheter, its friction times its bending share
  ``EI_w / EI`` of that load (an estimate: the wire presses on the catheter lumen
  where the pair bends).

State, set-up and readouts shared with the single device live in
:class:`surgsim.physics.rod._RodBase`; both run the same compiled step.

Limits: beyond those of :mod:`surgsim.physics.rod` (clamp quantised to half a
segment), each device is torsionally rigid here (the finite torsion of
:class:`~surgsim.physics.rod.RodSolver` is off: one twist field cannot carry two
independently turned devices), the catheter riding over a leading wire neither drags nor pushes it
axially; the devices always share one centreline (no clearance between wire and
catheter lumen); stretch of the two devices is not independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surgsim.errors import PhysicsError
from surgsim.instruments.catheter import MAX_NODE_TURN, DeviceSpec
from surgsim.physics import _rodkernels as _k
from surgsim.physics.rod import WALL_STIFFNESS, _check_solver_args, _RodBase, _rotate

__all__ = ["CoaxialSolver", "CoaxialState", "DeviceState"]

CATHETER, WIRE = 0, 1
_SOFT_SAMPLES = 8  # breakpoints of the wire's soft-tip stiffness profile (linear between them)


@dataclass
class DeviceState:
    """One device of a coaxial pair (arrays are copies).

    Attributes
    ----------
    name : str, catalogue name
    depth : float, metres inserted past the entry
    hub_angle : float, radians of hub rotation since the start
    tip_position : (3,) float, metres (LPS)
    tip_direction : (3,) float, unit vector pointing distally at the tip
    push_force : float, newtons of axial force the hand applies (compression > 0)
    present : (n,) bool, nodes of the combined rod this device runs through
    """

    name: str
    depth: float
    hub_angle: float
    tip_position: np.ndarray
    tip_direction: np.ndarray
    push_force: float
    present: np.ndarray


@dataclass
class CoaxialState:
    """A snapshot of a catheter over a guidewire (arrays are copies).

    Attributes
    ----------
    positions, velocities : (n, 3) float, metres and m/s; node 0 is the union's distal end
    catheter, wire : DeviceState
    device : (n,) int8, what each node carries: 1 wire only, 2 catheter only, 3 both
    contact_force : (n,) float, newtons of normal wall force per node
    in_contact : (n,) bool
    inside : (n,) bool, nodes past the entry
    free : (n,) bool, nodes the solver moves (the rest are held by the sheath)
    leading : str, ``"wire"`` or ``"catheter"`` (the device at node 0)
    depth : float, metres, the union's depth (the larger device depth)
    push_force : float, newtons of axial force at the sheath (compression > 0)
    step : int, steps taken
    """

    positions: np.ndarray
    velocities: np.ndarray
    catheter: DeviceState
    wire: DeviceState
    device: np.ndarray
    contact_force: np.ndarray
    in_contact: np.ndarray
    inside: np.ndarray
    free: np.ndarray
    leading: str
    depth: float
    push_force: float
    step: int


def _device_table(spec: DeviceSpec, soft_length: float, soft_ratio: float):
    """Breakpoints (m from the tip), EI at them (N m^2) and curvature per interval (1/m)."""
    pieces = spec.tip_pieces()
    bps = {0.0}
    s = 0.0
    for length, _ in pieces:
        s += length
        bps.add(s)
    if soft_length > 0.0:
        bps.update(float(soft_length) * np.arange(1, _SOFT_SAMPLES + 1) / _SOFT_SAMPLES)
    bp = np.array(sorted(bps))
    ei_full = spec.EI
    q = soft_ratio**0.25

    def ei_at(sig: float) -> float:
        # a core ground to a linear taper: EI grows as the diameter to the fourth power
        if soft_length <= 0.0:
            return ei_full
        return ei_full * (q + (1.0 - q) * min(1.0, sig / soft_length)) ** 4

    ei = np.array([ei_at(b) for b in bp])
    kap = np.zeros(max(len(bp) - 1, 0))
    for j in range(len(bp) - 1):
        mid = 0.5 * (bp[j] + bp[j + 1])
        s0 = 0.0
        for length, angle in pieces:
            if s0 <= mid < s0 + length and length > 0.0:
                kap[j] = angle / length
                break
            s0 += length
    return bp, ei, kap


def _lay_out(straight: np.ndarray, n_free: int, turn: np.ndarray, h: float,
             direc: np.ndarray, uref: np.ndarray) -> np.ndarray:
    """Free nodes laid out from the clamp with turning vectors ``turn`` (n, 2) (reference frame)."""
    x = straight.copy()
    t = direc.copy()
    m1 = uref.copy()
    for i in range(n_free - 1, -1, -1):
        k = turn[i + 1]
        ang = float(np.hypot(k[0], k[1]))
        if ang > 0.0:
            m2 = np.cross(t, m1)
            normal = (k[0] * m1 + k[1] * m2) / ang
            axis = np.cross(t, normal)
            axis /= np.linalg.norm(axis)
            t = _rotate(t, axis, ang)
            m1 = _rotate(m1, axis, ang)
        x[i] = x[i + 1] + h * t
    return x


class CoaxialSolver(_RodBase):
    """A catheter over a guidewire in a vessel lumen, as one implicit rod (see module doc).

    Parameters
    ----------
    catheter, wire : DeviceSpec
        ``kind`` "catheter" and "guidewire"; the wire's outer diameter must be
        smaller than the catheter's inner diameter.
    sdf_values : (nk, nj, ni) float or None
        Signed distance to the lumen wall, metres, negative inside; ``None``: free space.
    sdf_voxel_from_world : (4, 4) float or None
    access_point : (3,) float, metres, where the sheath ends inside the lumen
    access_direction : (3,) float, insertion direction (normalised here)
    dt : float, seconds
    catheter_depth, wire_depth : float, metres inserted at the start (laid out in the
        combined rest shape when it fits the lumen, else straight)
    damping : float, fraction of the velocity removed per step
    n_nodes : int, nodes of the combined rod
    length : float or None, metres of combined rod (default: the longer device's length)
    iterations, extra_iterations, gravity, external_force, reference_normal,
    friction_stick_speed, max_rotation_speed
        As for :class:`surgsim.physics.rod.RodSolver` (``external_force`` is (n_nodes, 3)
        newtons; ``max_rotation_speed`` applies to each hub).
    contact_stiffness : float or None, N/m
        Wall penalty per contact point (default :data:`surgsim.physics.rod.WALL_STIFFNESS`).
    wire_soft_length : float, metres of the wire's floppy distal end (0: uniform wire)
    wire_soft_ratio : float in (0, 1], bending stiffness at the wire's tip relative to EI_w
    """

    def __init__(
        self,
        catheter: DeviceSpec,
        wire: DeviceSpec,
        sdf_values: np.ndarray | None,
        sdf_voxel_from_world: np.ndarray | None,
        access_point,
        access_direction,
        dt: float = 1e-3,
        catheter_depth: float = 0.02,
        wire_depth: float = 0.04,
        damping: float = 0.1,
        *,
        n_nodes: int = 200,
        length: float | None = None,
        iterations: int = 3,
        extra_iterations: int = 3,
        gravity=None,
        external_force: np.ndarray | None = None,
        reference_normal=None,
        contact_stiffness: float | None = None,
        friction_stick_speed: float = 0.02,
        max_rotation_speed: float = 4.0 * math.pi,
        wire_soft_length: float = 0.03,
        wire_soft_ratio: float = 0.01,
    ) -> None:
        for spec, kind, what in ((catheter, "catheter", "catheter"), (wire, "guidewire", "wire")):
            if not isinstance(spec, DeviceSpec):
                raise PhysicsError(f"{what} must be a DeviceSpec, got {type(spec).__name__}")
            if spec.kind != kind:
                raise PhysicsError(f"{what} {spec.name!r} is a {spec.kind}: pass a {kind} spec")
        if not wire.outer_diameter < catheter.inner_diameter:
            raise PhysicsError(
                f"wire {wire.name!r} ({wire.outer_diameter * 1e3:.3f} mm) does not fit the lumen of "
                f"catheter {catheter.name!r} ({catheter.inner_diameter * 1e3:.3f} mm): choose a thinner "
                "wire or a catheter with a larger inner diameter"
            )
        _check_solver_args(dt, iterations, extra_iterations, damping, friction_stick_speed,
                           max_rotation_speed)
        if not (isinstance(n_nodes, (int, np.integer)) and 8 <= n_nodes <= 2000):
            raise PhysicsError(f"n_nodes must be an integer in 8..2000, got {n_nodes!r}")
        if not (math.isfinite(wire_soft_length) and wire_soft_length >= 0.0):
            raise PhysicsError(f"wire_soft_length must be >= 0 m, got {wire_soft_length!r}")
        if not (math.isfinite(wire_soft_ratio) and 0.0 < wire_soft_ratio <= 1.0):
            raise PhysicsError(f"wire_soft_ratio must be in (0, 1], got {wire_soft_ratio!r}")
        total = float(max(catheter.length, wire.length) if length is None else length)
        if not (math.isfinite(total) and total > 0):
            raise PhysicsError(f"length must be a positive number of metres, got {length!r}")
        self.catheter = catheter
        self.wire = wire
        self.dt = float(dt)
        self.iterations = int(iterations)
        self.max_rotation_speed = float(max_rotation_speed)
        n = int(n_nodes)
        h = total / (n - 1)
        self._n = n
        self._l = h

        # device tables (padded to a common number of intervals)
        tables = [_device_table(catheter, 0.0, 1.0),
                  _device_table(wire, float(wire_soft_length), float(wire_soft_ratio))]
        for spec, (_, _, kap) in zip((catheter, wire), tables, strict=True):
            turn = float(np.abs(kap).max(initial=0.0)) * h
            if turn > MAX_NODE_TURN:
                need = int(math.ceil(total * np.abs(kap).max() / MAX_NODE_TURN)) + 2
                raise PhysicsError(
                    f"the {spec.tip_shape} tip of {spec.name!r} turns {math.degrees(turn):.0f} deg over "
                    f"one {h * 1e3:.1f} mm segment of the combined rod: use n_nodes >= {need}"
                )
        m = max(len(t[2]) for t in tables)
        self._dev_bp = np.zeros((2, m + 1))
        self._dev_ei = np.zeros((2, m + 1))
        self._dev_kap = np.zeros((2, max(m, 1)))
        self._dev_sc = np.zeros((2, _k.N_DEV))
        for k, (spec, (bp, ei, kap)) in enumerate(zip((catheter, wire), tables, strict=True)):
            nb = len(kap)
            self._dev_bp[k, : nb + 1] = bp
            self._dev_bp[k, nb + 1:] = bp[-1]
            self._dev_ei[k, : nb + 1] = ei
            self._dev_ei[k, nb + 1:] = ei[-1]
            self._dev_kap[k, :nb] = kap
            self._dev_sc[k] = [spec.EA, spec.EI, spec.linear_density, spec.outer_radius,
                               spec.friction, spec.max_push_force, nb]
        self._taper = h

        self._what = f"coaxial solver ({catheter.name} over {wire.name})"
        self._init_frame(access_point, access_direction, reference_normal)
        r_max = max(catheter.outer_radius, wire.outer_radius)
        self._init_wall(sdf_values, sdf_voxel_from_world, r_max, "catheter")
        # wall penalty per contact point: the compliant wall of surgsim.physics.rod, the same
        # at any node spacing (see WALL_STIFFNESS there)
        wc = float(contact_stiffness) if contact_stiffness is not None else WALL_STIFFNESS
        self._init_params(ks=(catheter.EA + wire.EA) / h, kb=(catheter.EI + wire.EI) / h**3, wc=wc,
                          mu=max(catheter.friction, wire.friction), damping=damping, radius=r_max,
                          fmax=catheter.max_push_force + wire.max_push_force,
                          friction_stick_speed=friction_stick_speed,
                          extra_iterations=extra_iterations, twist=False)

        # state
        dmax = (n - 2) * h
        for value, name in ((catheter_depth, "catheter_depth"), (wire_depth, "wire_depth")):
            if not (math.isfinite(value) and 0.0 <= value <= dmax):
                raise PhysicsError(f"{name} must be in [0, {dmax:.3f}] m for this rod, got {value!r}")
        self._cs = np.zeros(_k.N_COAX)
        self._cs[_k.C_DEPTH + CATHETER] = float(catheter_depth)
        self._cs[_k.C_DEPTH + WIRE] = float(wire_depth)
        self._cs[_k.C_MUSCALE] = 1.0
        depth = max(float(catheter_depth), float(wire_depth))
        self._sc = np.zeros(_k.N_SCALARS)
        self._sc[_k.S_DEPTH_MAX] = dmax
        self._sc[_k.S_DEPTH] = depth
        self._ks_seg = np.zeros(n - 1)
        self._kb_node = np.zeros(n)
        self._bend_c = np.zeros((n, 2))
        self._mass = np.zeros(n)
        self._rad_pt = np.zeros(2 * n)
        self._mu_pt = np.zeros(2 * n)
        self._update_properties()
        self._cf_mean = np.zeros(n)

        s = np.arange(n) * h
        straight = self._access[None, :] - (s - depth)[:, None] * self._dir[None, :]
        amp = np.linalg.norm(self._bend_c, axis=1)
        turn = np.zeros((n, 2))
        nz = amp > 0
        ang = 2.0 * np.arcsin(np.minimum(amp[nz] / (2.0 * h), 1.0))
        turn[nz] = self._bend_c[nz] * (ang / amp[nz])[:, None]
        shaped = _lay_out(straight, _k._nfree(depth, h, n), turn, h, self._dir, self._uref)
        x = self._place(shaped, straight, depth, self._rad_pt[:n],
                        f"initial depths (catheter {catheter_depth:.3f} m, wire {wire_depth:.3f} m)")
        self._init_state(x, gravity, external_force)

    def _update_properties(self) -> None:
        cs = self._cs
        _k.coax_properties(
            self.depth, cs[_k.C_DEPTH], cs[_k.C_DEPTH + 1], cs[_k.C_HUB], cs[_k.C_HUB + 1], self._l,
            self._taper, cs[_k.C_MUSCALE], self._dev_sc, self._dev_bp, self._dev_ei, self._dev_kap,
            self._ks_seg, self._kb_node, self._bend_c, self._mass, self._rad_pt, self._mu_pt,
        )  # fmt: skip

    # -- inputs ----------------------------------------------------------------------
    def run(
        self,
        n_steps: int,
        catheter_advance: float = 0.0,
        catheter_rotate: float = 0.0,
        wire_advance: float = 0.0,
        wire_rotate: float = 0.0,
    ) -> None:
        """Take ``n_steps`` steps with constant hand inputs per step.

        Parameters
        ----------
        n_steps : int
        catheter_advance, wire_advance : float, metres pushed per step (negative pulls back)
        catheter_rotate, wire_rotate : float, radians of hub rotation per step (each clipped
            to ``max_rotation_speed * dt``)

        Raises
        ------
        PhysicsError
            If an input is not finite or the state became invalid.
        """
        n_steps = int(n_steps)
        vals = [float(catheter_advance), float(catheter_rotate), float(wire_advance), float(wire_rotate)]
        if n_steps < 0 or not all(math.isfinite(v) for v in vals):
            raise PhysicsError(f"run needs n_steps >= 0 and finite inputs, got {n_steps}, {vals!r}")
        if n_steps == 0:
            return
        rmax = self.max_rotation_speed * self.dt
        adv_c, rot_c, adv_w, rot_w = vals
        rot_c = min(max(rot_c, -rmax), rmax)
        rot_w = min(max(rot_w, -rmax), rmax)
        status = _k.run_coaxial_steps(
            n_steps, adv_c, adv_w, rot_c, rot_w, self._cs, self._dev_sc, self._dev_bp, self._dev_ei,
            self._dev_kap, self._taper, *self._kernel_arrays(), self._cf_mean,
        )  # fmt: skip
        self._finish_run(n_steps, status)

    # -- readouts --------------------------------------------------------------------
    @property
    def catheter_depth(self) -> float:
        """Catheter length past the entry, metres."""
        return float(self._cs[_k.C_DEPTH + CATHETER])

    @property
    def wire_depth(self) -> float:
        """Wire length past the entry, metres."""
        return float(self._cs[_k.C_DEPTH + WIRE])

    def bending_stiffness(self) -> np.ndarray:
        """(n,) float, N m^2: EI of the combined section at each node (0 at both ends)."""
        return self._kb_node * self._l**3

    def contact_radius(self) -> np.ndarray:
        """(n,) float, metres: outer radius of what is present at each node."""
        return self._rad_pt[: self._n].copy()

    def _tip_offset(self, k: int) -> float:
        return self.depth - float(self._cs[_k.C_DEPTH + k])

    def present(self, k: int) -> np.ndarray:
        """(n,) bool: nodes device ``k`` (0 catheter, 1 wire) runs through."""
        return np.arange(self._n) * self._l >= self._tip_offset(k) - 1e-12

    def device_tip(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Tip position (3,) metres and distal unit direction (3,) of device ``k`` (0 catheter, 1 wire)."""
        u = min(max(self._tip_offset(k) / self._l, 0.0), self._n - 1.0)
        j = min(int(math.floor(u)), self._n - 2)
        t = u - j
        x = self._x
        pos = (1.0 - t) * x[j] + t * x[j + 1]
        d = x[j] - x[j + 1]
        return pos, d / max(float(np.linalg.norm(d)), 1e-12)

    def _device_state(self, k: int) -> DeviceState:
        pos, d = self.device_tip(k)
        spec = self.catheter if k == CATHETER else self.wire
        return DeviceState(
            name=spec.name,
            depth=float(self._cs[_k.C_DEPTH + k]),
            hub_angle=float(self._cs[_k.C_HUB + k]),
            tip_position=pos,
            tip_direction=d,
            push_force=float(self._cs[_k.C_PUSH + k]),
            present=self.present(k),
        )

    def state(self) -> CoaxialState:
        """A copy of the current state."""
        cat = self._device_state(CATHETER)
        wire = self._device_state(WIRE)
        device = (wire.present.astype(np.int8) + 2 * cat.present.astype(np.int8)).astype(np.int8)
        return CoaxialState(
            positions=self._x.copy(),
            velocities=self._v.copy(),
            catheter=cat,
            wire=wire,
            device=device,
            contact_force=self._cforce.copy(),
            in_contact=self._incontact.copy(),
            inside=self.inside,
            free=self.free,
            leading="catheter" if cat.depth >= wire.depth else "wire",
            depth=self.depth,
            push_force=self.push_force,
            step=self._step,
        )
