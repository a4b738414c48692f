"""``surgsim bench physics`` in a tiny configuration: the figures are there and sane (no timing asserts)."""

from __future__ import annotations

import math

import pytest


@pytest.mark.slow
def test_physics_bench_reports_every_figure(default_case, capsys):
    from surgsim.bench_physics import run_physics_bench

    res = run_physics_bench(json_out=True, steps=40, warmup_depth=0.06, pybullet_steps=20,
                            cantilever_steps=2500, distance_field=True)
    out = capsys.readouterr().out
    assert '"speedup_vs_pybullet"' in out  # the JSON document was printed
    assert res["case"]["triangles"] == default_case.mesh.n_cells
    for key, nodes in (("rod_100", 100), ("rod_200", 200), ("pybullet_100", 100)):
        r = res[key]
        assert r["nodes"] == nodes
        assert math.isfinite(r["steps_per_s"]) and r["steps_per_s"] > 0
        assert 0.0 <= r["max_penetration_m"] < 5e-3  # nothing left the vessel by more than 5 mm
    assert res["rod_100"]["depth_m"] == pytest.approx(0.06 + 40 * 1e-3 * 0.05, abs=2e-3)
    assert res["speedup_vs_pybullet"] == pytest.approx(
        res["rod_100"]["steps_per_s"] / res["pybullet_100"]["steps_per_s"])
    cl = res["cantilever"]
    assert cl["rel_error"] < 0.05  # Euler-Bernoulli within 5 % in the benchmark's configuration
    assert cl["deflection_m"] > 0
    df = res["distance_field"]
    assert df["dtype"] == "float32" and df["spacing_m"] == 0.5e-3
    assert df["bytes"] == 4 * math.prod(df["shape"])
    assert df["build_s"] > 0
