"""``surgsim bench``: start-up, memory and simulation speed of the default case.

Figures are printed as ratios against a baseline measured in the same run
(an empty Qt + VTK window for start-up; real time for the simulation), never
asserted in tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

GOALS = {"first_frame_s": 3.0, "rss_bytes": 1.5 * 2**30, "session_steps_per_s": 1000.0,
         "window_frames_per_s": 30.0}

#: Run in a subprocess (Qt stays out of this module): the simulator window on the default case in
#: real time, the catheter advancing under live fluoroscopy; frames of the 3D view and of the
#: fluoroscopy view per second.
_WINDOW_FRAMES = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
from surgsim.cli import DEFAULT_SCENARIO, _scenario_path, load_case_for
from surgsim.scenarios.load import load_scenario
from surgsim.gui.main_window import MainWindow
scenario = load_scenario(_scenario_path(DEFAULT_SCENARIO))
w = MainWindow(scenario, load_case_for(scenario))
w.resize(1400, 900)
w.show()
t0 = time.perf_counter()
while time.perf_counter() - t0 < 2.0:  # the first frames and the fluoroscopy renderer
    app.processEvents()
n3d, nfl = [0], [0]
w.plotter.ren_win.AddObserver("StartEvent", lambda *a: n3d.__setitem__(0, n3d[0] + 1))
show = w.fluoro_view.show_frame
def counted(frame, _show=show):
    nfl[0] += 1
    return _show(frame)
w.fluoro_view.show_frame = counted
w._apply("advance", 0.01)
w._apply("pedal", 1.0)
w._pedal = True
t0, sim0 = time.perf_counter(), w.session.time
while time.perf_counter() - t0 < float(sys.argv[1]) and not w.session.finished:
    app.processEvents()
wall = time.perf_counter() - t0
print(json.dumps({"window_frames_per_s": n3d[0] / wall, "window_fluoro_frames_per_s": nfl[0] / wall,
                  "window_sim_ratio": (w.session.time - sim0) / wall, "window_seconds": wall}), flush=True)
w.close()
"""

_EMPTY_WINDOW = r"""
import json, time, psutil
from PySide6.QtWidgets import QApplication
from pyvistaqt import QtInteractor
import pyvista as pv
app = QApplication([])
w = QtInteractor()
w.add_mesh(pv.Sphere())
w.interactor.show()
w.render()
app.processEvents()
print(json.dumps({"first_frame_s": time.time() - psutil.Process().create_time(),
                  "rss_bytes": psutil.Process().memory_info().rss}))
"""


def _startup(cmd: list[str]) -> dict | None:
    env = dict(os.environ, VTK_SMP_BACKEND_IN_USE="STDThread")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    print(f"  start-up run failed ({proc.returncode}): {proc.stderr.strip()[-400:]}", file=sys.stderr)
    return None


def bench_startup() -> dict:
    """Time to first frame and resident memory of the app with the default case loaded."""
    if not os.environ.get("DISPLAY"):
        return {"skipped": "no DISPLAY: run under xvfb-run (tools/run and tools/test do)"}
    # Warm: build the case cache and compile caches once, as any second start would find them.
    _startup([sys.executable, "-m", "surgsim", "app", "--quit-after", "0", "--report-startup"])
    app = _startup([sys.executable, "-m", "surgsim", "app", "--quit-after", "0", "--report-startup"])
    base = _startup([sys.executable, "-c", _EMPTY_WINDOW])
    if app is None or base is None:
        return {"skipped": "the app or the baseline window did not start"}
    return {
        "first_frame_s": app["first_frame_s"],
        "baseline_empty_window_s": base["first_frame_s"],
        "first_frame_ratio": app["first_frame_s"] / base["first_frame_s"],
        "rss_bytes": app["rss_bytes"],
        "baseline_rss_bytes": base["rss_bytes"],
    }


def bench_window(seconds: float = 6.0) -> dict:
    """Frames per second of the simulator window in real time (3D view and live fluoroscopy)."""
    if not os.environ.get("DISPLAY"):
        return {"window_skipped": "no DISPLAY: run under xvfb-run (tools/run and tools/test do)"}
    out = _startup([sys.executable, "-c", _WINDOW_FRAMES, str(float(seconds))])
    if out is None:
        return {"window_skipped": "the window did not start"}
    out["window_frames_vs_goal"] = out["window_frames_per_s"] / GOALS["window_frames_per_s"]
    return out


