"""Stored session logs: compact and exact (a 30-minute attempt in under 3 MB).

The 30-minute log is synthetic but shaped like the endovascular session's own
(surgsim/session/session.py: DT = 1 ms, a sample every RECORD_EVERY = 10 steps, so
100 Hz): time as ``step * dt``; depth and hub rotation integrated from hub speeds;
a tip that follows the vessel with the jerky motion of the rod solver while the
device moves (second differences ~5e-5 m, as measured on the scripted expert and
novice attempts of catheter-lcca-basic) and settles to ~1e-14 m jitter when the
trainee holds still (as measured after 40 s of holding); wall force noisy in
contact and nearly constant at rest; pedal fluoroscopy with its dose, and contrast
injections. About a third of the time the device moves.
"""

from __future__ import annotations

import base64
import json
import time
import zlib

import numpy as np
import pytest
from scipy.signal import lfilter

from surgsim.errors import RecordsError
from surgsim.scoring.log import (
    LOG_MAGIC,
    Event,
    InputEvent,
    SessionLog,
    pack_samples,
    unpack_samples,
)

DT = 1e-3
RECORD_EVERY = 10  # surgsim.session.session.RECORD_EVERY: 100 Hz


def _segments(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) bool: True while the trainee moves the device (moves 2-15 s, holds 3-30 s)."""
    moving = np.zeros(n, bool)
    i, move = 0, True
    while i < n:
        length = int(rng.uniform(2, 15) * 100) if move else int(rng.uniform(3, 30) * 100)
        moving[i:i + length] = move
        i += length
        move = not move
    return moving


def realistic_log(minutes: float = 30.0, seed: int = 7) -> SessionLog:
    """A synthetic endovascular log of ``minutes`` at the session's 100 Hz record rate."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * 100) + 1
    steps = np.arange(n, dtype=np.int64) * RECORD_EVERY
    t = np.array([int(k) * DT for k in steps])  # as Session.time: step_index * dt
    moving = _segments(rng, n)
    starts = np.flatnonzero(np.diff(moving.astype(int)) == 1) + 1
    speed = np.zeros(n)
    spin = np.zeros(n)
    for s in np.concatenate([[0], starts]):
        e = s + int(np.argmin(moving[s:])) if not moving[s:].all() else n
        speed[s:e] = rng.choice([-0.01, 0.005, 0.01, 0.02, 0.05])
        spin[s:e] = rng.choice([0.0, 0.0, 0.5, -0.5, 2.0])
    # integrated like the hub: += speed * step every record interval (cumsum adds in order)
    depth = np.cumsum(np.concatenate([[0.02], speed[1:] * (RECORD_EVERY * DT)]))
    rotation = np.cumsum(spin * (RECORD_EVERY * DT))
    # the tip: a curved vessel path by depth, plus the rod's jerky motion while moving
    # (AR(1) offsets) that settle exponentially and jitter by ~1e-14 m at rest
    path = np.stack([0.03 * np.sin(4 * depth), -0.02 * np.cos(3 * depth), 0.25 * depth], axis=1)
    kicks = np.where(moving[:, None], rng.normal(0, 5e-5, (n, 3)), 0.0)
    offset = lfilter([1.0], [1.0, -0.9], kicks, axis=0)  # o[i] = 0.9 o[i-1] + kick[i]
    jitter = np.where(moving[:, None], 0.0, rng.normal(0, 1e-14, (n, 3)))
    tip = path + offset + jitter
    # wall force: noisy in contact while moving, a few recurring values at rest
    wall = np.where(rng.random(n) < 0.9, np.abs(0.02 + np.cumsum(rng.normal(0, 2e-3, n)) % 0.3), 0.0)
    rest = np.round(wall, 3) + 1e-12 * rng.integers(-40, 40, n)
    wall_force = np.where(moving, wall, np.abs(rest))
    tip_force = np.where(rng.random(n) < 0.2, wall_force * rng.random(n), 0.0)
    contacts = np.where(moving, rng.integers(0, 12, n), 7).astype(int)
    fluoro = (np.sin(t / 37.0) + 0.3 * np.sin(t / 5.3) > 0.4).astype(int)
    dose = np.cumsum(fluoro * 1.7e-6 * RECORD_EVERY * DT)
    inject = np.zeros(n)
    for start in range(6000, n, 12000):  # 5 ml at 4 ml/s every 2 minutes
        inject[start:start + 125] = 4.0 * RECORD_EVERY * DT
    contrast_ml = np.cumsum(inject)
    inputs = [InputEvent(int(steps[s]), "advance", float(speed[s])) for s in starts]
    inputs.append(InputEvent(int(steps[-1]), "finish"))
    return SessionLog(
        scenario_id="catheter-lcca-basic",
        scenario_hash="0" * 64,
        seed=seed,
        dt=DT,
        inputs=inputs,
        samples={
            "t": t, "tip": tip, "depth": depth, "rotation": rotation,
            "wall_force": wall_force, "tip_force": tip_force, "contacts": contacts,
            "fluoro": fluoro, "contrast_ml": contrast_ml, "dose": dose,
        },
        events=[Event(float(t[-1]), "finish", {"reason": "finish"})],
        reference_path_length=0.28,
    )


