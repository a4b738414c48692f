"""``surgsim bench intubation``: physics, laryngoscope-view rendering and app memory of the airway case.

In one run, on ``airway-adult-normal`` driven by its bundled scripted expert
attempt (``scenarios/inputs/airway-adult-normal.expert.yaml``, else
:func:`surgsim.session.intubation.scripted_attempt`):

- physics steps per second of :class:`surgsim.session.intubation.IntubationSession`
  (pybullet blade and tube, spring-mounted tongue and epiglottis proxies,
  detection and the oxygen model at every record), timed from the first step
  at which the blade presses on the tongue and the tube touches the airway,
  for ``seconds`` of simulated time; baseline: real time, 250 steps/s at 4 ms;
- frames per second rendering the laryngoscope view off-screen at that moment
  (:class:`surgsim.render.airway.AirwayScene`: one physics step, pose sync and a
  full render per frame, so every frame has moved bodies to draw), at the size the
  intubation window gives the view (:data:`surgsim.render.airway.LARYNGOSCOPE_VIEW_SIZE`);
  baselines in the same process: the 30 frames/s goal, and the same window filled
  by one flat plane (what the OpenGL in use can do at all);
- the same view as the intubation window shows it (a subprocess, under
  ``xvfb-run`` when there is no display): frames per second of the window's
  redraw (one physics step, sync, the view's render and its copy to the
  screen through Qt), with the VTK renders per frame, so a window that renders
  more than the off-screen figure (a bigger view, a second render per paint)
  shows here;
- resident memory and time to first frame of ``surgsim app --scenario
  airway-adult-normal`` (under ``xvfb-run`` when there is no display), against
  an empty Qt + VTK window, with where the start-up time went.

Frame figures are given twice: wall-clock frames per second (what the trainee
gets on this machine now; it drops when other processes load the cores) and
the CPU time per frame of the process (``frame_cpu_ms``: all its threads,
llvmpipe's included; it varies much less with the load).

Timings are never asserted in tests.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np

from surgsim.render.airway import LARYNGOSCOPE_VIEW_SIZE

SCENARIO = "airway-adult-normal"
GOALS = {"physics_steps_per_s": 120.0, "frames_per_s": 30.0, "rss_bytes": 1.5 * 2**30}
#: Frame size of the rendering benchmark, pixels: the laryngoscope view's size in the intubation window.
FRAME_SIZE = LARYNGOSCOPE_VIEW_SIZE
#: Steps per timed chunk (contacts are counted between chunks, untimed).
CHUNK = 25


def _scenario():
    from surgsim.cli import _scenario_path
    from surgsim.scenarios.load import load_scenario

    return load_scenario(_scenario_path(SCENARIO))


def expert_inputs() -> list:
    """The scripted expert attempt's input events (the bundled log, else generated)."""
    from surgsim.paths import SCENARIOS_DIR
    from surgsim.session.intubation import load_inputs, scripted_attempt

    path = SCENARIOS_DIR / "inputs" / f"{SCENARIO}.expert.yaml"
    if path.is_file():
        return load_inputs(path)
    return scripted_attempt("adult", "expert")


def in_contact(world) -> dict[str, bool]:
    """Which contacts exist now: ``blade_tissue`` (tongue or epiglottis), ``tube_airway`` (any tissue)."""
    def touching(a: int, b: int) -> bool:
        return world.contact_force(a, b)[1] > 0.0

    return {"blade_tissue": touching(world.blade, world.tongue) or touching(world.blade, world.epiglottis),
            "tube_airway": any(touching(world.tube, b) for b in (world.wall, world.tongue, world.epiglottis))}


class _Driver:
    """Feeds input events into a session by step, stepping in chunks between events."""

    def __init__(self, session, events: list):
        self.session = session
        self.events = sorted(events, key=lambda e: e.step)
        self.k = 0
        self._step = session.step  # the session's own (the GUI bench routes the window's steps here)

    def run(self, n: int) -> int:
        """Advance up to ``n`` steps (applying due inputs); returns the steps run."""
        s = self.session
        end = s.step_index + n
        while s.step_index < end and not s.finished:
            while self.k < len(self.events) and self.events[self.k].step <= s.step_index:
                e = self.events[self.k]
                self.k += 1
                if e.action != "finish":  # the benchmark decides when to stop
                    s.apply(e.action, e.value)
            nxt = self.events[self.k].step if self.k < len(self.events) else end
            self._step(max(1, min(end, nxt) - s.step_index))
        return n - (end - s.step_index)


