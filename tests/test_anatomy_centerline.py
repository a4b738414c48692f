"""Centerlines: a synthetic arch with three branches, a Y airway, and the phantom."""

from __future__ import annotations

import time

import numpy as np
import pytest

from surgsim.anatomy.centerline import (
    Centerline,
    CenterlineGraph,
    airway_centerlines,
    vessel_centerlines,
)
from surgsim.errors import AnatomyError

MM = 1e-3
ARCH = ("brachiocephalic", "left_common_carotid", "left_subclavian")


# --------------------------------------------------------------------------- synthetic shapes


def _tubes_mask(shape, w, polylines, radii):
    """Union of capsule chains (sphere-swept polylines) rasterised on the grid."""
    mask = np.zeros(shape, dtype=bool)
    inv = np.linalg.inv(w)
    reach = np.linalg.norm(w[:3, :3], axis=0).max()
    for pts, r in zip(polylines, radii, strict=True):
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            lo = np.minimum(a, b) - r - 2 * reach
            hi = np.maximum(a, b) + r + 2 * reach
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            ijk = corners @ inv[:3, :3].T + inv[:3, 3]
            i0 = np.maximum(np.floor(ijk.min(0)).astype(int), 0)
            i1 = np.minimum(np.ceil(ijk.max(0)).astype(int) + 1, np.array(shape[::-1]))
            if np.any(i1 <= i0):
                continue
            kk, jj, ii = np.meshgrid(*(np.arange(i0[d], i1[d]) for d in (2, 1, 0)), indexing="ij")
            p = np.stack([ii, jj, kk], -1).reshape(-1, 3) @ w[:3, :3].T + w[:3, 3]
            ab = b - a
            t = np.clip(((p - a) @ ab) / (ab @ ab), 0, 1)
            inside = np.linalg.norm(p - (a + t[:, None] * ab), axis=1) < r
            mask[i0[2] : i1[2], i0[1] : i1[1], i0[0] : i1[0]] |= inside.reshape(kk.shape)
    return mask


def _line(a, b, step=1 * MM):
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = max(int(np.linalg.norm(b - a) / step), 1) + 1
    return a + np.linspace(0, 1, n)[:, None] * (b - a)


def _clip(points, lo, hi):
    return points[np.all((points >= lo - 1e-9) & (points <= hi + 1e-9), axis=1)]


def synthetic_arch(spacing=(1.5 * MM, 1.5 * MM, 2 * MM)):
    """Aorta from the inferior face over a circular arch to a blind root, three branches up.

    Returns mask, world_from_voxel, truth centerlines (aorta: access -> root) and radii.
    """
    asc = np.array([-10, -20, 0.0]) * MM
    desc = np.array([25, 30, 0.0]) * MM
    c = (asc + desc) / 2
    rho = np.linalg.norm(desc - asc) / 2
    u, v = (asc - c) / rho, np.array([0, 0, 1.0])
    t = np.linspace(np.pi, 0, 200)  # descending side over the top to the ascending side
    arch = c + rho * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * v)
    aorta = np.concatenate([_line(desc + [0, 0, -0.2], desc)[:-1], arch, _line(asc, asc + [0, 0, -0.06])[1:]])
    truth = {"aorta": aorta}
    radii = {"aorta": 11 * MM}
    for name, angle, d, r in (
        ("brachiocephalic", 0.31 * np.pi, [-0.45, 0, 1], 6 * MM),
        ("left_common_carotid", 0.525 * np.pi, [0.0, 0.05, 1], 4 * MM),
        ("left_subclavian", 0.7 * np.pi, [0.5, 0.1, 1], 4.5 * MM),
    ):
        p0 = c + rho * (np.cos(angle) * u + np.sin(angle) * v)
        d = np.asarray(d) / np.linalg.norm(d)
        truth[name] = _line(p0, p0 + d * 0.15)
        radii[name] = r
    sp = np.asarray(spacing)
    lo = np.array([-60, -50, -150]) * MM
    n = np.floor((np.array([80, 60, 90]) * MM - lo) / sp).astype(int) + 1
    w = np.eye(4)
    w[:3, :3] = np.diag(sp)
    w[:3, 3] = lo
    mask = _tubes_mask((n[2], n[1], n[0]), w, list(truth.values()), list(radii.values()))
    hi = lo + (n - 1) * sp
    truth = {k: _clip(p, lo, hi) for k, p in truth.items()}
    return mask, w, truth, radii


