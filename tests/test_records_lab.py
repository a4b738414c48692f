"""The lab model on both backends: migrations, people and cohorts, roles enforced in
the records layer and the CLI, release and debrief, scenario versions, events.

PostgreSQL runs when SURGSIM_TEST_PG_URL is set (``eval "$(tools/ci_postgres.sh)"``);
each test gets its own schema there.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect, text
from test_records import make_log

from surgsim.cli import main
from surgsim.errors import RecordsError
from surgsim.paths import SCENARIOS_DIR
from surgsim.records import AccessDeniedError, Records
from surgsim.records.auth import hash_password, verify_password
from surgsim.records.db import current_revision, schema_head, upgrade
from surgsim.scenarios import load_scenario
from surgsim.scoring import score

PG_SKIP = (
    "SURGSIM_TEST_PG_URL is not set: run `eval \"$(tools/ci_postgres.sh)\"` first to test "
    "the records against PostgreSQL too"
)


@contextlib.contextmanager
def backend_url(backend: str, tmp_path) -> Iterator[str]:
    """A fresh empty database URL: a SQLite file, or a new PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'lab.db'}"
        return
    base = os.environ.get("SURGSIM_TEST_PG_URL")
    if not base:
        pytest.skip(PG_SKIP)
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(base)
    try:
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - a set but unusable URL is a failure, not a skip
        admin.dispose()
        raise AssertionError(f"SURGSIM_TEST_PG_URL is set but unusable: {exc}") from exc
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """argon2id with a small cost: the same code path, 100x faster (defaults tested below)."""
    import surgsim.records.auth as auth

    monkeypatch.setattr(auth, "HASH_PARAMETERS", {"time_cost": 1, "memory_cost": 1024, "parallelism": 1})


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture()
def records(db_url, tmp_path) -> Iterator[Records]:
    r = Records(db_url, journal_dir=tmp_path / "journal")
    yield r
    r.close()


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIOS_DIR / "catheter-lcca-basic.yaml")


def add(records, scenario, who, seed=0, **kw):
    log = make_log(scenario, seed=seed, perforate=kw.pop("perforate", False))
    return records.add_attempt(who, scenario, log, score(log, scenario), **kw)


# ------------------------------------------------------------------ schema


def test_a_new_database_is_at_the_newest_revision(records):
    assert current_revision(records.engine) == schema_head() == "0002"
    names = set(inspect(records.engine).get_table_names())
    assert {"people", "cohorts", "cohort_members", "scenario_versions", "attempts",
            "metrics", "attempt_events", "alembic_version"} <= names


def test_a_database_from_before_migrations_is_stamped_and_upgraded(db_url, tmp_path, scenario):
    upgrade(db_url, "0001")  # the schema the first version made with create_all
    eng = create_engine(db_url)
    with eng.begin() as c:
        c.execute(text("DROP TABLE alembic_version"))
        c.execute(text("INSERT INTO trainees (id, created_at, role) VALUES ('T-old', '2024-01-01', 'trainee')"))
    eng.dispose()
    with Records(db_url, journal_dir=tmp_path / "j") as r:
        assert current_revision(r.engine) == "0002"
        assert [u["id"] for u in r.list_users()] == ["T-old"]  # the old row is kept
        aid = add(r, scenario, "T-old")
        assert r.get_attempt(aid).trainee_id == "T-old"
    upgrade(db_url, "0001")  # downgrade works and drops the new tables
    eng = create_engine(db_url)
    assert "people" not in inspect(eng).get_table_names()
    eng.dispose()
    with Records(db_url, journal_dir=tmp_path / "j") as r:
        assert [a.trainee_id for a in r.list_attempts()] == ["T-old"]


# ------------------------------------------------------------------ model


def test_attempts_keep_scenario_version_events_release_and_debrief(records, scenario):
    practice = add(records, scenario, "T-a", seed=1, station="sim-2", case_id="C-0007")
    exam = add(records, scenario, "T-a", seed=2, mode="assessment", perforate=True)
    p, e = records.get_attempt(practice), records.get_attempt(exam)
    assert p.released is True and e.released is False  # assessments wait for an educator
    assert p.station == "sim-2" and p.case_id == "C-0007"
    assert records.scenario_content(scenario.content_hash()) == scenario.canonical_json()
    kinds = [k for _, k, _ in records.attempt_events(exam)]
    assert kinds == [ev.kind for ev in e.log.events] and "perforation" in kinds
    assert e.critical_errors == ("perforation",)
    records.set_released(exam, True)
    records.set_debrief(exam, "Slow down near the ostium.\n<b>not html</b>")
    e = records.get_attempt(exam)
    assert e.released and e.debrief_notes.startswith("Slow down")
    names = {n for _, n, _, _ in records.metric_rows()}
    assert "wall_hits" in names


