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
    """The anatomy case a scenario names: a bundled phantom, a case-library id, or a DICOM
    folder (imported into the case library once, keyed by series and preset)."""
    from surgsim.cases.build import phantom_vessel_case
    from surgsim.cases.library import import_dicom_case, load_case

    spec = scenario.case
    try:
        if spec.phantom:
            return phantom_vessel_case(spec.phantom, progress=progress)
        if spec.case_id:
            return load_case(spec.case_id)
        if spec.dicom:
            folder = scenario.dicom_path()
            return load_case(import_dicom_case(folder, preset=spec.preset or "vessels", progress=progress))
    except SurgsimError as exc:
        try:
            raise type(exc)(f"scenario {scenario.id}: case: {exc}") from exc
        except TypeError:  # an error class with another signature: keep it as is
            raise exc from None
    raise SurgsimError(f"scenario {scenario.id}: case: give one of phantom, case_id or dicom")


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
    import os

    from surgsim.anatomy.io import LABELMAP_SUFFIXES, SURFACE_SUFFIXES, _suffix
    from surgsim.anatomy.pipeline import build_anatomy
    from surgsim.anatomy.report import format_report

    out = Path(args.output)
    if _suffix(out) not in SURFACE_SUFFIXES:
        raise SurgsimError(f"-o {out}: unknown surface format; use one of {', '.join(SURFACE_SUFFIXES)}")
    if args.save_labelmap and _suffix(Path(args.save_labelmap)) not in LABELMAP_SUFFIXES:
        raise SurgsimError(f"--save-labelmap {args.save_labelmap}: use .nrrd, .nii or .nii.gz")
    label = None
    if args.label:
        label = [int(v) if v.strip().lstrip("-").isdigit() else v.strip() for v in args.label.split(",")]
    if args.dir:
        source = Path(args.dir)
    elif args.labelmap:
        source = None
    else:
        source = _default_dicom_dir()
    bar = _progress_bar(args.quiet)
    try:
        result = build_anatomy(
            source, args.preset, series_key=args.series, seed=_parse_point(args.seed),
            labelmap=args.labelmap, label=label, target_triangles=args.triangles,
            use_cache=not args.no_cache, progress=bar,
        )
        bar(1.0, "done", final=True)
        from surgsim.anatomy.io import write_labelmap, write_surface

        write_surface(result.mesh, out, units=args.units)
        if args.save_labelmap and result.mask is not None:
            write_labelmap(result.mask, result.world_from_voxel, args.save_labelmap,
                           names={1: result.preset})
        if args.report:
            rpath = Path(args.report)
            rpath.parent.mkdir(parents=True, exist_ok=True)
            rpath.write_text(json.dumps(result.report, indent=2, allow_nan=False))
    except SurgsimError:
        bar(1.0, "failed", final=True)
        raise
    except OSError as exc:
        bar(1.0, "failed", final=True)
        raise SurgsimError(f"{exc.filename or 'output'}: {exc.strerror or exc}") from None
    except Exception as exc:  # never a traceback from the command line
        bar(1.0, "failed", final=True)
        if os.environ.get("SURGSIM_DEBUG"):
            raise
        raise SurgsimError(
            f"anatomy build failed unexpectedly ({type(exc).__name__}: {exc}); "
            "set SURGSIM_DEBUG=1 for the traceback and report it"
        ) from None
    if not args.quiet:
        print(format_report(result.report), file=sys.stderr)
        print(f"wrote {out}" + (" (from the cache)" if result.from_cache else ""), file=sys.stderr)
    if args.json:
        print(json.dumps(result.report, indent=2, allow_nan=False))
    return 0