def synthetic_airway(spacing=(1.2 * MM, 1.2 * MM, 1.5 * MM)):
    """Trachea from the superior face to a carina, two blind main bronchi (Y shape)."""
    carina = np.array([0.0, 0.0, 0.0])
    top = np.array([0.0, -5 * MM, 0.09])
    right = carina + 0.04 * np.array([-np.sin(np.radians(25)), 0, -np.cos(np.radians(25))])
    left = carina + 0.05 * np.array([np.sin(np.radians(45)), 0, -np.cos(np.radians(45))])
    truth = {"trachea": _line(top, carina), "right_main_bronchus": _line(carina, right), "left_main_bronchus": _line(carina, left)}
    radii = {"trachea": 9 * MM, "right_main_bronchus": 7 * MM, "left_main_bronchus": 6 * MM}
    sp = np.asarray(spacing)
    lo = np.array([-50, -30, -60]) * MM
    n = np.floor((np.array([55, 30, 80]) * MM - lo) / sp).astype(int) + 1
    w = np.eye(4)
    w[:3, :3] = np.diag(sp)
    w[:3, 3] = lo
    mask = _tubes_mask((n[2], n[1], n[0]), w, list(truth.values()), list(radii.values()))
    hi = lo + (n - 1) * sp
    truth = {k: _clip(p, lo, hi) for k, p in truth.items()}
    return mask, w, truth, radii, carina


# --------------------------------------------------------------------------- comparison helpers


def _dist_to_polyline(points, line):
    a, b = line[:-1], line[1:]
    ab = b - a
    out = np.empty(len(points))
    for n, p in enumerate(points):
        t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.einsum("ij,ij->i", ab, ab), 0, 1)
        out[n] = np.linalg.norm(a + t[:, None] * ab - p, axis=1).min()
    return out


def _length(p):
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def _check_against_truth(graph, truth, labels, mean_tol=2 * MM, length_rel=0.10):
    for k in labels:
        assert k in graph.branches, f"missing {k}; got {sorted(graph.branches)}"
        c = graph.branches[k]
        d = _dist_to_polyline(c.points, truth[k])
        d_back = _dist_to_polyline(truth[k], c.points)
        assert d.mean() < mean_tol and d_back.mean() < mean_tol, (k, d.mean(), d_back.mean())
        assert c.length == pytest.approx(_length(truth[k]), rel=length_rel), k
        steps = np.linalg.norm(np.diff(c.points, axis=0), axis=1)
        assert steps.max() <= 1.05 * MM and np.median(steps) == pytest.approx(1 * MM, rel=0.05)
        assert c.radii.shape == (len(c.points),)


# --------------------------------------------------------------------------- synthetic arch


@pytest.fixture(scope="module")
def arch():
    mask, w, truth, radii = synthetic_arch()
    return mask, w, truth, radii, vessel_centerlines(mask, w)


def test_arch_branches_are_found_labelled_and_match_the_truth(arch):
    mask, w, truth, radii, graph = arch
    assert set(graph.branches) == {"aorta", *ARCH}
    _check_against_truth(graph, truth, ["aorta", *ARCH], mean_tol=1 * MM, length_rel=0.05)
    for k in ARCH:
        assert graph.branches[k].parent == "aorta"
    assert graph.branches["aorta"].parent is None


def test_arch_aorta_runs_from_the_access_end_to_the_root(arch):
    mask, w, truth, radii, graph = arch
    aorta = graph.branches["aorta"]
    assert np.linalg.norm(aorta.points[0] - truth["aorta"][0]) < 2 * MM  # inferior face
    assert np.linalg.norm(aorta.points[-1] - truth["aorta"][-1]) < 3 * MM  # blind root
    assert aorta.points[0, 2] == pytest.approx(w[2, 3], abs=1 * MM)


