"""The headless core and the renderer never import Qt; only surgsim.gui does."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = ["dicom", "anatomy", "physics", "instruments", "physiology", "scenarios", "session",
        "scoring", "records", "cases", "render"]
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "PySide2", "pyvistaqt", "qtpy")


def test_core_imports_without_qt():
    """Import every core module in a fresh interpreter; no Qt module may be loaded."""
    modules = ["surgsim.cli", "surgsim.bench"]
    for package in CORE:
        for path in sorted((REPO / "surgsim" / package).glob("*.py")):
            name = "surgsim." + package + ("" if path.stem == "__init__" else "." + path.stem)
            modules.append(name)
    code = (
        "import sys\n"
        f"for m in {modules!r}: __import__(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r})\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"Qt loaded by the core: {proc.stdout.strip()}"


@pytest.mark.parametrize("package", CORE + ["cli.py", "bench.py", "errors.py", "paths.py"])
def test_no_qt_import_statements_outside_gui(package):
    """No source file outside surgsim/gui names a Qt module in an import statement."""
    root = REPO / "surgsim" / package
    files = [root] if root.suffix == ".py" else sorted(root.rglob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in QT_MODULES, f"{path}:{node.lineno} imports {name}"