@pytest.fixture(scope="module")
def long_log() -> SessionLog:
    return realistic_log(30.0)


def test_a_30_minute_log_is_stored_in_under_3_mb_and_exactly(long_log):
    t0 = time.perf_counter()
    blob = long_log.to_bytes()
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = SessionLog.from_bytes(blob)
    decode_s = time.perf_counter() - t0
    old = long_log.to_bytes_v1()
    print(f"\n30-minute log ({len(long_log.samples['t'])} samples at 100 Hz): "
          f"format 1 (zlib JSON) {len(old) / 1e6:.2f} MB, format 2 {len(blob) / 1e6:.2f} MB; "
          f"encode {encode_s:.2f} s, decode {decode_s:.2f} s")
    assert blob.startswith(LOG_MAGIC)
    assert len(blob) < 3e6
    assert len(blob) < 0.6 * len(old)
    assert back.hash() == long_log.hash()
    for name, a in long_log.samples.items():
        b = back.samples[name]
        assert b.dtype == a.dtype and b.shape == a.shape, name
        assert a.tobytes() == b.tobytes(), name  # every bit, not just equal values
    assert back.to_dict_without_samples() == long_log.to_dict_without_samples()


def test_old_format_logs_still_read_with_the_same_hash():
    log = realistic_log(0.5, seed=3)
    old = log.to_bytes_v1()
    assert old[:1] == b"\x78"  # zlib of the canonical JSON, as stored before
    back = SessionLog.from_bytes(old)
    assert back.hash() == log.hash()
    assert SessionLog.from_bytes(back.to_bytes()).hash() == log.hash()


def test_odd_channels_survive_exactly():
    rng = np.random.default_rng(0)
    samples = {
        "f": np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1.0, np.nextafter(1.0, 2.0)]),
        "b": rng.random(8) > 0.5,
        "i32": rng.integers(-(2**31), 2**31 - 1, 8, dtype=np.int32),
        "u8": rng.integers(0, 255, (8, 2), dtype=np.uint8),
        "f32": rng.normal(0, 1, (8, 2, 2)).astype(np.float32),
        "big": rng.normal(0, 1, 8).astype(">f8"),
        "i64": np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0, -1, 1, 2, 3, 4]),
        "empty": np.zeros((0, 3)),
        "scalar": np.array(2.5),
    }
    back = unpack_samples(pack_samples(samples))
    assert sorted(back) == sorted(samples)
    for name, a in samples.items():
        b = back[name]
        assert b.shape == a.shape and b.dtype.kind == a.dtype.kind, name
        assert b.astype(a.dtype).tobytes() == a.tobytes(), name
    log = SessionLog("s", "h", 1, DT, samples=samples)
    assert SessionLog.from_bytes(log.to_bytes()).hash() == log.hash()


