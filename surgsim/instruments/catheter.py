"""Catheter and guidewire specifications: geometry, stiffness and pre-shaped tips.

A :class:`DeviceSpec` is everything the rod solver (:mod:`surgsim.physics.rod`)
needs to know about a device: its simulated length and node count, its cross
section (outer and inner diameter), an effective Young's modulus, density,
wall friction, the largest push force a hand transmits and the shape of its
distal tip.

Pre-shaped tips are *rest curvature*: each shape in the catalogue is a short
sequence of pieces (straight or circular arc), listed from the tip toward the
hub. The solver bends the rod toward its rest curvature in the device's
material frame, so a Cobra or Simmons catheter recovers its shape when free
and turns its tip when the hub is rotated.

Units are SI: metres, pascals, kilograms per cubic metre, newtons, radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surgsim.errors import ScenarioError

#: Tip shapes the catalogue knows (see :func:`tip_pieces`).
TIP_SHAPES = ("straight", "angled", "j", "cobra", "simmons", "pigtail")

#: Device kinds.
KINDS = ("catheter", "guidewire")

#: Largest rest turning angle allowed at one node (radians): the bending model
#: represents the turn between two segments as a second difference, which is
#: only meaningful below a half turn.
MAX_NODE_TURN = 0.75 * math.pi


def french(fr: float) -> float:
    """Outer diameter of a device of French size ``fr``.

    One French is one third of a millimetre (5 Fr = 1.67 mm).

    Parameters
    ----------
    fr : float
        French size (> 0).

    Returns
    -------
    float, metres
    """
    fr = float(fr)
    if not math.isfinite(fr) or fr <= 0.0:
        raise ScenarioError(f"French size must be a positive number, got {fr!r}")
    return fr * 1.0e-3 / 3.0


def inch(value: float) -> float:
    """Convert inches to metres (guidewire sizes are given in inches: 0.035 in = 0.889 mm)."""
    return float(value) * 0.0254


def tip_pieces(tip_shape: str, tip_angle: float, tip_length: float) -> tuple[tuple[float, float], ...]:
    """Pieces of a pre-shaped tip, from the distal end toward the hub.

    Parameters
    ----------
    tip_shape : str
        One of :data:`TIP_SHAPES`.
    tip_angle : float, radians
        The shape's characteristic angle: the bend of an angled tip, the turn
        of a J, the total turn of a Cobra's two curves, the reverse loop of a
        Simmons, the coil of a pigtail.
    tip_length : float, metres
        Arc length of the whole shaped segment.

    Returns
    -------
    tuple of (length, angle)
        Each piece is ``length`` metres of arc turning by ``angle`` radians at a
        constant curvature ``angle / length`` (0 for a straight piece); a
        negative angle turns the other way (in the material frame's first
        direction). The lengths sum to ``tip_length`` (0 for ``"straight"``).

    Notes
    -----
    - angled (Berenstein-like): a straight distal half, then one bend of ``tip_angle``.
    - j: one arc of ``tip_angle`` (pi for a J) over the whole tip length.
    - cobra: a short straight tip, a primary curve (40 % of the angle), a
      straight segment, a wider secondary curve (60 %), both the same way.
    - simmons (sidewinder, reverse curve): a short tip turned back by a quarter
      of the angle, a long straight limb, then the reverse loop of ``tip_angle``
      (pi) that joins the shaft; the signed total is 0.75 * ``tip_angle``.
    - pigtail: one coil of ``tip_angle`` (2 pi or more) over the tip length.
    """
    a, lt = float(tip_angle), float(tip_length)
    if tip_shape == "straight":
        return ()
    if tip_shape == "angled":
        return ((0.5 * lt, 0.0), (0.5 * lt, a))
    if tip_shape == "j":
        return ((lt, a),)
    if tip_shape == "cobra":
        return ((0.10 * lt, 0.0), (0.25 * lt, 0.4 * a), (0.25 * lt, 0.0), (0.40 * lt, 0.6 * a))
    if tip_shape == "simmons":
        return ((0.10 * lt, 0.0), (0.10 * lt, -0.25 * a), (0.45 * lt, 0.0), (0.35 * lt, a))
    if tip_shape == "pigtail":
        return ((lt, a),)
    raise ScenarioError(f"unknown tip_shape {tip_shape!r}: use one of {', '.join(TIP_SHAPES)}")


def _piece_integral(pieces: tuple[tuple[float, float], ...], a: float, b: float) -> float:
    """Integral of the rest curvature over arc length [a, b] (metres from the tip), radians."""
    total = 0.0
    s0 = 0.0
    for length, angle in pieces:
        s1 = s0 + length
        lo, hi = max(a, s0), min(b, s1)
        if hi > lo and length > 0.0:
            total += angle * (hi - lo) / length
        s0 = s1
    return total


@dataclass(frozen=True)
class DeviceSpec:
    """A catheter or guidewire as the rod solver sees it.

    Attributes
    ----------
    name : str
        Catalogue name (``"cobra_5fr"``).
    kind : str
        ``"catheter"`` or ``"guidewire"``.
    length : float, metres
        Simulated length (the part that can enter the body plus a short clamp).
    n_nodes : int
        Number of rod nodes (uniform spacing ``length / (n_nodes - 1)``).
    outer_diameter, inner_diameter : float, metres
        Cross section (inner 0 for a solid wire).
    youngs_modulus : float, pascals
        Effective modulus of the cross section (braided polymer catheters
        0.2-1 GPa; for a guidewire the modulus that gives the wire's real bending
        stiffness over its full outer diameter).
    density : float, kg/m^3
    tip_shape : str
        One of :data:`TIP_SHAPES`.
    tip_angle : float, radians
    tip_length : float, metres
        See :func:`tip_pieces`.
    friction : float
        Coulomb coefficient against the vessel wall.
    max_push_force : float, newtons
        Largest axial force the hand transmits; beyond it the device slips.
    poisson_ratio : float
        Of the effective material (0 <= nu < 0.5): the shear modulus
        ``G = E / (2 (1 + nu))`` gives the torsional stiffness ``G J``.
    """

    name: str
    kind: str = "catheter"
    length: float = 0.5
    n_nodes: int = 100
    outer_diameter: float = 5.0e-3 / 3.0
    inner_diameter: float = 0.97e-3
    youngs_modulus: float = 0.5e9
    density: float = 1150.0
    tip_shape: str = "straight"
    tip_angle: float = 0.0
    tip_length: float = 0.0
    friction: float = 0.1
    max_push_force: float = 2.0
    poisson_ratio: float = 0.4

    def __post_init__(self) -> None:
        where = f"DeviceSpec {self.name!r}"
        if self.kind not in KINDS:
            raise ScenarioError(f"{where}: kind {self.kind!r} must be one of {KINDS}")
        if self.tip_shape not in TIP_SHAPES:
            raise ScenarioError(f"{where}: tip_shape {self.tip_shape!r} must be one of {TIP_SHAPES}")
        positive = ("length", "outer_diameter", "youngs_modulus", "density", "max_push_force")
        for field_name in positive:
            value = getattr(self, field_name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ScenarioError(f"{where}: {field_name} must be a positive number, got {value!r}")
        for field_name in ("inner_diameter", "tip_angle", "tip_length", "friction"):
            value = getattr(self, field_name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ScenarioError(f"{where}: {field_name} must be a finite number, got {value!r}")
        if not (0.0 <= self.inner_diameter < self.outer_diameter):
            raise ScenarioError(
                f"{where}: inner_diameter ({self.inner_diameter} m) must be >= 0 and smaller than "
                f"outer_diameter ({self.outer_diameter} m)"
            )
        nu = self.poisson_ratio
        if not (isinstance(nu, (int, float)) and math.isfinite(nu) and 0.0 <= nu < 0.5):
            raise ScenarioError(f"{where}: poisson_ratio must be in [0, 0.5), got {nu!r}")
        if self.friction < 0.0 or self.tip_length < 0.0:
            raise ScenarioError(f"{where}: friction and tip_length must be >= 0")
        if not (isinstance(self.n_nodes, int) and self.n_nodes >= 8):
            raise ScenarioError(f"{where}: n_nodes must be an integer >= 8, got {self.n_nodes!r}")
        if self.tip_length > 0.5 * self.length:
            raise ScenarioError(
                f"{where}: tip_length ({self.tip_length} m) must be at most half the simulated "
                f"length ({self.length} m)"
            )
        if self.tip_shape != "straight" and self.tip_length <= 0.0:
            raise ScenarioError(f"{where}: a {self.tip_shape!r} tip needs tip_length > 0")
        turns = np.abs(self.rest_curvature()[:, 0]) * self.segment_length
        if turns.max(initial=0.0) > MAX_NODE_TURN:
            need = int(math.ceil(self.n_nodes * turns.max() / MAX_NODE_TURN)) + 1
            raise ScenarioError(
                f"{where}: the {self.tip_shape} tip turns {math.degrees(turns.max()):.0f} deg at one "
                f"node; increase n_nodes (to about {need}) or tip_length"
            )

    # -- cross section ---------------------------------------------------------------
    @property
    def outer_radius(self) -> float:
        """Outer radius, metres (the contact radius against the wall)."""
        return 0.5 * self.outer_diameter

    @property
    def area(self) -> float:
        """Cross-section area pi (D^2 - d^2) / 4, m^2."""
        return math.pi * (self.outer_diameter**2 - self.inner_diameter**2) / 4.0

    @property
    def second_moment(self) -> float:
        """Area second moment of the annulus pi (D^4 - d^4) / 64, m^4."""
        return math.pi * (self.outer_diameter**4 - self.inner_diameter**4) / 64.0

    @property
    def polar_moment(self) -> float:
        """Polar moment of the annulus pi (D^4 - d^4) / 32, m^4."""
        return 2.0 * self.second_moment

    @property
    def shear_modulus(self) -> float:
        """G = E / (2 (1 + nu)), pascals."""
        return self.youngs_modulus / (2.0 * (1.0 + self.poisson_ratio))

    @property
    def GJ(self) -> float:  # noqa: N802 (engineering symbol)
        """Torsional stiffness G J, N m^2 / rad."""
        return self.shear_modulus * self.polar_moment

    @property
    def EI(self) -> float:  # noqa: N802 (engineering symbol)
        """Bending stiffness E I, N m^2."""
        return self.youngs_modulus * self.second_moment

    @property
    def EA(self) -> float:  # noqa: N802
        """Axial stiffness E A, N."""
        return self.youngs_modulus * self.area

    @property
    def linear_density(self) -> float:
        """Mass per unit length, kg/m."""
        return self.density * self.area

    @property
    def segment_length(self) -> float:
        """Rest length between nodes, metres."""
        return self.length / (self.n_nodes - 1)

    # -- shape -----------------------------------------------------------------------
    def tip_pieces(self) -> tuple[tuple[float, float], ...]:
        """The tip's (length m, angle rad) pieces from the distal end (see :func:`tip_pieces`)."""
        return tip_pieces(self.tip_shape, self.tip_angle, self.tip_length)

    def total_tip_angle(self) -> float:
        """Signed sum of the tip pieces' angles, radians."""
        return float(sum(angle for _, angle in self.tip_pieces()))

    def rest_curvature(self) -> np.ndarray:
        """Rest curvature at each node in the material frame.

        Node 0 is the distal tip, node ``i`` lies ``i * segment_length`` from it.
        Node ``i`` carries the mean curvature over its dual cell
        ``[(i - 1/2) l, (i + 1/2) l]`` (node 1 also takes the tip's half cell,
        which has no bending term), so ``sum(kappa) * l`` is the shape's total
        turning angle for any node count.

        Returns
        -------
        (n_nodes, 2) float, 1/m
            Components along the material frame's first and second directions
            (catalogue shapes are planar: the second column is 0).
        """
        n, h = self.n_nodes, self.segment_length
        kappa = np.zeros((n, 2))
        pieces = self.tip_pieces()
        if not pieces:
            return kappa
        for i in range(1, n - 1):
            a = 0.0 if i == 1 else (i - 0.5) * h
            b = (i + 0.5) * h
            kappa[i, 0] = _piece_integral(pieces, a, b) / h
        return kappa


