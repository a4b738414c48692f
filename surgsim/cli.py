"""The ``surgsim`` command line.

``main(argv=None)`` so tests call it in-process. Only ``app`` imports the GUI,
and only when it runs. Errors surgsim raises on purpose are printed as one
clear line (exit code 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from surgsim.errors import SurgsimError

DEFAULT_SCENARIO = "catheter-lcca-basic"


def _scenario_path(name: str) -> Path:
    from surgsim.paths import SCENARIOS_DIR

    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return SCENARIOS_DIR / f"{name}.yaml"


def _progress_printer(quiet: bool = False):
    def show(fraction: float, message: str) -> None:
        if not quiet:
            print(f"  [{fraction * 100:5.1f} %] {message}", file=sys.stderr, flush=True)

    return show


def load_case_for(scenario, progress=None):
    """The anatomy case a scenario names (built once, then cached)."""
    from surgsim.cases.build import phantom_vessel_case

    case_spec = scenario.case
    phantom = getattr(case_spec, "phantom", None)
    if phantom:
        return phantom_vessel_case(phantom, progress=progress)
    raise SurgsimError(
        f"scenario {scenario.id}: only bundled phantom cases can be simulated so far "
        "(case: {phantom: default})"
    )


# ------------------------------------------------------------------ commands


def cmd_app(args: argparse.Namespace) -> int:
    from surgsim.gui.app import run_app

    return run_app(args)


def cmd_dicom_info(args: argparse.Namespace) -> int:
    from surgsim.dicom.discover import discover, format_listing

    root = Path(args.dir) if args.dir else _default_dicom_dir()
    found = discover(root)
    print(format_listing(found))
    return 0 if found.series else 1


def _default_dicom_dir() -> Path:
    from surgsim.cases.default import default_case_dicom_dir

    folder = default_case_dicom_dir()
    print(f"(no folder given: the bundled default phantom at {folder})", file=sys.stderr)
    return folder


def _parse_point(text: str | None):
    if text is None:
        return None
    import numpy as np

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise SurgsimError(f"--seed {text!r}: expected x,y,z in millimetres (LPS)") from exc
    if len(values) != 3:
        raise SurgsimError(f"--seed {text!r}: expected three numbers x,y,z in millimetres (LPS)")
    return np.asarray(values) * 1e-3


def cmd_anatomy_build(args: argparse.Namespace) -> int:
    from surgsim.anatomy.segment import segment
    from surgsim.anatomy.surface import mesh_quality, surface_from_mask
    from surgsim.dicom.load import load_series

    root = Path(args.dir) if args.dir else _default_dicom_dir()
    show = _progress_printer(args.quiet)
    show(0.0, f"reading {root}")
    volume = load_series(root, series_key=args.series)
    show(0.3, f"segmenting ({args.preset})")
    mask = segment(volume, args.preset, seed=_parse_point(args.seed))
    show(0.6, "extracting the surface")
    mesh = surface_from_mask(mask, volume.world_from_voxel, target_triangles=args.triangles)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh.save(out)
    report = mesh_quality(mesh)
    show(1.0, f"wrote {out}")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


def cmd_scenario_validate(args: argparse.Namespace) -> int:
    from surgsim.scenarios.load import validate_files

    failed = 0
    for path, problems in validate_files([Path(f) for f in args.files]):
        if problems:
            failed += 1
            print(f"{path}: INVALID")
            for p in problems:
                print(f"  - {p}")
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def cmd_run(args: argparse.Namespace) -> int:
    from surgsim.records.db import Records
    from surgsim.scenarios.load import load_scenario
    from surgsim.session.inputs import load_inputs
    from surgsim.session.session import Session, play

    scenario = load_scenario(_scenario_path(args.scenario))
    inputs = load_inputs(Path(args.inputs))
    case = load_case_for(scenario, progress=_progress_printer(args.json))
    session = play(Session(scenario, case, seed=args.seed), inputs)
    log = session.log()
    result = session.score()
    attempt_id = None
    if not args.no_record:
        records = Records(args.db)
        try:
            attempt_id = records.add_attempt(args.trainee, scenario, log, result, mode=scenario.mode)
        finally:
            records.close()
    if args.json:
        out = result.to_dict()
        out["attempt_id"] = attempt_id
        out["log_hash"] = log.hash()
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(result.summary)
        for m in result.metrics:
            value = "n/a" if m.value is None else f"{m.value:.4g}"
            print(f"  {m.name:<22} {value:>10} {m.unit:<4} sub-score {m.sub_score:5.1f}")
        if attempt_id:
            print(f"recorded attempt {attempt_id}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from surgsim.errors import ReplayMismatchError
    from surgsim.records.db import Records
    from surgsim.scenarios.load import load_scenario
    from surgsim.session.session import replay

    records = Records(args.db)
    try:
        attempt = records.get_attempt(args.attempt)
    finally:
        records.close()
    scenario = load_scenario(_scenario_path(attempt.scenario_id))
    if scenario.content_hash() != attempt.scenario_hash:
        raise SurgsimError(
            f"attempt {args.attempt} was recorded with another version of scenario "
            f"{attempt.scenario_id} (hash {attempt.scenario_hash[:12]}); the bundled one differs"
        )
    case = load_case_for(scenario)
    session = replay(scenario, case, attempt.log)
    result = session.score()
    same = session.log().hash() == attempt.log.hash() and abs(result.total - attempt.score) < 1e-12
    print(f"replayed attempt {args.attempt}: score {result.total:.2f} (recorded {attempt.score:.2f})")
    if not same:
        raise ReplayMismatchError(f"replay of attempt {args.attempt} did not reproduce the recorded log")
    print("identical: same log hash and score")
    return 0


def cmd_records_list(args: argparse.Namespace) -> int:
    from surgsim.records.db import Records

    records = Records(args.db)
    try:
        rows = records.list_attempts(args.trainee)
    finally:
        records.close()
    for r in rows:
        print(f"{r.id}  {r.trainee_id:<12} {r.scenario_id:<24} {r.status:<11} score {r.score:6.2f}"
              f"  {'pass' if r.passed else 'fail'}")
    print(f"{len(rows)} attempt(s)")
    return 0


def cmd_physiology_desaturation(args: argparse.Namespace) -> int:
    from surgsim.physiology.oxygen import PRESETS, time_to_desaturation

    if args.patient not in PRESETS:
        raise SurgsimError(f"--patient {args.patient!r}: choose one of {', '.join(PRESETS)}")
    seconds = time_to_desaturation(args.patient, threshold=args.threshold / 100, airway=args.airway,
                                   preoxygenated_fraction=args.preoxygenation)
    out = {"patient": args.patient, "airway": args.airway, "threshold_percent": args.threshold,
           "preoxygenated_fraction": args.preoxygenation, "time_to_threshold_s": round(seconds, 1)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{PRESETS[args.patient].name}: SaO2 below {args.threshold:g} % after "
              f"{seconds:.0f} s of apnoea ({args.airway} airway)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from surgsim.bench import run_bench

    return run_bench(args)


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="surgsim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command")

    app = sub.add_parser("app", help="open the simulator window (the default)")
    add_app_arguments(app)
    app.set_defaults(func=cmd_app)

    dicom = sub.add_parser("dicom", help="DICOM import").add_subparsers(dest="dicom_command", required=True)
    info = dicom.add_parser("info", help="list the series in a folder and what was skipped")
    info.add_argument("dir", nargs="?", help="folder to scan (default: the bundled phantom)")
    info.set_defaults(func=cmd_dicom_info)

    anatomy = sub.add_parser("anatomy", help="anatomy from DICOM").add_subparsers(dest="anatomy_command", required=True)
    build = anatomy.add_parser("build", help="segment a series and write a surface mesh")
    build.add_argument("dir", nargs="?", help="DICOM folder (default: the bundled phantom)")
    build.add_argument("--preset", default="vessels", choices=["vessels", "airway", "bone", "skin"])
    build.add_argument("-o", "--output", required=True, help="surface file (.vtp, .stl, .ply, .obj)")
    build.add_argument("--series", help="series key from `surgsim dicom info` when the folder holds several")
    build.add_argument("--seed", help="a point inside the structure, x,y,z in mm (LPS)")
    build.add_argument("--triangles", type=int, default=100_000, help="triangle budget")
    build.add_argument("--report", help="write the quality report (JSON) here")
    build.add_argument("--quiet", action="store_true")
    build.set_defaults(func=cmd_anatomy_build)

    scenario = sub.add_parser("scenario", help="scenario files").add_subparsers(dest="scenario_command", required=True)
    validate = scenario.add_parser("validate", help="check scenario files and report every problem")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=cmd_scenario_validate)

    run = sub.add_parser("run", help="play an input log through a scenario headless, score and record it")
    run.add_argument("scenario", help="scenario file or bundled scenario id")
    run.add_argument("--inputs", required=True, help="input log (YAML/JSON)")
    run.add_argument("--trainee", required=True, help="opaque trainee id")
    run.add_argument("--db", help="database URL (default: SURGSIM_DB_URL or SQLite in the data folder)")
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument("--json", action="store_true", help="print the score as JSON")
    run.add_argument("--no-record", action="store_true", help="do not store the attempt")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("replay", help="re-run a recorded attempt and confirm the same score")
    rep.add_argument("attempt", help="attempt id")
    rep.add_argument("--db", help="database URL")
    rep.set_defaults(func=cmd_replay)

    records = sub.add_parser("records", help="recorded attempts").add_subparsers(dest="records_command", required=True)
    rlist = records.add_parser("list", help="list attempts")
    rlist.add_argument("--trainee")
    rlist.add_argument("--db")
    rlist.set_defaults(func=cmd_records_list)

    phys = sub.add_parser("physiology", help="patient physiology models").add_subparsers(
        dest="physiology_command", required=True)
    desat = phys.add_parser("desaturation", help="time from the start of apnoea to a saturation")
    desat.add_argument("--patient", default="adult", help="preset: adult, ill, obese, child, pregnant")
    desat.add_argument("--airway", default="open", choices=["open", "obstructed"])
    desat.add_argument("--threshold", type=float, default=90.0, help="SaO2 percent")
    desat.add_argument("--preoxygenation", type=float, default=0.87, help="alveolar O2 fraction at the start")
    desat.add_argument("--json", action="store_true")
    desat.set_defaults(func=cmd_physiology_desaturation)

    bench = sub.add_parser("bench", help="measure start-up, memory and simulation speed")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--seconds", type=float, default=5.0, help="simulated seconds of the session benchmark")
    bench.add_argument("--no-gui", action="store_true", help="skip the window start-up measurement")
    bench.set_defaults(func=cmd_bench)
    return parser


def add_app_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="scenario file or bundled id")
    p.add_argument("--trainee", default="guest", help="opaque trainee id")
    p.add_argument("--db", help="database URL")
    p.add_argument("--screenshot", help="save a screenshot of the window here after start-up")
    p.add_argument("--quit-after", type=float, help="close the window after this many seconds")
    p.add_argument("--report-startup", action="store_true", help="print start-up time and memory as JSON")


def _version() -> str:
    from surgsim import __version__

    return f"surgsim {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"app", "dicom", "anatomy", "scenario", "run", "replay", "records", "physiology",
                "bench"}
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help", "--version")):
        argv = ["app", *argv]  # `surgsim` alone (or with app options) opens the window
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SurgsimError as exc:
        print(f"surgsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
