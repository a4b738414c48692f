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
  (:class:`surgsim.render.airway.AirwayScene`: pose sync and a full render per
  frame); baselines in the same process: the 30 frames/s goal, and the same
  window filled by one flat plane (what the OpenGL in use can do at all);
- resident memory and time to first frame of ``surgsim app --scenario
  airway-adult-normal`` (under ``xvfb-run`` when there is no display), against
  an empty Qt + VTK window.

Timings are never asserted in tests.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np

SCENARIO = "airway-adult-normal"
GOALS = {"physics_steps_per_s": 120.0, "frames_per_s": 30.0, "rss_bytes": 1.5 * 2**30}
#: Frame size of the rendering benchmark (a laryngoscope screen), pixels.
FRAME_SIZE = (640, 480)
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
            s.step(max(1, min(end, nxt) - s.step_index))
        return n - (end - s.step_index)


def bench_physics(seconds: float = 5.0, lead_in_limit_s: float = 30.0) -> tuple[dict, object, _Driver]:
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
    # untimed lead-in: until the blade lifts the tongue and the tube touches the airway
    while session.time < lead_in_limit_s and not session.finished:
        drive.run(CHUNK)
        if all(in_contact(w).values()):
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


def _fps(plotter, frame, n: int) -> float:
    plotter.screenshot(return_img=True)  # shows the (off-screen) window once
    frame(0)
    plotter.render()
    t0 = time.perf_counter()
    for i in range(n):
        frame(i)
        plotter.render()
    return n / max(time.perf_counter() - t0, 1e-9)


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

        fps = _fps(p, frame, frames)
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

        base_fps = _fps(base, plane_frame, frames)
    finally:
        base.close()
    return {"frames": frames, "frame_size": list(size), "frames_per_s": fps,
            "frames_vs_goal": fps / GOALS["frames_per_s"], "baseline_plane_frames_per_s": base_fps,
            "frames_vs_plane": fps / base_fps, "scene_triangles": triangles, "anatomy_build_s": build_s}


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
    return {"app_rss_bytes": app["rss_bytes"], "app_first_frame_s": app["first_frame_s"],
            "baseline_rss_bytes": base["rss_bytes"], "app_rss_vs_empty_window": app["rss_bytes"] / base["rss_bytes"],
            "baseline_first_frame_s": base["first_frame_s"]}


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
        f"{r['baseline_plane_frames_per_s']:.0f} frames/s), {r['scene_triangles']:,} triangles",
    ]
    if "app_rss_bytes" in r:
        out.append(f"  app with the airway case loaded: {r['app_rss_bytes'] / 2**20:.0f} MiB resident "
                   f"({r['app_rss_vs_empty_window']:.2f}x an empty Qt+VTK window; goal < 1536 MiB), "
                   f"first frame {r['app_first_frame_s']:.1f} s")
    elif "app_skipped" in r:
        out.append(f"  app: skipped ({r['app_skipped']})")
    return "\n".join(out)
