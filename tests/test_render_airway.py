"""Off-screen rendering of the intubation scene (no Qt, no Xvfb)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.render

pv = pytest.importorskip("pyvista")


@pytest.fixture(scope="module")
def scenario():
    from surgsim.cli import _scenario_path
    from surgsim.scenarios.load import load_scenario

    return load_scenario(_scenario_path("airway-adult-normal"))


@pytest.fixture(scope="module")
def anatomy(scenario):
    from surgsim.render.airway import build_anatomy
    from surgsim.session.intubation import IntubationSession

    s = IntubationSession(scenario)
    try:
        return build_anatomy(s.design)
    finally:
        s.apply("finish")


@pytest.fixture
def session(scenario):
    from surgsim.session.intubation import IntubationSession

    s = IntubationSession(scenario)
    yield s
    if not s.finished:
        s.apply("finish")


class _Rig:
    """One scene rendered into one off-screen plotter per view."""

    def __init__(self, session, anatomy, size=(320, 240)):
        from surgsim.render.airway import VIEWS, AirwayScene

        self.scene = AirwayScene(session, anatomy)
        self.plotters = {}
        for kind in VIEWS:
            p = pv.Plotter(off_screen=True, window_size=size)
            self.scene.add_view(p, kind)
            self.plotters[kind] = p

    def image(self, kind: str) -> np.ndarray:
        self.scene.sync()
        p = self.plotters[kind]
        p.screenshot(return_img=True)  # the first one shows the window
        p.render()
        return np.asarray(p.screenshot(return_img=True))[..., :3].astype(int)

    def close(self):
        for p in self.plotters.values():
            p.close()


@pytest.fixture
def rig(session, anatomy):
    r = _Rig(session, anatomy)
    yield r
    r.close()


def _changed(a: np.ndarray, b: np.ndarray, tol: int = 12) -> int:
    return int((np.abs(a - b).max(axis=-1) > tol).sum())


def test_anatomy_is_closed_skin_and_mucosa_with_cords(anatomy):
    from surgsim.render.airway import MUCOSA_COLOR, SKIN_COLOR

    rgb = anatomy.tissue.point_data["rgb"]
    assert anatomy.tissue.n_cells > 5000 and rgb.shape == (anatomy.tissue.n_points, 3)
    skin = np.all(rgb == (np.array(SKIN_COLOR) * 255).astype(np.uint8), axis=1).mean()
    mucosa = np.all(rgb == (np.array(MUCOSA_COLOR) * 255).astype(np.uint8), axis=1).mean()
    assert skin > 0.2 and mucosa > 0.02, (skin, mucosa)
    assert anatomy.section.n_cells > 1000
    assert anatomy.section.bounds[0] >= -1e-6, "the section keeps the patient's left half (x >= 0)"
    assert anatomy.cords.n_cells > 20 and anatomy.teeth.n_cells > 100


def test_views_are_not_blank_and_show_blade_and_tube(rig):
    for kind in ("laryngoscope", "external"):
        full = rig.image(kind)
        assert full.std() > 15, f"{kind} view looks blank"
        for body in ("blade", "tube"):
            rig.scene.set_visible(body, False)
            without = rig.image(kind)
            rig.scene.set_visible(body, True)
            n = _changed(full, without)
            assert n > 150, f"{kind} view: the {body} covers only {n} pixels"
    # the tube is drawn in its own saturated blue
    img = rig.image("external")
    blue = (img[..., 2] > 150) & (img[..., 2] > img[..., 0] + 80)
    assert blue.sum() > 100


def test_scene_follows_the_physics_poses(rig, session):
    w = session.world
    session.apply("blade_vy", 0.02)
    session.step(100)
    rig.scene.sync()
    pos, rot = w.pose(w.blade)
    actor = next(a for a, name in rig.scene.views["external"].moving if name == "blade")
    m = np.asarray(actor.user_matrix)
    assert np.allclose(m[:3, 3], pos, atol=1e-9) and np.allclose(m[:3, :3], rot, atol=1e-9)
    tongue = next(a for a, name in rig.scene.views["laryngoscope"].moving if name == "tongue")
    assert np.allclose(np.asarray(tongue.user_matrix)[:3, 3], w.pose(w.tongue)[0], atol=1e-9)


def test_first_person_view_changes_when_the_blade_lifts(rig, session):
    from surgsim.render.airway import view_frame

    into, up, _ = view_frame(session.geometry)
    rig.scene.set_visible("tube", False)  # the waiting tube may stand in the line of sight
    for k, v in zip(("vx", "vy", "vz"), 0.06 * into, strict=True):  # blade into the mouth
        session.apply(f"blade_{k}", float(v))
    session.advance_time(1.2)
    before = rig.image("laryngoscope")
    heel0 = session.world.pose(session.world.blade)[0]
    for k, v in zip(("vx", "vy", "vz"), 0.03 * up, strict=True):  # lift toward the ceiling
        session.apply(f"blade_{k}", float(v))
    session.advance_time(1.0)
    heel1 = session.world.pose(session.world.blade)[0]
    assert (heel1 - heel0) @ up > 0.01, "the blade did not lift"
    after = rig.image("laryngoscope")
    import os
    if os.environ.get("SURGSIM_TEST_IMAGES"):  # look at them: SURGSIM_TEST_IMAGES=/tmp/dir
        from PIL import Image

        for name, im in (("before", before), ("after", after)):
            Image.fromarray(im.astype(np.uint8)).save(os.path.join(os.environ["SURGSIM_TEST_IMAGES"],
                                                                   f"lift_{name}.png"))
    n = _changed(before, after)
    assert n > 0.01 * before.shape[0] * before.shape[1], f"only {n} pixels changed"


def test_operator_eye_looks_at_the_glottis_through_the_mouth(session):
    from surgsim.render.airway import AirwayScene, operator_eye, sighting_point

    g = session.geometry
    eye = operator_eye(g)
    assert 0.25 < np.linalg.norm(eye - g.mouth) < 0.40
    # the eye is outside the mouth (in front of the incisor plane) and the sight line hits the glottis
    assert g.past_incisors(eye) < -0.03
    d = (g.glottis - eye) / np.linalg.norm(g.glottis - eye)
    s = sighting_point(g) - eye
    assert np.linalg.norm(s - (s @ d) * d) < 1e-9
    scene = AirwayScene.__new__(AirwayScene)
    scene.session = session
    position, focal, _ = scene.camera("laryngoscope")
    assert np.allclose(position, eye) and np.allclose(focal, g.glottis)


def test_video_blade_camera_sits_near_the_blade_tip(scenario, anatomy):
    from surgsim.render.airway import AirwayScene
    from surgsim.session.intubation import IntubationSession

    instruments = [i.model_copy(update={"device": "video_mac_3"}) if i.device.startswith("macintosh") else i
                   for i in scenario.instruments]
    s = IntubationSession(scenario.model_copy(update={"instruments": instruments}))
    try:
        scene = AirwayScene(s, anatomy)
        eye, _, _ = scene.camera("laryngoscope")
        tip = s.blade_tip()
        assert np.linalg.norm(np.asarray(eye) - tip) < s.blade_spec.camera_from_tip_m + 0.01
        p = pv.Plotter(off_screen=True, window_size=(200, 150))
        try:
            scene.add_view(p, "laryngoscope")
            img = np.asarray(p.screenshot(return_img=True))
            assert img.std() > 5
        finally:
            p.close()
    finally:
        s.apply("finish")


def test_unknown_view_is_refused(session, anatomy):
    from surgsim.render.airway import AirwayScene

    with pytest.raises(ValueError, match="laryngoscope"):
        AirwayScene(session, anatomy).add_view(None, "fluoroscopy")


def test_anatomy_disk_cache_reads_back_the_same_meshes(anatomy, session):
    from surgsim.render import airway as ra

    key = ra.anatomy_cache_key(session.design)
    folder = ra.anatomy_cache_folder(key)
    assert (folder / "key.json").read_text() == key and (folder / "tissue.vtp").is_file()
    saved = dict(ra._ANATOMY_CACHE)
    ra._ANATOMY_CACHE.clear()
    try:
        again = ra.build_anatomy(session.design)  # from disk
    finally:
        ra._ANATOMY_CACHE.clear()
        ra._ANATOMY_CACHE.update(saved)
    assert again is not anatomy
    for name in ("tissue", "section", "teeth", "cords", "arytenoids", "view_tissue"):
        a, b = getattr(anatomy, name), getattr(again, name)
        assert a.n_cells == b.n_cells and np.allclose(a.points, b.points, atol=1e-7), name
    for name in ("tissue", "section", "view_tissue"):
        a, b = getattr(anatomy, name), getattr(again, name)
        assert np.array_equal(a.point_data["rgb"], b.point_data["rgb"]), name


def test_anatomy_cache_key_follows_the_design_and_the_generator(session):
    from dataclasses import replace

    from surgsim.cases import airway_phantom
    from surgsim.render.airway import anatomy_cache_folder, anatomy_cache_key

    d = session.design
    key = anatomy_cache_key(d)
    content = json.loads(key)
    assert content["generator_version"] == airway_phantom.GENERATOR_VERSION
    assert len(content["generator_sha256"]) == 64 and content["params"]["name"] == d.params.name
    others = [anatomy_cache_key(replace(d, extension=d.extension + 0.05)),
              anatomy_cache_key(replace(d, params=replace(d.params, tongue_scale=1.2))),
              anatomy_cache_key(d, spacing_m=2.0e-3), anatomy_cache_key(d, view_triangles=9000)]
    assert len({key, *others}) == 5
    assert len({anatomy_cache_folder(k) for k in (key, *others)}) == 5


def test_damaged_cache_entry_is_rebuilt(anatomy, session, monkeypatch, tmp_path):
    import shutil

    from surgsim.render import airway as ra

    key = ra.anatomy_cache_key(session.design)
    source = ra.anatomy_cache_folder(key)
    monkeypatch.setenv("SURGSIM_DATA_DIR", str(tmp_path))  # a cache of our own, with a damaged entry
    folder = ra.anatomy_cache_folder(key)
    assert folder.is_relative_to(tmp_path)
    shutil.copytree(source, folder)
    (folder / "tissue.vtp").write_bytes(b"not a VTK file")
    saved = dict(ra._ANATOMY_CACHE)
    ra._ANATOMY_CACHE.clear()
    first = anatomy
    try:
        with pytest.raises((ValueError, Warning)):
            ra._load_anatomy(folder, key)
        ra._ANATOMY_CACHE.clear()
        rebuilt = ra.build_anatomy(session.design)
        assert rebuilt.tissue.n_cells == first.tissue.n_cells
        assert ra._load_anatomy(folder, key).tissue.n_cells == first.tissue.n_cells  # rewritten whole
    finally:
        ra._ANATOMY_CACHE.clear()
        ra._ANATOMY_CACHE.update(saved)


def test_laryngoscope_view_draws_the_culled_decimated_tissue(anatomy, session, rig):
    from surgsim.render.airway import (
        MUCOSA_COLOR,
        SKIN_COLOR,
        VIEW_CONE_DEG,
        VIEW_TRIANGLES,
        operator_eye,
    )

    view = anatomy.view_tissue
    assert 0.9 * VIEW_TRIANGLES <= view.n_cells <= VIEW_TRIANGLES < anatomy.tissue.n_cells
    def drawn(kind):
        return rig.plotters[kind].renderer.actors[f"{kind}-tissue"].mapper.GetInput().GetNumberOfCells()

    assert drawn("laryngoscope") == view.n_cells and drawn("external") == anatomy.section.n_cells
    g = session.geometry
    eye, glottis = operator_eye(g), np.asarray(g.glottis)
    axis = (glottis - eye) / np.linalg.norm(glottis - eye)
    rel = np.asarray(view.points) - eye
    along = rel @ axis
    radial = np.linalg.norm(rel - np.outer(along, axis), axis=1)
    # nothing behind the eye nor far off the line of sight (one triangle's size of slack at the cone's edge)
    assert along.min() > 0 and np.all(radial <= along * np.tan(np.radians(VIEW_CONE_DEG)) + 0.02)
    # ... but the tissue around the mouth and the airway down to the glottis is all there
    for p in (g.mouth, g.upper_incisor, glottis, glottis + 0.05 * (np.asarray(g.mouth) - glottis)):
        near_full = np.linalg.norm(np.asarray(anatomy.tissue.points) - p, axis=1).min()
        assert np.linalg.norm(np.asarray(view.points) - p, axis=1).min() < near_full + 0.004
    rgb = view.point_data["rgb"]
    for color in (SKIN_COLOR, MUCOSA_COLOR):
        assert np.all(rgb == (np.array(color) * 255).astype(np.uint8), axis=1).mean() > 0.05


def test_culled_tissue_looks_like_the_full_tissue(rig, anatomy, session):
    """What the laryngoscope view leaves out is out of sight: the pictures differ in a few edge pixels."""
    from surgsim.render.airway import view_frame

    into, up, _ = view_frame(session.geometry)
    for k, v in zip(("vx", "vy", "vz"), 0.06 * into, strict=True):
        session.apply(f"blade_{k}", float(v))
    session.advance_time(1.0)
    actor = rig.plotters["laryngoscope"].renderer.actors["laryngoscope-tissue"]
    culled = rig.image("laryngoscope")
    actor.mapper.SetInputData(anatomy.tissue)
    full = rig.image("laryngoscope")
    actor.mapper.SetInputData(anatomy.view_tissue)
    differ = (np.abs(culled - full).max(axis=-1) > 40).mean()
    assert differ < 0.02, f"{differ:.1%} of the pixels differ"


def test_sync_reports_changed_views_and_never_rebuilds_meshes(rig, session):
    rig.image("laryngoscope")
    rig.image("external")
    assert rig.scene.sync() == set(), "nothing moved: nothing to redraw"
    p = rig.plotters["laryngoscope"]
    before = {k: (a.mapper.GetInput(), a.mapper.GetInput().GetMTime()) for k, a in p.renderer.actors.items()}
    session.apply("blade_vy", 0.02)
    session.step(50)
    assert rig.scene.sync() == {"laryngoscope", "external"}
    p.render()
    session.step(1)
    rig.scene.sync()
    p.render()
    after = {k: (a.mapper.GetInput(), a.mapper.GetInput().GetMTime()) for k, a in p.renderer.actors.items()}
    assert after.keys() == before.keys()
    for k, (mesh, mtime) in before.items():  # the same meshes, unmodified: only actor matrices changed
        assert after[k][0] is mesh and after[k][1] == mtime, k
    session.apply("blade_vy", 0.0)
    session.step(1)  # the blade still moves this step (the hand drives it through a constraint)
    rig.scene.sync()
    rig.scene.set_visible("tube", False)
    assert rig.scene.sync() == {"laryngoscope", "external"}
    rig.scene.set_visible("tube", True)
    rig.scene.sync()
    session.apply("cuff", 1.0)  # no step: only the cuff changed
    assert rig.scene.sync() == {"laryngoscope", "external"}


def test_moving_bodies_are_wound_outward_and_lit(rig, session):
    """Culled back faces need outward triangles: a body wound inward would show its lit inside or black."""
    from surgsim.anatomy.surface import _signed_volume, _triangles

    s = rig.scene
    for mesh in (s._tongue, s._epiglottis, s._blade, s._handle, s._tube["tube"], s._tube["cuff_inflated"],
                 s.anatomy.teeth):
        assert _signed_volume(np.asarray(mesh.points), _triangles(mesh)) > 0
    full = rig.image("laryngoscope")
    s.set_visible("tongue", False)
    without = rig.image("laryngoscope")
    s.set_visible("tongue", True)
    tongue = np.abs(full - without).max(axis=-1) > 12
    assert tongue.sum() > 200
    red, green, blue = np.median(full[tongue], axis=0)
    assert red > 100 and red > green + 30 and red > blue + 30, (red, green, blue)  # lit tongue, not black
