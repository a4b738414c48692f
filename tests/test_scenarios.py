"""Scenario format: loading, every kind of validation error, schema, migration."""

from __future__ import annotations

import math
from pathlib import Path

import pydantic
import pytest
import yaml

from surgsim.errors import ScenarioError
from surgsim.paths import SCENARIOS_DIR
from surgsim.scenarios import (
    SCHEMA_PATH,
    Scenario,
    load_scenario,
    migrate,
    validate_files,
)
from surgsim.scenarios.load import json_schema, json_schema_text, known_devices

BUNDLED = SCENARIOS_DIR / "catheter-lcca-basic.yaml"


def _data() -> dict:
    return yaml.safe_load(BUNDLED.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict | str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert str(path) in str(err)
    assert err.problems == validate_files([path])[0][1]
    return err.problems


# ------------------------------------------------------------------ valid files


def test_bundled_scenario_loads_with_si_values():
    s = load_scenario(BUNDLED)
    assert s.id == "catheter-lcca-basic"
    assert s.procedure == "endovascular"
    assert s.case.phantom == "default"
    assert s.instruments[0].device == "angled_5fr"
    assert s.targets[0].label == "left_common_carotid"
    assert s.targets[0].distance_from_ostium_m == pytest.approx(0.03)
    assert s.complications.wall_hit_force_n == pytest.approx(0.3)
    assert [m.metric for m in s.rubric.metrics][:2] == ["target_reached", "time_s"]
    assert s.rubric.metrics[1].pass_ == 240 and s.rubric.metrics[1].excellent == 60
    assert s.rubric.critical_errors == ["perforation"]
    assert s.start.hub_rotation == 0.0
    assert s.source_path == BUNDLED.resolve()
    assert set(s.feedback) >= {"target_reached", "wall_hits", "perforation"}


def test_every_repo_scenario_validates():
    files = sorted(SCENARIOS_DIR.glob("*.yaml"))
    assert BUNDLED in files
    for path, problems in validate_files(files):
        assert problems == [], f"{path}: {problems}"


def test_bundled_devices_are_in_the_device_catalogue():
    for inst in load_scenario(BUNDLED).instruments:
        assert inst.device in known_devices()


def test_degrees_become_radians(tmp_path):
    d = _data()
    d["instruments"][0]["tip_angle_deg"] = 45
    d["start"]["hub_rotation_deg"] = -90
    s = load_scenario(_write(tmp_path, d))
    assert s.instruments[0].tip_angle == pytest.approx(math.pi / 4)
    assert s.start.hub_rotation == pytest.approx(-math.pi / 2)
    assert load_scenario(BUNDLED).instruments[0].tip_angle is None


def test_content_hash_is_stable_and_content_sensitive(tmp_path):
    a = load_scenario(BUNDLED)
    b = load_scenario(_write(tmp_path, _data()))  # same content, other file and formatting
    assert len(a.content_hash()) == 64
    assert a.content_hash() == b.content_hash()
    d = _data()
    d["complications"]["wall_hit_force_n"] = 0.31
    assert load_scenario(_write(tmp_path, d, "c.yaml")).content_hash() != a.content_hash()


def test_scenario_is_frozen():
    s = load_scenario(BUNDLED)
    with pytest.raises(pydantic.ValidationError):
        s.seed = 3  # type: ignore[misc]


def test_dicom_case_inside_the_folder_is_accepted(tmp_path):
    (tmp_path / "series").mkdir()
    d = _data()
    d["case"] = {"dicom": "series", "preset": "vessels"}
    s = load_scenario(_write(tmp_path, d))
    assert s.dicom_path() == (tmp_path / "series").resolve()


# ------------------------------------------------------------------ one test per error kind


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = BUNDLED.read_text(encoding="utf-8").replace(
        "case: {phantom: default}", "case: {phantom: default"
    )
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("case:"))
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 1
    assert "YAML syntax error" in problems[0]
    assert f"line {line}" in problems[0] or f":{line}:" in problems[0]


def test_duplicate_key_is_reported(tmp_path):
    text = BUNDLED.read_text(encoding="utf-8") + "seed: 4\n"
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 1 and "'seed' appears twice" in problems[0]


def test_missing_key(tmp_path):
    d = _data()
    del d["title"]
    (p,) = _problems(_write(tmp_path, d))
    assert "title: missing required key" in p


