"""Import wizard under Xvfb: folder -> series -> previews -> build in a thread -> report -> saved case."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.gui

if not os.environ.get("DISPLAY"):
    pytest.skip("GUI tests need a display: run them under xvfb-run", allow_module_level=True)

import numpy as np  # noqa: E402
from PySide6.QtWidgets import QWizard  # noqa: E402

from surgsim.gui.import_wizard import ImportWizard, preview_planes  # noqa: E402


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from surgsim.cases.phantom import write_phantom_series

    folder = tmp_path_factory.mktemp("wizard") / "study"
    write_phantom_series(folder / "dicom", "default", (3e-3, 3e-3, 3e-3), seed=0)
    (folder / "README.txt").write_text("not a DICOM file")  # listed as skipped
    return folder


@pytest.fixture
def wizard(qtbot, tmp_path, series):
    w = ImportWizard(series, cases_root=tmp_path / "cases", target_triangles=10_000)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.build_page.cancel_event.set()
    w.build_page.wait()


def _to_series_page(qtbot, w):
    assert w.folder_page.isComplete()
    w.next()
    assert w.currentPage() is w.series_page
    assert w.series_page.series_list.count() == 1
    assert "README.txt" in w.series_page.skipped.toPlainText()
    for label in w.series_page.previews.values():
        assert label.pixmap() is not None and not label.pixmap().isNull()


def test_wizard_builds_shows_the_report_and_saves_a_case(qtbot, wizard):
    w = wizard
    _to_series_page(qtbot, w)
    w.series_page.preset.setCurrentText("vessels")
    w.next()
    assert w.currentPage() is w.build_page
    qtbot.waitUntil(w.build_page.isComplete, timeout=90_000)
    assert w.build_page.bar.value() == 1000
    w.next()
    assert w.currentPage() is w.result_page
    text = w.result_page.report.toPlainText()
    assert "watertight" in text and "arch type I" in text
    assert w.result_page.plotter is not None
    w.result_page.name.setText("phantom-vessels")
    w.result_page.save_button.click()
    assert w.saved_case is not None and (w.saved_case / "surface.vtp").is_file()
    assert (w.saved_case / "case.json").is_file()
    # save as a case scenarios can use: the case library, in a worker thread, showing the id
    assert w.result_page.case_button.isEnabled()
    w.result_page.case_button.click()
    qtbot.waitUntil(lambda: w.case_id is not None or "error" in w.result_page.case_status.text(),
                    timeout=120_000)
    assert w.case_id is not None, w.result_page.case_status.text()
    assert w.case_id in w.result_page.case_status.text() and "case_id" in w.result_page.case_status.text()
    from surgsim.cases.library import load_case

    case = load_case(w.case_id)
    assert {"aorta", "left_common_carotid"} <= set(case.labels)


def test_cancel_stops_the_build_without_crashing(qtbot, wizard):
    w = wizard
    _to_series_page(qtbot, w)
    w.series_page.preset.setCurrentText("airway")
    w.series_page.seed.setText("0,0,0")  # a seed makes a fresh cache entry
    w.next()
    w.build_page.cancel_button.click()
    qtbot.waitUntil(lambda: not w.build_page.running, timeout=60_000)
    assert "cancelled" in w.build_page.status.text()
    assert not w.build_page.isComplete()
    assert w.build_page.retry_button.isEnabled()
    w.reject()
    assert w.result() == QWizard.DialogCode.Rejected


def test_bad_seed_and_empty_folder_are_shown_on_the_page(qtbot, wizard, tmp_path):
    w = wizard
    _to_series_page(qtbot, w)
    w.series_page.seed.setText("1,2")
    w.next()
    assert w.currentPage() is w.series_page
    assert "seed" in w.series_page.error.text()
    w.back()
    empty = tmp_path / "empty"
    empty.mkdir()
    w.folder_page.edit.setText(str(empty))
    w.next()
    assert w.currentPage() is w.folder_page
    assert "No loadable image series" in w.folder_page.error.text()


def test_preview_planes_put_superior_up():
    from surgsim.dicom.volume import Volume

    a = np.zeros((4, 5, 6), dtype=np.int16)
    a[3] = 100  # the most superior slice (k up)
    w = np.diag([1e-3, 1e-3, 2e-3, 1.0])
    planes = preview_planes(Volume(array=a, world_from_voxel=w))
    coronal, aspect = planes["coronal"]
    assert coronal.shape == (4, 6) and aspect == pytest.approx(2.0)
    assert (coronal[0] == 100).all()  # top row is superior


def _built(qtbot, w, preset: str):
    """Through the series page with ``preset`` and the build, to the result page."""
    _to_series_page(qtbot, w)
    w.series_page.preset.setCurrentText(preset)
    w.next()
    qtbot.waitUntil(w.build_page.isComplete, timeout=90_000)
    w.next()
    assert w.currentPage() is w.result_page


def test_wizard_saves_an_airway_case_with_the_measured_trachea(qtbot, wizard):
    w = wizard
    _built(qtbot, w, "airway")
    assert w.result_page.case_button.isEnabled()
    w.result_page.case_button.click()
    qtbot.waitUntil(lambda: w.case_id is not None or "error" in w.result_page.case_status.text(),
                    timeout=120_000)
    assert w.case_id is not None, w.result_page.case_status.text()
    status = w.result_page.case_status.text()
    assert "airway case" in status and f"trachea_case_id: {w.case_id}" in status and "trachea" in status
    from surgsim.cases.library import load_trachea

    assert 0.005 < load_trachea(w.case_id).radius_m < 0.012  # the phantom's trachea


def test_bone_preset_is_not_a_library_case(qtbot, wizard):
    w = wizard
    _built(qtbot, w, "bone")
    assert not w.result_page.case_button.isEnabled()
    assert "airway preset" in w.result_page.case_status.text()
