"""The xAPI offline queue: statements the LRS rejects for good do not block the others."""

from __future__ import annotations

import json
import sqlite3

import pytest
from test_records import make_log

from surgsim.cli import main
from surgsim.paths import SCENARIOS_DIR
from surgsim.records import Records
from surgsim.records.lrs import LocalLRS
from surgsim.records.queue import StatementQueue, is_rejection
from surgsim.records.xapi import LRSClient, LRSError, LRSUnavailable, statements_for_attempt
from surgsim.scenarios import load_scenario
from surgsim.scoring import score

HOME = "https://sim.example-hospital.org"


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIOS_DIR / "catheter-lcca-basic.yaml")


@pytest.fixture()
def records(tmp_path):
    r = Records(f"sqlite:///{tmp_path / 'lab.db'}", journal_dir=tmp_path / "j")
    yield r
    r.close()


def statements(records, scenario, n_attempts=3):
    out = []
    for i in range(n_attempts):
        log = make_log(scenario, seed=i)
        aid = records.add_attempt(f"T-q{i}", scenario, log, score(log, scenario))
        out += statements_for_attempt(records.get_attempt(aid), home_page=HOME)
    return out


def test_which_answers_are_rejections():
    assert is_rejection(LRSError("bad", 400)) and is_rejection(LRSError("conflict", 409))
    assert is_rejection(LRSError("too large", 413))
    for status in (401, 403, 408, 429, None):
        assert not is_rejection(LRSError("later", status))
    assert not is_rejection(LRSUnavailable("down", 503)) and not is_rejection(LRSUnavailable("down"))


def test_a_rejected_statement_is_set_aside_and_the_rest_goes_on(records, scenario, tmp_path):
    sts = statements(records, scenario)
    with LocalLRS() as lrs:
        client = LRSClient(lrs.endpoint, "lab", "lab-secret")
        # the LRS already holds another statement under the id of the first one: 409 for ever
        other = json.loads(json.dumps(sts[0]))
        other["timestamp"] = "2020-01-01T00:00:00Z"
        client.post([other])
        with StatementQueue(tmp_path / "q.db", base_delay=0.05) as q:
            assert q.enqueue(client.endpoint, sts) == 9
            rep = q.drain(client, batch_size=50)
            assert (rep.sent, rep.failed, rep.pending) == (8, 1, 0)
            assert "rejected 1 statement" in rep.error and "--retry-failed" in rep.error
            assert {s["id"] for s in sts[1:]} <= set(lrs.store)
            assert lrs.store[sts[0]["id"]]["timestamp"] == "2020-01-01T00:00:00Z"
            (f,) = q.failed()
            assert f.id == sts[0]["id"] and f.status == 409 and "409" in f.reason
            assert f.statement == json.loads(json.dumps(sts[0], sort_keys=True))
            assert q.failed_count() == 1 and q.pending() == 0
            # a later drain does not try it again (the queue is not blocked by it)
            before = lrs.requests
            assert q.drain(client, ignore_backoff=True) == type(rep)(sent=0, pending=0)
            assert lrs.requests == before
        # kept across processes; an admin fixes the cause (the LRS voids its copy) and resends
        del lrs.store[sts[0]["id"]]
        with StatementQueue(tmp_path / "q.db") as q:
            assert [x.id for x in q.failed(client.endpoint)] == [sts[0]["id"]]
            assert q.retry_failed(ids=["no-such-id"]) == 0
            assert q.retry_failed() == 1
            assert q.pending() == 1 and q.failed_count() == 0
            assert q.drain(client).sent == 1
            assert lrs.store[sts[0]["id"]]["timestamp"] == sts[0]["timestamp"]