def test_arch_branches_start_on_the_aorta_and_radii_are_measured(arch):
    mask, w, truth, radii, graph = arch
    aorta = graph.branches["aorta"]
    for k in ARCH:
        start = graph.branches[k].points[0]
        assert _dist_to_polyline(start[None], aorta.points)[0] < 0.1 * MM
        assert _dist_to_polyline(start[None], truth["aorta"])[0] < 2 * MM
        r = graph.branches[k].radii[15:-5]
        assert np.median(r) == pytest.approx(radii[k], abs=0.5 * MM), k
    assert np.median(aorta.radii) == pytest.approx(radii["aorta"], abs=0.5 * MM)


def test_arch_labels_follow_the_order_along_the_arch_not_the_mask_order(arch):
    mask, w, truth, radii, graph = arch
    # ascending side first: junctions lie at decreasing distance from the access end
    j = [graph.junction(k) for k in ARCH]
    assert j[0] > j[1] > j[2]
    # brachiocephalic heads to the patient's right (-x), subclavian to the left
    assert graph.branches["brachiocephalic"].points[-1, 0] < graph.branches["left_subclavian"].points[-1, 0]


def test_access_point_selects_the_start(arch):
    mask, w, truth, radii, _ = arch
    graph = vessel_centerlines(mask, w, access=truth["aorta"][0] + np.array([0, 0, -5 * MM]))
    assert np.linalg.norm(graph.branches["aorta"].points[0] - truth["aorta"][0]) < 2 * MM


def test_graph_point_at_and_path_length(arch):
    mask, w, truth, radii, graph = arch
    aorta = graph.branches["aorta"]
    p = graph.point_at("aorta", 50 * MM)
    assert np.linalg.norm(p - aorta.points[50]) < 0.1 * MM
    assert np.allclose(graph.point_at("aorta", 1.0), aorta.points[-1])  # clamped
    # from the access along the aorta to the junction, then 40 mm up the carotid
    expected = graph.junction("left_common_carotid") + 40 * MM
    got = graph.path_length(aorta.points[0], "left_common_carotid", 40 * MM)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got == pytest.approx(_length(aorta.points[: int(round(graph.junction("left_common_carotid") / MM)) + 1]) + 40 * MM, abs=2 * MM)
    # between two branches: down one to the aorta and up the other
    bct_end = graph.branches["brachiocephalic"].points[-1]
    between = graph.path_length(bct_end, "left_subclavian", 10 * MM)
    expected = (graph.branches["brachiocephalic"].length
                + abs(graph.junction("brachiocephalic") - graph.junction("left_subclavian")) + 10 * MM)
    assert between == pytest.approx(expected, abs=1.5 * MM)
    with pytest.raises(AnatomyError, match="no centerline labelled 'renal'"):
        graph.point_at("renal", 0.0)


def test_graph_validates_parents():
    pts = np.column_stack([np.zeros(5), np.zeros(5), np.arange(5) * MM])
    with pytest.raises(AnatomyError, match="missing parent"):
        CenterlineGraph(branches={"a": Centerline("a", pts, np.ones(5), parent="b")})
    c = Centerline("a", pts, np.ones(5))
    assert c.length == pytest.approx(4 * MM)


def test_arch_on_a_rotated_grid_gives_the_same_centerlines():
    """A 90-degree rotation of the index axes changes nothing in the world."""
    mask, w, truth, radii = synthetic_arch(spacing=(2 * MM, 2 * MM, 2 * MM))
    # swap the i and j axes of the array and of the transform (a reflection), then
    # also flip i: the world geometry is identical
    mask2 = np.ascontiguousarray(np.transpose(mask, (0, 2, 1))[:, :, ::-1])
    w2 = w.copy()
    w2[:3, 0], w2[:3, 1] = -w[:3, 1], w[:3, 0]
    w2[:3, 3] = w[:3, 3] + w[:3, 1] * (mask.shape[1] - 1)
    # same world position for a voxel
    kji = np.array([10, 20, 30])
    p1 = w[:3, :3] @ kji[::-1] + w[:3, 3]
    kji2 = np.array([10, 30, mask.shape[1] - 1 - 20])
    p2 = w2[:3, :3] @ kji2[::-1] + w2[:3, 3]
    assert np.allclose(p1, p2) and mask[tuple(kji)] == mask2[tuple(kji2)]
    graph = vessel_centerlines(mask2, w2)
    _check_against_truth(graph, truth, ["aorta", *ARCH], mean_tol=1.5 * MM)


