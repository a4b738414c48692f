"""``surgsim bench intubation`` at tiny sizes: every figure is measured and reported (never asserted fast)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.render


def test_bench_intubation_tiny_json(capsys):
    from surgsim.cli import main

    code = main(["bench", "intubation", "--json", "--seconds", "0.2", "--frames", "3", "--no-gui"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    # physics: timed with the blade on the tongue and the tube touching the airway
    assert out["physics_steps"] == 50 and out["physics_wall_s"] > 0
    assert out["physics_steps_per_s"] == pytest.approx(out["physics_steps"] / out["physics_wall_s"])
    assert out["physics_realtime_ratio"] == pytest.approx(out["physics_steps_per_s"] * 0.004)
    assert 0.5 < out["contact_from_s"] < 30.0 and out["contact_fraction"] > 0.5
    # rendering: the laryngoscope view and the flat-plane baseline in the same process
    assert out["frames"] == 3 and out["frames_per_s"] > 0 and out["baseline_plane_frames_per_s"] > 0
    from surgsim.render.airway import LARYNGOSCOPE_VIEW_SIZE, VIEW_TRIANGLES

    assert out["frame_size"] == list(LARYNGOSCOPE_VIEW_SIZE)  # the size the intubation window gives the view
    assert out["frames_vs_goal"] == pytest.approx(out["frames_per_s"] / 30.0)
    # the culled, decimated tissue of the laryngoscope view and the devices, proxies, teeth and cords
    assert VIEW_TRIANGLES < out["scene_triangles"] < VIEW_TRIANGLES + 15000
    assert "app_rss_bytes" not in out  # --no-gui
    assert out["goals"]["rss_bytes"] == 1.5 * 2**30
    # the text report of the same figures
    from surgsim.bench_intubation import format_report

    text = format_report(out)
    assert f"{out['physics_steps']} steps" in text and "frames/s" in text and "resident" not in text
