"""Learning curves against hand-computed CUSUM and LC-CUSUM cases; trainee and cohort reports."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from test_records import make_log

from surgsim.errors import RecordsError
from surgsim.paths import SCENARIOS_DIR
from surgsim.records import Records
from surgsim.records.curves import cusum, lc_cusum, lc_cusum_limit, learning_curve
from surgsim.records.report import cohort_report, trainee_report
from surgsim.scenarios import load_scenario
from surgsim.scoring import score


def test_standard_cusum_by_hand():
    # p0 = 0.2, p1 = 0.3, alpha = 0.05, beta = 0.2:
    # P = ln(0.3/0.2) = 0.405465, Q = ln(0.8/0.7) = 0.133531, P + Q = 0.538997
    # s = 0.133531 / 0.538997 = 0.247741
    # h1 = ln(0.8/0.05) / 0.538997 = 2.772589 / 0.538997 = 5.143983
    # h0 = -ln(0.95/0.2) / 0.538997 = -1.558145 / 0.538997 = -2.890825
    # x = 1 0 0 1 1 -> S = 0.752259, 0.504518, 0.256777, 1.009036, 1.761295
    c = cusum([1, 0, 0, 1, 1])
    assert c.step == pytest.approx(0.247741, abs=1e-6)
    assert c.h1 == pytest.approx(5.143983, abs=1e-5)
    assert c.h0 == pytest.approx(-2.890825, abs=1e-5)
    np.testing.assert_allclose(c.s, [0.752259, 0.504518, 0.256777, 1.009036, 1.761295], atol=2e-6)
    assert c.status == "undecided" and c.first_alarm is None
    # 12 successes take S below h0: 12 * 0.247741 = 2.97289 > 2.890825 (11 give 2.72515)
    ok = cusum([0] * 12)
    assert ok.first_acceptable == 11 and ok.status == "acceptable"
    # failures climb 0.752259 each: 7 reach 5.26581 >= h1 (6 give 4.51355)
    bad = cusum([1] * 7)
    assert bad.first_alarm == 6 and bad.status == "alarm"
    with pytest.raises(RecordsError, match="0 .success. or 1"):
        cusum([0, 2])
    with pytest.raises(RecordsError, match="below the unacceptable"):
        cusum([0], p0=0.3, p1=0.2)


def test_lc_cusum_by_hand():
    # p0 = 0.3 (unacceptable), p1 = 0.2 (acceptable):
    # failure: ln(0.2/0.3) = -0.405465; success: ln(0.8/0.7) = +0.133531
    # x = 1 0 0 0 1 0 -> S = max(0, -0.405465) = 0, 0.133531, 0.267063, 0.400594,
    #                        max(0, 0.400594 - 0.405465) = 0, 0.133531
    r = lc_cusum([1, 0, 0, 0, 1, 0], h=0.3)
    np.testing.assert_allclose(r.s, [0, 0.133531, 0.267063, 0.400594, 0, 0.133531], atol=2e-6)
    assert r.competent_at == 3 and r.competent
    assert not lc_cusum([1, 0, 0, 1, 0, 0], h=0.3).competent


def test_lc_cusum_limit_gives_at_most_five_percent_false_signals():
    h = lc_cusum_limit(0.3, 0.2, n=30, simulations=20000, seed=0)
    # an independent check: trainees who stay at the unacceptable rate
    rng = np.random.default_rng(123)
    fails = rng.random((20000, 30)) < 0.3
    s = np.zeros(20000)
    peak = np.zeros(20000)
    for j in range(30):
        s = np.maximum(0, s + np.where(fails[:, j], np.log(0.2 / 0.3), np.log(0.8 / 0.7)))
        peak = np.maximum(peak, s)
    rate = np.mean(peak >= h - 1e-9)
    assert rate <= 0.06  # 5 % plus Monte Carlo noise
    # and h is not needlessly high: one success step lower signals too often
    assert np.mean(peak >= h - np.log(0.8 / 0.7) - 1e-9) > 0.05
    # a competent trainee (rate 0.2... here: always successful) is declared competent
    assert lc_cusum([0] * 40, h=h).competent_at == int(np.ceil(h / np.log(0.8 / 0.7) - 1e-9)) - 1


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIOS_DIR / "catheter-lcca-basic.yaml")


def test_learning_curve_and_reports(tmp_path, scenario):
    with Records(f"sqlite:///{tmp_path / 'r.db'}", journal_dir=tmp_path / "j") as r:
        import surgsim.records.auth as auth

        auth.HASH_PARAMETERS, old = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}, auth.HASH_PARAMETERS
        try:
            r.add_user("edu", "edu-pass1", "educator", cohorts=["C1"])
            t1 = r.add_user("t1", "t1-pass12", "trainee", display_name="Jane Doe", cohorts=["C1"])
            edu = r.login("edu", "edu-pass1")
        finally:
            auth.HASH_PARAMETERS = old
        ids = []
        for day, perforate in enumerate([True, True, False, False, False, False], 1):
            log = make_log(scenario, seed=day, perforate=perforate)
            ids.append(r.add_attempt(t1, scenario, log, score(log, scenario),
                                     started_at=datetime(2025, 3, day, 9, tzinfo=UTC)))
        r.set_debrief(ids[-1], "Keep the wire <tip> off the wall.", access=edu)
        curve = learning_curve(r, t1, scenario.id, access=edu)
        assert curve.attempt_ids == ids
        fails = [0 if r.get_attempt(a).passed else 1 for a in ids]
        assert list(curve.failures) == fails and fails[:2] == [1, 1]
        np.testing.assert_allclose(curve.cusum.s, cusum(fails).s)
        out = trainee_report(r, t1, tmp_path / "t1.html", pdf_path=tmp_path / "t1.pdf", access=edu)
        page = (tmp_path / "t1.html").read_text()
        assert "Keep the wire &lt;tip&gt; off the wall." in page  # last debrief, escaped
        assert page.count("data:image/png;base64,") == 2 and "CUSUM" in page
        assert "Jane" not in page and t1 in page
        assert (tmp_path / "t1.pdf").read_bytes()[:5] == b"%PDF-"
        assert out["scenarios"][scenario.id]["attempts"] == 6
        c = cohort_report(r, "C1", tmp_path / "c1.html", access=edu)
        assert c["rows"][0]["trainee_id"] == t1
        assert c["rows"][0]["pass_rate"] == pytest.approx(1 - sum(fails) / 6)
        assert "Pass rate" in (tmp_path / "c1.html").read_text() or "pass rate" in (tmp_path / "c1.html").read_text()
        with pytest.raises(RecordsError, match="nothing to report"):
            trainee_report(r, "T-nobody", tmp_path / "x.html")
        with pytest.raises(RecordsError, match="does not exist"):
            trainee_report(r, t1, tmp_path / "missing" / "x.html")