# --------------------------------------------------------------------------- synthetic airway


def test_y_airway_gives_trachea_and_both_main_bronchi():
    mask, w, truth, radii, carina = synthetic_airway()
    graph = airway_centerlines(mask, w)
    assert set(graph.branches) == {"trachea", "right_main_bronchus", "left_main_bronchus"}
    _check_against_truth(graph, truth, list(graph.branches), mean_tol=1 * MM, length_rel=0.10)
    assert np.linalg.norm(graph.branches["trachea"].points[-1] - carina) < 5 * MM
    assert graph.branches["right_main_bronchus"].points[-1, 0] < 0 < graph.branches["left_main_bronchus"].points[-1, 0]
    for k in ("right_main_bronchus", "left_main_bronchus"):
        assert graph.branches[k].parent == "trachea"


def test_a_single_tube_is_not_an_airway_tree_and_empty_masks_fail():
    mask, w, truth, radii, carina = synthetic_airway()
    tube = _tubes_mask(mask.shape, w, [truth["trachea"]], [9 * MM])
    with pytest.raises(AnatomyError, match="bifurcation"):
        airway_centerlines(tube, w)
    with pytest.raises(AnatomyError, match="empty"):
        vessel_centerlines(np.zeros((5, 5, 5), bool), np.eye(4))


# --------------------------------------------------------------------------- phantom


def _phantom(spacing):
    phantom_mod = pytest.importorskip("surgsim.cases.phantom")
    return phantom_mod.make_phantom_volume(spacing=spacing)


@pytest.fixture(scope="module")
def coarse_phantom():
    return _phantom((2.5 * MM, 2.5 * MM, 3 * MM))


def test_phantom_vessel_centerlines_match_the_truth(coarse_phantom):
    from surgsim.anatomy.segment import segment

    vol, truth = coarse_phantom
    mask = segment(vol, "vessels")
    graph = vessel_centerlines(mask, vol.world_from_voxel, access=truth.landmarks["access"])
    assert set(graph.branches) == {"aorta", *ARCH}
    # the truth aorta runs root -> access; ours access -> root (what the catheter follows)
    truth_lines = dict(truth.centerlines)
    truth_lines["aorta"] = truth_lines["aorta"][::-1]
    _check_against_truth(graph, truth_lines, ["aorta", *ARCH])
    aorta = graph.branches["aorta"]
    assert np.linalg.norm(aorta.points[0] - truth.landmarks["access"]) < 3 * MM
    assert np.linalg.norm(aorta.points[-1] - truth.landmarks["aortic_root"]) < 5 * MM
    # the same without the access hint (lowest end)
    auto = vessel_centerlines(mask, vol.world_from_voxel)
    assert np.linalg.norm(auto.branches["aorta"].points[0] - truth.landmarks["access"]) < 3 * MM


def test_phantom_airway_centerlines_and_carina(coarse_phantom):
    from surgsim.anatomy.segment import segment

    vol, truth = coarse_phantom
    graph = airway_centerlines(segment(vol, "airway"), vol.world_from_voxel)
    labels = ["trachea", "right_main_bronchus", "left_main_bronchus"]
    assert set(graph.branches) == set(labels)
    _check_against_truth(graph, truth.centerlines, labels)
    assert np.linalg.norm(graph.branches["trachea"].points[-1] - truth.landmarks["carina"]) < 5 * MM


