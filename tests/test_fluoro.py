"""Fluoroscopy frames: anatomy DRR, C-arm geometry, devices, contrast and roadmap."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from surgsim.anatomy.centerline import Centerline, CenterlineGraph
from surgsim.dicom.volume import Volume
from surgsim.render import fluoro
from surgsim.render.fluoro import DeviceDraw, FluoroRenderer
from surgsim.session.imaging import Imaging

SP = 2.0e-3  # voxel size, metres
N = 90  # voxels per axis: a 180 mm cube centred on the origin
SPINE_X = -0.030
VESSEL_X = 0.030


def _grid():
    c = (np.arange(N) - (N - 1) / 2) * SP
    z, y, x = np.meshgrid(c, c, c, indexing="ij")  # array order (k, j, i)
    w = np.diag([SP, SP, SP, 1.0])
    w[:3, 3] = -(N - 1) / 2 * SP
    return x, y, z, w


def _phantom(with_vessel: bool = True):
    """A body (soft tissue cylinder), a spine (bone, posterior left of centre in x) and
    a contrast-filled aorta along z at x = +30 mm with one branch toward +x."""
    x, y, z, w = _grid()
    hu = np.full(x.shape, -1000.0, dtype=np.float32)
    hu[x**2 + y**2 < 0.080**2] = 40.0
    hu[(x - SPINE_X) ** 2 + (y - 0.040) ** 2 < 0.015**2] = 1000.0
    aorta = ((x - VESSEL_X) ** 2 + y**2 < 0.010**2) & (z > -0.090) & (z < 0.060)
    branch = ((z - 0.030) ** 2 + y**2 < 0.005**2) & (x > VESSEL_X) & (x < VESSEL_X + 0.045)
    lumen = aorta | branch
    if with_vessel:
        hu[lumen] = 350.0  # CTA: contrast in the lumen
    return Volume(array=hu, world_from_voxel=w), lumen


def _graph() -> CenterlineGraph:
    zc = np.arange(-0.088, 0.0585, 0.001)
    aorta = np.stack([np.full_like(zc, VESSEL_X), np.zeros_like(zc), zc], axis=1)
    xb = np.arange(0.0, 0.0435, 0.001)
    branch = np.stack([VESSEL_X + xb, np.zeros_like(xb), np.full_like(xb, 0.030)], axis=1)
    return CenterlineGraph(branches={
        "aorta": Centerline("aorta", aorta, np.full(len(aorta), 0.010)),
        "left_subclavian": Centerline("left_subclavian", branch, np.full(len(branch), 0.005),
                                      parent="aorta"),
    })


@pytest.fixture(scope="module")
def scene():
    volume, lumen = _phantom()
    g = _graph()
    r = FluoroRenderer(volume, lumen, g, size=128, isocenter=np.zeros(3), noise=0.0)
    return r, g


def _mean_at(img: np.ndarray, colrow: np.ndarray) -> float:
    cr = np.rint(colrow).astype(int)
    ok = (cr[:, 0] >= 0) & (cr[:, 0] < img.shape[1]) & (cr[:, 1] >= 0) & (cr[:, 1] < img.shape[0])
    return float(img[cr[ok, 1], cr[ok, 0]].astype(float).mean())


def test_frame_is_a_uint8_image_with_anatomy_and_the_spine_dark(scene):
    r, _ = scene
    img = r.frame(None, None)
    assert img.shape == (128, 128) and img.dtype == np.uint8
    assert img.std() > 20  # not blank
    v = r.view(0.0, 0.0)
    zs = np.linspace(-0.05, 0.05, 11)
    spine = np.stack([np.full_like(zs, SPINE_X), np.full_like(zs, 0.04), zs], axis=1)
    mirror = spine * [-1, 1, 1]  # same chord through the body, no bone
    spine_px, _ = v.project(spine)
    mirror_px, _ = v.project(mirror)
    assert spine_px[:, 0].mean() < 63.5 < mirror_px[:, 0].mean()  # patient's right on screen left
    assert _mean_at(img, spine_px) < _mean_at(img, mirror_px) - 20  # bone is dark


def test_lumen_is_blood_without_contrast(scene):
    r, g = scene
    volume, lumen = _phantom(with_vessel=False)
    plain = FluoroRenderer(volume, lumen, g, size=128, isocenter=np.zeros(3), noise=0.0)
    a = r.view(0.0, 0.0).anatomy
    b = plain.view(0.0, 0.0).anatomy
    assert np.abs(a - b).max() < 1e-4 * a.max()  # the CTA's contrast lumen is invisible


def test_known_points_project_where_the_geometry_says(scene):
    r, _ = scene
    mag = fluoro.SID / fluoro.SOD
    centre = (r.size - 1) / 2
    v = r.view(0.0, 0.0)
    px, m = v.project(np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.0, 0.0, 0.01]]))
    assert px[0] == pytest.approx([centre, centre])
    assert m[0] == pytest.approx(mag)
    assert px[1, 0] - centre == pytest.approx(0.01 * mag / r.pitch)  # patient left: screen right
    assert px[2, 1] - centre == pytest.approx(-0.01 * mag / r.pitch)  # head: screen up
    lat = r.view(math.radians(90), 0.0)  # LAO 90: detector on the patient's left
    px, _ = lat.project(np.array([[0.01, 0.0, 0.0], [0.0, 0.01, 0.0]]))
    assert px[0] == pytest.approx([centre, centre], abs=1e-9)  # along the beam
    assert px[1, 0] - centre == pytest.approx(0.01 * mag / r.pitch)  # posterior: screen right
    cran = r.view(0.0, math.radians(30))
    px, _ = cran.project(np.array([[0.0, 0.0, 0.0], [0.0, -0.01, 0.0]]))
    assert px[0] == pytest.approx([centre, centre])
    assert px[1, 1] != pytest.approx(centre)  # an anterior point moves along the rows


def test_angle_changes_the_image_and_the_cache_rounds_to_a_degree(scene):
    r, _ = scene
    ap = r.frame(None, None)
    img = Imaging(_graph())
    img.set_carm(math.radians(90), 0.0)
    lateral = r.frame(None, img)
    assert np.abs(ap.astype(int) - lateral.astype(int)).mean() > 5
    assert r.view(math.radians(10.3), 0.0) is r.view(math.radians(9.8), 0.0)
    assert r.view(math.radians(10.6), 0.0) is not r.view(math.radians(10.0), 0.0)


def test_devices_are_drawn_dark_along_their_projection(scene):
    r, _ = scene
    zs = np.linspace(-0.06, 0.05, 60)
    pts = np.stack([np.full_like(zs, VESSEL_X), np.zeros_like(zs), zs], axis=1)
    v = r.view(0.0, 0.0)
    base = r.frame(None, None).astype(float)
    for dev in (DeviceDraw(pts, 5e-3 / 3, "catheter"), DeviceDraw(pts, 0.889e-3, "guidewire")):
        img = r.frame([dev], None).astype(float)
        on, _ = v.project(pts[5:-5])
        off = on + [5.0, 0.0]
        assert _mean_at(img, on) < _mean_at(base, on) - 15
        assert _mean_at(img, on) < _mean_at(img, off) - 15
        assert _mean_at(img, off) == pytest.approx(_mean_at(base, off), abs=1.0)


def test_contrast_shows_the_branch_only_after_injection_and_fades(scene):
    r, g = scene
    img = Imaging(g)
    v = r.view(0.0, 0.0)
    branch_px, _ = v.project(g.branches["left_subclavian"].points[8:-3])
    before = r.frame(None, img)
    img.inject(20.0, 10.0, g.point_at("aorta", 0.125))  # above the junction (z = +30 mm)
    img.step(0.05)
    early = r.frame(None, img)  # the front has not reached the branch yet
    assert _mean_at(early, branch_px) == pytest.approx(_mean_at(before, branch_px), abs=0.5)
    img.step(1.5)
    filled = r.frame(None, img)
    assert _mean_at(filled, branch_px) < _mean_at(before, branch_px) - 10
    for _ in range(80):
        img.step(0.1)
    faded = r.frame(None, img)
    assert _mean_at(faded, branch_px) == pytest.approx(_mean_at(before, branch_px), abs=1.0)


def test_roadmap_overlay_brightens_the_vessels_at_its_angle(scene):
    r, g = scene
    img = Imaging(g)
    v = r.view(0.0, 0.0)
    aorta_px, _ = v.project(g.branches["aorta"].points[20:100])
    plain = r.frame(None, img)
    img.set_pedal(True)
    img.inject(10.0, 5.0, g.point_at("aorta", 0.125))
    for _ in range(100):
        img.step(0.1)
    assert img.roadmap_valid()
    road = r.frame(None, img)
    assert _mean_at(road, aorta_px) > _mean_at(plain, aorta_px) + 20
    img.set_carm(math.radians(20), 0.0)
    moved = r.frame(None, img)
    assert np.array_equal(moved, r.frame(None, img))  # no overlay away from its angle
    img.set_carm(0.0, 0.0)
    img.set_roadmap(False)
    assert np.array_equal(r.frame(None, img), plain)


def test_frame_rate_with_a_cached_angle(scene, capsys):
    r, g = scene
    img = Imaging(g)
    img.inject(10.0, 5.0, g.point_at("aorta", 0.125))
    img.step(1.0)
    pts = g.branches["aorta"].points[::4]
    r.frame([pts], img)
    t0 = time.perf_counter()
    for _ in range(30):
        r.frame([pts], img)
    fps = 30 / (time.perf_counter() - t0)
    with capsys.disabled():
        print(f"\n  fluoro 128x128 synthetic, cached angle, contrast + device: {fps:.0f} frames/s")
    assert fps > 0


@pytest.mark.slow
def test_default_case_frames_and_frame_rate(default_case, capsys):
    from surgsim.cases.default import default_case_dicom_dir
    from surgsim.dicom.load import load_series
    from surgsim.render.fluoro import fluoro_renderer_for_case

    volume = load_series(default_case_dicom_dir())
    t0 = time.perf_counter()
    r = fluoro_renderer_for_case(default_case, volume, size=256)
    build = time.perf_counter() - t0
    img = Imaging(default_case.centerlines)
    t0 = time.perf_counter()
    r.view(0.0, 0.0)
    first = time.perf_counter() - t0
    aorta = default_case.centerlines.branches["aorta"]
    device = DeviceDraw(aorta.points[: int(0.3 * len(aorta.points)) : 3])
    base = r.frame([device], img)
    img.inject(10.0, 5.0, aorta.points[-20])
    img.step(1.5)
    t0 = time.perf_counter()
    for _ in range(60):
        frame = r.frame([device], img)
    fps = 60 / (time.perf_counter() - t0)
    img.set_carm(math.radians(30), math.radians(10))
    t0 = time.perf_counter()
    r.frame([device], img)
    new_angle = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n  fluoro 256x256 default case: build {build:.2f} s, first angle {first:.2f} s, "
              f"new angle {new_angle:.2f} s, cached {fps:.0f} frames/s")
    assert base.std() > 20
    assert frame.mean() < base.mean()  # contrast darkens