def bench_physics(seconds: float = 5.0, lead_in_limit_s: float = 30.0,
                  hold_s: float = 1.0) -> tuple[dict, object, _Driver]:
    """Physics steps per second with blade and tube in contact.

    Returns
    -------
    results : dict
    session : IntubationSession
        Left at the end of the timed window (world open), for the rendering benchmark.
    driver : _Driver
    """
    from surgsim.session.intubation import IntubationSession

    session = IntubationSession(_scenario())
    drive = _Driver(session, expert_inputs())
    w = session.world
    # untimed lead-in: until the blade lifts the tongue and the tube has touched the airway
    # for ``hold_s`` without a break (the tube brushes the cords on and off before that)
    held_since = None
    while session.time < lead_in_limit_s and not session.finished:
        drive.run(CHUNK)
        if not all(in_contact(w).values()):
            held_since = None
        elif held_since is None:
            held_since = session.time
        if held_since is not None and session.time - held_since >= hold_s:
            break
    contact_at = session.time
    n_total = max(1, int(round(seconds / session.dt)))
    wall = 0.0
    steps = 0
    chunks = chunks_contact = 0
    tongue_rest = w.tongue_spring.rest_pos.copy() if hasattr(w, "tongue_spring") else None
    tongue_max = 0.0
    while steps < n_total and not session.finished:
        t0 = time.perf_counter()
        ran = drive.run(min(CHUNK, n_total - steps))
        wall += time.perf_counter() - t0
        steps += ran
        chunks += 1
        c = in_contact(w)
        chunks_contact += int(c["blade_tissue"] and c["tube_airway"])
        if tongue_rest is not None:
            tongue_max = max(tongue_max, float(np.linalg.norm(w.pose(w.tongue)[0] - tongue_rest)))
        if ran == 0:
            break
    rate = steps / max(wall, 1e-9)
    return ({
        "physics_steps": steps,
        "physics_wall_s": wall,
        "physics_steps_per_s": rate,
        "physics_realtime_ratio": rate * session.dt,
        "physics_dt_s": session.dt,
        "contact_from_s": contact_at,
        "contact_fraction": chunks_contact / max(chunks, 1),
        "tongue_displacement_max_m": tongue_max,
    }, session, drive)


def _fps(plotter, frame, n: int) -> tuple[float, float]:
    """Frames per second (wall clock) and process CPU milliseconds per frame of ``frame(i)`` + a render."""
    plotter.screenshot(return_img=True)  # shows the (off-screen) window once
    frame(0)
    plotter.render()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        frame(i)
        plotter.render()
    return n / max(time.perf_counter() - t0, 1e-9), (time.process_time() - c0) / n * 1000.0


def bench_render(session, drive: _Driver | None = None, frames: int = 60,
                 size: tuple[int, int] = FRAME_SIZE) -> dict:
    """Frames per second of the laryngoscope view (sync + render), and a flat-plane baseline."""
    import pyvista as pv

    from surgsim.render.airway import AirwayScene, build_anatomy

    t0 = time.perf_counter()
    anatomy = build_anatomy(session.design)
    build_s = time.perf_counter() - t0
    scene = AirwayScene(session, anatomy)
    p = pv.Plotter(off_screen=True, window_size=size)
    try:
        scene.add_view(p, "laryngoscope")

        def frame(i: int) -> None:
            if drive is not None and not session.finished:
                drive.run(1)  # the poses change between frames, as in the window
            scene.sync()

        fps, cpu_ms = _fps(p, frame, frames)
        triangles = int(sum(a.GetMapper().GetInput().GetNumberOfCells()
                            for a in p.renderer.actors.values() if a.GetVisibility() and a.GetMapper()))
    finally:
        p.close()
    base = pv.Plotter(off_screen=True, window_size=size)
    try:
        base.ren_win.SetMultiSamples(0)
        actor = base.add_mesh(pv.Plane(i_size=4.0, j_size=4.0), color=(0.8, 0.4, 0.4), smooth_shading=True)
        base.camera_position = [(0.0, 0.0, 1.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)]
        eye = np.eye(4)

        def plane_frame(i: int) -> None:
            eye[0, 3] = 1e-4 * (i % 2)
            actor.user_matrix = eye

        base_fps, base_cpu_ms = _fps(base, plane_frame, frames)
    finally:
        base.close()
    return {"frames": frames, "frame_size": list(size), "frames_per_s": fps, "frame_cpu_ms": cpu_ms,
            "frames_vs_goal": fps / GOALS["frames_per_s"], "baseline_plane_frames_per_s": base_fps,
            "baseline_plane_frame_cpu_ms": base_cpu_ms,
            "frames_vs_plane": fps / base_fps, "scene_triangles": triangles, "anatomy_build_s": build_s}


