"""Attempt records: roundtrip in SQLite, listing, durability settings, errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import text

import surgsim.records.db as db
from surgsim.errors import RecordsError
from surgsim.paths import SCENARIOS_DIR
from surgsim.records import Records, mask_url, new_trainee_id
from surgsim.scenarios import load_scenario
from surgsim.scoring import Event, InputEvent, SessionLog, score


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIOS_DIR / "catheter-lcca-basic.yaml")


def make_log(
    scenario, seed: int = 0, duration: float = 20.0, perforate: bool = False
) -> SessionLog:
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration * 60) + 1) / 60.0
    s = t / t[-1]
    tip = np.stack([0.01 * np.sin(4 * s), 0.0 * s, 0.3 * s], axis=1) + rng.normal(
        0, 1e-4, (len(t), 3)
    )
    events = [
        Event(duration * 0.8, "target_reached", {"target": "lcca"}),
        Event(duration, "finish"),
    ]
    if perforate:
        events.insert(0, Event(duration / 2, "perforation", {"force_n": 3.5}))
    return SessionLog(
        scenario_id=scenario.id,
        scenario_hash=scenario.content_hash(),
        seed=seed,
        dt=1e-3,
        inputs=[
            InputEvent(0, "advance", 0.02),
            InputEvent(500, "rotate", 0.5),
            InputEvent(int(duration * 1000), "finish"),
        ],
        samples={
            "t": t,
            "tip": tip,
            "depth": 0.35 * s,
            "rotation": 0.2 * s,
            "wall_force": np.abs(rng.normal(0.1, 0.2, len(t))),
            "tip_force": np.abs(rng.normal(0.05, 0.05, len(t))),
            "contacts": rng.integers(0, 4, len(t)),
        },
        events=events,
        reference_path_length=0.28,
    )


@pytest.fixture()
def records(tmp_path):
    r = Records(f"sqlite:///{tmp_path / 'attempts.db'}")
    yield r
    r.close()


def test_attempt_roundtrip_keeps_the_exact_log(records, scenario):
    log = make_log(scenario, seed=3)
    result = score(log, scenario)
    aid = records.add_attempt("T-3f9a01", scenario, log, result, station="lab-1")
    assert uuid.UUID(aid)
    rec = records.get_attempt(aid)
    assert rec.log_bytes == log.to_bytes()
    assert rec.log_hash == log.hash() == rec.log.hash()
    assert rec.input_hash == log.input_hash()
    assert rec.log.to_bytes() == log.to_bytes()
    np.testing.assert_array_equal(rec.log.samples["tip"], log.samples["tip"])
    assert rec.log.events == log.events and rec.log.inputs == log.inputs
    assert rec.trainee_id == "T-3f9a01" and rec.station == "lab-1"
    assert rec.scenario_id == scenario.id and rec.scenario_version == "1.0"
    assert rec.scenario_hash == scenario.content_hash() and rec.seed == 3
    assert rec.mode == "practice" and rec.status == "completed"
    assert rec.score == result.total and rec.passed == result.passed
    assert rec.result == result.to_dict()
    for m in result.metrics:
        assert rec.metrics[m.name] == m.value
    assert rec.metrics["economy_of_motion"] is not None  # unscored metrics are stored too
    assert rec.ended_at.tzinfo is not None
    assert (rec.ended_at - rec.started_at).total_seconds() == pytest.approx(log.duration)
    # the same score comes back from the stored log
    assert score(rec.log, scenario) == result


def test_metric_rows_and_critical_errors(records, scenario):
    log = make_log(scenario, perforate=True)
    result = score(log, scenario)
    aid = records.add_attempt("T-1", scenario, log, result, mode="assessment", status="aborted")
    rec = records.get_attempt(aid)
    assert rec.critical_errors == ("perforation",) and rec.passed is False
    assert rec.mode == "assessment" and rec.status == "aborted"
    with records.engine.connect() as c:
        rows = c.execute(
            text("SELECT name, value, unit FROM metrics WHERE attempt_id = :a"), {"a": aid}
        ).all()
    by_name = {n: (v, u) for n, v, u in rows}
    assert set(by_name) == set(rec.metrics)
    assert by_name["wall_hits"] == (rec.metrics["wall_hits"], "count")


def test_attempts_are_listed_per_trainee(records, scenario):
    ids = []
    for seed, who in [(1, "T-a"), (2, "T-b"), (3, "T-a")]:
        log = make_log(scenario, seed=seed)
        ids.append(
            records.add_attempt(
                who,
                scenario,
                log,
                score(log, scenario),
                started_at=datetime(2025, 1, seed, 9, 0, tzinfo=UTC),
            )
        )
    mine = records.list_attempts("T-a")
    assert [a.id for a in mine] == [ids[0], ids[2]]  # oldest first
    assert all(a.trainee_id == "T-a" for a in mine)
    assert mine[0].started_at == datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    assert [a.id for a in records.list_attempts("T-b")] == [ids[1]]
    assert len(records.list_attempts()) == 3
    assert records.list_attempts("T-nobody") == []


def test_records_survive_reopening_and_use_wal(tmp_path, scenario):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    log = make_log(scenario)
    with Records(url) as r:
        aid = r.add_attempt("T-x", scenario, log, score(log, scenario))
        with r.engine.connect() as c:
            assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert c.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    with Records(url) as r:
        assert r.get_attempt(aid).log_hash == log.hash()


def test_default_url_uses_the_data_folder(scenario):
    r = Records()
    try:
        assert r.url.startswith("sqlite:///") and r.url.endswith("surgsim.db")
        r.ensure_trainee("T-default")
        r.ensure_trainee("T-default")  # idempotent
    finally:
        r.close()


def test_unreachable_database_names_the_url():
    url = "sqlite:////nonexistent/dir/x.db"
    with pytest.raises(RecordsError) as info:
        Records(url)
    msg = str(info.value)
    assert url in msg and "exists and is writable" in msg and "SURGSIM_DB_URL" in msg


def test_password_is_masked():
    url = "postgresql+psycopg://lab:s3cret@127.0.0.1:1/surgsim"
    assert "s3cret" not in mask_url(url) and "***" in mask_url(url)
    with pytest.raises(RecordsError) as info:  # no driver or nothing listening on port 1
        Records(url)
    assert "s3cret" not in str(info.value) and "127.0.0.1" in str(info.value)
    with pytest.raises(RecordsError, match="not-a-url"):
        Records("not-a-url")


def test_trainee_ids_must_be_opaque(records, scenario):
    assert new_trainee_id().startswith("T-") and new_trainee_id() != new_trainee_id()
    for bad in ["jane.doe@example.org", "John Smith", "", "x" * 65]:
        with pytest.raises(RecordsError, match="opaque"):
            records.ensure_trainee(bad)
    with pytest.raises(RecordsError, match="role"):
        records.ensure_trainee("T-9", role="king")


def test_inconsistent_attempts_are_refused(records, scenario):
    log = make_log(scenario)
    result = score(log, scenario)
    other = make_log(scenario, seed=5)
    with pytest.raises(RecordsError, match="another scenario or log"):
        records.add_attempt("T-1", scenario, other, result)
    stale = make_log(scenario)
    stale.scenario_hash = "0" * 64
    with pytest.raises(RecordsError, match="pass the scenario the attempt ran"):
        records.add_attempt("T-1", scenario, stale, result)
    with pytest.raises(RecordsError, match="status"):
        records.add_attempt("T-1", scenario, log, result, status="done")
    assert records.list_attempts() == []


def test_a_failed_write_saves_nothing(records, scenario, monkeypatch):
    fixed = uuid.UUID("12345678-1234-5678-1234-567812345678")
    monkeypatch.setattr(db.uuid, "uuid4", lambda: fixed)
    log = make_log(scenario)
    result = score(log, scenario)
    records.add_attempt("T-first", scenario, log, result)
    with pytest.raises(RecordsError, match="nothing was saved"):
        records.add_attempt("T-second", scenario, log, result)  # duplicate attempt id
    with records.engine.connect() as c:
        trainees = c.execute(text("SELECT id FROM trainees ORDER BY id")).scalars().all()
    assert trainees == ["T-first"]  # the new trainee was rolled back with the attempt


def test_unknown_and_corrupted_attempts(records, scenario):
    with pytest.raises(RecordsError, match="no attempt"):
        records.get_attempt("nope")
    log = make_log(scenario)
    aid = records.add_attempt("T-1", scenario, log, score(log, scenario))
    with records.engine.begin() as c:
        c.execute(text("UPDATE attempts SET log = :b WHERE id = :a"), {"b": b"garbage", "a": aid})
    with pytest.raises(RecordsError, match="does not match its hash"):
        records.get_attempt(aid)
