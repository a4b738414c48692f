"""Import wizard: DICOM folder -> series -> slice previews and preset -> build -> 3D result and report -> case.

The result page saves the anatomy files (surface, label map, centerlines,
report) and, for the vessels preset, saves the series as a simulation case in
the case library (:func:`surgsim.cases.library.import_dicom_case`), showing the
case id scenarios refer to (``case: {case_id: ...}``); for the airway preset, an
airway case (the measured trachea) that intubation scenarios name with
``case: {phantom: airway-adult, trachea_case_id: ...}``.

The build runs :func:`surgsim.anatomy.pipeline.build_anatomy` in a worker
thread (``QThread``) with a progress bar and a Cancel button (a
``threading.Event`` the pipeline checks between stages and while slices load).
Every error is shown on the page, never as a crash.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from surgsim.errors import SurgsimError

PRESETS = ("vessels", "airway", "bone", "skin")
PREVIEW_SIZE = 220
WINDOW_HU = (-160.0, 240.0)


def slice_image(plane: np.ndarray, aspect: float, window: tuple[float, float] = WINDOW_HU) -> QImage:
    """Greyscale QImage of a 2D slice (rows top to bottom), windowed in HU.

    Parameters
    ----------
    plane : (rows, cols) float
    aspect : float
        Physical row spacing / column spacing (the image is stretched to it).
    """
    lo, hi = window
    img = np.clip((np.asarray(plane, dtype=np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    h, w = img.shape
    q = QImage(img.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return q.scaled(w, max(1, int(round(h * aspect))), Qt.AspectRatioMode.IgnoreAspectRatio,
                    Qt.TransformationMode.SmoothTransformation)


def preview_planes(volume) -> dict[str, tuple[np.ndarray, float]]:
    """Middle axial, coronal and sagittal planes of a volume, displayed radiologically.

    Returns
    -------
    dict
        ``name -> (plane (rows, cols), row/column aspect)``; superior is up in the
        coronal and sagittal views, anterior up in the axial view.
    """
    a = np.asarray(volume.array)
    nk, nj, ni = a.shape
    si, sj, sk = (float(v) for v in volume.spacing)
    w = np.asarray(volume.world_from_voxel)
    axial = a[nk // 2]
    coronal = a[:, nj // 2, :]
    sagittal = a[:, :, ni // 2]
    if w[2, 2] > 0:  # k goes superior: flip so superior is at the top
        coronal = coronal[::-1]
        sagittal = sagittal[::-1]
    return {
        "axial": (axial, sj / si),
        "coronal": (coronal, sk / si),
        "sagittal": (sagittal, sk / sj),
    }


# --------------------------------------------------------------------------- worker


class BuildWorker(QObject):
    """Runs build_anatomy off the GUI thread; emits progress, then finished or failed."""

    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, source, preset: str, seed=None, cancel: threading.Event | None = None,
                 target_triangles: int = 100_000):
        super().__init__()
        self.source = source
        self.preset = preset
        self.seed = seed
        self.cancel = cancel or threading.Event()
        self.target_triangles = target_triangles

    def run(self) -> None:
        from surgsim.anatomy.pipeline import build_anatomy

        try:
            result = build_anatomy(self.source, self.preset, seed=self.seed, with_distance=False,
                                   target_triangles=self.target_triangles,
                                   progress=lambda f, m: self.progress.emit(f, m), cancel=self.cancel)
        except SurgsimError as exc:
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # never crash the GUI
            self.failed.emit(f"unexpected error: {type(exc).__name__}: {exc}")
            return
        self.finished.emit(result)


class CaseWorker(QObject):
    """Runs import_dicom_case off the GUI thread; emits progress, then finished(case id) or failed."""

    progress = Signal(float, str)
    finished = Signal(str)
    failed = Signal(str)

    def __init__(self, folder, series_key: str | None, preset: str, seed=None):
        super().__init__()
        self.folder = folder
        self.series_key = series_key
        self.preset = preset
        self.seed = seed

    def run(self) -> None:
        from surgsim.cases.library import import_dicom_case

        try:
            case_id = import_dicom_case(self.folder, preset=self.preset, series=self.series_key, seed=self.seed,
                                        progress=lambda f, m: self.progress.emit(f, m))
        except SurgsimError as exc:
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # never crash the GUI
            self.failed.emit(f"unexpected error: {type(exc).__name__}: {exc}")
            return
        self.finished.emit(case_id)


# --------------------------------------------------------------------------- pages


class FolderPage(QWizardPage):
    def __init__(self, wizard: ImportWizard):
        super().__init__()
        self.w = wizard
        self.setTitle("DICOM folder")
        self.setSubTitle("Choose the folder holding the series (subfolders are searched).")
        self.edit = QLineEdit()
        self.edit.textChanged.connect(lambda _t: self.completeChanged.emit())
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020")
        row = QHBoxLayout()
        row.addWidget(self.edit)
        row.addWidget(browse)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.error)
        lay.addStretch(1)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "DICOM folder", self.edit.text())
        if folder:
            self.edit.setText(folder)

    def isComplete(self) -> bool:  # noqa: N802 (Qt API)
        return Path(self.edit.text().strip()).is_dir() if self.edit.text().strip() else False

    def validatePage(self) -> bool:  # noqa: N802 (Qt API)
        from surgsim.dicom.discover import discover

        try:
            self.w.discovery = discover(Path(self.edit.text().strip()))
        except SurgsimError as exc:
            self.error.setText(str(exc))
            return False
        if not self.w.discovery.series:
            from surgsim.dicom.discover import format_listing

            self.error.setText(format_listing(self.w.discovery))
            return False
        self.error.clear()
        return True


class SeriesPage(QWizardPage):
    def __init__(self, wizard: ImportWizard):
        super().__init__()
        self.w = wizard
        self.setTitle("Series and preset")
        self.setSubTitle("Pick the series, check the slices, choose what to build.")
        self.series_list = QListWidget()
        self.series_list.currentRowChanged.connect(self._select)
        self.skipped = QPlainTextEdit()
        self.skipped.setReadOnly(True)
        self.skipped.setMaximumHeight(90)
        self.previews = {name: QLabel() for name in ("axial", "coronal", "sagittal")}
        grid = QGridLayout()
        for n, (name, label) in enumerate(self.previews.items()):
            label.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: black")
            grid.addWidget(QLabel(name), 0, n)
            grid.addWidget(label, 1, n)
        self.preset = QComboBox()
        self.preset.addItems(PRESETS)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("optional: x,y,z in mm (LPS) inside the structure")
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020")
        form = QFormLayout()
        form.addRow("Preset", self.preset)
        form.addRow("Seed", self.seed)
        lay = QVBoxLayout(self)
        lay.addWidget(self.series_list)
        lay.addWidget(QLabel("Skipped files"))
        lay.addWidget(self.skipped)
        lay.addLayout(grid)
        lay.addLayout(form)
        lay.addWidget(self.error)

    def initializePage(self) -> None:  # noqa: N802 (Qt API)
        d = self.w.discovery
        self.series_list.clear()
        for s in d.series:
            text = f"{s.key}  {s.description}  ({s.n_files} files)"
            if s.warnings:
                text += "  -- " + "; ".join(s.warnings)
            self.series_list.addItem(QListWidgetItem(text))
        lines = [f"{sk.path.name}: {sk.reason}" for sk in d.skipped]
        self.skipped.setPlainText("\n".join(lines) if lines else "(none)")
        if d.series:
            self.series_list.setCurrentRow(0)

    def _select(self, row: int) -> None:
        from surgsim.dicom.load import load_series

        self.w.volume = None
        self.completeChanged.emit()
        if row < 0 or row >= len(self.w.discovery.series):
            return
        info = self.w.discovery.series[row]
        self.w.series = info
        try:
            self.w.volume = load_series(info)
        except SurgsimError as exc:
            self.error.setText(str(exc))
            for label in self.previews.values():
                label.clear()
            return
        self.error.clear()
        for name, (plane, aspect) in preview_planes(self.w.volume).items():
            img = slice_image(plane, aspect)
            self.previews[name].setPixmap(QPixmap.fromImage(img).scaled(
                PREVIEW_SIZE, PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation))
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 (Qt API)
        return self.w.volume is not None

    def validatePage(self) -> bool:  # noqa: N802 (Qt API)
        text = self.seed.text().strip()
        self.w.seed = None
        if text:
            try:
                values = [float(v) for v in text.split(",")]
                if len(values) != 3:
                    raise ValueError
            except ValueError:
                self.error.setText(f"seed {text!r}: expected three numbers x,y,z in millimetres")
                return False
            self.w.seed = np.asarray(values) * 1e-3
        self.w.preset = self.preset.currentText()
        return True


class BuildPage(QWizardPage):
    def __init__(self, wizard: ImportWizard):
        super().__init__()
        self.w = wizard
        self.setTitle("Building")
        self.setSubTitle("Segmentation, surface, centerlines and the quality report.")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.retry_button = QPushButton("Build again")
        self.retry_button.clicked.connect(self.start)
        self.retry_button.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.cancel_button)
        row.addWidget(self.retry_button)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addLayout(row)
        lay.addStretch(1)
        self.thread: QThread | None = None
        self.worker: BuildWorker | None = None
        self.cancel_event = threading.Event()

    def initializePage(self) -> None:  # noqa: N802 (Qt API)
        self.start()

    def start(self) -> None:
        if self.running:
            return
        self.w.anatomy = None
        self.completeChanged.emit()
        self.cancel_event = threading.Event()
        self.bar.setValue(0)
        self.status.setText("starting")
        self.cancel_button.setEnabled(True)
        self.retry_button.setEnabled(False)
        self.thread = QThread()
        self.worker = BuildWorker(self.w.volume, self.w.preset, seed=self.w.seed, cancel=self.cancel_event,
                                  target_triangles=self.w.target_triangles)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.progress.connect(self._progress)
        self.worker.finished.connect(self._finished)
        self.worker.failed.connect(self._failed)
        self.worker.finished.connect(self.thread.quit)
        self.worker.failed.connect(self.thread.quit)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def cancel(self) -> None:
        self.cancel_event.set()
        self.status.setText("cancelling...")
        self.cancel_button.setEnabled(False)

    def _progress(self, fraction: float, message: str) -> None:
        self.bar.setValue(int(round(fraction * 1000)))
        self.status.setText(message)

    def _finished(self, result) -> None:
        self.w.anatomy = result
        self.bar.setValue(1000)
        self.status.setText("done" + (" (from the cache)" if result.from_cache else ""))
        self.cancel_button.setEnabled(False)
        self.completeChanged.emit()

    def _failed(self, message: str) -> None:
        self.status.setText(message)
        self.cancel_button.setEnabled(False)
        self.retry_button.setEnabled(True)

    def wait(self, ms: int = 60_000) -> None:
        """Block until the worker thread ends (used on close)."""
        if self.thread is not None:
            self.thread.wait(ms)

    def isComplete(self) -> bool:  # noqa: N802 (Qt API)
        return self.w.anatomy is not None


class ResultPage(QWizardPage):
    def __init__(self, wizard: ImportWizard):
        super().__init__()
        self.w = wizard
        self.setTitle("Result")
        self.setSubTitle("Check the surface and the quality report, then save the case.")
        self.view_box = QVBoxLayout()
        self.plotter = None
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.name = QLineEdit()
        self.name.setPlaceholderText("case name (default: the opaque case id)")
        self.save_button = QPushButton("Save case")
        self.save_button.clicked.connect(self.save)
        self.saved = QLabel()
        self.saved.setWordWrap(True)
        self.case_button = QPushButton("Save as case for scenarios")
        self.case_button.setToolTip("Add the series to the case library so scenarios can use it: vessels for "
                                    "catheters, or (airway preset) the patient's measured trachea for "
                                    "intubation scenarios")
        self.case_button.clicked.connect(self.save_as_case)
        self.case_bar = QProgressBar()
        self.case_bar.setRange(0, 1000)
        self.case_bar.setVisible(False)
        self.case_status = QLabel()
        self.case_status.setWordWrap(True)
        self.case_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.case_thread: QThread | None = None
        self.case_worker: CaseWorker | None = None
        row = QHBoxLayout()
        row.addWidget(self.name)
        row.addWidget(self.save_button)
        row.addWidget(self.case_button)
        top = QHBoxLayout()
        holder = QWidget()
        holder.setLayout(self.view_box)
        holder.setMinimumSize(320, 260)
        top.addWidget(holder, 3)
        top.addWidget(self.report, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(row)
        lay.addWidget(self.saved)
        lay.addWidget(self.case_bar)
        lay.addWidget(self.case_status)

    def initializePage(self) -> None:  # noqa: N802 (Qt API)
        from surgsim.anatomy.report import format_report
        from surgsim.cases.library import IMPORT_PRESETS

        result = self.w.anatomy
        self.report.setPlainText(format_report(result.report) + "\n\n" + json.dumps(result.report, indent=1))
        self.saved.clear()
        self.case_bar.setVisible(False)
        importable = result.preset in IMPORT_PRESETS
        self.case_button.setEnabled(importable and not self.case_running)
        self.case_status.setText("" if importable else
                                 "Only the vessels preset (catheter cases) and the airway preset (a trachea for "
                                 "intubation scenarios) make library cases.")
        if self.plotter is None:
            from pyvistaqt import QtInteractor

            self.plotter = QtInteractor(self)
            self.view_box.addWidget(self.plotter.interactor)
        self.plotter.clear()
        color = {"vessels": "firebrick", "airway": "lightskyblue", "bone": "ivory", "skin": "peachpuff"}
        self.plotter.add_mesh(result.mesh, color=color.get(result.preset, "white"), smooth_shading=True)
        self.plotter.reset_camera()
        self.plotter.render()

    def save(self) -> None:
        from surgsim.anatomy.pipeline import save_case

        try:
            folder = save_case(self.w.anatomy, self.name.text().strip() or None, root=self.w.cases_root)
        except SurgsimError as exc:
            self.saved.setText(str(exc))
            return
        self.w.saved_case = folder
        self.saved.setText(f"saved to {folder}")

    @property
    def case_running(self) -> bool:
        return self.case_thread is not None and self.case_thread.isRunning()

    def save_as_case(self) -> None:
        """Import the chosen series into the case library in a worker thread."""
        if self.case_running or self.w.series is None:
            return
        self.w.case_id = None
        self.case_button.setEnabled(False)
        self.case_bar.setValue(0)
        self.case_bar.setVisible(True)
        self.case_status.setText("saving the case...")
        folder = Path(self.w.folder_page.edit.text().strip())
        self.case_thread = QThread()
        self.case_worker = CaseWorker(folder, self.w.series.key, self.w.anatomy.preset, seed=self.w.seed)
        self.case_worker.moveToThread(self.case_thread)
        self.case_thread.started.connect(self.case_worker.run)
        self.case_worker.progress.connect(self._case_progress)
        self.case_worker.finished.connect(self._case_saved)
        self.case_worker.failed.connect(self._case_failed)
        self.case_worker.finished.connect(self.case_thread.quit)
        self.case_worker.failed.connect(self.case_thread.quit)
        self.case_thread.start()

    def _case_progress(self, fraction: float, message: str) -> None:
        self.case_bar.setValue(int(round(fraction * 1000)))
        self.case_status.setText(message)

    def _case_saved(self, case_id: str) -> None:
        from surgsim.cases.library import read_manifest

        self.w.case_id = case_id
        self.case_bar.setValue(1000)
        manifest = read_manifest(case_id)
        if manifest["source"].get("preset") == "airway":
            self.case_status.setText(
                f"Saved as airway case {case_id}: {manifest['report'].get('summary', '')}. Use it in an "
                f"intubation scenario as:  case: {{phantom: airway-adult, trachea_case_id: {case_id}}}")
        else:
            self.case_status.setText(f"Saved as case {case_id}. Use it in a scenario as:  case: {{case_id: {case_id}}}")
        self.case_button.setEnabled(True)

    def _case_failed(self, message: str) -> None:
        self.case_status.setText(message)
        self.case_button.setEnabled(True)

    def wait(self, ms: int = 120_000) -> None:
        """Block until a case import ends (used on close)."""
        if self.case_thread is not None:
            self.case_thread.wait(ms)

    def cleanup(self) -> None:
        self.wait()
        if self.plotter is not None:
            self.plotter.close()
            self.plotter = None


class ImportWizard(QWizard):
    """DICOM import wizard.

    Parameters
    ----------
    folder : Path, optional
        Pre-filled DICOM folder.
    cases_root : Path, optional
        Where cases are saved (default ``data_dir()/cases``).
    target_triangles : int
        Surface triangle budget.
    """

    def __init__(self, folder: Path | str | None = None, cases_root: Path | None = None,
                 target_triangles: int = 100_000, parent=None):
        super().__init__(parent)
        self.setWindowTitle("surgsim: import anatomy from DICOM")
        self.discovery = None
        self.series = None
        self.volume = None
        self.preset = "vessels"
        self.seed = None
        self.anatomy = None
        self.saved_case: Path | None = None
        self.case_id: str | None = None
        self.cases_root = cases_root
        self.target_triangles = target_triangles
        self.folder_page = FolderPage(self)
        self.series_page = SeriesPage(self)
        self.build_page = BuildPage(self)
        self.result_page = ResultPage(self)
        for page in (self.folder_page, self.series_page, self.build_page, self.result_page):
            self.addPage(page)
        if folder is not None:
            self.folder_page.edit.setText(str(folder))
        self.resize(900, 700)

    def reject(self) -> None:
        self.build_page.cancel_event.set()
        self.build_page.wait()
        super().reject()

    def done(self, r: int) -> None:
        self.build_page.cancel_event.set()
        self.build_page.wait()
        self.result_page.cleanup()
        super().done(r)


def run_import_wizard(folder: Path | str | None = None) -> int:
    """Open the wizard as a stand-alone window; returns the dialog code."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    wizard = ImportWizard(folder)
    wizard.show()
    return app.exec()
