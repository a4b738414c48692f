"""The `surgsim` command line on the default case, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pyvista as pv

from surgsim.cli import main
from surgsim.paths import SCENARIOS_DIR


def test_dicom_info_lists_the_default_phantom(capsys):
    assert main(["dicom", "info"]) == 0
    out = capsys.readouterr().out
    assert "CT" in out and "256" in out and "201" in out


def test_dicom_info_on_an_empty_folder_says_so(tmp_path, capsys):
    code = main(["dicom", "info", str(tmp_path)])
    captured = capsys.readouterr()
    assert code != 0
    assert "no" in (captured.out + captured.err).lower()


def test_anatomy_build_writes_a_closed_vessel_surface(tmp_path, capsys):
    out = tmp_path / "vessels.vtp"
    report = tmp_path / "report.json"
    assert main(["anatomy", "build", "--preset", "vessels", "-o", str(out), "--report", str(report),
                 "--triangles", "20000", "--quiet"]) == 0
    mesh = pv.read(out)
    assert 5_000 < mesh.n_cells <= 20_000
    quality = json.loads(report.read_text())
    assert quality["watertight"] and quality["manifold"]


def test_anatomy_build_on_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    code = main(["anatomy", "build", str(tmp_path / "nope"), "-o", str(tmp_path / "x.vtp"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope" in err and "Traceback" not in err


def test_scenario_validate(tmp_path, capsys):
    assert main(["scenario", "validate", str(SCENARIOS_DIR / "catheter-lcca-basic.yaml")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text((SCENARIOS_DIR / "catheter-lcca-basic.yaml").read_text().replace("time_limit_s", "time_limt_s"))
    assert main(["scenario", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "time_limt_s" in out and "time_limit_s" in out  # names the key and suggests the right one


def test_run_with_a_broken_input_log_names_the_entry(tmp_path, capsys):
    log = tmp_path / "inputs.yaml"
    log.write_text("inputs:\n  - {t: 0.0, action: advnce, value: 0.05}\n")
    code = main(["run", "catheter-lcca-basic", "--inputs", str(log), "--trainee", "T-1", "--no-record"])
    err = capsys.readouterr().err
    assert code == 2
    assert "inputs[0].action" in err and "advnce" in err


def test_module_entry_point_prints_help():
    proc = subprocess.run([sys.executable, "-m", "surgsim", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("app", "dicom", "anatomy", "scenario", "run", "replay", "bench"):
        assert command in proc.stdout


def test_run_and_replay_an_intubation_attempt(tmp_path, capsys):
    """`surgsim run` dispatches on the scenario's procedure; replay reproduces the attempt."""
    log = tmp_path / "airway.yaml"
    log.write_text("dt: 0.004\ninputs:\n  - {t: 0.0, action: blade_vz, value: -0.01}\n"
                   "  - {t: 0.6, action: blade_vz, value: 0.0}\n  - {t: 1.0, action: finish}\n")
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    assert main(["run", "airway-adult-normal", "--inputs", str(log), "--trainee", "T-9", "--db", db,
                 "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{"):])
    assert result["scenario_id"] == "airway-adult-normal" and not result["passed"]
    assert main(["replay", result["attempt_id"], "--db", db]) == 0
    assert "identical" in capsys.readouterr().out
