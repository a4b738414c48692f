"""The records window under Xvfb: sign-in, a trainee's own page, the educator's cohort
dashboard (release toggle, debrief notes, exports) and roles as the records layer
enforces them; the database is only ever read or written on the records thread, a
slow database leaves the window responsive and an unreachable one is reported.

Attempts are scored synthetic logs (tests/test_records.make_log), not simulations.
Every records call runs on the records thread, so the tests wait for the window to
be idle (``settle``) before looking.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

pytestmark = pytest.mark.gui

if not os.environ.get("DISPLAY"):
    pytest.skip(
        "GUI tests need a display: run them under Xvfb (xvfb-run -a .venv/bin/python -m pytest ...)",
        allow_module_level=True,
    )

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QDialog  # noqa: E402
from test_records import make_log  # noqa: E402

from surgsim.gui.records_dashboard import CohortDashboard, summarise  # noqa: E402
from surgsim.gui.records_trainee import TraineePage  # noqa: E402
from surgsim.gui.records_view import SignInDialog, open_records_window  # noqa: E402
from surgsim.gui.records_worker import UNREACHABLE, wait_for_records_jobs  # noqa: E402
from surgsim.paths import SCENARIOS_DIR  # noqa: E402
from surgsim.records import AccessDeniedError, Records  # noqa: E402
from surgsim.records.export import load_bundle  # noqa: E402
from surgsim.scenarios import load_scenario  # noqa: E402
from surgsim.scoring import score  # noqa: E402


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """argon2id with a small cost: the same code path, much faster."""
    import surgsim.records.auth as auth

    monkeypatch.setattr(auth, "HASH_PARAMETERS", {"time_cost": 1, "memory_cost": 1024, "parallelism": 1})


@pytest.fixture(scope="module")
def scenarios():
    """The committed default scenario and a variant of it under another id (a 2nd column)."""
    lcca = load_scenario(SCENARIOS_DIR / "catheter-lcca-basic.yaml")
    variant = lcca.model_copy(update={"id": "catheter-lcca-variant", "title": "variant"})
    assert variant.content_hash() != lcca.content_hash()
    return [lcca, variant]


def add(records, scenario, who, seed, **kw):
    log = make_log(scenario, seed=seed, perforate=kw.pop("perforate", False))
    return records.add_attempt(who, scenario, log, score(log, scenario), **kw)


class Lab:
    """An admin; an educator of C1 with trainees A and B; trainee C in cohort C2."""

    def __init__(self, records, scenarios):
        lcca, variant = scenarios
        self.records = records
        records.add_user("admin", "admin-pass", "admin")
        self.edu = records.add_user("edu", "edu-pass1", "educator", cohorts=["C1"])
        self.a = records.add_user("ta", "ta-pass12", "trainee", cohorts=["C1"], display_name="Trainee A")
        self.b = records.add_user("tb", "tb-pass12", "trainee", cohorts=["C1"])
        self.c = records.add_user("tc", "tc-pass12", "trainee", cohorts=["C2"])
        self.a_practice = [
            add(records, lcca, self.a, 1),
            add(records, lcca, self.a, 2, perforate=True),
            add(records, lcca, self.a, 3),
            add(records, variant, self.a, 4),
        ]
        self.a_exam = add(records, lcca, self.a, 5, mode="assessment")  # not released yet
        self.b_attempts = [add(records, lcca, self.b, 6), add(records, variant, self.b, 7)]
        self.c_attempts = [add(records, lcca, self.c, 8)]
        records.set_debrief(self.a_practice[2], "Good wire control; slow down at the arch.")


@pytest.fixture
def records(tmp_path):
    r = Records(f"sqlite:///{tmp_path / 'lab.db'}", journal_dir=tmp_path / "journal")
    yield r
    r.close()


@pytest.fixture
def lab(records, scenarios):
    return Lab(records, scenarios)


def settle(qtbot, *widgets, timeout=15000):
    """Wait until no records job of ``widgets`` runs (their results are shown)."""
    qtbot.waitUntil(lambda: not any(w.busy for w in widgets), timeout=timeout)


def sign_in(qtbot, window, user, password):
    settle(qtbot, window)
    form = window.sign_in_form
    form.user_edit.clear()
    qtbot.keyClicks(form.user_edit, user)
    qtbot.keyClicks(form.password_edit, password)
    qtbot.mouseClick(form.sign_in_button, Qt.MouseButton.LeftButton)
    settle(qtbot, window)


@pytest.fixture
def open_window(qtbot, records):
    windows = []

    def make(**kw):
        w = open_records_window(records, **kw)
        qtbot.addWidget(w)
        windows.append(w)
        settle(qtbot, w)
        return w

    yield make
    for w in windows:
        w.close()
    assert wait_for_records_jobs()


@pytest.fixture
def gui_thread_calls(records, monkeypatch):
    """Records calls made on the GUI thread while ``watching`` is set (should be none)."""
    calls = []
    watching = threading.Event()
    for name in ("_read", "_write"):
        original = getattr(records, name)

        def wrapper(what, *args, _original=original, **kw):
            if watching.is_set() and threading.current_thread() is threading.main_thread():
                calls.append(what)
            return _original(what, *args, **kw)

        monkeypatch.setattr(records, name, wrapper)
    return calls, watching


def history_ids(page):
    return [page.history.item(i, 0).data(Qt.ItemDataRole.UserRole) for i in range(page.history.rowCount())]


# ------------------------------------------------------------------ sign-in


def test_a_wrong_password_is_a_clear_error(qtbot, lab, open_window):
    w = open_window()
    sign_in(qtbot, w, "ta", "not-the-password")
    err = w.sign_in_form.error
    assert err.isVisible()
    assert "sign-in failed for 'ta'" in err.text() and "wrong password" in err.text()
    assert not w.signed_in and w.stack.currentIndex() == 0 and w.tabs is None
    assert w.sign_in_form.password_edit.text() == ""  # cleared for the next try
    assert not w.sign_in_form.station_button.isVisible()  # accounts exist: no station
    w.sign_in_form.continue_as_station()
    settle(qtbot, w)
    assert not w.signed_in and "has accounts" in err.text()
    # then the right password works and the error goes away
    sign_in(qtbot, w, "ta", "ta-pass12")
    assert w.signed_in and w.access.person_id == lab.a and not err.isVisible()


def test_the_sign_in_dialog_returns_the_access_context(qtbot, lab, records):
    dialog = SignInDialog(records)
    qtbot.addWidget(dialog)
    dialog.form.user_edit.setText("edu")
    dialog.form.password_edit.setText("edu-pass1")
    settle(qtbot, dialog.form)
    assert dialog.form.try_sign_in()
    qtbot.waitUntil(lambda: dialog.result() == QDialog.DialogCode.Accepted, timeout=10000)
    assert dialog.access.role == "educator" and dialog.access.person_id == lab.edu
    assert dialog.station is False


def test_without_accounts_the_station_may_continue_and_sees_everything(
    qtbot, records, scenarios, open_window
):
    aid = add(records, scenarios[0], "T-solo", 1, mode="assessment")
    w = open_window()
    form = w.sign_in_form
    assert form.station_button.isVisible() and not form.user_edit.isEnabled()
    assert "no accounts" in form.note.text() and "station" in form.note.text()
    qtbot.mouseClick(form.station_button, Qt.MouseButton.LeftButton)
    settle(qtbot, w)
    assert w.signed_in and w.access is None and "Station" in w.who_label.text()
    d = w.dashboard
    assert d is not None and d.trainees == ["T-solo"]
    assert [a.id for a in d.shown] == [aid]  # unreleased, but the station sees it


# ------------------------------------------------------------------ trainee


def test_a_trainee_sees_only_their_released_attempts_and_curves(qtbot, lab, open_window, tmp_path):
    w = open_window()
    sign_in(qtbot, w, "ta", "ta-pass12")
    assert w.dashboard is None and w.findChildren(CohortDashboard) == []
    assert w.tabs.count() == 1
    page = w.trainee_page
    assert "Trainee A" in page.heading.text()
    assert history_ids(page) == lab.a_practice  # not the unreleased exam, nobody else's
    assert page.history.columnCount() == 6  # no "released" column for trainees
    # learning curve of the first scenario: 3 released lcca attempts drawn
    assert page.scenario_combo.count() == 2
    page.scenario_combo.setCurrentText("catheter-lcca-basic")
    curve = page.curve
    assert curve.attempt_ids == lab.a_practice[:3]
    score_ax, cusum_ax, lc_ax = page.curve_figure.axes
    ys = score_ax.lines[0].get_ydata()
    assert len(ys) == 3 and list(ys) == pytest.approx(list(curve.scores))
    assert list(cusum_ax.lines[0].get_ydata()) == pytest.approx(list(curve.cusum.s))
    hlines = sorted(line.get_ydata()[0] for line in cusum_ax.lines[1:3])
    assert hlines == pytest.approx(sorted([curve.cusum.h0, curve.cusum.h1]))
    assert lc_ax.lines[1].get_ydata()[0] == pytest.approx(curve.lc_cusum.h)
    assert curve.failures[1] == 1  # the perforation failed
    assert "time_s" in page.trend_metrics
    assert "slow down at the arch" in page.debrief_view.toPlainText()
    page.curve_canvas.draw()  # renders without error
    with pytest.raises(AccessDeniedError, match="may not open the page"):
        w.open_trainee(lab.b)
    other = TraineePage(w.records, w.access, lab.b)  # forced: the records layer gives nothing
    qtbot.addWidget(other)
    settle(qtbot, other)
    assert other.history.rowCount() == 0 and other.curve is None
    # the trainee's own export holds only their own attempts
    panel = w.trainee_export
    assert "xapi" not in panel.buttons
    panel.folder_edit.setText(str(tmp_path / "mine"))
    with qtbot.waitSignal(panel.exported, timeout=10000):
        qtbot.mouseClick(panel.buttons["csv"], Qt.MouseButton.LeftButton)
    text = (tmp_path / "mine" / "attempts.csv").read_text()
    assert all(a in text for a in lab.a_practice)
    assert lab.a_exam not in text and lab.b_attempts[0] not in text and lab.c_attempts[0] not in text


# ------------------------------------------------------------------ educator


def export(qtbot, panel, which):
    """Click an export button and wait for the files."""
    with qtbot.waitSignal(panel.exported, timeout=20000):
        qtbot.mouseClick(panel.buttons[which], Qt.MouseButton.LeftButton)
    assert not panel.error.isVisible(), panel.error.text()


def test_the_educator_dashboard_release_debrief_and_exports(qtbot, lab, records, open_window, tmp_path):
    w = open_window()
    sign_in(qtbot, w, "edu", "edu-pass1")
    d = w.dashboard
    assert d is not None and w.trainee_page is None
    cohorts = [d.cohort_combo.itemData(i) for i in range(d.cohort_combo.count())]
    assert "C1" in cohorts and "C2" not in cohorts  # only the cohorts they teach
    d.select_cohort("C1")
    settle(qtbot, w)
    assert d.trainees == sorted([lab.a, lab.b]) and lab.c not in d.trainees
    assert d.matrix.rowCount() == 2 and d.matrix.columnCount() == 2
    labels = [d.matrix.verticalHeaderItem(i).text() for i in range(2)]
    assert any("Trainee A" in t for t in labels)
    row_a = d.trainees.index(lab.a)
    col = d.scenarios.index("catheter-lcca-basic")
    cell = d.matrix.item(row_a, col).text()
    assert cell.startswith("4 att.") and "CUSUM" in cell  # the unreleased exam counts too
    assert d.cells[(lab.a, "catheter-lcca-basic")].pass_rate == pytest.approx(
        sum(records.get_attempt(a).passed for a in [*lab.a_practice[:3], lab.a_exam]) / 4
    )
    # release the exam from the attempts table: the trainee sees it afterwards
    d.matrix.cellClicked.emit(row_a, col)
    assert {a.trainee_id for a in d.shown} == {lab.a}
    row = d.row_of(lab.a_exam)
    item = d.attempt_table.item(row, d.RELEASED)
    assert item.checkState() == Qt.CheckState.Unchecked
    ta = records.login("ta", "ta-pass12")
    assert lab.a_exam not in [a.id for a in records.list_attempts(access=ta)]
    with qtbot.waitSignal(d.release_done, timeout=10000) as sig:
        item.setCheckState(Qt.CheckState.Checked)
    assert sig.args == [lab.a_exam, True]
    assert records.get_attempt(lab.a_exam).released
    assert lab.a_exam in [a.id for a in records.list_attempts(access=ta)]
    assert not d.error.isVisible()
    # debrief notes for the exam
    d.select_attempt(lab.a_exam)
    settle(qtbot, w)
    assert d.selected_attempt == lab.a_exam and d.debrief_edit.isEnabled() and d.debrief_ready
    d.debrief_edit.setPlainText("Exam: good; watch the fluoroscopy time.")
    with qtbot.waitSignal(d.debrief_saved, timeout=10000):
        qtbot.mouseClick(d.save_debrief_button, Qt.MouseButton.LeftButton)
    assert records.get_attempt(lab.a_exam).debrief_notes == "Exam: good; watch the fluoroscopy time."
    # the trainee's window now shows the exam and its debrief
    tw = open_window(access=ta)
    assert lab.a_exam in history_ids(tw.trainee_page)
    assert "fluoroscopy time" in tw.trainee_page.debrief_view.toPlainText()
    # an attempt of another cohort cannot be withdrawn (practice: released when stored)
    assert records.get_attempt(lab.c_attempts[0]).released
    with qtbot.waitSignal(d.release_done, timeout=10000) as sig:
        d.set_released(lab.c_attempts[0], False)
    assert sig.args == [lab.c_attempts[0], False]  # the records layer refuses
    assert d.error.isVisible() and "that you may read" in d.error.text()
    assert records.get_attempt(lab.c_attempts[0]).released

    # exports into a folder typed in the path field
    out = tmp_path / "exports"
    d.export.folder_edit.setText(str(out))
    d.set_filter(None, None)
    export(qtbot, d.export, "csv")
    text = (out / "attempts.csv").read_text()
    assert all(a in text for a in [*lab.a_practice, lab.a_exam, *lab.b_attempts])
    assert lab.c_attempts[0] not in text and "Trainee A" not in text  # opaque ids only
    assert len(text.strip().splitlines()) == 1 + 7
    assert (out / "metrics.csv").read_text().count(lab.b_attempts[1]) > 3
    d.select_attempt(lab.a_exam)
    settle(qtbot, w)
    export(qtbot, d.export, "json")
    bundle = load_bundle(out / f"attempt-{lab.a_exam}.json")
    assert bundle.attempt_id == lab.a_exam and bundle.log.hash() == records.get_attempt(lab.a_exam).log_hash
    d.attempt_table.clearSelection()
    qtbot.mouseClick(d.export.buttons["json"], Qt.MouseButton.LeftButton)
    assert "choose an attempt" in d.export.error.text()
    export(qtbot, d.export, "report")
    html = (out / "cohort-C1.html").read_text()
    assert lab.a in html and lab.b in html and lab.c not in html
    assert (out / "cohort-C1.pdf").read_bytes()[:4] == b"%PDF"
    d.set_filter(lab.a, None)
    export(qtbot, d.export, "report")
    assert (out / f"report-{lab.a}.pdf").read_bytes()[:4] == b"%PDF"
    assert "fluoroscopy time" in (out / f"report-{lab.a}.html").read_text()


def test_xapi_export_goes_through_the_queue_to_the_lrs(qtbot, lab, open_window, tmp_path):
    from surgsim.records.lrs import LocalLRS
    from surgsim.records.queue import StatementQueue

    w = open_window()
    sign_in(qtbot, w, "edu", "edu-pass1")
    d = w.dashboard
    d.select_cohort("C1")
    settle(qtbot, w)
    d.set_filter(lab.b, None)
    panel = d.export
    panel.folder_edit.setText(str(tmp_path / "x"))
    panel.queue_path = tmp_path / "queue.db"
    threads = []
    panel.xapi_sent.connect(lambda _r: threads.append(threading.current_thread()))
    # an unreachable LRS: the statements wait in the queue, the error is shown
    panel.lrs_edit.setText("http://127.0.0.1:9/xapi/")
    with qtbot.waitSignal(panel.xapi_sent, timeout=10000) as sig:
        qtbot.mouseClick(panel.buttons["xapi"], Qt.MouseButton.LeftButton)
    statements = json.loads((tmp_path / "x" / "xapi-statements.json").read_text())
    assert len(statements) == 2 * 3  # initialized, completed, passed/failed per attempt
    assert {s["actor"]["account"]["name"] for s in statements} == {lab.b}
    assert sig.args[0].sent == 0 and sig.args[0].pending == 6
    assert "cannot be reached" in panel.error.text() and "wait in the queue" in panel.error.text()
    # a running LRS: the queued statements are sent (once each)
    with LocalLRS("lab", "lab-secret") as lrs:
        panel.lrs_edit.setText(lrs.endpoint)
        panel.lrs_user_edit.setText("lab")
        panel.lrs_password_edit.setText("lab-secret")
        with qtbot.waitSignal(panel.xapi_sent, timeout=10000) as sig:
            qtbot.mouseClick(panel.buttons["xapi"], Qt.MouseButton.LeftButton)
        assert sig.args[0].sent == 6 and sig.args[0].pending == 0 and not sig.args[0].error
        assert set(lrs.store) == {s["id"] for s in statements}
        assert "sent 6, 0 waiting" in panel.status.text()
        assert "xapi-statements.json" in panel.status.text()
    assert threads == [threading.main_thread()] * 2  # the drain reports back in the GUI thread
    with StatementQueue(tmp_path / "queue.db") as q:
        assert q.pending() == 6  # the first endpoint's copies still wait for it
        assert q.sent() == 6


# ------------------------------------------------------------------ admin and roles


def test_an_admin_sees_every_cohort_and_opens_any_trainee(qtbot, lab, open_window):
    w = open_window()
    sign_in(qtbot, w, "admin", "admin-pass")
    d = w.dashboard
    cohorts = [d.cohort_combo.itemData(i) for i in range(d.cohort_combo.count())]
    assert {"C1", "C2", ""} <= set(cohorts)
    d.select_cohort(None)
    settle(qtbot, w)
    assert {lab.a, lab.b, lab.c} <= set(d.trainees) and len(d.attempts) == 8
    d.matrix.cellDoubleClicked.emit(d.trainees.index(lab.c), 0)
    settle(qtbot, w)
    page = w.trainee_page
    assert page.trainee_id == lab.c and history_ids(page) == lab.c_attempts
    page = w.open_trainee(lab.a)
    settle(qtbot, w)
    assert history_ids(page) == [*lab.a_practice, lab.a_exam]  # unreleased too
    assert page.history.columnCount() == 7  # with the "released" column
    assert w.tabs.count() == 3
    w.sign_out()
    assert not w.signed_in and w.stack.currentIndex() == 0 and w.dashboard is None


def test_the_summary_follows_learning_curve(lab, records):
    """The dashboard's CUSUM status and pass rate are those of curves.learning_curve."""
    from surgsim.records.curves import learning_curve

    cells = summarise(records.list_attempts())
    for (tid, sid), cell in cells.items():
        curve = learning_curve(records, tid, sid)
        assert cell.cusum == curve.cusum.status
        assert cell.competent == curve.lc_cusum.competent
        assert cell.pass_rate == pytest.approx(1 - curve.failures.mean())
        assert cell.attempts == len(records.list_attempts(tid, scenario_id=sid))