def test_temporary_failures_keep_the_queue_waiting(records, scenario, tmp_path):
    sts = statements(records, scenario)
    with LocalLRS() as lrs, StatementQueue(tmp_path / "q.db", base_delay=0.05) as q:
        client = LRSClient(lrs.endpoint, "lab", "lab-secret")
        q.enqueue(client.endpoint, sts)
        for status in (503, 429, 408):
            lrs.fail_next(status)
            rep = q.drain(client, ignore_backoff=True)
            assert (rep.sent, rep.failed, rep.pending) == (0, 0, 9), status
            assert f"HTTP {status}" in rep.error
        assert q.drain(client).sent == 0  # backing off: not due yet
        wrong = LRSClient(lrs.endpoint, "lab", "wrong-secret")
        rep = q.drain(wrong, ignore_backoff=True)
        assert (rep.sent, rep.failed, rep.pending) == (0, 0, 9) and "401" in rep.error
        # a batch answered 400 once is split: every statement turns out fine
        lrs.fail_next(400)
        rep = q.drain(client, ignore_backoff=True, batch_size=50)
        assert (rep.sent, rep.failed, rep.pending, rep.error) == (9, 0, 0, "")
        assert set(lrs.store) == {s["id"] for s in sts}


def test_a_queue_file_of_the_first_version_is_upgraded(records, scenario, tmp_path):
    st = statements(records, scenario, 1)[0]
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE statements (id TEXT NOT NULL, endpoint TEXT NOT NULL, body TEXT NOT NULL, "
        "queued_at REAL NOT NULL, tries INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, "
        "last_error TEXT, sent_at REAL, PRIMARY KEY (endpoint, id));"
    )
    db.execute("INSERT INTO statements (id, endpoint, body, queued_at) VALUES (?, ?, ?, 0)",
               (st["id"], "http://127.0.0.1:1/xapi/", json.dumps(st)))
    db.commit()
    db.close()
    with StatementQueue(path) as q:
        assert q.pending() == 1 and q.failed() == []


def test_the_cli_lists_and_resends_failed_statements_for_admins_only(records, scenario, tmp_path, capsys):
    import surgsim.records.auth as auth

    auth.HASH_PARAMETERS, old = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}, auth.HASH_PARAMETERS
    try:
        records.add_user("admin", "admin-pw-1", "admin")
        records.add_user("trainee", "trainee-pw-1", "trainee", access=records.login("admin", "admin-pw-1"))
    finally:
        auth.HASH_PARAMETERS = old
    sts = statements(records, scenario, 1)
    queue = str(tmp_path / "q.db")
    with LocalLRS() as lrs:
        lrs.store[sts[1]["id"]] = dict(sts[1], timestamp="2020-01-01T00:00:00Z")  # a conflict
        lrs_args = ["--lrs", lrs.endpoint, "--lrs-user", "lab", "--lrs-password", "lab-secret"]
        admin = ["--db", records.url, "--user", "admin", "--password", "admin-pw-1", "--queue", queue]
        export = ["records", "export", "--format", "xapi", *lrs_args, *admin]
        assert main(export) == 3
        cap = capsys.readouterr()
        assert "sent 2" in cap.out and "1 rejected" in cap.out and "--retry-failed" in cap.err
        trainee = ["--db", records.url, "--user", "trainee", "--password", "trainee-pw-1", "--queue", queue]
        assert main(["records", "xapi", *trainee]) == 2
        assert "may not" in capsys.readouterr().err
        assert main(["records", "xapi", "--json", *admin]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["waiting"] == 0 and listed["sent"] == 2
        assert [(f["id"], f["status"]) for f in listed["failed"]] == [(sts[1]["id"], 409)]
        assert main(["records", "xapi", *admin]) == 0
        assert "HTTP 409" in capsys.readouterr().out
        assert main(["records", "xapi", "--retry-failed", *lrs_args, *admin]) == 3  # still conflicting
        assert "1 rejected again" in capsys.readouterr().out
        del lrs.store[sts[1]["id"]]  # fixed at the LRS
        assert main(["records", "xapi", "--retry-failed", *lrs_args, *admin]) == 0
        out = capsys.readouterr().out
        assert "1 failed statement(s) queued again" in out and "sent 1" in out and "0 failed" in out
        assert set(lrs.store) == {s["id"] for s in sts}
