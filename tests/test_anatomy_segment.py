"""Segmentation presets on a small synthetic CT with known anatomy, and on the phantom."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim.anatomy.segment import PRESETS, segment
from surgsim.dicom.volume import Volume
from surgsim.errors import AnatomyError

SP = np.array([1.5e-3, 1.5e-3, 2.5e-3])  # i, j, k
SHAPE = (48, 80, 100)  # k, j, i
ORIGIN = np.array([-74.25e-3, -59.25e-3, 0.0])


def _grid():
    k, j, i = np.indices(SHAPE)
    return ORIGIN[0] + i * SP[0], ORIGIN[1] + j * SP[1], ORIGIN[2] + k * SP[2]


def _synthetic_ct(contrast=True, trachea=True, seed=0):
    """Torso slab: body, lungs, trachea, contrast aorta, a contrast sphere, a vertebra.

    Returns the volume and the true masks.
    """
    x, y, z = _grid()
    mm = 1e-3
    body = (x / (65 * mm)) ** 2 + (y / (50 * mm)) ** 2 < 1
    lungs = (((np.abs(x) - 35 * mm) ** 2 + y**2) < (20 * mm) ** 2) & (z > 20 * mm) & (z < 110 * mm)
    trach = (((x**2 + (y + 20 * mm) ** 2) < (8 * mm) ** 2) & (z > 40 * mm)) & trachea
    aorta = (((x - 5 * mm) ** 2 + (y - 30 * mm) ** 2) < (9 * mm) ** 2) & (z < 100 * mm)
    sphere = ((x + 30 * mm) ** 2 + (y + 25 * mm) ** 2 + (z - 10 * mm) ** 2) < (8 * mm) ** 2
    spine_r = np.sqrt(((x + 25 * mm) / (10 * mm)) ** 2 + ((y - 38 * mm) / (10 * mm)) ** 2)
    bone = spine_r < 1
    cortex = bone & (spine_r > 0.8)
    hu = np.full(SHAPE, -1000.0, dtype=np.float32)
    hu[body] = 40.0
    hu[lungs] = -850.0
    hu[trach] = -1000.0
    hu[aorta] = 350.0 if contrast else 40.0
    hu[sphere] = 250.0 if contrast else 40.0
    hu[bone] = 300.0
    hu[cortex] = 1000.0
    hu += np.random.default_rng(seed).normal(0, 10, SHAPE).astype(np.float32)
    w = np.diag([*SP, 1.0])
    w[:3, 3] = ORIGIN
    vol = Volume(array=np.rint(hu).astype(np.int16), world_from_voxel=w, description="synthetic")
    truth = {"body": body, "lungs": lungs, "trachea": trach, "aorta": aorta, "sphere": sphere, "bone": bone}
    return vol, truth


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def ct():
    return _synthetic_ct()


def test_presets_are_listed():
    assert PRESETS == ("vessels", "airway", "bone", "skin")


def test_vessels_auto_seed_finds_the_aorta_not_the_sphere_nor_bone(ct):
    vol, truth = ct
    mask = segment(vol, "vessels")
    assert mask.shape == vol.shape and mask.dtype == bool
    assert _dice(mask, truth["aorta"]) > 0.92
    assert not (mask & truth["sphere"]).any()
    assert not (mask & truth["bone"]).any()


def test_vessels_seed_selects_its_component(ct):
    vol, truth = ct
    seed = np.array([-30e-3, -25e-3, 10e-3])  # centre of the contrast sphere
    mask = segment(vol, "vessels", seed=seed)
    assert _dice(mask, truth["sphere"]) > 0.85
    assert not (mask & truth["aorta"]).any()


def test_vessels_bad_seed_says_what_to_do(ct):
    vol, _ = ct
    with pytest.raises(AnatomyError, match="--seed"):
        segment(vol, "vessels", seed=np.array([-40e-3, 20e-3, 60e-3]))  # soft tissue
    with pytest.raises(AnatomyError, match="outside the volume"):
        segment(vol, "vessels", seed=np.array([1.0, 0.0, 0.0]))


def test_vessels_without_contrast_fails_with_advice():
    vol, _ = _synthetic_ct(contrast=False)
    with pytest.raises(AnatomyError, match="vessels preset.*(contrast|seed)"):
        segment(vol, "vessels")


def test_airway_is_the_trachea_without_lung(ct):
    vol, truth = ct
    mask = segment(vol, "airway")
    assert _dice(mask, truth["trachea"]) > 0.85
    assert (mask & truth["lungs"]).sum() < 0.01 * truth["lungs"].sum()
    assert not (mask & ~truth["body"]).any()


def test_airway_with_a_seed_and_without_a_trachea():
    vol, truth = _synthetic_ct()
    mask = segment(vol, "airway", seed=np.array([0.0, -20e-3, 80e-3]))
    assert _dice(mask, truth["trachea"]) > 0.85
    with pytest.raises(AnatomyError, match="not air"):
        segment(vol, "airway", seed=np.array([5e-3, 30e-3, 50e-3]))  # in the aorta
    vol2, _ = _synthetic_ct(trachea=False)
    with pytest.raises(AnatomyError, match="airway preset.*--seed"):
        segment(vol2, "airway")


def test_bone_includes_the_vertebra_and_excludes_contrast(ct):
    vol, truth = ct
    mask = segment(vol, "bone")
    recall = (mask & truth["bone"]).sum() / truth["bone"].sum()
    assert recall > 0.95
    assert not (mask & truth["aorta"]).any()
    assert (mask & ~truth["bone"]).sum() < 0.2 * truth["bone"].sum()


def test_skin_is_the_filled_body(ct):
    vol, truth = ct
    mask = segment(vol, "skin")
    assert _dice(mask, truth["body"]) > 0.98
    assert mask[truth["lungs"]].all() and mask[truth["trachea"]].all()


def test_unknown_preset():
    vol, _ = _synthetic_ct()
    with pytest.raises(AnatomyError, match="unknown segmentation preset 'liver'"):
        segment(vol, "liver")


# --------------------------------------------------------------------------- phantom


@pytest.fixture(scope="module")
def phantom():
    phantom_mod = pytest.importorskip("surgsim.cases.phantom")
    return phantom_mod.make_phantom_volume(spacing=(2.5e-3, 2.5e-3, 3e-3))


def _truth_volume(truth, labels):
    total = 0.0
    for k in labels:
        p, r = truth.centerlines[k], truth.radii[k]
        ds = np.linalg.norm(np.diff(p, axis=0), axis=1)
        total += float(np.sum(np.pi * (0.5 * (r[1:] + r[:-1])) ** 2 * ds))
    return total


def _inside_fraction(vol, mask, points):
    ijk = np.rint(vol.to_voxel(points)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(vol.shape[::-1])), axis=1)
    ijk = ijk[ok]
    return mask[ijk[:, 2], ijk[:, 1], ijk[:, 0]].mean()


def test_phantom_vessels_match_the_truth_lumen(phantom):
    vol, truth = phantom
    mask = segment(vol, "vessels")
    labels = ("aorta", "brachiocephalic", "left_common_carotid", "left_subclavian")
    for k in labels:
        assert _inside_fraction(vol, mask, truth.centerlines[k]) > 0.98, k
    volume = mask.sum() * np.prod(vol.spacing)
    # branch overlaps inside the aorta make the truth estimate a little high
    assert volume == pytest.approx(_truth_volume(truth, labels), rel=0.1)


def test_phantom_airway_is_trachea_and_bronchi_only(phantom):
    vol, truth = phantom
    mask = segment(vol, "airway")
    labels = ("trachea", "right_main_bronchus", "left_main_bronchus")
    for k in labels:
        assert _inside_fraction(vol, mask, truth.centerlines[k]) > 0.95, k
    volume = mask.sum() * np.prod(vol.spacing)
    assert volume == pytest.approx(_truth_volume(truth, labels), rel=0.15)  # no lung leak


def test_phantom_bone_and_skin(phantom):
    vol, truth = phantom
    bone = segment(vol, "bone")
    vessels = segment(vol, "vessels")
    assert not (bone & vessels).any()
    assert bone.sum() * np.prod(vol.spacing) > 0.3e-3  # spine, ribs, sternum: litres scale
    skin = segment(vol, "skin")
    assert skin[vessels].all() and skin[segment(vol, "airway")].all()
    # the first slice's corners are outside air
    assert not skin[0, 0, 0] and not skin[-1, -1, -1]


# --------------------------------------------------------------------------- fast morphology


def test_fast_morphology_matches_scipy():
    """The numpy dilation, erosion and hole filling give scipy.ndimage's results exactly."""
    from scipy import ndimage

    from surgsim.anatomy.segment import _bbox, _dilate, _erode, _fill_holes_cropped

    rng = np.random.default_rng(7)
    for trial in range(25):
        shape = tuple(int(v) for v in rng.integers(1, 15, 3))
        m = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.3, 1.5)) > rng.uniform(0.35, 0.6)
        for it in (1, 2, 3):
            assert np.array_equal(_dilate(m, it), ndimage.binary_dilation(m, iterations=it)), (trial, it)
            assert np.array_equal(_erode(m, it), ndimage.binary_erosion(m, iterations=it)), (trial, it)
        ref = m.copy()
        if m.any():
            sl = ndimage.find_objects(m.astype(np.uint8))[0]
            ref[sl] = ndimage.binary_fill_holes(m[sl])
            assert _bbox(m) == sl
        else:
            assert _bbox(m) is None
        assert np.array_equal(_fill_holes_cropped(m), ref), trial


