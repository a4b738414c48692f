"""A patient's trachea from a chest CT: measurement, airway cases, and tube depth against its carina."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from surgsim.anatomy.centerline import Centerline, CenterlineGraph
from surgsim.anatomy.report import airway_report
from surgsim.anatomy.trachea import TIP_ABOVE_CARINA_M, TracheaMeasure, measure_trachea
from surgsim.cases.airway_phantom import PARAMS, design, truth_of
from surgsim.cases.patient_airway import patient_airway_params, phantom_trachea_length_m
from surgsim.errors import AnatomyError, ScenarioError
from surgsim.scenarios.model import Scenario


def _line(a, b, step=0.5e-3):
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
    return a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)


def _graph(length=0.1, radius=8e-3, right_deg=25.0, left_deg=45.0, top_z=0.2) -> CenterlineGraph:
    """A straight vertical trachea from z = top_z down to the carina, and two main bronchi."""
    carina = np.array([0.0, 0.0, top_z - length])
    tr = _line([0.0, 0.0, top_z], carina)
    branches = {"trachea": Centerline("trachea", tr, np.full(len(tr), radius))}
    for side, deg, sx in (("right", right_deg, -1.0), ("left", left_deg, 1.0)):
        a = math.radians(deg)
        pts = _line(carina, carina + 0.04 * np.array([sx * math.sin(a), 0.0, -math.cos(a)]))
        label = f"{side}_main_bronchus"
        branches[label] = Centerline(label, pts, np.full(len(pts), 0.7 * radius), parent="trachea")
    return CenterlineGraph(branches)


def _grid(top_z: float, nk: int, step: float = 2e-3) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A scan grid whose slices run from z = top_z - (nk - 1) * step up to z = top_z."""
    w = np.eye(4)
    w[:3, :3] *= step
    w[2, 3] = top_z - (nk - 1) * step
    return w, (nk, 64, 64)


# --------------------------------------------------------------------------- measurement


def test_measure_trachea_of_straight_centerlines():
    m = measure_trachea(_graph(length=0.1, radius=8e-3, right_deg=25.0, left_deg=45.0))
    assert m.length_m == pytest.approx(0.1, abs=1e-6)
    assert m.radius_m == pytest.approx(8e-3)
    assert np.allclose(m.carina_m, [0.0, 0.0, 0.1])
    assert math.degrees(m.right_bronchus_angle_rad) == pytest.approx(25.0, abs=0.5)
    assert math.degrees(m.left_bronchus_angle_rad) == pytest.approx(45.0, abs=0.5)
    assert not m.complete  # without the scan's grid it cannot be shown whole


def test_a_trachea_reaching_the_top_slice_is_cut_by_the_scan():
    g = _graph(top_z=0.2)
    cut = measure_trachea(g, *_grid(top_z=0.2, nk=120))  # first point on the top slice
    whole = measure_trachea(g, *_grid(top_z=0.23, nk=140))  # 15 slices of margin above it
    assert not cut.complete and whole.complete
    assert "cut by the scan" in cut.summary() and "cut" not in whole.summary()


def test_an_implausible_lumen_says_the_segmentation_failed():
    with pytest.raises(AnatomyError, match="segmentation failed.*seed"):
        measure_trachea(_graph(radius=1e-3))
    with pytest.raises(AnatomyError, match="no trachea"):
        measure_trachea(CenterlineGraph({}))


def test_measure_round_trips_through_json_and_names_a_damaged_field():
    m = measure_trachea(_graph())
    back = TracheaMeasure.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == TracheaMeasure.from_dict(m.to_dict())
    assert back.length_m == pytest.approx(m.length_m) and back.carina_m == pytest.approx(m.carina_m)
    bad = m.to_dict()
    del bad["radius_m"]
    with pytest.raises(AnatomyError, match="trachea.json.*radius_m.*re-import"):
        TracheaMeasure.from_dict(bad, where="trachea.json")


# --------------------------------------------------------------------------- into the phantom


def _trachea_graph_of(d) -> CenterlineGraph:
    t = truth_of(d)
    return CenterlineGraph({k: Centerline(k, t.centerlines[k], t.radii[k], None if k == "trachea" else "trachea")
                            for k in ("trachea", "right_main_bronchus", "left_main_bronchus")})


