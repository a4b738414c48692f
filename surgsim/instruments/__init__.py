"""surgsim.instruments: device specifications (catheters, guidewires) and their tip shapes."""

from surgsim.instruments.catheter import (
    CATALOGUE,
    TIP_SHAPES,
    DeviceSpec,
    french,
    inch,
    tip_pieces,
)

__all__ = ["CATALOGUE", "TIP_SHAPES", "DeviceSpec", "french", "inch", "tip_pieces"]