# ------------------------------------------------------------------ the records thread


def test_no_records_call_runs_on_the_gui_thread(qtbot, lab, records, open_window, gui_thread_calls, tmp_path):
    calls, watching = gui_thread_calls
    watching.set()
    w = open_window()
    sign_in(qtbot, w, "edu", "edu-pass1")
    d = w.dashboard
    d.select_cohort("C1")
    settle(qtbot, w)
    d.select_attempt(lab.a_exam)
    settle(qtbot, w)
    with qtbot.waitSignal(d.release_done, timeout=10000):
        d.set_released(lab.a_exam, True)
    with qtbot.waitSignal(d.debrief_saved, timeout=10000):
        d.save_debrief(lab.a_exam, "notes")
    d.export.folder_edit.setText(str(tmp_path / "e"))
    export(qtbot, d.export, "csv")
    export(qtbot, d.export, "json")
    w.open_trainee(lab.a)
    settle(qtbot, w)
    w.sign_out()
    sign_in(qtbot, w, "ta", "ta-pass12")
    assert w.trainee_page.attempts
    watching.clear()
    assert calls == []  # every read and write above ran on the records thread
    assert records.get_attempt(lab.a_exam).debrief_notes == "notes"


def test_a_slow_database_leaves_the_window_responsive(qtbot, lab, records, open_window, monkeypatch):
    import time

    from PySide6.QtCore import QTimer

    from surgsim.errors import RecordsError

    edu = records.login("edu", "edu-pass1")
    release = threading.Event()
    entered = threading.Event()

    def hanging_list_attempts(*args, **kw):
        entered.set()
        release.wait(20)  # a database server that does not answer
        raise RecordsError(f"cannot read attempts from {records.masked_url}: server closed the connection "
                           "unexpectedly. Check that the database server is running and reachable")

    monkeypatch.setattr(records, "list_attempts", hanging_list_attempts)
    try:
        t0 = time.perf_counter()
        w = open_records_window(records, access=edu)
        qtbot.addWidget(w)
        built_s = time.perf_counter() - t0
        d = w.dashboard
        assert entered.wait(10)
        assert built_s < 2.0  # the window did not wait for the database
        assert w.busy and d.busy and d.busy_label.isVisible() and "Reading" in d.busy_label.text()
        assert not d.refresh_button.isEnabled()
        ticks = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(1))
        timer.start(10)
        qtbot.wait(300)  # the event loop runs while the database hangs
        timer.stop()
        assert len(ticks) >= 5 and d.busy
    finally:
        release.set()
    settle(qtbot, w)
    assert d.error.isVisible() and d.error.text().startswith(UNREACHABLE)
    assert "Check that the database server is running" in d.error.text()
    assert not d.busy_label.isVisible() and d.refresh_button.isEnabled()
    assert "could not be read" in d.summary.text()
    w.close()


def test_an_unreachable_database_is_reported_clearly(qtbot, records, open_window, tmp_path):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    # the lab's PostgreSQL server is down: nothing listens on its port
    url = "postgresql+psycopg://lab:secret-pw@127.0.0.1:9/surgsim"
    records.engine.dispose()
    records.engine = create_engine(url, connect_args={"connect_timeout": 3})
    records._sessions = sessionmaker(records.engine)
    records._write_sessions = sessionmaker(records.engine.execution_options(surgsim_write=True))
    records.masked_url = "postgresql+psycopg://lab:***@127.0.0.1:9/surgsim"
    w = open_window()
    form = w.sign_in_form
    assert form.error.isVisible() and form.error.text().startswith(UNREACHABLE)
    assert "127.0.0.1:9" in form.error.text() and "secret-pw" not in form.error.text()
    assert not form.station_button.isVisible()  # never offered on an error
    sign_in(qtbot, w, "edu", "edu-pass1")
    assert not w.signed_in and form.error.text().startswith(UNREACHABLE)
    page = TraineePage(records, None, "T-x")
    qtbot.addWidget(page)
    settle(qtbot, page)
    assert page.error.text().startswith(UNREACHABLE) and page.history.rowCount() == 0
