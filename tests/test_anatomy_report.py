"""Quality report: mesh figures, lumen radii, arch type, tortuosity and airway angles."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import pyvista as pv

from surgsim.anatomy.centerline import Centerline, CenterlineGraph
from surgsim.anatomy.report import (
    airway_report,
    arch_type,
    format_report,
    quality_report,
    tortuosity,
)

R_ARCH = 40e-3  # arch centerline radius
R_AORTA = 12e-3
R_LCCA = 4e-3


def _line(a, b, step=0.5e-3):
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
    return a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)


def _arch_graph(theta_bct: float) -> CenterlineGraph:
    """Planar arch in the x-z plane: descending limb (x > 0), semicircle, ascending limb (x < 0).

    The brachiocephalic trunk leaves the arch at angle ``theta_bct`` radially
    (its ostium, 12 mm out, is at height 52 mm * sin(theta)), then runs up.
    """
    desc = _line([R_ARCH, 0, -100e-3], [R_ARCH, 0, 0])
    t = np.linspace(0.0, math.pi, 400)
    arc = np.stack([R_ARCH * np.cos(t), np.zeros_like(t), R_ARCH * np.sin(t)], axis=1)
    asc = _line([-R_ARCH, 0, 0], [-R_ARCH, 0, -60e-3])
    aorta_pts = np.concatenate([desc, arc[1:], asc[1:]])
    aorta = Centerline("aorta", aorta_pts, np.full(len(aorta_pts), R_AORTA))
    u = np.array([math.cos(theta_bct), 0.0, math.sin(theta_bct)])
    j = R_ARCH * u
    bend = j + 20e-3 * u
    bct_pts = np.concatenate([_line(j, bend), _line(bend, bend + [0, 0, 40e-3])[1:]])
    bct = Centerline("brachiocephalic", bct_pts, np.full(len(bct_pts), 6e-3), parent="aorta")
    lcca_pts = _line([0, 0, R_ARCH], [0, 0, R_ARCH + 80e-3])
    lcca = Centerline("left_common_carotid", lcca_pts, np.full(len(lcca_pts), R_LCCA), parent="aorta")
    return CenterlineGraph({"aorta": aorta, "brachiocephalic": bct, "left_common_carotid": lcca})


@pytest.mark.parametrize(("drop_diameters", "expected"), [(0.5, "I"), (1.5, "II"), (2.5, "III")])
def test_arch_type_follows_the_brachiocephalic_origin(drop_diameters, expected):
    top = R_ARCH + R_AORTA
    drop = drop_diameters * 2 * R_LCCA
    theta = math.pi - math.asin((top - drop) / top)  # on the ascending side (x < 0)
    arch = arch_type(_arch_graph(theta))
    assert arch["type"] == expected
    assert arch["lcca_diameter_m"] == pytest.approx(2 * R_LCCA, rel=1e-6)
    assert arch["drop_m"] == pytest.approx(drop, abs=0.6e-3)  # the branch is sampled every 0.5 mm
    assert arch["arch_top_m"][2] == pytest.approx(top, abs=1e-6)


def test_arch_type_needs_the_named_branches():
    g = _arch_graph(2.0)
    del g.branches["left_common_carotid"]
    assert arch_type(g) is None


def test_tortuosity_of_a_line_and_a_semicircle():
    assert tortuosity(_line([0, 0, 0], [0.1, 0.02, 0.0])) == pytest.approx(0.0, abs=1e-12)
    t = np.linspace(0.0, math.pi, 2000)
    half = np.stack([np.cos(t), np.sin(t), 0 * t], axis=1) * 0.03
    assert tortuosity(half) == pytest.approx(math.pi / 2 - 1, rel=1e-4)
    assert tortuosity(np.zeros((3, 3))) is None


def test_minimum_radius_finds_a_stenosis_and_ignores_tapered_ends():
    pts = _line([0, 0, 0], [0, 0, 0.1])
    s = np.linalg.norm(pts - pts[0], axis=1)
    radii = np.full(len(pts), 4e-3)
    radii[np.abs(s - 0.06) < 2e-3] = 2.5e-3  # stenosis at 60 mm
    radii[-3:] = [2e-3, 1e-3, 0.2e-3]  # blind end tapers to nothing
    graph = CenterlineGraph({"vessel": Centerline("vessel", pts, radii)})
    rep = quality_report(None, graph)
    b = rep["branches"]["vessel"]
    assert b["min_radius_m"] == pytest.approx(2.5e-3)
    assert b["min_radius_at_m"] == pytest.approx(0.06, abs=2.5e-3)
    assert b["length_m"] == pytest.approx(0.1)
    assert rep["min_lumen_radius_branch"] == "vessel"


def test_airway_angles_of_a_synthetic_carina():
    carina = np.array([0.0, 0.0, 0.0])
    trachea = _line([0, 0, 0.12], carina)
    right = np.array([-math.sin(math.radians(25)), 0.0, -math.cos(math.radians(25))])
    left = np.array([math.sin(math.radians(45)), 0.0, -math.cos(math.radians(45))])
    g = CenterlineGraph({
        "trachea": Centerline("trachea", trachea, np.full(len(trachea), 8e-3)),
        "right_main_bronchus": Centerline("right_main_bronchus", _line(carina, 0.04 * right),
                                          np.full(81, 6e-3), parent="trachea"),
        "left_main_bronchus": Centerline("left_main_bronchus", _line(carina, 0.05 * left),
                                         np.full(101, 5e-3), parent="trachea"),
    })
    aw = airway_report(g)
    assert aw["trachea_length_m"] == pytest.approx(0.12)
    assert np.allclose(aw["carina_m"], carina)
    assert aw["right_bronchus_angle_deg"] == pytest.approx(25.0, abs=0.1)
    assert aw["left_bronchus_angle_deg"] == pytest.approx(45.0, abs=0.1)
    assert aw["interbronchial_angle_deg"] == pytest.approx(70.0, abs=0.1)


def test_mesh_figures_and_json():
    sphere = pv.Sphere(radius=0.02, theta_resolution=120, phi_resolution=120)
    rep = quality_report(sphere, _arch_graph(2.0))
    assert rep["watertight"] and rep["manifold"]
    assert rep["n_triangles"] == sphere.n_cells
    assert rep["volume_m3"] == pytest.approx(4 / 3 * math.pi * 0.02**3, rel=2e-3)
    assert rep["area_m2"] == pytest.approx(4 * math.pi * 0.02**2, rel=2e-3)
    text = json.dumps(rep, allow_nan=False)  # JSON-ready, no NaN
    assert json.loads(text)["difficulty"]["arch"]["type"] in ("I", "II", "III")
    assert "arch type" in format_report(rep)
    open_half = sphere.clip(normal="z")
    assert not quality_report(open_half)["watertight"]


@pytest.fixture(scope="module")
def phantom():
    from surgsim.cases.phantom import make_phantom_volume

    return make_phantom_volume(spacing=(2e-3, 2e-3, 2.5e-3))


def _truth_graph(truth, labels, parent):
    return CenterlineGraph({
        k: Centerline(k, truth.centerlines[k], truth.radii[k], parent=None if k == parent else parent)
        for k in labels
    })


def test_phantom_arch_is_type_one_in_truth_and_measured(phantom):
    from surgsim.anatomy.pipeline import build_anatomy

    volume, truth = phantom
    truth_arch = arch_type(_truth_graph(truth, ("aorta", "brachiocephalic", "left_common_carotid"), "aorta"))
    assert truth_arch["type"] == "I"
    result = build_anatomy(volume, "vessels", target_triangles=20_000, use_cache=False)
    rep = result.report
    assert rep["watertight"] and rep["manifold"]
    arch = rep["difficulty"]["arch"]
    assert arch["type"] == "I"
    assert arch["lcca_diameter_m"] == pytest.approx(truth_arch["lcca_diameter_m"], abs=1.5e-3)
    for label in ("brachiocephalic", "left_common_carotid", "left_subclavian"):
        b = rep["branches"][label]
        # narrowest lumen along the branch: within one voxel of the truth's smallest radius
        assert b["min_radius_m"] == pytest.approx(truth.radii[label].min(), abs=2e-3)
    assert 0.0 <= rep["difficulty"]["aorta_tortuosity"] < 5.0


def test_phantom_airway_angles_match_the_truth(phantom):
    from surgsim.anatomy.pipeline import build_anatomy

    volume, truth = phantom
    expected = airway_report(_truth_graph(truth, ("trachea", "right_main_bronchus", "left_main_bronchus"),
                                          "trachea"))
    rep = build_anatomy(volume, "airway", target_triangles=20_000, use_cache=False).report
    aw = rep["airway"]
    assert aw["trachea_length_m"] == pytest.approx(expected["trachea_length_m"], abs=10e-3)
    assert np.linalg.norm(np.subtract(aw["carina_m"], expected["carina_m"])) < 5e-3
    for key in ("right_bronchus_angle_deg", "left_bronchus_angle_deg", "interbronchial_angle_deg"):
        assert aw[key] == pytest.approx(expected[key], abs=7.0)