def _progress_bar(quiet: bool = False, width: int = 30):
    """Progress callback drawing a one-line bar on stderr (redrawn in place on a terminal)."""
    tty = sys.stderr.isatty()
    state = {"last": -1.0, "open": False}

    def show(fraction: float, message: str, final: bool = False) -> None:
        if quiet:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        if not tty and not final and fraction - state["last"] < 0.05 and state["last"] >= 0:
            return
        state["last"] = fraction
        filled = int(round(fraction * width))
        line = f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f} % {message}"
        if tty:
            end = "\n" if final else ""
            sys.stderr.write("\r\033[K" + line[:120] + end)
            state["open"] = not final
        elif not final or state["open"]:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def cmd_case_import(args: argparse.Namespace) -> int:
    from surgsim.anatomy.io import SURFACE_SUFFIXES, _suffix
    from surgsim.cases.library import import_dicom_case, import_mesh_case, read_manifest

    source = Path(args.source)
    show = _progress_bar(args.quiet or args.json)
    if source.is_file() and _suffix(source) in SURFACE_SUFFIXES:
        case_id = import_mesh_case(source, progress=show, orientation=args.orientation)
    elif source.is_dir():
        case_id = import_dicom_case(source, preset=args.preset, series=args.series,
                                    seed=_parse_point(args.seed), progress=show)
    else:
        raise SurgsimError(
            f"{source}: not a DICOM folder or a surface file ({', '.join(SURFACE_SUFFIXES)})")
    show(1.0, "done", final=True)
    manifest = read_manifest(case_id)
    if args.json:
        print(json.dumps(manifest, indent=1))
    else:
        print(case_id)
        if not args.quiet:
            rep = manifest["report"]
            print(f"  labels: {', '.join(manifest['labels'])}", file=sys.stderr)
            if manifest["source"].get("preset") == "airway":
                print(f"  {rep['summary']}; use it in an intubation scenario as  "
                      f"case: {{phantom: airway-adult, trachea_case_id: {case_id}}}", file=sys.stderr)
            else:
                print(f"  {rep['n_triangles']} triangles, arch type {rep.get('arch_type') or '?'}; use it in a "
                      f"scenario as  case: {{case_id: {case_id}}}", file=sys.stderr)
    return 0


def cmd_case_list(args: argparse.Namespace) -> int:
    from surgsim.cases.library import library_dir, list_cases

    cases = list_cases()
    if args.json:
        print(json.dumps(cases, indent=1))
        return 0
    if not cases:
        print(f"no cases in {library_dir()}; add one with `surgsim case import FOLDER_OR_MESH`")
        return 0
    for m in cases:
        if "error" in m:
            print(f"{m['case_id']}  DAMAGED: {m['error']}")
            continue
        src = m["source"]
        kind = f"dicom ({src.get('preset')})" if src["kind"] == "dicom" else "mesh"
        created = m.get("created", "?")
        report = m.get("report") if isinstance(m.get("report"), dict) else {}
        if src.get("preset") == "airway":
            print(f"{m['case_id']}  {kind:15s} {created}  {report.get('summary', '')}")
            continue
        labels = ", ".join(lab for lab in m.get("labels") or [] if "_branch_" not in lab)
        print(f"{m['case_id']}  {kind:15s} {created}  arch {report.get('arch_type') or '?':3s} {labels}")
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
    if scenario.procedure == "intubation":
        # the airway session builds its own head-and-neck phantom and reads 4 ms input logs
        from surgsim.session.intubation import IntubationSession
        from surgsim.session.intubation import load_inputs as load_airway_inputs

        session = play(IntubationSession(scenario, seed=args.seed), load_airway_inputs(Path(args.inputs)))
    else:
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
    from surgsim.scenarios.model import Scenario
    from surgsim.session.session import replay

    source = Path(args.attempt)
    if source.is_file():  # an attempt bundle from `surgsim records export --format json`
        from surgsim.records.export import load_bundle

        bundle = load_bundle(source)
        scenario, log, recorded = bundle.scenario, bundle.log, bundle.attempt.get("score")
        name = str(source)
    else:
        from surgsim.records.db import Records

        records = Records(args.db)
        try:
            attempt = records.get_attempt(args.attempt, access=_signed_in(args, records))
            stored = records.scenario_content(attempt.scenario_hash)
        finally:
            records.close()
        if stored is not None:  # the exact scenario version the attempt ran
            scenario = Scenario.model_validate_json(stored)
        else:
            from surgsim.scenarios.load import load_scenario

            scenario = load_scenario(_scenario_path(attempt.scenario_id))
        if scenario.content_hash() != attempt.scenario_hash:
            raise SurgsimError(
                f"attempt {args.attempt} was recorded with another version of scenario "
                f"{attempt.scenario_id} (hash {attempt.scenario_hash[:12]}) and the database does not "
                "keep that version; replay it from an exported bundle"
            )
        log, recorded, name = attempt.log, attempt.score, f"attempt {args.attempt}"
    if scenario.procedure == "intubation":
        from surgsim.session.intubation import replay as replay_airway

        session = replay_airway(scenario, log)
    else:
        session = replay(scenario, load_case_for(scenario), log)
    result = session.score()
    same = session.log().hash() == log.hash() and (recorded is None or abs(result.total - recorded) < 1e-9)
    shown = "n/a" if recorded is None else f"{recorded:.2f}"
    print(f"replayed {name}: score {result.total:.2f} (recorded {shown})")
    if not same:
        raise ReplayMismatchError(f"replay of {name} did not reproduce the recorded log and score")
    print("identical: same log hash and score")
    return 0


