"""Durability with real processes: a station killed (SIGKILL) mid-attempt, an unreachable
database at the end of an attempt, and four stations writing into one database at once
(SQLite file and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from test_records import make_log
from test_records_lab import backend_url

from surgsim.paths import SCENARIOS_DIR
from surgsim.records import AttemptPendingError, AttemptWriter, Records
from surgsim.records.journal import read_journal
from surgsim.scenarios import load_scenario
from surgsim.scoring import Event, InputEvent, score

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SCENARIO = SCENARIOS_DIR / "catheter-lcca-basic.yaml"

CRASH_WORKER = r"""
import json, sys
sys.path[:0] = [sys.argv[3], sys.argv[4]]
from surgsim.records import AttemptWriter, Records
from surgsim.scenarios import load_scenario
from surgsim.scoring import Event, InputEvent
url, journal = sys.argv[1], sys.argv[2]
scenario = load_scenario(sys.argv[5])
records = Records(url, journal_dir=journal)
w = AttemptWriter(records, "T-crash", scenario, dt=1e-3, batch_size=16, sync_interval=60)
print(json.dumps({"attempt_id": w.attempt_id}), flush=True)
i = 0
while True:
    w.add_input(InputEvent(i, "advance", i * 1e-3))
    i += 1
    if i % 100 == 0:
        w.add_event(Event(i * 1e-3, "wall_hit", {"n": i}))
    if w.synced and i % 16 == 0:
        print(w.synced, flush=True)
"""

WRITER_WORKER = r"""
import json, os, sys, time
sys.path[:0] = [sys.argv[3], sys.argv[4]]
from test_records import make_log
from surgsim.records import AttemptWriter, Records
from surgsim.scenarios import load_scenario
from surgsim.scoring import InputEvent, score
url, journal, scenario_path, n, who, go = sys.argv[1], sys.argv[2], sys.argv[5], int(sys.argv[6]), sys.argv[7], sys.argv[8]
scenario = load_scenario(scenario_path)
records = Records(url, journal_dir=journal)
logs = [make_log(scenario, seed=1000 * len(who) + i, duration=3.0) for i in range(n)]
results = [score(log, scenario) for log in logs]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
t0 = time.perf_counter()
out = []
for log, result in zip(logs, results):
    w = AttemptWriter(records, who, scenario, seed=log.seed, dt=log.dt, batch_size=8)
    for e in log.inputs:
        w.add_input(e)
    out.append((w.finish(log, result), log.hash()))
print(json.dumps({"attempts": out, "retries": records.retries,
                  "seconds": time.perf_counter() - t0}), flush=True)