def test_display_names_stay_in_the_lab_database(records, scenario):
    pid = records.add_user("jdoe", "correct horse", "trainee", display_name="Jane Doe")
    add(records, scenario, pid)
    assert records.list_users()[0]["display_name"] == "Jane Doe"
    with records.engine.connect() as c:
        row = c.execute(text("SELECT password_hash FROM people WHERE id = :p"), {"p": pid}).scalar()
    assert row.startswith("$argon2id$") and "correct horse" not in row


# ------------------------------------------------------------------ access


def test_passwords_are_salted_argon2_hashes(monkeypatch):
    import surgsim.records.auth as auth

    monkeypatch.setattr(auth, "HASH_PARAMETERS", None)  # the production cost
    a, b = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert a != b and a.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(a, "s3cret-pass") and not verify_password(a, "s3cret-pasS")
    with pytest.raises(RecordsError, match="at least 8"):
        hash_password("short")


def _lab(records, scenario):
    """An admin, an educator of cohort C1 with trainees t1 and t2, and t3 in cohort C2."""
    records.add_user("admin", "admin-pass", "admin")
    ids = {
        "edu": records.add_user("edu", "edu-pass1", "educator", cohorts=["C1"]),
        "t1": records.add_user("t1", "t1-pass12", "trainee", cohorts=["C1"]),
        "t2": records.add_user("t2", "t2-pass12", "trainee", cohorts=["C1"]),
        "t3": records.add_user("t3", "t3-pass12", "trainee", cohorts=["C2"]),
    }
    att = {
        "t1": add(records, scenario, ids["t1"], 1),
        "t1_exam": add(records, scenario, ids["t1"], 2, mode="assessment"),
        "t2": add(records, scenario, ids["t2"], 3),
        "t3": add(records, scenario, ids["t3"], 4),
    }
    return ids, att


def test_roles_are_enforced_in_the_records_layer(records, scenario):
    ids, att = _lab(records, scenario)
    t1 = records.login("t1", "t1-pass12")
    edu = records.login("edu", "edu-pass1")
    admin = records.login("admin", "admin-pass")
    # a trainee: own released attempts only
    assert [a.id for a in records.list_attempts(access=t1)] == [att["t1"]]
    assert records.list_attempts(ids["t2"], access=t1) == []
    for other in (att["t2"], att["t3"], att["t1_exam"]):
        with pytest.raises(RecordsError, match="that you may read") as info:
            records.get_attempt(other, access=t1)
        # the same answer as for an id that does not exist: nothing to probe
        assert str(info.value).replace(other, "X") == str(
            pytest.raises(RecordsError, records.get_attempt, "nope", access=t1).value
        ).replace("nope", "X")
    assert {a for a, *_ in records.metric_rows(access=t1)} == {att["t1"]}
    with pytest.raises(AccessDeniedError):
        records.set_released(att["t1_exam"], True, access=t1)
    with pytest.raises(AccessDeniedError):
        records.add_user("t9", "whatever1", "admin", access=t1)
    assert [u["id"] for u in records.list_users(access=t1)] == [ids["t1"]]
    # an educator: the trainees of their cohorts, released or not; not other cohorts
    seen = {a.id for a in records.list_attempts(access=edu)}
    assert seen == {att["t1"], att["t1_exam"], att["t2"]}
    with pytest.raises(RecordsError):
        records.get_attempt(att["t3"], access=edu)
    with pytest.raises(RecordsError):
        records.set_released(att["t3"], True, access=edu)
    records.set_released(att["t1_exam"], True, access=edu)
    records.set_debrief(att["t1_exam"], "good", access=edu)
    assert {a.id for a in records.list_attempts(access=t1)} == {att["t1"], att["t1_exam"]}
    assert records.cohort_members("C1", access=edu) == sorted([ids["t1"], ids["t2"]])
    with pytest.raises(RecordsError, match="no cohort"):
        records.cohort_members("C2", access=edu)
    # an admin: everything
    assert len(records.list_attempts(access=admin)) == 4
    with pytest.raises(AccessDeniedError, match="sign-in failed"):
        records.login("t1", "wrong-password")
    with pytest.raises(AccessDeniedError, match="sign-in failed"):
        records.login("nobody", "t1-pass12")