def _signed_in(args: argparse.Namespace, records):
    """The AccessContext of --user/--password (or SURGSIM_USER/SURGSIM_PASSWORD).

    None (the station itself) only while the database has no accounts at all.
    """
    import os

    user = getattr(args, "user", None) or os.environ.get("SURGSIM_USER")
    password = getattr(args, "password", None) or os.environ.get("SURGSIM_PASSWORD")
    if user:
        if password is None and sys.stdin.isatty():
            import getpass

            password = getpass.getpass(f"password for {user}: ")
        return records.login(user, password or "")
    if records.has_accounts():
        raise SurgsimError(
            f"the database {records.masked_url} has accounts: sign in with --user NAME "
            "--password PASSWORD (or set SURGSIM_USER and SURGSIM_PASSWORD)"
        )
    return None


def cmd_records_list(args: argparse.Namespace) -> int:
    from surgsim.records.db import Records

    records = Records(args.db)
    try:
        access = _signed_in(args, records)
        rows = records.list_attempts(args.trainee, access=access)
    finally:
        records.close()
    for r in rows:
        score = "   n/a" if r.score is None else f"{r.score:6.2f}"
        print(f"{r.id}  {r.trainee_id:<12} {r.scenario_id:<24} {r.status:<11} score {score}"
              f"  {'pass' if r.passed else 'fail'}")
    print(f"{len(rows)} attempt(s)")
    return 0


def cmd_records_export(args: argparse.Namespace) -> int:
    import os

    from surgsim.records.db import Records

    records = Records(args.db)
    try:
        access = _signed_in(args, records)
        fmt = args.format
        if fmt == "csv":
            from surgsim.records.export import write_csv

            if not args.output:
                raise SurgsimError("--format csv needs -o FOLDER (attempts.csv and metrics.csv go there)")
            for path in write_csv(records, args.output, access=access, trainee_id=args.trainee):
                print(f"wrote {path}")
        elif fmt == "json":
            from surgsim.records.export import attempt_bundle, write_bundle

            if not args.attempt:
                raise SurgsimError("--format json exports one attempt: give --attempt ID")
            if args.output:
                print(f"wrote {write_bundle(records, args.attempt, args.output, access=access)}")
            else:
                print(json.dumps(attempt_bundle(records, args.attempt, access=access)))
        elif fmt == "xapi":
            return _export_xapi(args, records, access, os.environ)
        elif fmt == "report":
            from surgsim.records.report import cohort_report, trainee_report

            if not args.output:
                raise SurgsimError("--format report needs -o REPORT.html")
            if bool(args.trainee) == bool(args.cohort):
                raise SurgsimError("--format report needs either --trainee ID or --cohort ID")
            if args.trainee:
                out = trainee_report(records, args.trainee, args.output, pdf_path=args.pdf,
                                     access=access)
            else:
                out = cohort_report(records, args.cohort, args.output, pdf_path=args.pdf,
                                    access=access)
            print(f"wrote {out['html']}" + (f" and {out['pdf']}" if out["pdf"] else ""))
    finally:
        records.close()
    return 0


