"""The angiosuite imaging state: beam, dose, C-arm, contrast flow along the centerline graph."""

from __future__ import annotations

import math

import numpy as np
import pytest

from surgsim.anatomy.centerline import Centerline, CenterlineGraph
from surgsim.errors import ScenarioError
from surgsim.session import imaging as im
from surgsim.session.imaging import Imaging

DT = 1e-3
R_AORTA = 0.010
R_BRANCH = 0.005
JUNCTION = 0.110  # metres along the aorta


def graph() -> CenterlineGraph:
    """A straight aorta along z (access end z = -80 mm, root z = +60 mm) and one branch.

    The branch leaves the aorta 110 mm from its start (z = +30 mm) toward +x, 50 mm long.
    """
    z = np.arange(-0.080, 0.0605, 0.001)
    aorta = np.stack([np.full_like(z, 0.03), np.zeros_like(z), z], axis=1)
    x = np.arange(0.0, 0.0505, 0.001)
    branch = np.stack([0.03 + x, np.zeros_like(x), np.full_like(x, 0.03)], axis=1)
    return CenterlineGraph(branches={
        "aorta": Centerline("aorta", aorta, np.full(len(aorta), R_AORTA)),
        "left_subclavian": Centerline("left_subclavian", branch, np.full(len(branch), R_BRANCH),
                                      parent="aorta"),
    })


def run(img: Imaging, seconds: float) -> None:
    for _ in range(int(round(seconds / DT))):
        img.step(DT)


def test_pedal_accumulates_fluoro_time_and_dose_only_while_held():
    img = Imaging(graph())
    run(img, 0.5)
    assert img.fluoro_time == 0.0 and img.dose == 0.0
    img.set_pedal(True)
    run(img, 1.0)
    img.set_pedal(False)
    run(img, 0.5)
    assert img.fluoro_time == pytest.approx(1.0, abs=1e-9)
    assert img.dose == pytest.approx(im.FLUORO_DAP_RATE * 1.0, rel=1e-9)
    assert img.time == pytest.approx(2.0, abs=1e-9)
    kinds = [e.kind for e in img.events]
    assert kinds == ["fluoro_on", "fluoro_off"]


def test_cine_counts_runs_and_costs_ten_times_the_fluoro_rate():
    img = Imaging(graph())
    for _ in range(2):
        img.set_cine(True)
        run(img, 0.5)
        img.set_cine(False)
        run(img, 0.1)
    assert img.cine_runs == 2
    assert img.cine_time == pytest.approx(1.0, abs=1e-9)
    assert img.fluoro_time == 0.0  # cine is not counted as fluoroscopy time
    assert img.dose == pytest.approx(im.CINE_DAP_RATE * 1.0, rel=1e-9)


def test_lateral_and_angulated_views_cost_more_dose():
    img = Imaging(graph())
    img.set_carm(math.radians(90), math.radians(30))
    img.set_pedal(True)
    run(img, 1.0)
    factor = (1 + im.LATERAL_DOSE_GAIN) / math.cos(math.radians(30))
    assert img.dose == pytest.approx(im.FLUORO_DAP_RATE * factor, rel=1e-9)


def test_carm_angles_are_clipped_to_their_limits():
    img = Imaging(graph())
    img.set_carm(math.radians(200), math.radians(-80))
    assert img.lao == pytest.approx(im.LAO_LIMIT)
    assert img.cran == pytest.approx(-im.CRAN_LIMIT)
    img.rotate_carm(-math.radians(100), math.radians(10))
    assert img.lao == pytest.approx(math.radians(-10))
    assert img.cran == pytest.approx(-im.CRAN_LIMIT + math.radians(10))
    with pytest.raises(ScenarioError):
        img.set_carm(float("nan"), 0.0)


def test_injection_fills_the_aorta_downstream_and_the_branch_with_known_concentrations():
    g = graph()
    img = Imaging(g)
    tip_s = 0.130  # above the junction (toward the root): the branch is downstream
    img.inject(10.0, 5.0, g.point_at("aorta", tip_s))
    run(img, 1.0)
    c = img.concentration()
    c0 = 5.0 / (5.0 + im.Q_AORTA_ML_S)  # the tip's radius is the reference radius
    duration = 2.0
    arc = g.branches["aorta"].arclength

    def expected(d: float, t: float) -> float:
        transit = d / im.FLOW_SPEED
        tau = im.TAU_MIX + im.DISPERSION * transit
        u = t - transit
        if u < 0:
            return 0.0
        if u <= duration:
            return c0 * (1 - math.exp(-u / tau))
        return c0 * (1 - math.exp(-duration / tau)) * math.exp(-(u - duration) / tau)

    i_tip = int(np.argmin(np.abs(arc - tip_s)))
    assert c["aorta"][i_tip] == pytest.approx(expected(0.0, 1.0), rel=1e-9)
    i_down = int(np.argmin(np.abs(arc - (tip_s - 0.05))))  # 50 mm toward the access
    assert c["aorta"][i_down] == pytest.approx(expected(0.05, 1.0), rel=1e-9)
    # upstream beyond the reflux (0.04 * c0 = 2.3 mm): nothing
    assert c["aorta"][arc > tip_s + 0.01].max() == 0.0
    # the branch: 20 mm along the aorta to the junction, then along the branch
    barc = g.branches["left_subclavian"].arclength
    assert c["left_subclavian"][30] == pytest.approx(expected(0.020 + barc[30], 1.0), rel=1e-9)
    assert img.contrast_ml == pytest.approx(5.0)  # half of the 10 ml delivered at 5 ml/s


