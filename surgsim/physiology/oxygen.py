"""Lumped oxygen-store model of apnoea and ventilation (Farmery and Roe, BJA 1996).

The lung's O2 store (alveolar gas at FRC), arterial blood mixing a shunt of
venous blood, and a venous store that tissues deplete. Cheap enough to step
with every frame (explicit Euler, dt up to 0.1 s). Units follow physiology
convention inside this module (ml, ml/min, mmHg, g/dl) because every
published parameter is given in them; the public API takes seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

#: Dry-gas pressure at body temperature, mmHg (760 - 47 water vapour).
DRY_PRESSURE = 713.0


def saturation(p: float | np.ndarray) -> float | np.ndarray:
    """Haemoglobin O2 saturation (0-1) at partial pressure ``p`` mmHg (Severinghaus)."""
    p = np.maximum(p, 1e-6)
    return 1.0 / (23400.0 / (p**3 + 150.0 * p) + 1.0)


def content(p: float | np.ndarray, hb: float) -> float | np.ndarray:
    """Blood O2 content, ml O2 per ml blood, at ``p`` mmHg and haemoglobin ``hb`` g/dl."""
    return (1.34 * hb * saturation(p) + 0.003 * p) / 100.0


def _content_scalar(p: float, hb: float) -> float:
    p = max(p, 1e-6)
    return (1.34 * hb / (23400.0 / (p * p * p + 150.0 * p) + 1.0) + 0.003 * p) / 100.0


def pressure_from_content(c: float, hb: float) -> float:
    """Invert :func:`content`: the PO2 (mmHg) giving content ``c`` (bisection; monotone)."""
    lo, hi = 0.0, 2000.0
    if c <= _content_scalar(lo, hb):
        return 0.0
    while hi - lo > 1e-6:
        mid = 0.5 * (lo + hi)
        if _content_scalar(mid, hb) < c:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Patient:
    """Parameters of one patient (published presets in :data:`PRESETS`).

    Attributes
    ----------
    frc_ml : lung volume at end expiration (the O2 store), ml
    vo2_ml_min : O2 consumption, ml/min
    cardiac_output_ml_min : ml/min
    hb_g_dl : haemoglobin, g/dl
    shunt : fraction of cardiac output bypassing the lung (0-1)
    blood_volume_ml : total blood volume, ml (its venous share is the venous store)
    heart_rate_bpm : resting heart rate
    alveolar_ventilation_ml_min : when ventilated by bag or tube
    """

    name: str
    frc_ml: float
    vo2_ml_min: float
    cardiac_output_ml_min: float
    hb_g_dl: float
    shunt: float
    blood_volume_ml: float
    heart_rate_bpm: float = 80.0
    alveolar_ventilation_ml_min: float = 4000.0
    respiratory_quotient: float = 0.8


PRESETS: dict[str, Patient] = {
    "adult": Patient("healthy adult 70 kg", 2500, 250, 5000, 15, 0.02, 5000, 75, 4000),
    "ill": Patient("moderately ill adult", 2000, 300, 5000, 12, 0.15, 5000, 95, 4000),
    "obese": Patient("obese adult 127 kg", 1000, 350, 6500, 15, 0.05, 6500, 85, 5000),
    "child": Patient("child 10 kg", 250, 70, 1200, 11, 0.02, 800, 120, 1000),
    "pregnant": Patient("pregnant at term", 1700, 300, 6500, 11.5, 0.05, 6500, 90, 5500),
}

#: Venous share of the blood volume that acts as the O2 store.
VENOUS_FRACTION = 0.7
#: CO2 delivered to the lung during apnoea as a fraction of the normal output
#: (most CO2 stays in the tissues and blood while apnoeic).
APNOEIC_CO2_FRACTION = 0.1


@dataclass(frozen=True)
class OxygenState:
    """State of the model (what a session records)."""

    t: float  # seconds since the start
    lung_o2_ml: float
    lung_other_ml: float  # N2, CO2 and other gases in the lung
    venous_content: float  # ml O2 / ml blood
    arterial_saturation: float  # 0-1 (true SaO2)
    displayed_spo2: float  # 0-1, the monitor's lagged reading
    heart_rate_bpm: float

    @property
    def alveolar_fraction(self) -> float:
        return self.lung_o2_ml / max(self.lung_o2_ml + self.lung_other_ml, 1e-9)


class OxygenModel:
    """Step the oxygen stores of one patient through apnoea and ventilation.

    Parameters
    ----------
    patient : Patient or str
        A :class:`Patient` or a key of :data:`PRESETS`.
    preoxygenated_fraction : float
        Alveolar O2 fraction when apnoea starts (0.87 after full
        pre-oxygenation, about 0.14 breathing room air).
    spo2_lag_s : float
        Time constant of the pulse oximeter's displayed value.
    """

    def __init__(self, patient: Patient | str = "adult", preoxygenated_fraction: float = 0.87,
                 spo2_lag_s: float = 20.0):
        if isinstance(patient, str):
            if patient not in PRESETS:
                raise ValueError(f"unknown patient preset {patient!r}; known: {', '.join(PRESETS)}")
            patient = PRESETS[patient]
        self.patient = patient
        self.spo2_lag_s = spo2_lag_s
        #: "open" (apnoeic oxygenation from the airway), "obstructed", or "ventilated".
        self.airway = "open"
        #: O2 fraction of the gas at the airway: room air once the mask is off
        #: (set 1.0 for apnoeic oxygenation or ventilation with oxygen).
        self.fio2 = 0.21
        p = patient
        lung_o2 = preoxygenated_fraction * p.frc_ml
        pao2 = preoxygenated_fraction * DRY_PRESSURE
        q = p.cardiac_output_ml_min
        cc = content(pao2, p.hb_g_dl)
        ca = cc - p.shunt * p.vo2_ml_min / (q * (1 - p.shunt))
        cv = ca - p.vo2_ml_min / q
        sa = float(saturation(pressure_from_content(ca, p.hb_g_dl)))
        self.state = OxygenState(0.0, lung_o2, p.frc_ml - lung_o2, cv, sa, sa, p.heart_rate_bpm)

    def step(self, dt: float) -> OxygenState:
        """Advance ``dt`` seconds (explicit Euler; keep dt <= 0.1 s)."""
        p, s = self.patient, self.state
        minutes = dt / 60.0
        q = p.cardiac_output_ml_min
        volume = s.lung_o2_ml + s.lung_other_ml
        fraction = s.lung_o2_ml / max(volume, 1e-9)
        pao2 = fraction * DRY_PRESSURE
        cc = _content_scalar(pao2, p.hb_g_dl)
        ca = (1 - p.shunt) * cc + p.shunt * s.venous_content
        uptake = max(q * (1 - p.shunt) * (cc - s.venous_content), 0.0)  # ml/min into the blood
        o2, other = s.lung_o2_ml, s.lung_other_ml
        if self.airway == "ventilated":
            # washing in: alveolar gas relaxes toward the inspired gas, volume back to FRC
            rate = p.alveolar_ventilation_ml_min / p.frc_ml
            o2 += (-uptake + rate * (self.fio2 * p.frc_ml - o2)) * minutes
            other += rate * ((1 - self.fio2) * p.frc_ml - other) * minutes
        else:
            co2_out = APNOEIC_CO2_FRACTION * p.respiratory_quotient * p.vo2_ml_min
            o2 -= uptake * minutes
            other += co2_out * minutes
            if self.airway == "open":
                # apnoeic mass flow: gas drawn in as fast as the lung loses volume
                inflow = max(uptake - co2_out, 0.0)
                o2 += self.fio2 * inflow * minutes
                other += (1 - self.fio2) * inflow * minutes
        o2 = max(o2, 0.0)
        venous_volume = VENOUS_FRACTION * p.blood_volume_ml
        cv = s.venous_content + (q * (ca - s.venous_content) - p.vo2_ml_min) / venous_volume * minutes
        cv = max(cv, 0.0)
        sa = float(saturation(pressure_from_content(ca, p.hb_g_dl)))
        alpha = 1.0 - math.exp(-dt / self.spo2_lag_s)
        spo2 = s.displayed_spo2 + alpha * (sa - s.displayed_spo2)
        self.state = OxygenState(s.t + dt, o2, other, cv, sa, float(spo2), heart_rate(p, sa))
        return self.state


def heart_rate(patient: Patient, sao2: float) -> float:
    """Heart rate (bpm): steady above SaO2 80 %, falling to 40 % of rest at SaO2 40 % (hypoxic bradycardia)."""
    if sao2 >= 0.8:
        return patient.heart_rate_bpm
    k = (0.8 - max(sao2, 0.4)) / 0.4
    return patient.heart_rate_bpm * (1.0 - 0.6 * k)


def time_to_desaturation(patient: Patient | str = "adult", threshold: float = 0.90,
                         airway: str = "open", preoxygenated_fraction: float = 0.87,
                         dt: float = 0.1, limit_s: float = 3600.0) -> float:
    """Seconds of apnoea until the true arterial saturation falls below ``threshold``."""
    model = OxygenModel(patient, preoxygenated_fraction)
    model.airway = airway
    while model.state.arterial_saturation >= threshold:
        if model.state.t >= limit_s:
            return float("inf")
        model.step(dt)
    return model.state.t


def with_overrides(patient: Patient, **changes) -> Patient:
    """A copy of ``patient`` with some parameters changed."""
    return replace(patient, **changes)
