"""Exports: CSV without names, the replayable JSON bundle, xAPI statements checked by the
validator, and the offline queue against a local LRS taken down and brought back."""

from __future__ import annotations

import base64
import csv
import io
import json
import urllib.error
import urllib.request

import pytest
from test_records import make_log

from surgsim.cli import main
from surgsim.errors import RecordsError
from surgsim.paths import SCENARIOS_DIR
from surgsim.records import Records
from surgsim.records.export import attempts_csv, load_bundle, metrics_csv, write_bundle
from surgsim.records.lrs import LocalLRS
from surgsim.records.queue import StatementQueue
from surgsim.records.xapi import (
    VERBS,
    LRSClient,
    LRSError,
    iso_duration,
    statements_for_attempt,
    validate_statement,
)
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


def add(records, scenario, who, seed=0, **kw):
    log = make_log(scenario, seed=seed, perforate=kw.pop("perforate", False))
    return records.add_attempt(who, scenario, log, score(log, scenario), **kw)


# ------------------------------------------------------------------ CSV and bundles


def test_csv_has_attempts_and_metrics_and_no_names(records, scenario):
    import surgsim.records.auth as auth

    auth.HASH_PARAMETERS, old = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}, auth.HASH_PARAMETERS
    try:
        pid = records.add_user("jane.doe", "password-1", "trainee", display_name="Jane Doe")
        t = records.login("jane.doe", "password-1")
    finally:
        auth.HASH_PARAMETERS = old
    a1 = add(records, scenario, pid, 1)
    a2 = add(records, scenario, pid, 2, perforate=True, mode="assessment")
    add(records, scenario, "T-other", 3)
    text = attempts_csv(records)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3 and set(rows[0]) == set(
        "attempt_id trainee_id scenario_id scenario_version station mode started_at ended_at "
        "duration_s status score passed critical_errors released".split()
    )
    by_id = {r["attempt_id"]: r for r in rows}
    assert by_id[a2]["critical_errors"] == "perforation" and by_id[a2]["passed"] == "0"
    assert float(by_id[a1]["score"]) == records.get_attempt(a1).score
    assert float(by_id[a1]["duration_s"]) == pytest.approx(20.0)
    metrics = list(csv.DictReader(io.StringIO(metrics_csv(records))))
    wall = [m for m in metrics if m["attempt_id"] == a2 and m["name"] == "wall_hits"]
    assert wall[0]["unit"] == "count" and float(wall[0]["value"]) == records.get_attempt(a2).metrics["wall_hits"]
    everything = text + metrics_csv(records)
    assert "Jane" not in everything and "jane.doe" not in everything
    # a trainee's export: only their released attempts
    mine = list(csv.DictReader(io.StringIO(attempts_csv(records, access=t))))
    assert [r["attempt_id"] for r in mine] == [a1]
    assert {m["attempt_id"] for m in csv.DictReader(io.StringIO(metrics_csv(records, access=t)))} == {a1}


def test_the_bundle_holds_what_replay_needs(records, scenario, tmp_path):
    aid = add(records, scenario, "T-b", 4)
    path = write_bundle(records, aid, tmp_path / "attempt.json")
    b = load_bundle(path)
    rec = records.get_attempt(aid)
    assert b.attempt_id == aid and b.score == rec.score
    assert b.scenario.content_hash() == scenario.content_hash() == rec.scenario_hash
    assert b.log.to_bytes() == rec.log_bytes and b.log.inputs == rec.log.inputs
    assert b.log.seed == rec.seed and b.metrics == rec.metrics
    assert score(b.log, b.scenario).to_dict() == rec.result  # rescoring gives the stored result
    # damaged or foreign files are refused with the file named
    d = json.loads(path.read_text())
    d["log"]["inputs"][0]["value"] = 99.0
    bad = tmp_path / "edited.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(RecordsError, match="edited.json.*does not match its hash"):
        load_bundle(bad)
    d = json.loads(path.read_text())
    d["scenario"]["content"]["time_limit_s"] = 1.0
    bad.write_text(json.dumps(d))
    with pytest.raises(RecordsError, match="scenario content does not match"):
        load_bundle(bad)
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(RecordsError, match="not a surgsim attempt bundle"):
        load_bundle(tmp_path / "x.json")
    with pytest.raises(RecordsError, match="does not exist"):
        write_bundle(records, aid, tmp_path / "no" / "such" / "dir.json")


