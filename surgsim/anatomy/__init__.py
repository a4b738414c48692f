"""surgsim.anatomy: label masks, surfaces, signed distance fields and centerlines from a volume.

``segment`` turns a CT into a boolean mask (presets ``vessels``, ``airway``,
``bone``, ``skin``); ``surface_from_mask`` makes a closed decimated surface;
``distance_field_from_mask`` the signed distance to a lumen wall for the
physics; ``vessel_centerlines`` / ``airway_centerlines`` labelled centerlines.
"""

from surgsim.anatomy.centerline import (
    Centerline,
    CenterlineGraph,
    airway_centerlines,
    vessel_centerlines,
)
from surgsim.anatomy.distance import DistanceField, distance_field_from_mask
from surgsim.anatomy.segment import PRESETS, segment
from surgsim.anatomy.surface import mesh_quality, surface_from_mask

__all__ = [
    "PRESETS",
    "Centerline",
    "CenterlineGraph",
    "DistanceField",
    "airway_centerlines",
    "distance_field_from_mask",
    "mesh_quality",
    "segment",
    "surface_from_mask",
    "vessel_centerlines",
]