def _export_xapi(args: argparse.Namespace, records, access, env) -> int:
    from surgsim.records.xapi import LRSClient, statements_for_attempt

    home = args.home_page or env.get("SURGSIM_XAPI_HOME_PAGE") or "https://surgsim.org/lab"
    ids = [args.attempt] if args.attempt else [a.id for a in records.list_attempts(args.trainee, access=access)]
    statements = []
    for aid in ids:
        statements += statements_for_attempt(records.get_attempt(aid, access=access, with_log=False),
                                             home_page=home)
    lrs = args.lrs or env.get("SURGSIM_LRS_URL")
    if not lrs:
        text = json.dumps(statements, indent=1)
        if args.output:
            Path(args.output).write_text(text)
            print(f"wrote {len(statements)} statement(s) to {args.output}")
        else:
            print(text)
        return 0
    from surgsim.records.queue import StatementQueue

    client = LRSClient(lrs, args.lrs_user or env.get("SURGSIM_LRS_USER", ""),
                       args.lrs_password or env.get("SURGSIM_LRS_PASSWORD", ""))
    with StatementQueue(args.queue) as queue:
        added = queue.enqueue(client.endpoint, statements)
        report = queue.drain(client, ignore_backoff=True)
    print(f"queued {added} new statement(s); sent {report.sent}; {report.pending} waiting"
          + (f"; {report.failed} rejected (kept as failed)" if report.failed else ""))
    return _report_drain_error(report)


def _report_drain_error(report) -> int:
    """Explain a drain's error on stderr; the exit code (3: something was not sent)."""
    if not report.error:
        return 0
    if report.failed and report.error.startswith("the learning record store rejected"):
        print(f"surgsim: {report.error}", file=sys.stderr)
        return 3
    kind = "unreachable" if "cannot be reached" in report.error else "refused them"
    print(f"surgsim: learning record store {kind}: {report.error}; the {report.pending} "
          "statement(s) stay in the queue and go out with the next export or "
          "`surgsim records xapi --send`", file=sys.stderr)
    return 3


def cmd_records_xapi(args: argparse.Namespace) -> int:
    """The xAPI statement queue: what waits, what the LRS rejected; send now, retry failed."""
    import os
    from datetime import UTC, datetime

    from surgsim.records.auth import require_role
    from surgsim.records.db import Records
    from surgsim.records.queue import StatementQueue
    from surgsim.records.xapi import LRSClient, mask_endpoint

    records = Records(args.db)
    try:
        require_role(_signed_in(args, records), "admin", "read or resend the xAPI statement queue")
    finally:
        records.close()
    env = os.environ
    lrs = args.lrs or env.get("SURGSIM_LRS_URL")
    client = None
    if lrs:
        client = LRSClient(lrs, args.lrs_user or env.get("SURGSIM_LRS_USER", ""),
                           args.lrs_password or env.get("SURGSIM_LRS_PASSWORD", ""))
    elif args.send:
        raise SurgsimError("--send needs the learning record store: --lrs URL (or SURGSIM_LRS_URL)")
    endpoint = client.endpoint if client is not None else None
    code = 0
    with StatementQueue(args.queue) as queue:
        if args.retry_failed is not None:
            n = queue.retry_failed(endpoint, args.retry_failed or None)
            print(f"{n} failed statement(s) queued again")
        if client is not None and (args.send or args.retry_failed is not None):
            report = queue.drain(client, ignore_backoff=True)
            print(f"sent {report.sent}; {report.pending} waiting"
                  + (f"; {report.failed} rejected again" if report.failed else ""))
            code = _report_drain_error(report)
        failed = queue.failed(endpoint)
        summary = {"waiting": queue.pending(endpoint), "sent": queue.sent(endpoint),
                   "failed": [{"id": f.id, "endpoint": mask_endpoint(f.endpoint), "status": f.status,
                               "reason": f.reason, "tries": f.tries,
                               "failed_at": datetime.fromtimestamp(f.failed_at, UTC).isoformat()}
                              for f in failed]}
    if args.json:
        print(json.dumps(summary, indent=2))
        return code
    print(f"statement queue {args.queue or 'in the data folder'}"
          + (f" for {client.masked}" if client is not None else "")
          + f": {summary['waiting']} waiting, {summary['sent']} sent, {len(failed)} failed")
    for f in summary["failed"]:
        print(f"  failed {f['id']}  HTTP {f['status']}  {f['failed_at'][:19]}  {f['reason']}")
    if failed and args.retry_failed is None:
        print("send them again with `surgsim records xapi --retry-failed [ID ...]` once the cause is fixed")
    return code