def bench_session(seconds: float) -> dict:
    """Physics steps per second of a headless session on the default case."""
    from surgsim.cli import DEFAULT_SCENARIO, _scenario_path, load_case_for
    from surgsim.scenarios.load import load_scenario
    from surgsim.session.session import Session

    scenario = load_scenario(_scenario_path(DEFAULT_SCENARIO))
    case = load_case_for(scenario)
    warm = Session(scenario, case)  # compiles the kernels
    warm.apply("advance", 0.05)
    warm.step(200)
    session = Session(scenario, case)
    session.apply("advance", 0.05)
    session.apply("rotate", 0.5)
    n = int(seconds / session.dt)
    t0 = time.perf_counter()
    session.step(n)
    wall = time.perf_counter() - t0
    steps = session.step_index
    return {
        "session_steps": steps,
        "session_wall_s": wall,
        "session_steps_per_s": steps / wall,
        "realtime_ratio": (steps * session.dt) / wall,
        "device_nodes": session.spec.n_nodes,
        "max_wall_force_n": float(session.log().samples["wall_force"].max()),
    }


def run_bench(args) -> int:
    """Run the benchmarks and print the figures (JSON with ``--json``)."""
    results: dict = {}
    results.update(bench_session(args.seconds))
    if not args.no_gui:
        results.update(bench_startup())
        results.update(bench_window())
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("surgsim bench (default case)")
    print(f"  session: {results['session_steps_per_s']:,.0f} physics steps/s "
          f"({results['realtime_ratio']:.1f}x real time at 1 ms; goal >= 1x), "
          f"{results['device_nodes']} nodes")
    if "first_frame_s" in results:
        print(f"  start-up to first frame: {results['first_frame_s']:.2f} s "
              f"({results['first_frame_ratio']:.2f}x an empty Qt+VTK window at "
              f"{results['baseline_empty_window_s']:.2f} s; goal < {GOALS['first_frame_s']:.0f} s)")
        print(f"  resident memory with the case loaded: {results['rss_bytes'] / 2**20:.0f} MiB "
              f"({results['rss_bytes'] / results['baseline_rss_bytes']:.2f}x the empty window; "
              f"goal < 1536 MiB)")
    elif "skipped" in results:
        print(f"  start-up: skipped ({results['skipped']})")
    if "window_frames_per_s" in results:
        print(f"  the window in real time (catheter advancing under live fluoroscopy, physics at "
              f"{results['window_sim_ratio']:.2f}x real time): 3D view {results['window_frames_per_s']:.1f} "
              f"frames/s ({results['window_frames_vs_goal']:.2f}x the {GOALS['window_frames_per_s']:.0f} "
              f"frames/s goal), fluoroscopy {results['window_fluoro_frames_per_s']:.1f} frames/s")
    return 0


def bench_scoring(minutes: float = 10.0) -> dict:
    """Time to compute every metric and the rubric score of a ``minutes``-long log.

    The log is synthetic (100 Hz samples of a wandering tip with wall contacts),
    so the figure measures scoring alone. Baseline in the same run: serialising
    the same log (what recording it costs anyway).
    """
    import numpy as np

    from surgsim.cli import DEFAULT_SCENARIO, _scenario_path
    from surgsim.scenarios.load import load_scenario
    from surgsim.scoring.log import Event, SessionLog
    from surgsim.scoring.metrics import compute_metrics
    from surgsim.scoring.rubric import score

    scenario = load_scenario(_scenario_path(DEFAULT_SCENARIO))
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * 100)
    t = np.arange(n) * 0.01
    tip = np.cumsum(rng.normal(0, 2e-4, (n, 3)), axis=0)
    force = np.clip(rng.normal(0.2, 0.4, n), 0, None)
    log = SessionLog(scenario.id, scenario.content_hash(), 0, 1e-3, samples={
        "t": t, "tip": tip, "depth": np.linspace(0.02, 0.4, n), "rotation": np.zeros(n),
        "wall_force": force, "tip_force": force * 0.5, "contacts": (force > 0).astype(int),
        "fluoro": (rng.random(n) > 0.5).astype(int), "contrast_ml": np.linspace(0, 20, n),
        "dose": np.linspace(0, 1e-3, n)}, events=[Event(float(t[-1]), "finish")])
    params = scenario.metric_params()
    compute_metrics(log, params)  # warm: first-use imports (scipy.signal) are not scoring
    t0 = time.perf_counter()
    compute_metrics(log, params)
    metrics_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    score(log, scenario)
    score_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    log.to_bytes()
    serialise_s = time.perf_counter() - t0
    return {"log_minutes": minutes, "samples": n, "metrics_s": metrics_s, "score_s": score_s,
            "serialise_s": serialise_s, "score_vs_serialise": score_s / serialise_s}