def test_the_cli_signs_in_and_keeps_trainees_apart(db_url, tmp_path, scenario, capsys, monkeypatch):
    monkeypatch.setenv("SURGSIM_DATA_DIR", str(tmp_path / "data"))
    db = ["--db", db_url]
    assert main(["users", "add", "t1", "--role", "trainee", "--new-password", "t1-pass12", *db]) == 2
    assert "first account" in capsys.readouterr().err
    assert main(["users", "add", "boss", "--role", "admin", "--new-password", "boss-pass", *db]) == 0
    admin = ["--user", "boss", "--password", "boss-pass"]
    for name in ("t1", "t2"):
        assert main(["users", "add", name, "--new-password", f"{name}-pass12",
                     "--display-name", f"Name of {name}", "--cohort", "C1", *admin, *db]) == 0
    out = capsys.readouterr().out
    ids = dict(line.split(": trainee ") for line in out.split("account ")[1:] if ": trainee " in line)
    ids = {k: v.strip() for k, v in ids.items()}
    with Records(db_url, journal_dir=tmp_path / "j") as r:
        a1 = add(r, scenario, ids["t1"], 1)
        a2 = add(r, scenario, ids["t2"], 2)
    # no sign-in once accounts exist
    assert main(["records", "list", *db]) == 2
    assert "sign in" in capsys.readouterr().err
    # a trainee lists only their own attempts
    assert main(["records", "list", "--user", "t1", "--password", "t1-pass12", *db]) == 0
    out = capsys.readouterr().out
    assert a1 in out and a2 not in out and "1 attempt(s)" in out
    # asking for the other trainee's attempts gives nothing, by id an error
    monkeypatch.setenv("SURGSIM_USER", "t1")
    monkeypatch.setenv("SURGSIM_PASSWORD", "t1-pass12")
    assert main(["records", "list", "--trainee", ids["t2"], *db]) == 0
    assert a2 not in capsys.readouterr().out
    assert main(["records", "export", "--format", "json", "--attempt", a2, *db]) == 2
    err = capsys.readouterr().err
    assert "that you may read" in err and "Traceback" not in err
    assert main(["records", "export", "--format", "json", "--attempt", a1, *db]) == 0
    assert ids["t1"] in capsys.readouterr().out
    assert main(["users", "add", "t3", "--new-password", "t3-pass12", *db]) == 2
    assert "may not add accounts" in capsys.readouterr().err
    assert main(["records", "list", "--password", "wrong-pass", *db]) == 2
    assert "sign-in failed" in capsys.readouterr().err
    monkeypatch.delenv("SURGSIM_USER")
    monkeypatch.delenv("SURGSIM_PASSWORD")
    assert main(["users", "list", *admin, *db]) == 0
    assert "Name of t2" in capsys.readouterr().out  # names are shown inside the lab only


def test_cohorts_are_listed_by_role(records, scenario, capsys, tmp_path, monkeypatch):
    ids, _ = _lab(records, scenario)
    admin = records.login("admin", "admin-pass")
    records.add_cohort("C3", "Empty cohort", access=admin)
    everyone = records.list_cohorts(access=admin)
    assert records.list_cohorts() == everyone  # the station itself: everything
    assert [(c.id, c.name) for c in everyone] == [("C1", "C1"), ("C2", "C2"), ("C3", "Empty cohort")]
    c1 = everyone[0]
    assert c1.trainees == tuple(sorted([ids["t1"], ids["t2"]])) and c1.educators == (ids["edu"],)
    assert everyone[1].trainees == (ids["t3"],) and everyone[2].trainees == ()
    assert c1.created_at.tzinfo is not None
    # an educator: the cohorts they teach, with every member
    assert records.list_cohorts(access=records.login("edu", "edu-pass1")) == [c1]
    # a trainee: their own cohort, and nobody else in it
    (mine,) = records.list_cohorts(access=records.login("t1", "t1-pass12"))
    assert (mine.id, mine.trainees, mine.educators) == ("C1", (ids["t1"],), ())
    assert [c.id for c in records.list_cohorts(access=records.login("t3", "t3-pass12"))] == ["C2"]
    # the CLI says the same
    monkeypatch.setenv("SURGSIM_DATA_DIR", str(tmp_path / "data"))
    db = ["--db", records.url]
    assert main(["users", "cohorts", *db]) == 2  # accounts exist: sign in
    assert "sign in" in capsys.readouterr().err
    assert main(["users", "cohorts", "--json", "--user", "admin", "--password", "admin-pass", *db]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in listed] == ["C1", "C2", "C3"] and listed[0]["educators"] == [ids["edu"]]
    assert main(["users", "cohorts", "--user", "t2", "--password", "t2-pass12", *db]) == 0
    out = capsys.readouterr().out
    assert "C1" in out and ids["t2"] in out and ids["t1"] not in out and "C2" not in out
    assert "1 cohort(s)" in out
