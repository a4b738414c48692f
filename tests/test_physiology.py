"""The oxygen-store apnoea model against published desaturation times."""

from __future__ import annotations

import pytest

from surgsim.physiology.oxygen import (
    PRESETS,
    OxygenModel,
    content,
    pressure_from_content,
    saturation,
    time_to_desaturation,
)


def test_severinghaus_curve_known_points():
    assert saturation(27.0) == pytest.approx(0.50, abs=0.02)  # P50
    assert saturation(60.0) == pytest.approx(0.90, abs=0.02)
    assert saturation(100.0) > 0.97


def test_content_inverts():
    for p in (20.0, 45.0, 90.0, 400.0):
        assert pressure_from_content(float(content(p, 15.0)), 15.0) == pytest.approx(p, rel=1e-4)


@pytest.mark.parametrize(
    ("preset", "measured_s"),
    [("adult", 595.0), ("obese", 196.0)],  # Berthoud 1991 (adult, obese)
)
def test_time_to_90_percent_matches_measured(preset, measured_s):
    t = time_to_desaturation(preset)
    assert abs(t - measured_s) / measured_s < 0.15, t


@pytest.mark.parametrize(
    ("preset", "open_min", "obstructed_min"),
    [("adult", 10.0, 9.0), ("ill", 6.6, 5.8), ("obese", 3.1, 2.6), ("child", 3.5, 3.1)],
)
def test_model_reproduces_farmery_roe_table(preset, open_min, obstructed_min):
    assert time_to_desaturation(preset) / 60 == pytest.approx(open_min, rel=0.15)
    assert time_to_desaturation(preset, airway="obstructed") / 60 == pytest.approx(obstructed_min, rel=0.15)
    assert time_to_desaturation(preset, airway="obstructed") < time_to_desaturation(preset)


def test_room_air_desaturates_within_a_minute():
    assert time_to_desaturation("adult", preoxygenated_fraction=0.14) < 60


def test_displayed_spo2_lags_and_ventilation_recovers():
    model = OxygenModel("obese")
    while model.state.arterial_saturation > 0.85:
        model.step(0.1)
    assert model.state.displayed_spo2 > model.state.arterial_saturation  # the monitor lags
    model.airway, model.fio2 = "ventilated", 1.0
    nadir = model.state.displayed_spo2
    for _ in range(200):  # 20 s of ventilation
        nadir = min(nadir, model.step(0.1).displayed_spo2)
    assert nadir < model.state.arterial_saturation  # the displayed nadir comes after ventilation resumed
    for _ in range(1200):
        model.step(0.1)
    assert model.state.arterial_saturation > 0.97
    assert model.state.displayed_spo2 > 0.95


def test_heart_rate_falls_at_deep_desaturation():
    model = OxygenModel("child")
    hr0 = model.state.heart_rate_bpm
    while model.state.arterial_saturation > 0.5:
        model.step(0.1)
    assert model.state.heart_rate_bpm < 0.8 * hr0


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown patient preset 'elephant'"):
        OxygenModel("elephant")


def test_every_preset_is_finite():
    for name in PRESETS:
        assert 0 < time_to_desaturation(name) < 3600


def test_cli_prints_time_to_desaturation(capsys):
    import json

    from surgsim.cli import main

    assert main(["physiology", "desaturation", "--patient", "adult", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["time_to_threshold_s"] - 595) / 595 < 0.15
    assert main(["physiology", "desaturation", "--patient", "whale"]) == 2
    assert "choose one of" in capsys.readouterr().err