def cmd_users_add(args: argparse.Namespace) -> int:
    import os

    from surgsim.records.db import Records

    records = Records(args.db)
    try:
        if records.has_accounts():
            access = _signed_in(args, records)
        else:
            access = None
            if args.role != "admin":
                raise SurgsimError("the first account of a database must be an admin: --role admin")
        password = args.new_password or os.environ.get("SURGSIM_NEW_PASSWORD")
        if password is None:
            if not sys.stdin.isatty():
                raise SurgsimError("give the new account's password with --new-password or "
                                   "SURGSIM_NEW_PASSWORD")
            import getpass

            password = getpass.getpass(f"new password for {args.username}: ")
            if getpass.getpass("again: ") != password:
                raise SurgsimError("the two passwords differ; nothing was changed")
        pid = records.add_user(args.username, password, args.role, display_name=args.display_name,
                               person_id=args.person_id, cohorts=args.cohort or (), access=access)
    finally:
        records.close()
    print(f"account {args.username}: {args.role} {pid}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from surgsim.records.db import Records

    records = Records(args.db)
    try:
        access = _signed_in(args, records)
        users = records.list_users(access=access)
    finally:
        records.close()
    if args.json:
        print(json.dumps(users, indent=2))
        return 0
    for u in users:
        print(f"{u['id']:<16} {u['username'] or '-':<16} {u['role']:<9} "
              f"{u['display_name'] or '':<24} {', '.join(u['cohorts'])}")
    print(f"{len(users)} person(s)")
    return 0


def cmd_users_cohorts(args: argparse.Namespace) -> int:
    from surgsim.records.db import Records

    records = Records(args.db)
    try:
        cohorts = records.list_cohorts(access=_signed_in(args, records))
    finally:
        records.close()
    if args.json:
        print(json.dumps([{"id": c.id, "name": c.name, "created_at": c.created_at.isoformat(),
                           "trainees": list(c.trainees), "educators": list(c.educators)}
                          for c in cohorts], indent=2))
        return 0
    for c in cohorts:
        print(f"{c.id:<16} {c.name:<24} {len(c.trainees)} trainee(s); educators: "
              f"{', '.join(c.educators) or '-'}")
        if c.trainees:
            print(f"    trainees: {', '.join(c.trainees)}")
    print(f"{len(cohorts)} cohort(s)")
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
    which = getattr(args, "which", "all")
    if which in ("all", "session", "app"):
        from surgsim.bench import run_bench

        run_bench(args)
    if which in ("all", "scoring"):
        from surgsim.bench import bench_scoring

        res = bench_scoring()
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            print(f"surgsim bench scoring: a {res['log_minutes']:.0f}-minute log ({res['samples']:,} samples): "
                  f"metrics {res['metrics_s'] * 1e3:.0f} ms, rubric score {res['score_s'] * 1e3:.0f} ms "
                  f"(goal < 200 ms; {res['score_vs_serialise']:.2f}x serialising the log, "
                  f"{res['serialise_s'] * 1e3:.0f} ms)")
    if which in ("all", "physics"):
        from surgsim.bench_physics import run_physics_bench

        run_physics_bench(json_out=args.json)
    if which in ("all", "anatomy"):
        from surgsim.bench_anatomy import run_bench_anatomy

        run_bench_anatomy(args)
    if which in ("all", "intubation"):
        from surgsim.bench_intubation import run_intubation_bench

        run_intubation_bench(args)
    return 0


def cmd_benchmark_derive(args: argparse.Namespace) -> int:
    """Run expert input logs headless and write rubric thresholds derived from them."""
    import math
    import os

    from surgsim.scenarios.load import load_scenario
    from surgsim.scoring.benchmark import derive_thresholds, format_table, rewrite_thresholds
    from surgsim.scoring.metrics import compute_metrics, critical_errors_in
    from surgsim.session.inputs import load_inputs
    from surgsim.session.session import Session, play

    path = _scenario_path(args.scenario)
    scenario = load_scenario(path)
    if scenario.procedure != "endovascular":
        raise SurgsimError(
            f"{path}: benchmark derive runs endovascular sessions; {scenario.procedure!r} "
            "scenarios cannot be simulated headless yet"
        )
    case = load_case_for(scenario, progress=_progress_printer(quiet=True))
    names = [m.metric for m in scenario.rubric.metrics]
    expert_metrics = []
    for log_path in args.logs:
        session = play(Session(scenario, case), load_inputs(Path(log_path)))
        log = session.log()
        errors = critical_errors_in(log, list(scenario.rubric.critical_errors))
        if errors:
            raise SurgsimError(
                f"{log_path}: the expert attempt made a critical error ({', '.join(errors)}); "
                "an attempt with a critical error cannot set the benchmark"
            )
        values = compute_metrics(log, scenario.metric_params(), names=names)
        if scenario.targets and not compute_metrics(
            log, scenario.metric_params(), names=["target_reached"]
        )["target_reached"]:
            raise SurgsimError(
                f"{log_path}: the expert attempt did not reach the scenario's target(s); "
                "use attempts that complete the task"
            )
        undefined = [k for k, v in values.items() if not math.isfinite(v)]
        if undefined:
            raise SurgsimError(
                f"{log_path}: the expert attempt leaves {', '.join(undefined)} undefined "
                "(target not reached?); use attempts that complete the task"
            )
        expert_metrics.append(values)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
        print(f"expert {log_path}: {shown}")
    derived = derive_thresholds(expert_metrics, names, margin=args.margin)
    before = {m.metric: (m.pass_, m.excellent) for m in scenario.rubric.metrics}
    print(format_table(derived, before))
    if args.dry_run:
        print("dry run: scenario file not changed")
        return 0
    text = path.read_text(encoding="utf-8")
    new_text = rewrite_thresholds(text, derived, source=str(path))
    tmp = path.with_name(f".{path.name}.derive-tmp")
    tmp.write_text(new_text, encoding="utf-8")
    try:
        load_scenario(tmp)  # the edited file must still be a valid scenario
    except SurgsimError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    print(f"wrote {len(derived)} thresholds from {len(expert_metrics)} expert attempt(s) into {path}")
    return 0


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surgsim",
        description="surgsim: patient-specific surgical training simulator (DICOM to a scored, "
        "recorded, replayable procedure)",
    )
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
    build = anatomy.add_parser("build", help="segment a series (or import a label map or surface) and write a surface mesh")
    build.add_argument("dir", nargs="?", help="DICOM folder, or a surface file (.stl, .obj, .vtp...) to import "
                       "(default: the bundled phantom)")
    build.add_argument("--preset", default="vessels", choices=["vessels", "airway", "bone", "skin"])
    build.add_argument("-o", "--output", required=True, help="surface file (.stl, .obj, .ply, .vtp, .vtk, .glb)")
    build.add_argument("--labelmap", help="use this label map (.nrrd, .nii, .nii.gz) instead of segmenting")
    build.add_argument("--label", help="label values or names to take from --labelmap, comma separated "
                       "(default: every non-zero voxel)")
    build.add_argument("--save-labelmap", help="also write the label map (.nrrd, .nii, .nii.gz) for 3D Slicer")
    build.add_argument("--series", help="series key from `surgsim dicom info` when the folder holds several")
    build.add_argument("--seed", help="a point inside the structure, x,y,z in mm (LPS)")
    build.add_argument("--triangles", type=int, default=100_000, help="triangle budget")
    build.add_argument("--units", default="m", choices=["m", "mm"], help="unit of the surface file (3D Slicer: mm)")
    build.add_argument("--report", help="write the quality report (JSON) here")
    build.add_argument("--json", action="store_true", help="print the quality report as JSON on stdout")
    build.add_argument("--no-cache", action="store_true", help="neither read nor write the anatomy cache")
    build.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    build.set_defaults(func=cmd_anatomy_build)

    case = sub.add_parser("case", help="the case library (patient or phantom anatomy scenarios use by id)")
    case_sub = case.add_subparsers(dest="case_command", required=True)
    cimp = case_sub.add_parser("import", help="import a contrast CT (DICOM folder) or a vessel surface as a case; "
                               "prints its id")
    cimp.add_argument("source", help="DICOM folder, or a surface file (.stl, .obj, .vtp...; metres or mm)")
    cimp.add_argument("--preset", default="vessels", choices=["vessels", "airway"],
                      help="vessels: a contrast CT for catheters; airway: a chest CT's trachea for intubation")
    cimp.add_argument("--series", help="series key from `surgsim dicom info` when the folder holds several")
    cimp.add_argument("--seed", help="a point inside the aorta (or trachea), x,y,z in mm (LPS)")
    cimp.add_argument("--orientation", default="auto", choices=["auto", "lps"],
                      help="surface files: rotate an arch that does not point up (auto) or keep the file's frame")
    cimp.add_argument("--json", action="store_true", help="print the case's manifest as JSON")
    cimp.add_argument("--quiet", action="store_true", help="print only the case id")
    cimp.set_defaults(func=cmd_case_import)
    clist = case_sub.add_parser("list", help="list the cases in the library")
    clist.add_argument("--json", action="store_true")
    clist.set_defaults(func=cmd_case_list)

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
    rep.add_argument("attempt", help="attempt id, or an attempt bundle file (records export --format json)")
    rep.add_argument("--db", help="database URL")
    _add_sign_in(rep)
    rep.set_defaults(func=cmd_replay)

    records = sub.add_parser("records", help="recorded attempts").add_subparsers(dest="records_command", required=True)
    rlist = records.add_parser("list", help="list attempts")
    rlist.add_argument("--trainee")
    rlist.add_argument("--db")
    _add_sign_in(rlist)
    rlist.set_defaults(func=cmd_records_list)
    rexp = records.add_parser("export", help="export attempts: csv, json bundle, xAPI, report")
    rexp.add_argument("--format", required=True, choices=["csv", "json", "xapi", "report"])
    rexp.add_argument("-o", "--output", help="folder (csv), file (json, xapi, report .html)")
    rexp.add_argument("--attempt", help="one attempt id (json: required)")
    rexp.add_argument("--trainee", help="opaque trainee id")
    rexp.add_argument("--cohort", help="cohort id (report)")
    rexp.add_argument("--pdf", help="report: also write this PDF")
    rexp.add_argument("--home-page", help="xapi: the lab's IRI for accounts (SURGSIM_XAPI_HOME_PAGE)")
    rexp.add_argument("--lrs", help="xapi: send to this LRS endpoint (SURGSIM_LRS_URL)")
    rexp.add_argument("--lrs-user", help="xapi: LRS key (SURGSIM_LRS_USER)")
    rexp.add_argument("--lrs-password", help="xapi: LRS secret (SURGSIM_LRS_PASSWORD)")
    rexp.add_argument("--queue", help="xapi: statement queue file (default: in the data folder)")
    rexp.add_argument("--db")
    _add_sign_in(rexp)
    rexp.set_defaults(func=cmd_records_export)
    rxapi = records.add_parser("xapi", help="the xAPI statement queue: waiting and failed statements "
                               "(admins); send now, retry failed")
    rxapi.add_argument("--retry-failed", nargs="*", metavar="ID",
                       help="queue the statements the LRS rejected again (all, or these ids) and send")
    rxapi.add_argument("--send", action="store_true", help="send the waiting statements now")
    rxapi.add_argument("--json", action="store_true")
    rxapi.add_argument("--lrs", help="the LRS endpoint (SURGSIM_LRS_URL); default: every endpoint")
    rxapi.add_argument("--lrs-user", help="LRS key (SURGSIM_LRS_USER)")
    rxapi.add_argument("--lrs-password", help="LRS secret (SURGSIM_LRS_PASSWORD)")
    rxapi.add_argument("--queue", help="statement queue file (default: in the data folder)")
    rxapi.add_argument("--db")
    _add_sign_in(rxapi)
    rxapi.set_defaults(func=cmd_records_xapi)

    users = sub.add_parser("users", help="local accounts").add_subparsers(dest="users_command", required=True)
    uadd = users.add_parser("add", help="add an account (admins; the first one needs no sign-in)")
    uadd.add_argument("username")
    uadd.add_argument("--role", default="trainee", choices=["trainee", "educator", "admin"])
    uadd.add_argument("--display-name", help="shown in the lab only, never exported")
    uadd.add_argument("--person-id", help="opaque id of an existing person (default: a new one)")
    uadd.add_argument("--cohort", action="append", help="cohort to join (repeatable)")
    uadd.add_argument("--new-password", help="the account's password (or SURGSIM_NEW_PASSWORD)")
    uadd.add_argument("--db")
    _add_sign_in(uadd)
    uadd.set_defaults(func=cmd_users_add)
    ulist = users.add_parser("list", help="list people and accounts")
    ulist.add_argument("--json", action="store_true")
    ulist.add_argument("--db")
    _add_sign_in(ulist)
    ulist.set_defaults(func=cmd_users_list)
    ucoh = users.add_parser("cohorts", help="list cohorts and their members (admins: all; educators: "
                            "theirs; trainees: their own)")
    ucoh.add_argument("--json", action="store_true")
    ucoh.add_argument("--db")
    _add_sign_in(ucoh)
    ucoh.set_defaults(func=cmd_users_cohorts)

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
    bench.add_argument("which", nargs="?", default="all", choices=["all", "session", "app", "scoring", "physics", "anatomy",
                                                                "intubation"],
                       help="which benchmark (default all): session and start-up, scoring, physics, anatomy, "
                            "intubation (airway physics, laryngoscope view, app memory)")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--seconds", type=float, default=5.0, help="simulated seconds of the session benchmark")
    bench.add_argument("--no-gui", action="store_true", help="skip the window start-up measurement")
    bench.add_argument("--frames", type=int, default=60, help="frames rendered by the intubation benchmark")
    bench.set_defaults(func=cmd_bench)

    benchmark = sub.add_parser("benchmark", help="expert-derived benchmarks").add_subparsers(
        dest="benchmark_command", required=True)
    derive = benchmark.add_parser(
        "derive", help="run expert input logs headless and set the rubric thresholds from them")
    derive.add_argument("--scenario", required=True, help="scenario file or bundled id (edited in place)")
    derive.add_argument("logs", nargs="+", metavar="LOG", help="expert input logs (YAML or JSON)")
    derive.add_argument("--margin", type=float, default=0.5,
                        help="pass mark this fraction worse than the expert mean (default 0.5; "
                             "force metrics use the experts' 95th percentile)")
    derive.add_argument("--dry-run", action="store_true", help="print the table, do not write the file")
    derive.set_defaults(func=cmd_benchmark_derive)
    return parser


def _add_sign_in(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="sign in as this account (or SURGSIM_USER)")
    p.add_argument("--password", help="its password (or SURGSIM_PASSWORD)")


def add_app_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="scenario file or bundled id")
    p.add_argument("--trainee", default="guest", help="opaque trainee id")
    p.add_argument("--db", help="database URL")
    p.add_argument("--screenshot", help="save a screenshot of the window here after start-up")
    p.add_argument("--quit-after", type=float, help="close the window after this many seconds")
    p.add_argument("--report-startup", action="store_true", help="print start-up time and memory as JSON")
    p.add_argument("--lab", action="store_true",
                   help="open the lab's records window (sign-in, learning curves, cohort dashboard) instead")


def _version() -> str:
    from surgsim import __version__

    return f"surgsim {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"app", "dicom", "anatomy", "scenario", "run", "replay", "records", "physiology",
                "bench", "users", "benchmark", "case"}
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