def test_vessels_auto_seed_prefers_the_aorta_touching_a_uniform_vertebra():
    """The synthetic vertebra is a uniform marrow cylinder ringed by cortex (round, bright,
    and longer than the aorta): the seed still lands in the aorta, not in the bone."""
    from surgsim.anatomy.segment import _aorta_seed, _smoothed, body_mask

    vol, truth = _synthetic_ct(seed=1)
    s = _smoothed(vol)
    k, j, i = _aorta_seed(vol, s, body_mask(vol, s))
    assert truth["aorta"][k, j, i]
    assert not truth["bone"][k, j, i]


def test_smoothing_is_scipys_gaussian_bit_for_bit():
    """The fast smoothing (numpy first pass for float32, contiguous copy of views) equals
    ``ndimage.gaussian_filter(..., output=float32, truncate=3)`` exactly, edges included."""
    from scipy import ndimage

    from surgsim.anatomy.segment import _SMOOTH_SIGMA_VOXELS, _smoothed

    rng = np.random.default_rng(3)
    w = np.diag([1e-3, 1e-3, 1e-3, 1.0])
    for nk in (1, 2, 4, 5, 6, 9, 23):
        base = rng.normal(0.0, 400.0, (nk, 11, 9)).astype(np.float32)
        for arr in (base, base[:, 2:9, 1:7], np.rint(base).astype(np.int16), np.rint(base[:, 1:, ::2]).astype(np.int16)):
            ref = ndimage.gaussian_filter(arr, _SMOOTH_SIGMA_VOXELS, output=np.float32, truncate=3.0)
            got = _smoothed(Volume(array=arr, world_from_voxel=w))
            assert got.dtype == np.float32 and np.array_equal(got, ref), (nk, arr.dtype, arr.shape)
            assert np.array_equal(_smoothed(Volume(array=arr, world_from_voxel=w), reference=True), ref)


def test_reference_path_gives_the_same_vessel_mask():
    vol, _ = _synthetic_ct(seed=2)
    v32 = Volume(array=np.asarray(vol.array, dtype=np.float32), world_from_voxel=vol.world_from_voxel)
    fast = segment(v32, "vessels")
    assert fast.any()
    assert np.array_equal(fast, segment(v32, "vessels", reference=True))


def test_largest_component_in_its_box_matches_full_labelling():
    from scipy import ndimage

    from surgsim.anatomy.segment import _largest_component

    rng = np.random.default_rng(11)
    for trial in range(40):
        shape = tuple(int(v) for v in rng.integers(1, 14, 3))
        m = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.3, 1.5)) > rng.uniform(0.4, 0.65)
        labels, n = ndimage.label(m)
        ref = m.copy() if n == 0 else labels == int(np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        assert np.array_equal(_largest_component(m), ref), trial
        assert np.array_equal(_largest_component(m, reference=True), ref), trial