@pytest.mark.slow
def test_a_bundle_replays_to_the_same_log(tmp_path, default_scenario, default_case):
    from surgsim.session.inputs import load_inputs
    from surgsim.session.session import Session, play, replay

    expert = SCENARIOS_DIR / "inputs" / "catheter-lcca-basic.expert.yaml"
    session = play(Session(default_scenario, default_case), load_inputs(expert))
    with Records(f"sqlite:///{tmp_path / 'r.db'}", journal_dir=tmp_path / "j") as r:
        aid = r.add_attempt("T-r", default_scenario, session.log(), session.score())
        b = load_bundle(write_bundle(r, aid, tmp_path / "b.json"))
    again = replay(b.scenario, default_case, b.log)
    assert again.log().hash() == b.log.hash()


# ------------------------------------------------------------------ xAPI


def test_statements_are_valid_xapi_and_anonymous(records, scenario):
    ok = records.get_attempt(add(records, scenario, "T-x", 5))
    bad = records.get_attempt(add(records, scenario, "T-x", 6, perforate=True))
    for rec, last in ((ok, "passed" if ok.passed else "failed"), (bad, "failed")):
        sts = statements_for_attempt(rec, home_page=HOME)
        assert [s["verb"]["id"] for s in sts] == [VERBS["initialized"], VERBS["completed"], VERBS[last]]
        for s in sts:
            assert validate_statement(s) == []
            assert s["actor"] == {"objectType": "Agent", "account": {"homePage": HOME, "name": "T-x"}}
            assert s["context"]["registration"] == rec.id
            assert s["object"]["definition"]["type"] == "http://adlnet.gov/expapi/activities/simulation"
        res = sts[-1]["result"]
        assert res["score"] == {"scaled": pytest.approx(rec.score / 100), "raw": pytest.approx(rec.score),
                                "min": 0, "max": 100}
        assert res["success"] is rec.passed and res["completion"] is True
        assert res["duration"] == "PT20S"
        key = "https://surgsim.org/xapi/extensions/metric/wall_hits"
        assert res["extensions"][key] == rec.metrics["wall_hits"]
        assert len({s["id"] for s in sts}) == 3
        assert [s["id"] for s in statements_for_attempt(rec, home_page=HOME)] == [s["id"] for s in sts]
    assert iso_duration(3723.456) == "PT1H2M3.46S" and iso_duration(0) == "PT0S"


def test_the_validator_finds_problems(records, scenario):
    good = statements_for_attempt(records.get_attempt(add(records, scenario, "T-v")), home_page=HOME)[-1]

    def broken(change):
        s = json.loads(json.dumps(good))
        change(s)
        return validate_statement(s)

    assert any("mbox" in p for p in broken(lambda s: s["actor"].update(mbox="mailto:a@b.org")))
    assert any("name" in p for p in broken(lambda s: s["actor"].update(name="Jane Doe")))
    assert any("scaled" in p for p in broken(lambda s: s["result"]["score"].update(scaled=1.5)))
    assert any("raw" in p for p in broken(lambda s: s["result"]["score"].update(raw=101)))
    assert any("duration" in p for p in broken(lambda s: s["result"].update(duration="20 s")))
    assert any("registration" in p for p in broken(lambda s: s["context"].update(registration="x")))
    assert any("verb" in p for p in broken(lambda s: s.pop("verb")))
    assert any("IRI" in p for p in broken(lambda s: s["result"]["extensions"].update({"speed": 1})))
    assert any("timestamp" in p for p in broken(lambda s: s.update(timestamp="yesterday")))
    assert validate_statement("nope") == ["a statement must be a JSON object"]


