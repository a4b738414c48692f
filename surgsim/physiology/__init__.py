"""Patient physiology stepped with the session: oxygen stores, SpO2, heart rate."""

from surgsim.physiology.oxygen import (
    PRESETS,
    OxygenModel,
    OxygenState,
    Patient,
    time_to_desaturation,
)

__all__ = ["PRESETS", "OxygenModel", "OxygenState", "Patient", "time_to_desaturation"]
