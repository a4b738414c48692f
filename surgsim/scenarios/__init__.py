"""surgsim.scenarios: the scenario file format, loading and validation."""

from surgsim.scenarios.load import (
    SCHEMA_PATH,
    json_schema,
    load_scenario,
    migrate,
    validate_files,
    write_json_schema,
)
from surgsim.scenarios.model import SCHEMA_VERSION, Scenario

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "Scenario",
    "json_schema",
    "load_scenario",
    "migrate",
    "validate_files",
    "write_json_schema",
]