#: Run in a subprocess (Qt stays out of this module): the intubation window's laryngoscope view redrawn
#: as the window's tick does it, at the moment the blade and tube are in contact.
_GUI_FRAMES = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
from surgsim.bench_intubation import _Driver, _scenario, expert_inputs, in_contact
from surgsim.gui.airway_window import IntubationWindow
frames = int(sys.argv[1])
w = IntubationWindow(_scenario())
w.show()
w.timer.stop()  # the benchmark drives the frames
for _ in range(20):
    app.processEvents()
s = w.session
drive = _Driver(s, expert_inputs())
while s.time < 30.0 and not s.finished and not all(in_contact(s.world).values()):
    drive.run(25)
renders = [0]
w.plotter.ren_win.AddObserver("StartEvent", lambda *a: renders.__setitem__(0, renders[0] + 1))
drive.run(1); w._render(external=False); app.processEvents()
renders[0] = 0
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(frames):
    drive.run(1)
    w._render(external=False)
    app.processEvents()  # the paint: the view's render and its copy to the window
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
out = {"gui_frames_per_s": frames / wall, "gui_frame_cpu_ms": cpu / frames * 1000.0,
       "gui_vtk_renders_per_frame": renders[0] / frames, "gui_view_size": list(w.plotter.ren_win.GetSize())}
# then as the trainee sees it: the window's own timer runs the physics in real time (the scripted
# hands go on through the session's step), redraws both views and the monitor and HUD
s.step = lambda n, _run=drive.run: _run(n)
f0, t0, sim0 = w.frames_rendered, time.perf_counter(), s.time
w._last_tick = t0
w.timer.start()
while time.perf_counter() - t0 < float(sys.argv[2]) and not s.finished:
    app.processEvents()
wall = time.perf_counter() - t0
out.update({"gui_realtime_frames_per_s": (w.frames_rendered - f0) / wall,
            "gui_realtime_sim_ratio": (s.time - sim0) / wall, "gui_realtime_seconds": wall})
