"""Start the Qt application: load the scenario and case, open the main window.

When the last window closes, the app waits (at most :data:`RECORDS_SHUTDOWN_TIMEOUT_S`) for the
records thread to finish saving (a finished or abandoned attempt is written there) before it
closes the database; an attempt still not written then stays in its journal and is stored the
next time records open.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil

#: Longest wait (seconds) at exit for the records thread to finish writing attempts.
RECORDS_SHUTDOWN_TIMEOUT_S = 30.0


def _process_age() -> float:
    """Seconds since this process started (interpreter start-up included)."""
    return time.time() - psutil.Process().create_time()


def run_app(args) -> int:
    """Run the simulator window until it is closed (or ``--quit-after`` passes)."""
    os.environ.setdefault("VTK_SMP_BACKEND_IN_USE", "STDThread")
    os.environ.setdefault("QT_API", "pyside6")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog

    from surgsim.cli import _scenario_path, load_case_for
    from surgsim.errors import SurgsimError
    from surgsim.gui.main_window import MainWindow
    from surgsim.scenarios.load import load_scenario

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("surgsim")
    if getattr(args, "lab", False):
        return _run_lab(app, args)
    imports_done = _process_age()

    try:
        scenario = load_scenario(_scenario_path(args.scenario))
        dialog = QProgressDialog("Preparing the anatomy...", "", 0, 100)
        dialog.setCancelButton(None)
        dialog.setMinimumDuration(500)

        def progress(fraction: float, message: str) -> None:
            dialog.setLabelText(message)
            dialog.setValue(int(fraction * 100))
            app.processEvents()

        window = None
        if scenario.procedure == "intubation":  # the airway session builds its own head-and-neck phantom
            from surgsim.gui.airway_window import IntubationWindow

            window = IntubationWindow(scenario, trainee_id=args.trainee, records=None, progress=progress)
        else:
            case = load_case_for(scenario, progress=progress)
        dialog.close()
    except SurgsimError as exc:
        QMessageBox.critical(None, "surgsim", str(exc))
        print(f"surgsim: error: {exc}", file=sys.stderr)
        return 2

    if window is None:
        window = MainWindow(scenario, case, trainee_id=args.trainee, records=None)
    window_built = _process_age()
    window.show()
    view = window.plotter  # a QtInteractor, or an OffscreenView (the intubation window)
    view.redraw() if hasattr(view, "redraw") else view.render()
    app.processEvents()
    first_frame = _process_age()

    # The database is only needed when an attempt ends: open it after the first frame.
    from surgsim.records.db import Records

    records = None
    try:
        records = Records(args.db)
        window.records = records
    except SurgsimError as exc:
        print(f"surgsim: warning: attempts will not be recorded: {exc}", file=sys.stderr)
        window.statusBar().showMessage(f"attempts will not be recorded: {exc}")

    if args.report_startup:
        rss = psutil.Process().memory_info().rss
        report = {"first_frame_s": first_frame, "rss_bytes": rss, "imports_done_s": imports_done,
                  "window_built_s": window_built}
        report.update({f"window_{k}": v for k, v in getattr(window, "startup_times", {}).items()})
        print(json.dumps(report), flush=True)
    if args.screenshot:
        def shoot() -> None:
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            # grab the screen, not the widget: the VTK view is OpenGL and QWidget.grab misses it
            window.screen().grabWindow(window.winId()).save(str(args.screenshot))
        QTimer.singleShot(300, shoot)
    if args.quit_after is not None:
        QTimer.singleShot(int(max(args.quit_after, 0.35) * 1000), window.close)
    code = app.exec()
    _close_records(records)
    return int(code)


def _close_records(records) -> bool:
    """Close the database once the records thread is idle (bounded wait); False when it was left open.

    Closing it under a running save would break that save; a save that outlasts the wait keeps its
    attempt in the journal, stored the next time records open.
    """
    if records is None:
        return True
    from surgsim.gui.records_worker import wait_for_records_jobs

    if not wait_for_records_jobs(int(RECORDS_SHUTDOWN_TIMEOUT_S * 1000)):
        print(f"surgsim: warning: the lab database is still being written after "
              f"{RECORDS_SHUTDOWN_TIMEOUT_S:.0f} s; the attempt stays in its journal and is stored "
              "the next time surgsim opens the records", file=sys.stderr)
        return False
    records.close()
    return True


def _run_lab(app, args) -> int:
    """The records window alone (for the lab's educators and admins)."""
    from PySide6.QtWidgets import QMessageBox

    from surgsim.errors import SurgsimError
    from surgsim.gui.records_view import open_records_window
    from surgsim.records.db import Records

    try:
        records = Records(args.db)
    except SurgsimError as exc:
        QMessageBox.critical(None, "surgsim", str(exc))
        print(f"surgsim: error: {exc}", file=sys.stderr)
        return 2
    window = open_records_window(records)
    if args.quit_after is not None:
        from PySide6.QtCore import QTimer

        QTimer.singleShot(int(max(args.quit_after, 0.1) * 1000), window.close)
    try:
        return int(app.exec())
    finally:
        _close_records(records)
