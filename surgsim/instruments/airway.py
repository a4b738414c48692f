"""Airway devices: laryngoscope blades and endotracheal tubes (specs and shapes).

Shapes are given in the device's own frame, metres:

* Blade frame: origin at the heel (where the blade meets the handle); ``+x``
  along the proximal blade toward the tip; ``+z`` along the handle; the blade
  curves toward ``+z`` (its tongue side) with radius ``curve_radius_m``; the
  palatal side (``-z``) is what rests on the upper incisors when levering.
* Tube frame: origin at the distal tip; ``+x`` points out of the tip along the
  distal straight part; the stylet bend turns the proximal part toward ``+z``.
  Depth marks are measured from the tip along the tube.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BladeSpec:
    """A laryngoscope blade (and handle).

    Attributes
    ----------
    name : catalogue key
    kind : "macintosh" | "miller"
    length_m : heel-to-tip arc length
    curve_radius_m : radius of the blade curve (large = straight)
    width_m, thickness_m : flange width and plate thickness
    handle_length_m : handle length along +z
    mass_kg : blade plus handle
    video : True for a video laryngoscope (camera near the tip)
    camera_from_tip_m : camera distance back from the tip along the blade
    """

    name: str
    kind: str
    length_m: float
    curve_radius_m: float
    width_m: float = 0.018
    thickness_m: float = 0.004
    handle_length_m: float = 0.12
    mass_kg: float = 0.35
    video: bool = False
    camera_from_tip_m: float = 0.03

    def centerline(self, n: int = 9) -> tuple[np.ndarray, np.ndarray]:
        """Blade centreline and tangents in the blade frame.

        Returns
        -------
        points : (n, 3) float, metres
        tangents : (n, 3) float, unit
        """
        s = np.linspace(0.0, self.length_m, n)
        a = s / self.curve_radius_m
        # concave toward the handle (+z): the tongue side wraps around the tongue's dorsum
        pts = np.stack([self.curve_radius_m * np.sin(a), np.zeros(n),
                        self.curve_radius_m * (1 - np.cos(a))], 1)
        tan = np.stack([np.cos(a), np.zeros(n), np.sin(a)], 1)
        return pts, tan

    @property
    def tip(self) -> np.ndarray:
        """(3,) tip position in the blade frame, metres."""
        return self.centerline(2)[0][-1]

    def camera(self) -> tuple[np.ndarray, np.ndarray]:
        """Video camera position and viewing direction (unit) in the blade frame."""
        pts, tan = self.centerline(200)
        s = np.linspace(0.0, self.length_m, 200)
        i = int(np.searchsorted(s, self.length_m - self.camera_from_tip_m))
        d = tan[i] + np.array([0.0, 0.0, -0.35])  # looks past the tip, away from the handle (glottis side)
        return pts[i] + np.array([0.0, 0.0, -0.004]), d / np.linalg.norm(d)  # on the palatal face


@dataclass(frozen=True)
class TubeSpec:
    """An endotracheal tube with its stylet shape and cuff.

    Attributes
    ----------
    name : catalogue key
    inner_diameter_m, outer_diameter_m : tube diameters
    length_m : tube length (tip to connector)
    straight_m : distal straight part (straight-to-cuff stylet)
    bend_deg : stylet bend angle
    bend_radius_m : radius of the bend
    cuff_from_tip_m : (start, end) of the cuff measured from the tip
    mass_kg : tube with stylet
    """

    name: str
    inner_diameter_m: float
    outer_diameter_m: float
    length_m: float = 0.32
    straight_m: float = 0.12
    bend_deg: float = 15.0
    bend_radius_m: float = 0.05
    cuff_from_tip_m: tuple[float, float] = (0.015, 0.045)
    mass_kg: float = 0.06

    def centerline(self, step: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
        """Tube centreline from the tip (index 0) to the connector, in the tube frame.

        Returns
        -------
        points : (n, 3) float, metres
        depth : (n,) float, metres from the tip (the depth marks)
        """
        n = int(np.ceil(self.length_m / step)) + 1
        s = np.linspace(0.0, self.length_m, n)
        beta = np.radians(self.bend_deg)
        arc = beta * self.bend_radius_m
        pts = np.zeros((n, 3))
        for k, sk in enumerate(s):
            if sk <= self.straight_m:
                pts[k] = (-sk, 0.0, 0.0)
            elif sk <= self.straight_m + arc:
                a = (sk - self.straight_m) / self.bend_radius_m
                pts[k] = (-self.straight_m - self.bend_radius_m * np.sin(a), 0.0,
                          self.bend_radius_m * (1 - np.cos(a)))
            else:
                end = np.array([-self.straight_m - self.bend_radius_m * np.sin(beta), 0.0,
                                self.bend_radius_m * (1 - np.cos(beta))])
                d = np.array([-np.cos(beta), 0.0, np.sin(beta)])
                pts[k] = end + (sk - self.straight_m - arc) * d
        return pts, s


def _ett(id_mm: float) -> TubeSpec:
    # outer diameter of a standard PVC tube: about ID + 2.7 mm
    return TubeSpec(f"ett_{id_mm:.1f}".replace(".", "_"), id_mm * 1e-3, (id_mm + 2.7) * 1e-3)


#: Blades: Macintosh 3 and 4, Miller 2, and a Macintosh-shaped video laryngoscope.
BLADES: dict[str, BladeSpec] = {
    "macintosh_3": BladeSpec("macintosh_3", "macintosh", 0.13, 0.16),
    "macintosh_4": BladeSpec("macintosh_4", "macintosh", 0.155, 0.19, width_m=0.02),
    "miller_2": BladeSpec("miller_2", "miller", 0.155, 1.5, width_m=0.014),
    "video_mac_3": BladeSpec("video_mac_3", "macintosh", 0.13, 0.16, video=True, mass_kg=0.3),
}

#: Endotracheal tubes, internal diameter 6.0 to 8.5 mm in 0.5 mm steps.
TUBES: dict[str, TubeSpec] = {t.name: t for t in (_ett(d) for d in np.arange(6.0, 8.51, 0.5))}

#: A bougie (straight, thin, with a 40 degree coude tip is not modelled: straight).
BOUGIE = TubeSpec("bougie_15fr", 0.0, 5.0e-3, length_m=0.6, straight_m=0.57, bend_deg=0.0,
                  bend_radius_m=0.03, cuff_from_tip_m=(0.0, 0.0), mass_kg=0.02)

#: The airway device catalogue (scenario ``instruments[].device`` keys).
AIRWAY_DEVICES: dict[str, BladeSpec | TubeSpec] = {**BLADES, **TUBES, BOUGIE.name: BOUGIE}