def test_misspelt_key_gets_a_suggestion(tmp_path):
    d = _data()
    d["rubric"]["metrics"][1]["wieght"] = d["rubric"]["metrics"][1].pop("weight")
    d["learning_objetives"] = d.pop("learning_objectives")
    problems = _problems(_write(tmp_path, d))
    assert len(problems) == 2
    assert any(
        "rubric.metrics[1].wieght: unknown key 'wieght'; did you mean 'weight'?" in p
        for p in problems
    )
    assert any("did you mean 'learning_objectives'?" in p for p in problems)


def test_wrong_type(tmp_path):
    d = _data()
    d["difficulty"] = "hard"
    (p,) = _problems(_write(tmp_path, d))
    assert "difficulty:" in p and "integer" in p and "'hard'" in p


def test_bad_enum_value(tmp_path):
    d = _data()
    d["mode"] = "practise"
    (p,) = _problems(_write(tmp_path, d))
    assert "mode:" in p and "did you mean 'practice'?" in p


def test_unknown_metric_with_key_path_and_line(tmp_path):
    d = _data()
    d["rubric"]["metrics"][2]["metric"] = "path_length"
    path = _write(tmp_path, d)
    lines = path.read_text().splitlines()
    line = next(i for i, s in enumerate(lines, 1) if "metric: path_length" in s)
    (p,) = _problems(path)
    assert f":{line}: rubric.metrics[2].metric: unknown metric 'path_length'" in p
    assert "did you mean 'path_length_m'?" in p


def test_unknown_target_label(tmp_path):
    d = _data()
    d["targets"][0]["label"] = "left_carotid"
    (p,) = _problems(_write(tmp_path, d))
    assert "targets[0].label: unknown anatomy label 'left_carotid'" in p
    assert "left_common_carotid" in p


def test_unknown_device(tmp_path):
    d = _data()
    d["instruments"][0]["device"] = "angled_5f"
    (p,) = _problems(_write(tmp_path, d))
    assert "instruments[0].device: unknown device 'angled_5f'; did you mean 'angled_5fr'?" in p


@pytest.mark.parametrize("rel", ["../outside", "sub/../../outside", "ABS"])
def test_asset_path_leaving_the_folder_is_refused(tmp_path, rel):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "scen" / "sub").mkdir(parents=True)
    d = _data()
    d["case"] = {"dicom": str(outside) if rel == "ABS" else rel, "preset": "vessels"}
    (p,) = _problems(_write(tmp_path / "scen", d))
    assert p.split(": ", 2)[1] == "case.dicom"
    assert ("outside the scenario's folder" in p) or ("absolute path" in p)


def test_missing_dicom_folder(tmp_path):
    d = _data()
    d["case"] = {"dicom": "nothing_here"}
    (p,) = _problems(_write(tmp_path, d))
    assert "case.dicom" in p and "not found" in p


def test_rubric_direction_and_critical_error_names(tmp_path):
    d = _data()
    d["rubric"]["metrics"][1]["excellent"] = 300  # time_s: lower is better, 300 > pass 240
    d["rubric"]["critical_errors"] = ["perforatoin"]
    problems = _problems(_write(tmp_path, d))
    assert len(problems) == 2
    assert any("rubric.metrics[1]" in p and "lower is better" in p for p in problems)
    assert any("did you mean 'perforation'?" in p for p in problems)


def test_case_needs_exactly_one_source(tmp_path):
    d = _data()
    d["case"] = {"phantom": "default", "case_id": "abc"}
    (p,) = _problems(_write(tmp_path, d))
    assert "case:" in p and "exactly one" in p


def test_every_problem_is_listed_at_once(tmp_path):
    d = _data()
    del d["title"]
    d["difficulty"] = 9
    d["mode"] = "exam"
    d["instruments"][0]["device"] = "nope"
    d["targets"][0]["label"] = "nowhere"
    d["rubric"]["metrics"][0]["metric"] = "speed"
    d["feedback"]["wall_hitz"] = "x"
    problems = _problems(_write(tmp_path, d))
    assert len(problems) == 7, problems
    keys = [p.split(": ")[1] for p in problems]
    assert set(keys) == {
        "title",
        "difficulty",
        "mode",
        "instruments[0].device",
        "targets[0].label",
        "rubric.metrics[0].metric",
        "feedback",
    }


