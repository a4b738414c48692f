"""The case library: import a DICOM series or a vessel surface, reference it from a scenario, simulate it."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from surgsim.cases import build
from surgsim.cases.library import (
    case_folder,
    import_dicom_case,
    import_mesh_case,
    list_cases,
    load_case,
    read_manifest,
)
from surgsim.errors import AnatomyError, SurgsimError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ELASTRAT = SHARED / "meshes" / "aortic-arch-elastrat-phantom.obj"
ARCH = ("aorta", "brachiocephalic", "left_common_carotid", "left_subclavian")


def _scenario(case: dict, label: str = "left_common_carotid", device: str = "angled_5fr",
              distance: float = 0.03, time_limit: float = 60.0):
    from surgsim.scenarios.model import Scenario

    return Scenario.model_validate({
        "id": "library-test", "title": "Case library test", "version": "1.0", "procedure": "endovascular",
        "case": case,
        "instruments": [{"id": "catheter", "device": device}],
        "start": {"access": "femoral", "initial_depth_m": 0.02},
        "targets": [{"id": "target", "label": label, "distance_from_ostium_m": distance,
                     "tolerance_m": 0.008, "hold_s": 0.5}],
        "time_limit_s": time_limit,
        "rubric": {"metrics": [{"metric": "target_reached", "weight": 1, "pass": 1, "excellent": 1}]},
    })


def steer_to_target(session, tick: int = 20, advance: float = 0.02, omega: float = 1.5, align: float = 0.7):
    """A scripted operator reading the case's centerlines (as a trainee reads the roadmap).

    It advances while the tip points along the path to the target branch (a
    look-ahead of 2.5 lumen radii), scans the hub rotation for the best tip
    direction when it does not, and backs off from a wrong branch or a stall.
    Every action goes through ``session.apply``, so the input log replays the run.
    """
    case = session.case
    cl = case.centerlines
    label = session.targets[0].label
    aorta, branch = cl.branches["aorta"], cl.branches[label]
    sj = cl.junction(label)
    target = session.targets[0]
    mode, t_mode, best, last, t_commit = "advance", 0.0, (-2.0, 0.0), (0.0, 0.0), 0.0
    session.apply("advance", advance)
    while not session.finished and not session.reached:
        session.step(tick)
        r = session.rod.state()
        p, d = r.tip_position, r.tip_direction
        lab, s, _ = cl.locate(p)
        look = max(10e-3, 2.5 * cl.branches[lab].radius_at(s))
        now = session.time
        if lab == label:
            ahead, progress = branch.point_at(s + look), sj + s
        elif lab == "aorta" and s <= sj + 5e-3:
            ahead = aorta.point_at(min(s + look, sj)) if sj - s > 8e-3 else branch.point_at(8e-3)
            progress = s
        else:  # a wrong branch, or past the junction: back off
            ahead, progress = None, -1.0
        if np.linalg.norm(p - target.point) < 0.5 * target.tolerance:
            session.apply("advance", 0.0)  # hold at the target
            continue
        if ahead is None:
            if mode != "retract":
                mode, t_mode = "retract", now
                session.apply("rotate", 0.0)
                session.apply("advance", -advance)
            continue
        want = (ahead - p) / max(float(np.linalg.norm(ahead - p)), 1e-9)
        a = float(d @ want)
        if mode == "retract":
            if now - t_mode > 0.5:
                mode, t_mode, best = "scan", now, (-2.0, r.hub_angle)
                session.apply("advance", 0.0)
                session.apply("rotate", omega)
        elif mode == "advance":
            if progress > last[0] + 2e-3:
                last = (progress, now)
            if a < align - 0.25 and now > t_commit:
                mode, t_mode, best = "scan", now, (-2.0, r.hub_angle)
                session.apply("advance", 0.0)
                session.apply("rotate", omega)
            elif now - last[1] > 1.5:  # stalled
                mode, t_mode, last = "retract", now, (progress - 10e-3, now)
                session.apply("advance", -advance)
        elif mode == "scan":
            if a > best[0]:
                best = (a, r.hub_angle)
            if a > align:
                mode, last = "advance", (progress, now)
                session.apply("rotate", 0.0)
                session.apply("advance", advance)
            elif now - t_mode > 2 * math.pi / omega:
                mode = "return"  # nothing good enough in a full turn: go back to the best angle
        elif mode == "return" and r.hub_angle >= best[1] + 2 * math.pi:
            mode, last, t_commit = "advance", (progress, now), now + 0.6
            session.apply("rotate", 0.0)
            session.apply("advance", advance)
    if session.reached:
        session.apply("finish")
    return session


def _inside_escape(session) -> float:
    """Largest distance (m) of an inserted node outside the lumen wall (negative: all inside)."""
    state = session.rod.state()
    return float(session.case.distance.sample(state.positions[state.inside]).max())


# --------------------------------------------------------------------------- surfaces (fast)


def _tube(r: float, length: float, n: int = 48, m: int = 30, outward: bool = True):
    """Open cylinder along z, (points, triangles) with normals outward (or inward)."""
    th = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    z = np.linspace(0.0, length, m)
    pts = np.array([(r * np.cos(t), r * np.sin(t), zz) for zz in z for t in th])
    tris = []
    for k in range(m - 1):
        for i in range(n):
            a, b = k * n + i, k * n + (i + 1) % n
            c, d = a + n, b + n
            tris += [(a, b, d), (a, d, c)]
    tris = np.array(tris)
    return pts, (tris if outward else tris[:, ::-1])


def _polydata(points, tris):
    import pyvista as pv

    return pv.PolyData(np.asarray(points, float), np.hstack([np.full((len(tris), 1), 3), tris]).ravel())


def test_open_tube_is_capped_with_its_openings():
    from surgsim.anatomy.surface import mesh_quality

    pts, tris = _tube(5e-3, 40e-3)
    lumen, openings, _ = build.lumen_surface(_polydata(pts, tris))
    q = mesh_quality(lumen)
    assert q["watertight"] and q["manifold"]
    assert q["volume_m3"] == pytest.approx(math.pi * 25e-6 * 40e-3, rel=0.02)
    assert len(openings) == 2
    for o in openings:
        assert o.radius == pytest.approx(5e-3, rel=0.02)
        # the normal points out of the lumen: away from the tube's middle
        assert np.dot(o.normal, o.centre - np.array([0, 0, 20e-3])) > 0


def test_hollow_wall_gives_its_inner_lumen():
    """A 0.5 mm silicone-like wall (inner and outer cylinders joined by rims), as phantom meshes are."""
    from surgsim.anatomy.surface import mesh_quality

    n, m = 48, 30
    po, to = _tube(5.5e-3, 40e-3, n, m, outward=True)
    pi_, ti = _tube(5.0e-3, 40e-3, n, m, outward=False)
    pts = np.concatenate([po, pi_])
    ti = ti + len(po)
    rims = []
    for ring_o, ring_i, flip in ((0, len(po), True), ((m - 1) * n, len(po) + (m - 1) * n, False)):
        for i in range(n):
            a, b = ring_o + i, ring_o + (i + 1) % n
            c, d = ring_i + i, ring_i + (i + 1) % n
            quad = [(a, c, d), (a, d, b)]
            rims += [t[::-1] for t in quad] if not flip else quad
    wall = _polydata(pts, np.concatenate([to, ti, np.array(rims)]))
    q = mesh_quality(wall)
    assert q["watertight"] and q["manifold"], q
    assert abs(q["volume_m3"]) < 0.3 * math.pi * 25e-6 * 40e-3  # a thin shell, not the lumen
    lumen, openings, notes = build.lumen_surface(wall)
    ql = mesh_quality(lumen)
    assert ql["watertight"] and ql["manifold"]
    assert ql["volume_m3"] == pytest.approx(math.pi * 25e-6 * 40e-3, rel=0.03)
    assert len(openings) == 2 and any("wall" in n_ for n_ in notes)


def test_synthetic_ct_has_contrast_lumen_in_a_body():
    mask = np.zeros((10, 20, 30), dtype=bool)
    mask[3:7, 8:12, 12:18] = True
    w = np.diag([0.5e-3, 0.5e-3, 0.5e-3, 1.0])
    vol = build.synthetic_ct(mask, w)
    a = np.asarray(vol.array)
    assert a.shape == mask.shape and np.allclose(vol.world_from_voxel, w)
    assert (a[mask] == build.HU_LUMEN).all()
    assert a[5, 10, 2] == build.HU_TISSUE and a[5, 0, 0] == build.HU_AIR  # body ellipse, air in the corners


def test_arch_rotation_recovers_superior_from_any_frame():
    """A U-shaped arch whose descending limb runs along -x of the file: rotated so it runs up."""
    s = np.linspace(0.0, 1.0, 400)
    # in patient coordinates: descending aorta up from z=-0.1 at (20, 20) mm, over the top, root at (-20, -20)
    t = np.pi * s
    desc = np.array([0.02, 0.02, 0.0])
    root = np.array([-0.02, -0.02, 0.0])
    mid = 0.5 * (desc + root)
    half = 0.5 * (desc - root)
    arch = mid + np.outer(np.cos(t), half) + np.outer(np.sin(t), [0, 0, 0.03])
    straight = desc + np.outer(np.linspace(-0.1, 0.0, 100), [0, 0, 1.0])
    truth = np.concatenate([straight, arch[1:]])
    tilt = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # file = tilt @ patient
    rot, why = build._rotation_from_arch(truth @ tilt.T)
    assert rot is not None, why
    back = (truth @ tilt.T) @ rot.T
    assert np.allclose(np.diff(back[:100], axis=0) / np.linalg.norm(np.diff(back[:100], axis=0), axis=1)[:, None],
                       [0, 0, 1], atol=1e-6)
    chord = back[0] - back[-1]  # root to descending: posterior-left in the horizontal plane
    chord[2] = 0
    assert np.allclose(chord / np.linalg.norm(chord), [np.sqrt(0.5), np.sqrt(0.5), 0], atol=1e-6)


# --------------------------------------------------------------------------- library errors (fast)


def _store_copy(case, case_id: str) -> None:
    from surgsim.cases.library import _store

    _store(dataclasses.replace(case, case_id=case_id), {"kind": "dicom", "preset": "vessels"}, 0.0)


def test_unknown_and_invalid_case_ids_are_clear_errors():
    with pytest.raises(AnatomyError, match=r"case 'case-000000000000' is not in the case library.*surgsim case"):
        load_case("case-000000000000")
    with pytest.raises(AnatomyError, match="not valid"):
        load_case("../etc")


def test_stored_case_loads_and_a_corrupt_manifest_is_a_clear_error(default_case):
    _store_copy(default_case, "case-testcorrupt1")
    case = load_case("case-testcorrupt1")
    assert set(ARCH) <= set(case.labels) and case.volume is not None
    manifest = case_folder("case-testcorrupt1") / "manifest.json"
    assert json.loads(manifest.read_text())["report"]["watertight"]
    manifest.write_text("{not json")
    with pytest.raises(AnatomyError, match=r"case-testcorrupt1.*manifest.*damaged.*re-import"):
        load_case("case-testcorrupt1")
    listed = {m["case_id"]: m for m in list_cases()}
    assert "error" in listed["case-testcorrupt1"]
    manifest.write_text(json.dumps({"case_id": "case-other", "format": 1, "source": {"kind": "mesh"}}))
    with pytest.raises(AnatomyError, match="case_id is 'case-other'"):
        read_manifest("case-testcorrupt1")


def test_missing_case_files_are_a_clear_error(default_case):
    _store_copy(default_case, "case-testbroken1")
    (case_folder("case-testbroken1") / "case" / "distance.npz").unlink()
    with pytest.raises(AnatomyError, match=r"case-testbroken1.*cannot be read.*re-import"):
        load_case("case-testbroken1")


def test_scenario_with_an_unknown_case_id_names_the_scenario():
    from surgsim.cli import load_case_for

    with pytest.raises(SurgsimError, match=r"scenario library-test: case: case 'case-123456789abc'"):
        load_case_for(_scenario({"case_id": "case-123456789abc"}))


def test_only_the_vessels_and_airway_presets_make_a_case(tmp_path):
    with pytest.raises(AnatomyError, match="imported with 'vessels'.*or 'airway'"):
        import_dicom_case(tmp_path, preset="bone")


# --------------------------------------------------------------------------- DICOM case


@pytest.mark.slow
def test_dicom_case_from_the_phantom_series_is_imported_and_simulated(capsys):
    from surgsim.cases.default import default_case_dicom_dir
    from surgsim.cli import load_case_for, main
    from surgsim.session.session import Session

    folder = default_case_dicom_dir()
    case_id = import_dicom_case(folder)
    t0 = time.perf_counter()
    assert import_dicom_case(folder) == case_id  # the same series and preset: the same case, not rebuilt
    assert time.perf_counter() - t0 < 5.0
    manifest = read_manifest(case_id)
    assert manifest["source"]["kind"] == "dicom" and manifest["source"]["preset"] == "vessels"
    text = json.dumps(manifest)
    assert str(folder) not in text and folder.parent.name not in text  # no paths kept
    # a scenario naming the DICOM folder resolves to the same library case
    case = load_case_for(_scenario({"dicom": str(folder), "preset": "vessels"}))
    assert case.case_id == case_id and set(ARCH) <= set(case.labels)
    session = Session(_scenario({"case_id": case_id}), case)
    session.apply("advance", 0.05)
    session.step(400)
    state = session.rod.state()
    assert np.isfinite(state.positions).all() and state.depth > 0.03
    assert _inside_escape(session) < 1e-3
    capsys.readouterr()
    assert main(["case", "import", str(folder), "--quiet"]) == 0  # already imported: prints the id at once
    assert capsys.readouterr().out.strip() == case_id
    assert main(["case", "list"]) == 0
    assert case_id in capsys.readouterr().out


def test_case_import_of_a_missing_source_is_one_clear_line(tmp_path, capsys):
    from surgsim.cli import main

    assert main(["case", "import", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
    (tmp_path / "bad.stl").write_text("solid nothing\nendsolid nothing\n")
    assert main(["case", "import", str(tmp_path / "bad.stl")]) == 2
    assert "bad.stl" in capsys.readouterr().err


# --------------------------------------------------------------------------- the real Elastrat arch


@pytest.fixture(scope="module")
def elastrat_case_id():
    if not ELASTRAT.is_file():
        pytest.skip(f"real test data not found at {ELASTRAT} (clone surgsim beside ../shared)")
    return import_mesh_case(ELASTRAT)


@pytest.mark.realdata
@pytest.mark.slow
def test_elastrat_arch_becomes_a_labelled_case(elastrat_case_id):
    manifest = read_manifest(elastrat_case_id)
    assert set(ARCH) <= set(manifest["labels"])
    rep = manifest["report"]
    assert rep["watertight"] and rep["manifold"] and rep["arch_type"] == "I"
    assert any("vessel wall" in n for n in rep["notes"])  # the OBJ is the phantom's wall: its lumen was taken
    assert str(ELASTRAT.name) not in json.dumps(manifest)
    case = load_case(elastrat_case_id)
    cl = case.centerlines
    aorta = np.asarray(cl.branches["aorta"].points)
    # rotated to patient coordinates: the access is the descending aorta's open end, heading up
    assert case.access_direction[2] > 0.95
    assert np.median(cl.branches["aorta"].radii) > 10e-3
    for label in ARCH[1:]:
        b = cl.branches[label]
        assert b.parent == "aorta" and 2e-3 < np.median(b.radii) < 5e-3
        assert np.asarray(b.points)[-1, 2] > aorta[:, 2].max() + 20e-3  # the supra-aortic branches go up
    # from the ascending side to the descending side: brachiocephalic, left common carotid, left subclavian
    order = [cl.junction(lab) for lab in ARCH[1:]]
    assert order[0] >= order[1] >= order[2]
    # the brachiocephalic goes to the patient's right (-x), the left subclavian to the left (+x)
    assert np.asarray(cl.branches["brachiocephalic"].points)[-1, 0] < np.asarray(cl.branches["left_subclavian"].points)[-1, 0]
    # the synthetic CT: contrast lumen in soft tissue, on the lumen mask's grid
    assert case.volume.shape == case.lumen_mask.shape
    hu = np.asarray(case.volume.array)
    assert np.all(hu[case.lumen_mask] == build.HU_LUMEN)


@pytest.mark.realdata
@pytest.mark.slow
def test_elastrat_scenario_reaches_the_left_subclavian_without_escape(elastrat_case_id):
    from surgsim.cli import load_case_for
    from surgsim.session.session import Session, replay

    scenario = _scenario({"case_id": elastrat_case_id}, label="left_subclavian", distance=0.03)
    case = load_case_for(scenario)
    session = steer_to_target(Session(scenario, case))
    kinds = [e.kind for e in session.events]
    assert "target_reached" in kinds, f"not reached in {session.time:.1f} s"
    assert "perforation" not in kinds
    assert _inside_escape(session) < 1e-3
    tip = session.rod.state().tip_position
    assert case.centerlines.locate(tip)[0] == "left_subclavian"
    again = replay(scenario, case, session.log())  # the scripted run is an ordinary input log
    assert again.log().hash() == session.log().hash()


@pytest.mark.realdata
@pytest.mark.slow
def test_elastrat_fluoroscopy_shows_the_contrast(elastrat_case_id):
    from surgsim.render.fluoro import FluoroRenderer

    case = load_case(elastrat_case_id)
    fluoro = FluoroRenderer(case.volume, case.lumen_mask, case.centerlines, size=96, noise=0.0)

    class Still:
        """An imaging state at LAO 30 with the same concentration in every vessel."""

        lao, cran = math.radians(30), 0.0

        def __init__(self, c: float):
            self.c = c

        def concentration(self):
            return {label: np.full(len(b.points), self.c) for label, b in case.centerlines.branches.items()}

    plain = fluoro.frame([], Still(0.0)).astype(float)
    filled = fluoro.frame([], Still(0.5)).astype(float)
    assert np.ptp(plain) > 0  # not blank: the body is there
    assert (np.abs(filled - plain) > 0.05 * np.ptp(plain)).mean() > 0.02  # the arch shows with contrast