"""


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIO)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    with backend_url(request.param, tmp_path) as url:
        yield url


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_a_station_killed_mid_attempt_keeps_its_synced_inputs(db_url, tmp_path):
    journal = tmp_path / "journal"
    Records(db_url, journal_dir=journal).close()  # the lab database exists
    proc = _spawn(CRASH_WORKER, db_url, str(journal), str(REPO), str(TESTS), str(SCENARIO))
    try:
        attempt_id = json.loads(proc.stdout.readline())["attempt_id"]
        synced = 0
        deadline = time.monotonic() + 30
        while synced < 300 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            synced = int(line)
        # the station is alive: opening the records must not take its journal
        with Records(db_url, journal_dir=journal) as r:
            assert r.recovered == [] and not r.has_attempt(attempt_id)
        synced = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)  # mid-batch: later inputs were not synced yet
        proc.wait(10)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(list(journal.glob("*.journal"))) == 1
    with Records(db_url, journal_dir=journal) as r:
        assert r.recovered == [(attempt_id, "interrupted")]
        rec = r.get_attempt(attempt_id)
        assert list(journal.glob("*.journal")) == []  # stored, so removed
    assert rec.status == "interrupted" and rec.score is None and rec.passed is False
    assert rec.trainee_id == "T-crash"
    inputs = rec.log.inputs
    events = [e for e in rec.log.events]
    # nothing synced is lost, and what came back is an exact prefix of what was written
    assert len(inputs) + len(events) >= synced
    assert inputs == [InputEvent(i, "advance", i * 1e-3) for i in range(len(inputs))]
    assert [e.data["n"] for e in events] == list(range(100, 100 * len(events) + 1, 100))
    assert rec.input_hash == rec.log.input_hash()
    print(f"\n[crash {db_url.split(':')[0]}] synced before SIGKILL: {synced} records; "
          f"recovered {len(inputs)} inputs and {len(events)} events")
    with Records(db_url, journal_dir=journal) as r:  # recovery happens once
        assert r.recovered == [] and len(r.list_attempts("T-crash")) == 1


def test_an_unreachable_database_keeps_the_attempt_for_later(tmp_path, scenario):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    journal = tmp_path / "journal"
    records = Records(url, journal_dir=journal)
    log = make_log(scenario, seed=7)
    result = score(log, scenario)
    w = AttemptWriter(records, "T-away", scenario, seed=log.seed, dt=log.dt, mode="assessment")
    for e in log.inputs:
        w.add_input(e)
    w.add_event(Event(1.0, "wall_hit"))
    # the database server goes away during the attempt
    down = create_engine("postgresql+psycopg://lab:s3cret@127.0.0.1:1/surgsim",
                         connect_args={"connect_timeout": 2})
    records._write_sessions = sessionmaker(down)
    with pytest.raises(AttemptPendingError) as info:
        w.finish(log, result)
    msg = str(info.value)
    assert "s3cret" not in msg and "Connection refused" in msg
    assert "kept in" in msg and "next time records open" in msg and w.attempt_id in msg
    assert info.value.journal.exists()
    _, inputs, _, end = read_journal(info.value.journal)
    assert end is not None and inputs == log.inputs
    down.dispose()
    records.close()
    with Records(url, journal_dir=journal) as r:
        assert r.recovered == [(w.attempt_id, "completed")]
        rec = r.get_attempt(w.attempt_id)
    assert rec.log.hash() == log.hash() and rec.score == result.total
    assert rec.mode == "assessment" and rec.released is False
    assert not info.value.journal.exists()


def test_a_finished_attempt_leaves_no_journal(tmp_path, scenario):
    with Records(f"sqlite:///{tmp_path / 'a.db'}", journal_dir=tmp_path / "j") as r:
        log = make_log(scenario, seed=2)
        with AttemptWriter(r, "T-ok", scenario, seed=2, dt=log.dt) as w:
            for e in log.inputs:
                w.add_input(e)
            aid = w.finish(log, score(log, scenario))
        assert list((tmp_path / "j").iterdir()) == []
        assert r.get_attempt(aid).log.hash() == log.hash()
        # another database's journal is left alone
        other = Records(f"sqlite:///{tmp_path / 'b.db'}", journal_dir=tmp_path / "j")
        AttemptWriter(other, "T-b", scenario, dt=1e-3).abort()
        other.close()
        assert r.recover() == [] and len(list((tmp_path / "j").glob("*.journal"))) == 1


@pytest.mark.slow
def test_four_stations_recording_at_once_lose_nothing(db_url, tmp_path):
    journal = tmp_path / "journal"
    Records(db_url, journal_dir=journal).close()
    n, stations = 15, ["T-s1", "T-s2", "T-s3", "T-s4"]
    go = tmp_path / "go"
    procs = [
        _spawn(WRITER_WORKER, db_url, str(journal), str(REPO), str(TESTS), str(SCENARIO),
               str(n), who, str(go))
        for who in stations
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        t0 = time.perf_counter()
        go.touch()
        outs = []
        for p in procs:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            outs.append(json.loads(line))
            p.wait(60)
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            p.kill()
            p.stdout.close()
            p.stderr.close()
    assert all(p.returncode == 0 for p in procs)
    written = {aid: h for o in outs for aid, h in o["attempts"]}
    assert len(written) == n * len(stations)
    with Records(db_url, journal_dir=journal) as r:
        stored = r.list_attempts()
        assert {a.id for a in stored} == set(written)
        for who in stations:
            assert len(r.list_attempts(who)) == n
        for aid, h in list(written.items())[:: max(1, len(written) // 12)]:
            assert r.get_attempt(aid).log_hash == h
    assert list(journal.glob("*.journal")) == []
    retries = sum(o["retries"] for o in outs)
    print(f"\n[concurrency {db_url.split(':')[0]}] {len(written)} attempts by 4 processes in "
          f"{wall:.2f} s: {len(written) / wall:.1f} attempts/s, {retries} retries")