def test_a_whole_measured_trachea_replaces_the_phantoms_below_the_larynx():
    m = TracheaMeasure(length_m=0.14, complete=True, radius_m=7e-3, carina_m=(0.0, 0.0, 0.0),
                       right_bronchus_angle_rad=math.radians(20.0), left_bronchus_angle_rad=math.radians(40.0))
    params, notes = patient_airway_params(m, "adult", source="case-0123456789ab")
    assert params.source == "case-0123456789ab" and any("from the CT" in n for n in notes)
    base, patient = design("adult", 0.3), design(params, 0.3)
    assert phantom_trachea_length_m(patient) == pytest.approx(0.14, abs=1e-4)
    rep = airway_report(_trachea_graph_of(patient))
    assert rep["right_bronchus_angle_deg"] == pytest.approx(20.0, abs=1.0)
    assert rep["left_bronchus_angle_deg"] == pytest.approx(40.0, abs=1.0)
    r = truth_of(patient).radii["trachea"]
    assert r[-1] == pytest.approx(7e-3) and r[0] == pytest.approx(PARAMS["adult"].trachea_radius_mm / 1e3)
    # mouth, larynx and cords are the phantom's; the carina moved 14.4 mm further down the trachea
    for k in ("upper_incisor", "glottis_centre", "laryngeal_inlet", "epiglottis_tip"):
        assert np.allclose(base.landmarks_mm[k], patient.landmarks_mm[k])
    moved = np.linalg.norm(patient.landmarks_mm["carina"] - base.landmarks_mm["carina"])
    assert moved == pytest.approx(140.0 - 125.59, abs=0.1)
    # the volume still holds the lower bronchi
    assert patient.fov_lo[2] < base.fov_lo[2]


def test_a_cut_trachea_keeps_the_phantoms_length_unless_it_is_longer():
    short = TracheaMeasure(length_m=0.06, complete=False, radius_m=8e-3, carina_m=(0.0, 0.0, 0.0))
    params, notes = patient_airway_params(short, "adult")
    assert phantom_trachea_length_m(design(params, 0.3)) == pytest.approx(phantom_trachea_length_m(design("adult")))
    assert any("phantom's" in n and "kept" in n for n in notes)
    long = TracheaMeasure(length_m=0.135, complete=False, radius_m=8e-3, carina_m=(0.0, 0.0, 0.0))
    params, notes = patient_airway_params(long, "adult")
    assert phantom_trachea_length_m(design(params, 0.3)) == pytest.approx(0.135, abs=1e-4)


def test_the_planned_depth_puts_the_tip_where_asked():
    from surgsim.instruments.airway import TUBES
    from surgsim.session.intubation import AirwayGeometry, planned_tube_depth_m

    d = design("adult", 0.3)
    g = AirwayGeometry(d)
    depths = [planned_tube_depth_m(d, g, TUBES["ett_7_5"], h) for h in (0.07, TIP_ABOVE_CARINA_M, 0.03)]
    # deeper for a tip nearer the carina; the tube is rigid on its stylet and pivots as it goes
    # deeper, so 4 cm of tip take 3-4.5 cm at the incisors
    assert depths[0] < depths[1] < depths[2]
    assert 0.03 < depths[2] - depths[0] < 0.045
    assert 0.19 < depths[1] < 0.23  # 21-23 cm is the adult rule at the incisors


# --------------------------------------------------------------------------- scenarios


def _scenario(trachea_case_id: str, tube: str = "ett_7_5") -> Scenario:
    return Scenario.model_validate({
        "id": "airway-patient", "title": "t", "version": "1.0", "procedure": "intubation",
        "case": {"phantom": "airway-adult", "trachea_case_id": trachea_case_id},
        "patient": {"physiology": "adult"},
        "instruments": [{"id": "blade", "device": "macintosh_3"}, {"id": "tube", "device": tube}],
        "time_limit_s": 60,
        "rubric": {"metrics": [{"metric": "tube_position_error_m", "pass": 0.02, "excellent": 0.01}]}})


def test_trachea_case_id_belongs_to_airway_phantoms_only():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="only applies to an airway phantom"):
        Scenario.model_validate({
            "id": "x", "title": "t", "version": "1", "procedure": "catheter_navigation",
            "case": {"phantom": "default", "trachea_case_id": "case-0123456789ab"},
            "instruments": [{"id": "c", "device": "angled_5fr"}],
            "rubric": {"metrics": [{"metric": "time_s", "pass": 60, "excellent": 30}]}})


def test_an_unknown_trachea_case_is_a_clear_scenario_error():
    from surgsim.session.intubation import IntubationSession

    with pytest.raises(ScenarioError, match=r"trachea_case_id.*case-000000000000.*not in the case library"):
        IntubationSession(_scenario("case-000000000000"))


