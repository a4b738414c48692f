"""Building the default vessel case through the DICOM pipeline, and its cache."""

from __future__ import annotations

import numpy as np

from surgsim.cases.build import cache_folder, cached_case, phantom_vessel_case
from surgsim.cases.phantom import make_phantom_volume


def test_default_case_matches_the_phantom_truth(default_case):
    _, truth = make_phantom_volume()
    assert set(default_case.labels) >= {"aorta", "brachiocephalic", "left_common_carotid", "left_subclavian"}
    assert np.linalg.norm(default_case.access - truth.landmarks["access"]) < 3e-3
    assert np.dot(default_case.access_direction, truth.landmarks["access_direction"]) > np.cos(np.radians(5))
    assert default_case.report["watertight"] and default_case.report["manifold"]
    # the distance field says the truth centerline of the target branch is inside the lumen
    lcca = truth.centerlines["left_common_carotid"]
    phi = default_case.distance.sample(lcca[20:-5])
    assert (phi < -1e-3).all()


def test_case_cache_is_reused(default_case):
    calls = []

    def build():
        calls.append(1)
        return default_case

    first = cached_case("test:reuse", build)
    second = cached_case("test:reuse", build)
    assert len(calls) == 1
    assert np.array_equal(first.distance.values, second.distance.values)
    assert second.mesh.n_cells == default_case.mesh.n_cells
    assert phantom_vessel_case().case_id == "phantom-default"


def test_corrupt_cache_entry_is_rebuilt(default_case):
    cached_case("test:corrupt", lambda: default_case)
    (cache_folder("test:corrupt") / "case.json").write_text("{not json")
    calls = []
    cached_case("test:corrupt", lambda: calls.append(1) or default_case)
    assert calls == [1]


def test_case_keeps_the_volume_and_lumen_for_fluoroscopy(default_case):
    from surgsim.cases.build import _load, phantom_case_key

    assert default_case.volume is not None and default_case.lumen_mask is not None
    again = _load(cache_folder(phantom_case_key("default")))
    assert np.array_equal(np.asarray(again.volume.array), np.asarray(default_case.volume.array))
    assert np.array_equal(again.lumen_mask, default_case.lumen_mask)
    assert np.allclose(again.volume.world_from_voxel, default_case.volume.world_from_voxel)
    # the lumen mask is the contrast lumen: bright voxels
    assert np.median(np.asarray(again.volume.array)[again.lumen_mask]) > 250
