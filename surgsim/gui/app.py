"""Start the Qt application: load the scenario and case, open the main window."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil


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
    window.show()
    window.plotter.render()
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
        print(json.dumps({"first_frame_s": first_frame, "rss_bytes": rss}), flush=True)
    if args.screenshot:
        def shoot() -> None:
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            # grab the screen, not the widget: the VTK view is OpenGL and QWidget.grab misses it
            window.screen().grabWindow(window.winId()).save(str(args.screenshot))
        QTimer.singleShot(300, shoot)
    if args.quit_after is not None:
        QTimer.singleShot(int(max(args.quit_after, 0.35) * 1000), window.close)
    code = app.exec()
    if records is not None:
        records.close()
    return int(code)


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
        records.close()
