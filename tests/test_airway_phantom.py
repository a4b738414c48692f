"""Head-and-neck airway phantom: anatomy, variants, DICOM round trip, airway preset."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim.cases.airway_phantom import (
    LABEL_IDS,
    VARIANTS,
    design,
    make_airway_phantom,
    truth_of,
    write_airway_series,
)

SP = (2e-3, 2e-3, 2e-3)


@pytest.fixture(scope="module")
def adult():
    return make_airway_phantom("adult", SP)


def _hu_at(volume, point):
    i, j, k = np.rint(volume.to_voxel(point)[0]).astype(int)
    return float(volume.array[k, j, i])


def _label_at(volume, labels, point):
    i, j, k = np.rint(volume.to_voxel(point)[0]).astype(int)
    return int(labels[k, j, i])


def test_landmarks_are_adult_sized_and_in_the_right_tissue(adult):
    volume, labels, truth = adult
    L = truth.landmarks
    # incisor -> glottis -> carina along the airway path: 26-30 cm in an adult
    path = truth.centerlines["airway"]
    incisor_to_carina = np.linalg.norm(L["upper_incisor"] - L["mouth_centre"]) + float(
        np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))
    assert 0.24 < incisor_to_carina < 0.32
    assert 0.10 < np.linalg.norm(L["glottis_centre"] - L["carina"]) < 0.16
    # inter-incisor gap is the variant's mouth opening
    assert np.linalg.norm(L["upper_incisor"] - L["lower_incisor"]) == pytest.approx(0.045, abs=1e-3)
    # tissues: air in the glottic opening and trachea, tooth density at the incisors
    assert _hu_at(volume, L["glottis_centre"]) < -700
    assert _hu_at(volume, 0.5 * (L["glottis_centre"] + L["carina"])) < -700
    up = L["upper_incisor"] + 0.004 * truth.upper_incisor_axis
    assert _hu_at(volume, up) > 1500
    assert _label_at(volume, labels, up) == LABEL_IDS["upper_incisors"]
    # the oesophagus entrance is soft tissue behind (posterior to) the glottis
    assert _label_at(volume, labels, L["oesophagus_entrance"]) == LABEL_IDS["oesophagus"]
    assert -100 < _hu_at(volume, L["oesophagus_entrance"]) < 100
    assert L["oesophagus_entrance"][1] > L["glottis_centre"][1] + 0.01
    # epiglottis is cartilage above the glottis; the tongue is muscle
    assert L["epiglottis_tip"][2] > L["glottis_centre"][2] + 0.03
    assert _label_at(volume, labels, design("adult").tongue.centre / 1000) == LABEL_IDS["tongue"]


def test_glottis_outline_is_a_plausible_opening(adult):
    _, _, truth = adult
    poly = truth.glottis_outline
    n = truth.glottis_normal
    # planar, perpendicular to the airway axis
    assert np.abs((poly - truth.landmarks["glottis_centre"]) @ n).max() < 1e-6
    # area by the shoelace formula in the plane: 1-3 cm^2
    e1 = np.array([1.0, 0, 0])
    e2 = np.cross(n, e1)
    u, v = (poly - poly.mean(0)) @ e1, (poly - poly.mean(0)) @ e2
    area = 0.5 * abs(np.dot(u, np.roll(v, -1)) - np.dot(v, np.roll(u, -1)))
    assert 0.8e-4 < area < 3e-4


def test_cords_and_arytenoids_surround_the_opening(adult):
    volume, labels, truth = adult
    for name in ("vocal_cords", "arytenoids", "epiglottis", "vallecula", "mandible", "hyoid"):
        assert (labels == LABEL_IDS[name]).sum() > 3, name


def test_variants_differ_as_documented():
    a = truth_of(design("adult"))
    d = truth_of(design("difficult"))
    c = truth_of(design("child"))
    gap = {k: np.linalg.norm(t.landmarks["upper_incisor"] - t.landmarks["lower_incisor"])
           for k, t in (("adult", a), ("difficult", d), ("child", c))}
    assert gap["difficult"] < 0.032 < gap["adult"]
    # anterior larynx: the glottis lies further anterior (-y) in the difficult airway
    assert d.landmarks["glottis_centre"][1] < a.landmarks["glottis_centre"][1] - 0.003
    assert design("difficult").tongue.radii[1] > design("adult").tongue.radii[1] * 1.1
    # child: shorter trachea
    assert np.linalg.norm(c.landmarks["glottis_centre"] - c.landmarks["carina"]) < 0.7 * np.linalg.norm(
        a.landmarks["glottis_centre"] - a.landmarks["carina"])
    # limited extension is clipped to the variant's maximum
    assert design("difficult", extension=1.0).extension == pytest.approx(0.15)
    with pytest.raises(ValueError, match="unknown airway phantom variant"):
        design("giraffe")


def test_head_extension_moves_the_mouth_not_the_trachea():
    n = truth_of(design("adult", 0.0))
    e = truth_of(design("adult", 0.4))
    assert np.allclose(n.landmarks["carina"], e.landmarks["carina"])
    assert np.linalg.norm(n.landmarks["upper_incisor"] - e.landmarks["upper_incisor"]) > 0.02
    # extension brings the mouth in line with the larynx: the incisor-glottis line steepens toward the trachea axis
    def angle(t):
        v = t.landmarks["glottis_centre"] - t.landmarks["mouth_centre"]
        return np.degrees(np.arccos(abs(v @ t.glottis_normal) / np.linalg.norm(v)))
    assert angle(e) < angle(n)


@pytest.mark.parametrize("variant", VARIANTS)
def test_airway_preset_finds_trachea_and_carina(variant):
    from surgsim.anatomy.centerline import airway_centerlines
    from surgsim.anatomy.segment import segment

    volume, _, truth = make_airway_phantom(variant, SP, extension=0.2)
    mask = segment(volume, "airway")
    # keep the airway below the cricoid (as a chest CT would show it)
    z_cut = truth.centerlines["trachea"][0][2]
    kk = volume.to_world(np.stack([np.zeros(volume.shape[0]), np.zeros(volume.shape[0]),
                                   np.arange(volume.shape[0])], 1))[:, 2]
    mask[kk > z_cut] = False
    graph = airway_centerlines(mask, volume.world_from_voxel)
    assert {"trachea", "right_main_bronchus", "left_main_bronchus"} <= set(graph.branches)
    carina = graph.branches["trachea"].points[-1]
    assert np.linalg.norm(carina - truth.landmarks["carina"]) < 0.006


def test_dicom_round_trip_is_exact_and_deterministic(tmp_path):
    from surgsim.dicom.load import load_series

    volume, _, _ = make_airway_phantom("child", (3e-3, 3e-3, 3e-3))
    paths = write_airway_series(tmp_path / "a", "child", (3e-3, 3e-3, 3e-3))
    again = write_airway_series(tmp_path / "b", "child", (3e-3, 3e-3, 3e-3))
    assert len(paths) == volume.shape[0]
    assert paths[5].read_bytes() == again[5].read_bytes()
    loaded = load_series(tmp_path / "a")
    assert loaded.shape == volume.shape
    assert np.array_equal(np.asarray(loaded.array, np.int32), volume.array.astype(np.int32))
    assert np.allclose(loaded.world_from_voxel, volume.world_from_voxel, atol=1e-9)


def test_adult_distances_match_real_airways():
    """Upper incisors to glottis 13-15 cm in the sniffing position (the sessions' head extension);
    glottis to carina 12-16 cm; variants scale with their size."""
    from surgsim.session.intubation import HEAD_EXTENSION

    t = truth_of(design("adult", HEAD_EXTENSION))
    L = t.landmarks
    assert 0.13 <= np.linalg.norm(L["upper_incisor"] - L["glottis_centre"]) <= 0.15
    assert 0.12 <= np.linalg.norm(L["glottis_centre"] - L["carina"]) <= 0.16
    # a Macintosh 3 (13 cm) reaches the vallecula from outside the teeth
    assert 0.09 <= np.linalg.norm(L["upper_incisor"] - L["vallecula"]) <= 0.12
    neutral = truth_of(design("adult", 0.0)).landmarks
    assert np.linalg.norm(neutral["upper_incisor"] - neutral["glottis_centre"]) > 0.11
    child = truth_of(design("child", HEAD_EXTENSION)).landmarks
    ratio = np.linalg.norm(child["upper_incisor"] - child["glottis_centre"]) / np.linalg.norm(
        L["upper_incisor"] - L["glottis_centre"])
    assert 0.5 < ratio < 0.75