def test_tube_position_error_metric():
    from surgsim.scoring.log import SessionLog
    from surgsim.scoring.metrics import tube_position_error_m

    def log(tip_to_carina, location):
        return SessionLog("s", "h", 0, 0.004, samples={"t": np.array([0.0, 1.0]), "tip_to_carina": np.array([0.0, tip_to_carina]),
                                   "tube_location": np.array([0, location])})

    assert tube_position_error_m(log(0.045, 2), {}) == pytest.approx(0.005)
    assert tube_position_error_m(log(-0.01, 3), {}) == pytest.approx(0.06)  # right main bronchus
    assert math.isnan(tube_position_error_m(log(0.05, 5), {}))  # oesophagus: not in the airway


# --------------------------------------------------------------------------- real chest CTs


@pytest.fixture(scope="module")
def chest_cases(shared_data):
    from surgsim.cases.library import import_dicom_case

    return {name: import_dicom_case(shared_data / "dicom" / name, preset="airway")
            for name in ("chest-ct-lung-dx-a0001", "chest-ct-lung-dx-a0002")}


@pytest.mark.realdata
@pytest.mark.slow
def test_real_chest_cts_become_airway_cases(chest_cases, shared_data):
    from surgsim.cases.library import case_folder, load_case, load_trachea, read_manifest

    a1, a2 = (load_trachea(chest_cases[k]) for k in ("chest-ct-lung-dx-a0001", "chest-ct-lung-dx-a0002"))
    # both scans start below the cricoid: the trachea is cut at the top
    assert not a1.complete and not a2.complete
    assert 0.09 < a1.length_m < 0.13 and 0.04 < a2.length_m < 0.09
    assert 6e-3 < a1.radius_m < 9e-3 and 4e-3 < a2.radius_m < 7e-3
    for m in (a1, a2):  # the right main bronchus is the steeper one
        assert m.right_bronchus_angle_rad < m.left_bronchus_angle_rad
    case_id = chest_cases["chest-ct-lung-dx-a0001"]
    manifest = read_manifest(case_id)
    assert manifest["source"]["preset"] == "airway" and "trachea" in manifest["labels"]
    text = (case_folder(case_id) / "manifest.json").read_text() + (case_folder(case_id) / "case" /
                                                                  "trachea.json").read_text()
    assert "lung-dx" not in text and str(shared_data) not in text  # no folder names
    with pytest.raises(AnatomyError, match="airway case.*trachea_case_id"):
        load_case(case_id)


@pytest.mark.realdata
@pytest.mark.slow
def test_a_tube_wider_than_the_patients_trachea_is_refused(chest_cases):
    from surgsim.session.intubation import IntubationSession

    narrow = chest_cases["chest-ct-lung-dx-a0002"]  # 9.4 mm lumen on 8 mm slices
    with pytest.raises(ScenarioError, match=r"ett_7_5 \(outer diameter 10.2 mm\) does not fit.*ett_6_0"):
        IntubationSession(_scenario(narrow, "ett_7_5"))


@pytest.mark.realdata
@pytest.mark.slow
def test_scripted_intubation_places_the_tip_above_the_patients_carina(chest_cases):
    from surgsim.session.intubation import (
        LOCATIONS,
        IntubationSession,
        planned_tube_depth_m,
        scripted_attempt,
    )
    from surgsim.session.loop import play

    sc = _scenario(chest_cases["chest-ct-lung-dx-a0001"])
    s = IntubationSession(sc)
    assert s.params.source == chest_cases["chest-ct-lung-dx-a0001"]
    assert s.params.lower_trachea_radius_mm == pytest.approx(7.3, abs=0.5)
    # the patient's lumen is narrower than the phantom's: so is the detection geometry's trachea
    assert float(s.geometry.truth.radii["trachea"][-1]) < PARAMS["adult"].trachea_radius_mm / 1e3
    depth = planned_tube_depth_m(s.design, s.geometry, s.tube_spec)
    inputs = scripted_attempt(s.params, "expert", depth_m=depth)
    log = play(s, inputs).log()
    sm = log.samples
    assert LOCATIONS[int(sm["tube_location"][-1])] == "trachea"
    assert abs(sm["tip_to_carina"][-1] - TIP_ABOVE_CARINA_M) < 0.02
    assert abs(sm["tube_depth"][-1] - depth) < 0.01
    result = s.score()
    assert result.metric("tube_position_error_m").value < 0.02 and result.passed
    s.world.close()