def _catalogue() -> dict[str, DeviceSpec]:
    fr5 = french(5.0)
    lumen_038 = inch(0.038)
    specs = [
        DeviceSpec(
            name="straight_5fr", kind="catheter", outer_diameter=fr5, inner_diameter=lumen_038,
            youngs_modulus=0.5e9, density=1150.0, tip_shape="straight", friction=0.1,
        ),
        # Berenstein-like: a 2 cm tip with one ~45 deg bend.
        DeviceSpec(
            name="angled_5fr", kind="catheter", outer_diameter=fr5, inner_diameter=lumen_038,
            youngs_modulus=0.5e9, density=1150.0, tip_shape="angled",
            tip_angle=math.radians(45.0), tip_length=0.02, friction=0.1,
        ),
        DeviceSpec(
            name="cobra_5fr", kind="catheter", outer_diameter=fr5, inner_diameter=lumen_038,
            youngs_modulus=0.5e9, density=1150.0, tip_shape="cobra",
            tip_angle=math.radians(110.0), tip_length=0.05, friction=0.1,
        ),
        DeviceSpec(
            name="simmons_5fr", kind="catheter", outer_diameter=fr5, inner_diameter=lumen_038,
            youngs_modulus=0.5e9, density=1150.0, tip_shape="simmons",
            tip_angle=math.pi, tip_length=0.08, friction=0.1,
        ),
        DeviceSpec(
            name="pigtail_5fr", kind="catheter", outer_diameter=fr5, inner_diameter=lumen_038,
            youngs_modulus=0.5e9, density=1150.0, tip_shape="pigtail",
            tip_angle=2.0 * math.pi, tip_length=0.04, n_nodes=100, friction=0.1,
        ),
        # 0.035 in hydrophilic wire with a 3 mm J: a ~0.45 mm nitinol core (60 GPa) in a
        # polymer jacket bends like the full 0.889 mm section at ~4 GPa (EI ~ 1.2e-4 N m^2).
        DeviceSpec(
            name="guidewire_035", kind="guidewire", outer_diameter=inch(0.035), inner_diameter=0.0,
            youngs_modulus=4.0e9, density=6450.0, tip_shape="j", tip_angle=math.pi,
            tip_length=math.pi * 3.0e-3, n_nodes=150, friction=0.05, poisson_ratio=0.33,
        ),
    ]
    return {s.name: s for s in specs}


#: Devices ready to use, by name.
CATALOGUE: dict[str, DeviceSpec] = _catalogue()
