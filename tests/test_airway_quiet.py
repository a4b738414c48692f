"""pybullet's C code stays off the terminal: a headless run's stdout is exactly what surgsim prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import sys
from surgsim.cases.airway_phantom import design
from surgsim.instruments.airway import BLADES, TUBES
from surgsim.physics.airway import AirwayWorld, start_poses

d = design("child", 0.3)
blade, tube = BLADES["macintosh_3"], TUBES["ett_6_0"]
print("before", flush=True)
w = AirwayWorld(d, blade, tube, 0.004, *start_poses(d, blade, tube), wall_triangles=3000)
print("inside")
w.step(2)
w.close()
sys.stderr.write("err-after\\n")
print("after")
"""


def test_airway_world_prints_nothing_of_pybullet_to_stdout_or_stderr(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SURGSIM_DATA_DIR": str(tmp_path)}
    # stdout is a pipe: C's stdio buffers it fully, so a leak would show at exit
    out = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "before\ninside\nafter\n"
    assert "argv[0]" not in out.stdout + out.stderr
    assert "pybullet build time" not in out.stderr
    assert out.stderr.endswith("err-after\n")  # stderr works again after the connect