def test_validate_files_never_raises(tmp_path):
    bad = _write(tmp_path, "- just\n- a list\n", "list.yaml")
    empty = _write(tmp_path, "", "empty.yaml")
    results = validate_files([BUNDLED, bad, empty, tmp_path / "missing.yaml"])
    assert results[0] == (BUNDLED, [])
    assert "top level must be a mapping" in results[1][1][0]
    assert "empty" in results[2][1][0]
    assert "cannot read" in results[3][1][0]


# ------------------------------------------------------------------ schema and migration


def test_committed_json_schema_is_fresh():
    assert SCHEMA_PATH.exists(), (
        "run: python -c 'from surgsim.scenarios import write_json_schema; write_json_schema()'"
    )
    assert SCHEMA_PATH.read_text(encoding="utf-8") == json_schema_text(), (
        "scenarios/schema/scenario.schema.json is stale; regenerate it with "
        "python -c 'from surgsim.scenarios import write_json_schema; write_json_schema()'"
    )


def test_json_schema_describes_the_format():
    schema = json_schema()
    assert schema["additionalProperties"] is False
    assert {"id", "rubric", "targets"} <= set(schema["properties"])
    metric = schema["$defs"]["RubricMetric"]["properties"]
    assert "pass" in metric and "time_s" in metric["metric"]["enum"]
    first_line = BUNDLED.read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=schema/scenario.schema.json"


def test_migration_hook_applies_steps_in_order():
    calls = []

    def v1_to_v2(d):
        calls.append(1)
        d["renamed"] = d.pop("old")
        return d

    def v2_to_v3(d):
        calls.append(2)
        d["renamed"] *= 2
        return d

    src = {"schema_version": 1, "old": 21}
    out = migrate(src, {1: v1_to_v2, 2: v2_to_v3}, current=3)
    assert out == {"schema_version": 3, "renamed": 42}
    assert calls == [1, 2]
    assert src == {"schema_version": 1, "old": 21}  # input untouched
    with pytest.raises(ScenarioError, match="no migration from version 2"):
        migrate(src, {1: v1_to_v2}, current=3)
    with pytest.raises(ScenarioError, match="newer"):
        migrate({"schema_version": 4}, {}, current=3)


def test_newer_schema_version_is_refused(tmp_path):
    d = _data()
    d["schema_version"] = 2
    (p,) = _problems(_write(tmp_path, d))
    assert "schema_version" in p and "update surgsim" in p


def test_model_built_in_code_matches_loaded():
    s = load_scenario(BUNDLED)
    again = Scenario.model_validate(s.model_dump(by_alias=True))
    assert again.model_dump() == s.model_dump() and again.content_hash() == s.content_hash()
    assert again.source_path is None


def test_phantom_labels_match_the_phantom_generator():
    phantom = pytest.importorskip("surgsim.cases.phantom", reason="phantom generator not present")
    from surgsim.scenarios.load import PHANTOM_LABELS

    generated = set(phantom.VESSEL_LABELS) | set(phantom.AIRWAY_LABELS)
    assert PHANTOM_LABELS["default"] == generated


def test_case_id_not_in_the_library(tmp_path):
    d = _data()
    d["case"] = {"case_id": "case-000000000000"}
    (p,) = _problems(_write(tmp_path, d))
    assert "case.case_id" in p and "not in the case library" in p and "surgsim case import" in p


def test_case_id_targets_checked_against_the_case_labels(tmp_path):
    import json

    from surgsim.cases.library import LIBRARY_FORMAT, MANIFEST, case_folder

    case_id = "case-labelscheck01"
    folder = case_folder(case_id)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"case_id": case_id, "format": LIBRARY_FORMAT, "source": {"kind": "mesh"},
                "labels": ["aorta", "left_subclavian"]}
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    d = _data()
    d["case"] = {"case_id": case_id}
    (p,) = _problems(_write(tmp_path, d))  # the bundled target is the left common carotid
    assert "targets[0].label: unknown anatomy label 'left_common_carotid'" in p
    assert "left_subclavian" in p
    d["targets"][0]["label"] = "left_subclavian"
    assert load_scenario(_write(tmp_path, d, "ok.yaml")).case.case_id == case_id
