"""Head position control of the intubation session: refusal with an instrument in the mouth, rebuilt anatomy,
the neck's limit, exact replay, the scenario's starting head, the glottic view and the rendered anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim.errors import ScenarioError
from surgsim.scenarios.model import Scenario
from surgsim.scoring.log import InputEvent
from surgsim.session.intubation import (
    HEAD_EXTENSION,
    IntubationSession,
    dump_inputs,
    load_inputs,
    quantise_extension,
    replay,
    scripted_attempt,
)
from surgsim.session.loop import play


def _scenario(phantom: str = "airway-adult", **kw) -> Scenario:
    d = {"id": "airway-head", "title": "t", "version": "1.0", "procedure": "intubation",
         "case": {"phantom": phantom}, "patient": {"physiology": "adult"},
         "instruments": [{"id": "blade", "device": "macintosh_3"}, {"id": "tube", "device": "ett_7_5"}],
         "time_limit_s": 60, "rubric": {"metrics": [{"metric": "time_s", "pass": 60, "excellent": 30}]}}
    d.update(kw)
    return Scenario.model_validate(d)


def _kinds(session) -> list[str]:
    return [e.kind for e in session.events]


#: The blade pushed into the mouth (tip past the incisors by step 300), withdrawn by step 600.
BLADE_IN_OUT = [InputEvent(0, "blade_vy", 0.02), InputEvent(0, "blade_vz", -0.03),
                InputEvent(300, "blade_vy", -0.03), InputEvent(300, "blade_vz", 0.045),
                InputEvent(600, "blade_vy", 0.0), InputEvent(600, "blade_vz", 0.0)]


def test_quantised_to_the_grid_and_the_action_range():
    assert quantise_extension(0.33) == 0.35 and quantise_extension(0.3) == HEAD_EXTENSION
    assert quantise_extension(-1.0) == 0.0 and quantise_extension(5.0) == 0.6
    assert quantise_extension(0.1 + 0.2) == 0.3  # exactly on the grid, not 0.30000000000000004
    with pytest.raises(ValueError, match="finite"):
        quantise_extension(float("nan"))


def test_refused_while_the_blade_is_in_the_mouth():
    s = IntubationSession(_scenario())
    try:
        play_until = 300
        for e in BLADE_IN_OUT[:2]:
            s.apply(e.action, e.value)
        s.step(play_until)
        assert s.instruments_in_mouth() == ["blade"]
        design, world, geometry = s.design, s.world, s.geometry
        pose = world.pose(world.blade)
        s.apply("head_extension", 0.0)
        assert s.head_extension == HEAD_EXTENSION
        assert s.design is design and s.world is world and s.geometry is geometry
        after = world.pose(world.blade)  # not moved, not rebuilt
        assert np.array_equal(pose[0], after[0]) and np.array_equal(pose[1], after[1])
        refused = [e for e in s.events if e.kind == "head_move_refused"]
        assert len(refused) == 1
        assert refused[0].data == {"requested_rad": 0.0, "extension_rad": HEAD_EXTENSION, "in_mouth": "blade"}
        assert "head_repositioned" not in _kinds(s)
        assert s.inputs[-1] == InputEvent(play_until, "head_extension", 0.0)  # the request is logged
        s.step(2)
        assert s.latest("head_extension") == HEAD_EXTENSION
        # the head never moved: the log is what it was before the head control (old hashes verify)
        assert "head_extension" not in s.log().samples
    finally:
        s.apply("finish")


def test_repositioning_before_laryngoscopy_rebuilds_the_anatomy():
    from surgsim.physics.airway import start_poses

    s = IntubationSession(_scenario())
    try:
        assert s.instruments_in_mouth() == []
        mouth0, glottis0, world0 = s.geometry.mouth.copy(), s.geometry.glottis.copy(), s.world
        incisor0 = s.geometry.upper_incisor.copy()
        s.apply("blade_vz", -0.01)  # a held command carries on through the change
        s.apply("head_extension", 0.0)
        assert s.head_extension == 0.0 and s.design.extension == 0.0
        assert s.world is not world0
        # the head turned about the atlanto-occipital joint: mouth and teeth moved, the glottis did not
        moved = float(np.linalg.norm(s.geometry.mouth - mouth0))
        assert moved > 0.01, moved
        assert np.linalg.norm(s.geometry.upper_incisor - incisor0) > 0.01
        assert np.linalg.norm(s.geometry.glottis - glottis0) < 0.002
        # both instruments wait at the new head's start poses, outside the mouth
        (hb, rb), (tt, rt) = start_poses(s.design, s.blade_spec, s.tube_spec)
        pos, rot = s.world.pose(s.world.blade)
        assert np.allclose(pos, hb, atol=1e-9) and np.allclose(rot, rb, atol=1e-9)
        assert np.allclose(s.world.pose(s.world.tube)[0], tt, atol=1e-9)
        assert s.commands["blade_vz"] == -0.01 and "head_extension" not in s.commands
        ev = [e for e in s.events if e.kind == "head_repositioned"]
        assert len(ev) == 1 and ev[0].data == {"from_rad": HEAD_EXTENSION, "extension_rad": 0.0,
                                               "requested_rad": 0.0}
        s.step(10)
        assert s.latest("head_extension") == 0.0
        assert "attempt_started" not in _kinds(s)  # the new start poses are outside the mouth
        # the same position again: nothing happens
        world1 = s.world
        s.apply("head_extension", 0.01)  # on the grid: 0.0
        assert s.world is world1 and _kinds(s).count("head_repositioned") == 1
    finally:
        s.apply("finish")


def test_the_neck_limits_the_difficult_airway():
    s = IntubationSession(_scenario("airway-difficult"))
    try:
        assert s.params.max_extension == pytest.approx(0.15)
        assert s.head_extension == pytest.approx(0.15)  # the sniffing default, limited
        s.apply("head_extension", 0.6)  # already at the limit: no change
        assert s.head_extension == pytest.approx(0.15) and "head_repositioned" not in _kinds(s)
        s.apply("head_extension", 0.0)
        s.apply("head_extension", 0.5)
        assert s.head_extension == pytest.approx(0.15) and s.design.extension == pytest.approx(0.15)
        last = [e for e in s.events if e.kind == "head_repositioned"][-1]
        assert last.data["requested_rad"] == 0.5 and last.data["extension_rad"] == pytest.approx(0.15)
        assert s.inputs[-1].value == 0.5  # the request is logged as given (on the grid)
    finally:
        s.apply("finish")


def test_scenario_sets_the_starting_head():
    s = IntubationSession(_scenario(start={"access": "oral", "head_extension_deg": 0.0}))
    try:
        assert s.head_extension == 0.0 and s.design.extension == 0.0 and s.events == []
        assert list(s.log().samples["head_extension"]) == [0.0]  # the scenario's head is in the log
    finally:
        s.apply("finish")
    sc = _scenario(start={"head_extension_deg": 10.0})  # 0.1745 rad: 0.15 on the grid
    assert sc.start.head_extension == pytest.approx(np.radians(10.0))
    with pytest.raises(ScenarioError, match="head_extension_deg 20.*at most 8.6 deg"):
        IntubationSession(_scenario("airway-difficult", start={"head_extension_deg": 20.0}))
    with pytest.raises(Exception, match="only applies to an intubation"):
        _scenario(procedure="endovascular", case={"phantom": "default"}, start={"head_extension_deg": 5.0})
    with pytest.raises(Exception, match="head_extension_deg"):
        _scenario(start={"head_extension_deg": 50.0})
    # an unset head is left out of the content: scenarios written before the field keep their hash
    assert "head_extension_deg" not in _scenario().canonical_json()
    assert '"head_extension_deg":0.0' in _scenario(start={"head_extension_deg": 0.0}).canonical_json()


def test_a_log_with_a_refused_and_an_allowed_head_change_replays_exactly(tmp_path):
    sc = _scenario()
    inputs = sorted(BLADE_IN_OUT + [InputEvent(250, "head_extension", 0.45),  # blade in: refused
                                    InputEvent(650, "head_extension", 0.45),  # blade out: allowed
                                    InputEvent(700, "blade_vz", -0.02),
                                    InputEvent(900, "finish")], key=lambda e: e.step)
    s = play(IntubationSession(sc), inputs)
    kinds = _kinds(s)
    assert kinds.index("head_move_refused") < kinds.index("attempt_ended") < kinds.index("head_repositioned")
    log = s.log()
    ext = log.samples["head_extension"]  # logged once the head moved
    assert ext[0] == HEAD_EXTENSION and ext[-1] == 0.45 and len(ext) == len(log.samples["t"])
    again = replay(sc, log)
    assert again.log().hash() == log.hash()
    assert again.score().total == s.score().total
    # through an input-log file, as `surgsim run --inputs` reads it
    path = tmp_path / "head.yaml"
    dump_inputs(log.inputs, path)
    assert play(IntubationSession(sc), load_inputs(path)).log().hash() == log.hash()


@pytest.mark.slow
def test_sniffing_position_improves_the_direct_laryngoscopy_view():
    """The scripted laryngoscopy (blade into the vallecula, lift along the handle) planned for each head.

    Measured (adult, Macintosh 3): best POGO 0 % (Cormack-Lehane 4, 11 N on the upper incisors) with the head
    neutral, 81 % (grade 2, no tooth contact) in the sniffing position.
    """
    from surgsim.scoring.metrics import compute_metrics

    sc = _scenario()
    out = {}
    for ext in (0.0, HEAD_EXTENSION):
        s = play(IntubationSession(sc), scripted_attempt("adult", "laryngoscopy", extension=ext))
        assert s.head_extension == ext
        out[ext] = compute_metrics(s.log(), names=["best_pogo", "cormack_lehane_grade", "incisor_peak_force_n"])
    neutral, sniffing = out[0.0], out[HEAD_EXTENSION]
    assert sniffing["best_pogo"] > neutral["best_pogo"] + 0.3, out
    assert sniffing["cormack_lehane_grade"] < neutral["cormack_lehane_grade"], out


@pytest.mark.render
def test_the_scene_shows_the_new_anatomy_after_a_head_change():
    pv = pytest.importorskip("pyvista")
    from surgsim.render.airway import VIEWS, AirwayScene

    s = IntubationSession(_scenario())
    plotters = {}
    try:
        scene = AirwayScene(s)
        for kind in VIEWS:
            plotters[kind] = pv.Plotter(off_screen=True, window_size=(320, 240))
            scene.add_view(plotters[kind], kind)
        scene.sync()
        anatomy0 = scene.anatomy
        tissue0 = plotters["external"].actors["external-tissue"].mapper.GetInput()
        cam0 = scene.camera("laryngoscope")
        scene.set_visible("tube", False)
        s.apply("head_extension", 0.6)
        assert scene.sync() == set(VIEWS)  # the anatomy was swapped: every view is redrawn
        assert scene.anatomy is not anatomy0
        for kind in VIEWS:
            actors = plotters[kind].actors
            name = f"{kind}-tissue"
            assert name in actors
            assert len([a for a in actors if a.startswith(f"{kind}-tissue")]) == 1  # replaced, not added
        tissue1 = plotters["external"].actors["external-tissue"].mapper.GetInput()
        assert tissue1 is not tissue0
        assert not np.allclose(tissue1.bounds, tissue0.bounds, atol=1e-3)
        assert not np.allclose(scene.camera("laryngoscope")[0], cam0[0], atol=1e-3)
        tube = [a for a, b in scene.views["external"].moving if b == "tube"]
        assert tube and not any(a.GetVisibility() for a in tube)  # still hidden on the new actors
        assert scene.sync() == set()  # nothing else changed
    finally:
        for p in plotters.values():
            p.close()
        s.apply("finish")