@pytest.mark.slow
def test_default_phantom_full_pipeline_timing_and_accuracy():
    """Segment, surface, distance field and centerlines at the default spacing (prints figures)."""
    from surgsim.anatomy.distance import distance_field_from_mask
    from surgsim.anatomy.segment import segment
    from surgsim.anatomy.surface import mesh_quality, surface_from_mask

    vol, truth = _phantom((1.4 * MM, 1.4 * MM, 2 * MM))
    times = {}
    t = time.perf_counter()
    mask = segment(vol, "vessels")
    times["segment vessels"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh = surface_from_mask(mask, vol.world_from_voxel)
    times["surface"] = time.perf_counter() - t
    t = time.perf_counter()
    field = distance_field_from_mask(mask, vol.world_from_voxel)
    times["distance field (native)"] = time.perf_counter() - t
    t = time.perf_counter()
    fine = distance_field_from_mask(mask, vol.world_from_voxel, spacing=0.5 * MM)
    times["distance field (0.5 mm)"] = time.perf_counter() - t
    t = time.perf_counter()
    graph = vessel_centerlines(mask, vol.world_from_voxel)
    times["vessel centerlines"] = time.perf_counter() - t
    t = time.perf_counter()
    airway = airway_centerlines(segment(vol, "airway"), vol.world_from_voxel)
    times["airway segment + centerlines"] = time.perf_counter() - t
    q = mesh_quality(mesh)
    print("\n" + "\n".join(f"{k}: {v:.2f} s" for k, v in times.items()))
    print(f"surface: {q['n_triangles']} triangles, watertight={q['watertight']}, manifold={q['manifold']}")
    print(f"distance field: native {field.values.shape} {field.nbytes / 1e6:.1f} MB; "
          f"0.5 mm {fine.values.shape} {fine.nbytes / 1e6:.1f} MB")
    assert q["watertight"] and q["manifold"]
    truth_lines = dict(truth.centerlines)
    truth_lines["aorta"] = truth_lines["aorta"][::-1]
    _check_against_truth(graph, truth_lines, ["aorta", *ARCH], mean_tol=1 * MM)
    _check_against_truth(airway, truth.centerlines, list(airway.branches), mean_tol=1 * MM)
    assert np.linalg.norm(airway.branches["trachea"].points[-1] - truth.landmarks["carina"]) < 3 * MM
    # the fine field agrees with the truth radius along the aorta (negative inside)
    r = -fine.sample(truth.centerlines["aorta"])
    assert np.median(r - truth.radii["aorta"]) == pytest.approx(0.0, abs=1.0 * MM)
    assert sum(times.values()) < 60.0


# --------------------------------------------------------------------------- real chest CT


@pytest.mark.realdata
def test_real_chest_ct_airway_gives_trachea_and_main_bronchi(shared_data):
    """Non-contrast chest CT (5 mm slices): trachea down to a carina, bronchi to both sides."""
    from surgsim.anatomy.segment import segment
    from surgsim.anatomy.surface import mesh_quality, surface_from_mask
    from surgsim.dicom.load import load_series

    folder = shared_data / "dicom" / "chest-ct-lung-dx-a0001"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    vol = load_series(folder)
    mask = segment(vol, "airway")
    volume_ml = mask.sum() * np.prod(vol.spacing) * 1e6
    assert 10 < volume_ml < 150  # airway only: lungs are litres
    q = mesh_quality(surface_from_mask(mask, vol.world_from_voxel, target_triangles=20_000))
    assert q["watertight"] and q["manifold"]
    graph = airway_centerlines(mask, vol.world_from_voxel)
    trachea = graph.branches["trachea"]
    right = graph.branches["right_main_bronchus"]
    left = graph.branches["left_main_bronchus"]
    assert 50 * MM < trachea.length < 200 * MM
    assert 5 * MM < np.median(trachea.radii) < 12 * MM  # adult trachea, 10-24 mm across
    carina = trachea.points[-1]
    assert trachea.points[0, 2] > carina[2] + 40 * MM  # runs down to the carina
    for c in (right, left):
        assert c.points[-1, 2] < carina[2]  # bronchi descend
        assert np.linalg.norm(c.points[0] - carina) < 1e-6
    assert right.points[-1, 0] < carina[0] < left.points[-1, 0]  # patient right is -x