print(json.dumps(out), flush=True)
w.close()
"""


def bench_gui_render(frames: int = 60, realtime_s: float = 6.0) -> dict:
    """Frames per second of the laryngoscope view as the intubation window draws it (a subprocess).

    First ``frames`` frames drawn back to back (one recorded sample of physics
    between them), then ``realtime_s`` seconds of the window's own loop: the
    physics in real time, both views, the monitor and the HUD.
    """
    from surgsim.bench import _startup

    prefix: list[str] = []
    if not os.environ.get("DISPLAY"):
        if not shutil.which("xvfb-run"):
            return {"gui_skipped": "no DISPLAY and no xvfb-run"}
        prefix = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"]
    out = _startup(prefix + [sys.executable, "-c", _GUI_FRAMES, str(int(frames)), str(float(realtime_s))])
    if out is None:
        return {"gui_skipped": "the window did not start"}
    out["gui_frames_vs_goal"] = out["gui_frames_per_s"] / GOALS["frames_per_s"]
    out["gui_realtime_frames_vs_goal"] = out["gui_realtime_frames_per_s"] / GOALS["frames_per_s"]
    return out


def bench_app(quit_after: float = 0.0) -> dict:
    """Resident memory and first frame of the app with the airway case loaded (a subprocess)."""
    from surgsim.bench import _EMPTY_WINDOW, _startup

    prefix: list[str] = []
    if not os.environ.get("DISPLAY"):
        if not shutil.which("xvfb-run"):
            return {"app_skipped": "no DISPLAY and no xvfb-run"}
        prefix = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"]
    app = _startup(prefix + [sys.executable, "-m", "surgsim", "app", "--scenario", SCENARIO,
                             "--quit-after", str(quit_after), "--report-startup"])
    base = _startup(prefix + [sys.executable, "-c", _EMPTY_WINDOW])
    if app is None or base is None:
        return {"app_skipped": "the app or the baseline window did not start"}
    out = {"app_rss_bytes": app["rss_bytes"], "app_first_frame_s": app["first_frame_s"],
           "baseline_rss_bytes": base["rss_bytes"],
           "app_rss_vs_empty_window": app["rss_bytes"] / base["rss_bytes"],
           "baseline_first_frame_s": base["first_frame_s"]}
    # where the start-up went (process age at the end of the imports and of the window; the window's
    # session, anatomy and view building)
    for k in ("imports_done_s", "window_built_s", "window_session_s", "window_anatomy_s", "window_views_s"):
        if k in app:
            out[f"app_{k}"] = app[k]
    return out


def run_intubation_bench(args) -> dict:
    """Run the benchmarks and print them (JSON with ``args.json``); returns the figures."""
    seconds = float(getattr(args, "seconds", 5.0) or 5.0)
    frames = int(getattr(args, "frames", 60) or 60)
    results, session, drive = bench_physics(seconds)
    try:
        results.update(bench_render(session, drive, frames))
    finally:
        if not session.finished:
            session.apply("finish")
    if not getattr(args, "no_gui", False):
        results.update(bench_gui_render(frames))
        results.update(bench_app())
    results["goals"] = GOALS
    if getattr(args, "json", False):
        print(json.dumps(results, indent=2))
    else:
        print(format_report(results))
    return results


def format_report(results: dict) -> str:
    """The benchmark's figures as text (what ``surgsim bench intubation`` prints)."""
    r = results
    out = [
        f"surgsim bench intubation ({SCENARIO}, scripted expert attempt)",
        f"  physics: {r['physics_steps_per_s']:,.0f} steps/s over {r['physics_steps']} steps from "
        f"t = {r['contact_from_s']:.1f} s (blade on the tongue and tube in the airway in "
        f"{r['contact_fraction'] * 100:.0f} % of them; {r['physics_realtime_ratio']:.2f}x real time at "
        f"{r['physics_dt_s'] * 1000:.0f} ms; goal >= {GOALS['physics_steps_per_s']:.0f} steps/s)",
        f"  laryngoscope view: {r['frames_per_s']:.1f} frames/s at {r['frame_size'][0]}x{r['frame_size'][1]} "
        f"({r['frames_vs_goal']:.2f}x the {GOALS['frames_per_s']:.0f} frames/s goal; "
        f"{r['frames_vs_plane']:.2f}x a flat plane filling the same window at "
        f"{r['baseline_plane_frames_per_s']:.0f} frames/s), {r['scene_triangles']:,} triangles; "
        f"CPU {r['frame_cpu_ms']:.1f} ms per frame (the plane: {r['baseline_plane_frame_cpu_ms']:.1f} ms)",
    ]
    if "gui_frames_per_s" in r:
        w, h = r["gui_view_size"]
        out.append(f"  laryngoscope view in the intubation window ({w}x{h}, drawn and shown through Qt): "
                   f"{r['gui_frames_per_s']:.1f} frames/s ({r['gui_frames_vs_goal']:.2f}x the goal), "
                   f"CPU {r['gui_frame_cpu_ms']:.1f} ms per frame, "
                   f"{r['gui_vtk_renders_per_frame']:.1f} VTK render(s) per frame")
        out.append(f"  the window in real time (physics at {r['gui_realtime_sim_ratio']:.2f}x real time, both "
                   f"views, monitor, HUD; {r['gui_realtime_seconds']:.0f} s): "
                   f"{r['gui_realtime_frames_per_s']:.1f} laryngoscope frames/s "
                   f"({r['gui_realtime_frames_vs_goal']:.2f}x the goal)")
    elif "gui_skipped" in r:
        out.append(f"  laryngoscope view in the window: skipped ({r['gui_skipped']})")
    if "app_rss_bytes" in r:
        out.append(f"  app with the airway case loaded: {r['app_rss_bytes'] / 2**20:.0f} MiB resident "
                   f"({r['app_rss_vs_empty_window']:.2f}x an empty Qt+VTK window; goal < 1536 MiB), "
                   f"first frame {r['app_first_frame_s']:.1f} s (an empty Qt+VTK window: "
                   f"{r['baseline_first_frame_s']:.1f} s)")
        if "app_window_session_s" in r:
            out.append(f"    start-up: imports done at {r['app_imports_done_s']:.1f} s; physics world "
                       f"{r['app_window_session_s']:.1f} s, anatomy meshes "
                       f"{r['app_window_anatomy_s']:.1f} s, views {r['app_window_views_s']:.1f} s; "
                       f"window built at {r['app_window_built_s']:.1f} s")
    elif "app_skipped" in r:
        out.append(f"  app: skipped ({r['app_skipped']})")
    return "\n".join(out)
