"""Where surgsim keeps user data (cases, caches, the attempt database).

``SURGSIM_DATA_DIR`` overrides the platform default (for tests and labs).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
ASSETS_DIR = REPO_DIR / "assets"
SCENARIOS_DIR = REPO_DIR / "scenarios"


def data_dir() -> Path:
    """Return the user data folder, creating it if needed."""
    env = os.environ.get("SURGSIM_DATA_DIR")
    path = Path(env) if env else Path(platformdirs.user_data_dir("surgsim", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Return the cache folder (derived data that can be rebuilt), creating it."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_url() -> str:
    """Return the attempt database URL: ``SURGSIM_DB_URL`` or SQLite in the data folder."""
    return os.environ.get("SURGSIM_DB_URL") or f"sqlite:///{data_dir() / 'surgsim.db'}"