def test_a_log_with_text_channels_falls_back_to_the_first_format():
    log = SessionLog("s", "h", 1, DT, samples={"t": np.arange(3) * 0.01, "label": np.array(["a", "b", "c"])})
    blob = log.to_bytes()
    assert not blob.startswith(LOG_MAGIC)
    assert SessionLog.from_bytes(blob).samples["label"].tolist() == ["a", "b", "c"]
    with pytest.raises(RecordsError, match="label"):
        pack_samples(log.samples)


def test_packed_dicts_round_trip_and_are_checked():
    log = realistic_log(0.2, seed=5)
    d = json.loads(json.dumps(log.to_dict(packed_samples=True)))
    assert "samples" not in d and "samples_packed" in d
    assert SessionLog.from_dict(d).hash() == log.hash()
    assert SessionLog.from_dict(log.to_dict()).hash() == log.hash()  # lists still read
    raw = bytearray(base64.b64decode(d["samples_packed"]))
    raw[len(raw) // 2] ^= 0xFF
    d["samples_packed"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(RecordsError, match="damaged"):
        SessionLog.from_dict(d)


def test_damaged_stored_logs_are_reported():
    blob = bytearray(realistic_log(0.2).to_bytes())
    blob[40] ^= 0x55
    with pytest.raises(RecordsError, match="damaged"):
        SessionLog.from_bytes(bytes(blob))
    with pytest.raises(RecordsError, match="not a surgsim"):
        SessionLog.from_bytes(b"PK\x03\x04 something else")
    with pytest.raises(RecordsError):
        SessionLog.from_bytes(zlib.compress(b"[1, 2]"))


# ------------------------------------------------------------------ stored attempts and bundles


def test_attempts_stored_in_the_old_format_still_read(tmp_path):
    from sqlalchemy import text
    from test_records import make_log

    from surgsim.paths import SCENARIOS_DIR
    from surgsim.records import Records
    from surgsim.records.export import load_bundle, write_bundle
    from surgsim.scenarios import load_scenario
    from surgsim.scoring import score

    scenario = load_scenario(SCENARIOS_DIR / "catheter-lcca-basic.yaml")
    log = make_log(scenario, seed=2)
    with Records(f"sqlite:///{tmp_path / 'lab.db'}", journal_dir=tmp_path / "j") as r:
        new = r.add_attempt("T-new", scenario, log, score(log, scenario))
        old = r.add_attempt("T-old", scenario, log, score(log, scenario))
        with r.engine.begin() as conn:  # as a station of the first version stored it
            conn.execute(text("UPDATE attempts SET log = :b WHERE id = :i"), {"b": log.to_bytes_v1(), "i": old})
        rec_old, rec_new = r.get_attempt(old), r.get_attempt(new)
        assert rec_new.log_bytes.startswith(LOG_MAGIC) and not rec_old.log_bytes.startswith(LOG_MAGIC)
        assert rec_old.log.hash() == rec_new.log.hash() == log.hash() == rec_old.log_hash
        assert len(rec_new.log_bytes) < 0.7 * len(rec_old.log_bytes)
        bundle = write_bundle(r, old, tmp_path / "b.json")
    d = json.loads(bundle.read_text())
    assert d["version"] == 2 and "samples_packed" in d["log"] and "samples" not in d["log"]
    assert load_bundle(bundle).log.hash() == log.hash()
    # a bundle of the first version (samples as JSON lists) still loads
    d["version"] = 1
    d["log"] = log.to_dict()
    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps(d))
    assert load_bundle(v1).log.hash() == log.hash()
    d["version"] = 3
    v1.write_text(json.dumps(d))
    with pytest.raises(RecordsError, match="version 3 is not supported"):
        load_bundle(v1)