def _request(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_local_lrs_checks_version_and_credentials(records, scenario):
    st = statements_for_attempt(records.get_attempt(add(records, scenario, "T-l")), home_page=HOME)
    body = json.dumps(st).encode()
    auth = "Basic " + base64.b64encode(b"lab:lab-secret").decode()
    with LocalLRS() as lrs:
        url = lrs.endpoint + "statements"
        assert _request(url, "POST", body, {"Authorization": auth}) == 400  # no version header
        assert _request(url, "POST", body, {"X-Experience-API-Version": "1.0.3"}) == 401
        wrong = "Basic " + base64.b64encode(b"lab:nope").decode()
        assert _request(url, "POST", body, {"X-Experience-API-Version": "1.0.3", "Authorization": wrong}) == 401
        assert lrs.store == {}
        client = LRSClient(lrs.endpoint, "lab", "lab-secret")
        assert client.post(st) == [s["id"] for s in st]
        assert client.post(st) == [s["id"] for s in st]  # the same ids again: kept once
        assert len(lrs.store) == 3
        changed = json.loads(json.dumps(st[0]))
        changed["timestamp"] = "2020-01-01T00:00:00Z"
        with pytest.raises(LRSError, match="409"):
            client.post([changed])
        invalid = dict(st[1], actor={"mbox": "mailto:x@y.org", "name": "X"})
        with pytest.raises(LRSError, match="400"):
            client.post([invalid])
        with pytest.raises(LRSError, match="401"):
            LRSClient(lrs.endpoint, "lab", "wrong").post(st)


def test_the_queue_keeps_statements_while_the_lrs_is_down(records, scenario, tmp_path):
    ids = [add(records, scenario, "T-q", i) for i in range(3)]
    sts = [s for a in ids for s in statements_for_attempt(records.get_attempt(a), home_page=HOME)]
    lrs = LocalLRS().start()
    port, store = lrs.port, lrs.store
    lrs.stop()  # the LRS is down
    client = LRSClient(f"http://lab:pw@127.0.0.1:{port}/xapi/", "lab", "lab-secret", timeout=2)
    q = StatementQueue(tmp_path / "q.db", base_delay=0.05)
    assert q.enqueue(client.endpoint, sts) == 9
    assert q.enqueue(client.endpoint, sts) == 0  # known ids are not queued twice
    rep = q.drain(client)
    assert rep.sent == 0 and rep.pending == 9
    assert "cannot be reached" in rep.error and "***@" in rep.error and ":pw@" not in rep.error
    q.close()
    q = StatementQueue(tmp_path / "q.db", base_delay=0.05)  # durable: a new process sees them
    assert q.pending() == 9
    assert q.drain(client).sent == 0  # backing off: not due yet
    lrs = LocalLRS(port=port, store=store).start()  # back, with its data
    try:
        rep = q.drain(client, ignore_backoff=True, batch_size=4)
        assert rep == type(rep)(sent=9, pending=0, error="")
        assert set(lrs.store) == {s["id"] for s in sts}
        # sending the same attempts again adds nothing anywhere
        q.enqueue(client.endpoint, sts)
        assert q.drain(client).sent == 0 and len(lrs.store) == 9
    finally:
        lrs.stop()
        q.close()


def test_cli_exports_every_format(records, scenario, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SURGSIM_DATA_DIR", str(tmp_path / "data"))
    aid = add(records, scenario, "T-c", 1)
    db = ["--db", records.url]
    assert main(["records", "export", "--format", "csv", "-o", str(tmp_path / "csv"), *db]) == 0
    assert (tmp_path / "csv" / "attempts.csv").read_text().count("\n") == 2
    assert main(["records", "export", "--format", "json", *db]) == 2
    assert "--attempt" in capsys.readouterr().err
    assert main(["records", "export", "--format", "json", "--attempt", aid, "-o", str(tmp_path / "b.json"), *db]) == 0
    assert load_bundle(tmp_path / "b.json").attempt_id == aid
    assert main(["records", "export", "--format", "xapi", "-o", str(tmp_path / "x.json"), *db]) == 0
    assert all(validate_statement(s) == [] for s in json.loads((tmp_path / "x.json").read_text()))
    assert main(["records", "export", "--format", "report", "--trainee", "T-c", "-o",
                 str(tmp_path / "r.html"), "--pdf", str(tmp_path / "r.pdf"), *db]) == 0
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    capsys.readouterr()
    with LocalLRS() as lrs:
        port = lrs.port
        args = ["records", "export", "--format", "xapi", "--lrs", lrs.endpoint, "--lrs-user", "lab",
                "--lrs-password", "lab-secret", *db]
        assert main(args) == 0
        assert "sent 3" in capsys.readouterr().out and len(lrs.store) == 3
    add(records, scenario, "T-c", 2)
    assert main(args) == 3  # the LRS is gone: kept for later, said clearly
    cap = capsys.readouterr()
    assert "3 waiting" in cap.out and "unreachable" in cap.err and "lab-secret" not in cap.err
    with LocalLRS(port=port) as lrs:
        assert main(args) == 0
        assert "sent 3" in capsys.readouterr().out and len(lrs.store) == 3
