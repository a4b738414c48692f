"""Off-screen rendering of the intubation scene (no Qt, no Xvfb)."""

from __future__ import annotations

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
