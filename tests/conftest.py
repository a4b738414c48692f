"""Shared fixtures: an isolated data folder, the shared real data, the default case."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory):
    """Keep tests out of the user's data folder; one folder for the whole run."""
    old = os.environ.get("SURGSIM_DATA_DIR")
    path = tmp_path_factory.mktemp("surgsim-data")
    os.environ["SURGSIM_DATA_DIR"] = str(path)
    os.environ.pop("SURGSIM_DB_URL", None)
    yield path
    if old is None:
        os.environ.pop("SURGSIM_DATA_DIR", None)
    else:
        os.environ["SURGSIM_DATA_DIR"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test cases in ../shared/data (skips when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (clone surgsim beside ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def default_scenario():
    """The bundled default scenario."""
    from surgsim.cli import DEFAULT_SCENARIO, _scenario_path
    from surgsim.scenarios.load import load_scenario

    return load_scenario(_scenario_path(DEFAULT_SCENARIO))


@pytest.fixture(scope="session")
def default_case():
    """The default phantom's vessel case (built once per test run through the DICOM pipeline)."""
    from surgsim.cases.build import phantom_vessel_case

    return phantom_vessel_case("default")



@pytest.fixture(scope="session")
def airway_scenario():
    """The bundled adult intubation scenario (airway-adult-normal)."""
    from surgsim.cli import _scenario_path
    from surgsim.scenarios.load import load_scenario

    return load_scenario(_scenario_path("airway-adult-normal"))