def test_injection_below_the_junction_never_reaches_the_branch():
    g = graph()
    img = Imaging(g)
    img.inject(10.0, 5.0, g.point_at("aorta", 0.080))  # 30 mm below the junction
    seen_aorta = 0.0
    for _ in range(50):
        run(img, 0.1)
        c = img.concentration()
        assert c["left_subclavian"].max() == 0.0
        seen_aorta = max(seen_aorta, float(c["aorta"][:60].max()))
    assert seen_aorta > 0.03


def test_injection_in_a_branch_refluxes_a_little_and_flows_distally():
    g = graph()
    img = Imaging(g)
    tip_s = 0.020
    inj = img.inject(4.0, 4.0, g.point_at("left_subclavian", tip_s))
    q = im.Q_AORTA_ML_S * (R_BRANCH / R_AORTA) ** 3
    c0 = 4.0 / (4.0 + q)
    assert inj.label == "left_subclavian" and inj.c0 == pytest.approx(c0)
    assert inj.reflux_length == pytest.approx(im.REFLUX_LENGTH * c0)
    run(img, 0.5)
    c = img.concentration()["left_subclavian"]
    barc = g.branches["left_subclavian"].arclength
    g_tip = 1 - math.exp(-0.5 / im.TAU_MIX)
    i_up = int(np.argmin(np.abs(barc - (tip_s - 0.005))))  # 5 mm upstream: reflux
    w = 1 - 0.005 / inj.reflux_length
    assert c[i_up] == pytest.approx(im.REFLUX_FRACTION * c0 * g_tip * w, rel=1e-6)
    assert c[barc < tip_s - inj.reflux_length - 1e-3].max() == 0.0
    assert c[barc > tip_s + 0.01].min() > 0.1  # downstream filled
    assert img.concentration()["aorta"].max() == 0.0  # the reflux does not reach the ostium


def test_contrast_washes_out_within_seconds_and_the_injection_is_forgotten():
    g = graph()
    img = Imaging(g)
    img.inject(10.0, 5.0, g.point_at("aorta", 0.130))
    run(img, 2.5)
    assert img.contrast_visible()
    run(img, 6.0)
    assert not img.contrast_visible()
    assert img.injections == []
    assert img.contrast_ml == pytest.approx(10.0)


def test_roadmap_is_captured_only_under_fluoroscopy_and_only_applies_at_its_angles():
    g = graph()
    dark = Imaging(g)
    dark.inject(10.0, 5.0, g.point_at("aorta", 0.130))
    run(dark, 8.0)
    assert dark.roadmap is None  # nothing was imaged

    img = Imaging(g)
    img.set_pedal(True)
    img.inject(10.0, 5.0, g.point_at("aorta", 0.130))
    run(img, 1.0)
    assert not img.roadmap_valid()  # contrast still flowing: the live image shows it
    run(img, 7.0)
    img.set_pedal(False)
    assert img.roadmap_valid()
    peak = img.roadmap.concentration["left_subclavian"]
    assert peak.max() > 0.03 and img.roadmap.lao == 0.0
    img.set_carm(math.radians(30), 0.0)
    assert not img.roadmap_valid()
    img.set_carm(0.0, 0.0)
    assert img.roadmap_valid()
    img.set_roadmap(False)
    assert not img.roadmap_valid()


def test_same_inputs_give_the_same_state_bit_for_bit():
    g = graph()

    def session() -> Imaging:
        img = Imaging(g)
        img.set_pedal(True)
        run(img, 0.3)
        img.set_carm(0.3, -0.1)
        img.inject(8.0, 4.0, g.point_at("aorta", 0.125))
        run(img, 0.7)
        img.inject(3.0, 3.0, g.point_at("left_subclavian", 0.01))
        run(img, 1.2)
        return img

    a, b = session(), session()
    ca, cb = a.concentration(), b.concentration()
    assert all(np.array_equal(ca[k], cb[k]) for k in ca)
    assert (a.dose, a.fluoro_time, a.contrast_ml) == (b.dose, b.fluoro_time, b.contrast_ml)


def test_invalid_injections_are_refused_and_large_ones_clipped():
    g = graph()
    img = Imaging(g)
    with pytest.raises(ScenarioError, match="volume_ml"):
        img.inject(-1.0, 5.0, g.point_at("aorta", 0.1))
    with pytest.raises(ScenarioError, match="tip_point"):
        img.inject(5.0, 5.0, [np.nan, 0.0, 0.0])
    inj = img.inject(1e6, 1e3, g.point_at("aorta", 0.1))
    assert inj.volume_ml == im.MAX_VOLUME_ML and inj.rate_ml_s == im.MAX_RATE_ML_S
