"""The session log: everything scoring, records and replay need from an attempt.

A session is a pure function of (scenario, anatomy, seed, input log). The log
keeps the input log (what the trainee did, by physics step index, so replay is
exact) and samples of the state at a fixed record rate (what metrics read).
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surgsim.errors import RecordsError

#: Sample channels every endovascular log carries, with their shapes and units.
SAMPLE_CHANNELS: dict[str, str] = {
    "t": "(m,) float, seconds since the start of the attempt",
    "tip": "(m, 3) float, metres (LPS): distal tip position of the active device",
    "depth": "(m,) float, metres: inserted length of the active device",
    "rotation": "(m,) float, radians: hub rotation of the active device",
    "wall_force": "(m,) float, newtons: largest normal wall force on any node",
    "tip_force": "(m,) float, newtons: normal wall force on the distal tip node",
    "contacts": "(m,) int: number of nodes in wall contact",
    "fluoro": "(m,) int: 1 while the X-ray beam is on (fluoroscopy pedal or cine)",
    "contrast_ml": "(m,) float, millilitres: contrast injected so far",
    "dose": "(m,) float, Gy m^2: dose-area product so far",
}


@dataclass(frozen=True)
class InputEvent:
    """One trainee input, applied before physics step ``step`` runs.

    Attributes
    ----------
    step : int
        Physics step index (time = step * dt) at which the input takes effect.
    action : str
        What the input sets, e.g. ``"advance"`` (m/s), ``"rotate"`` (rad/s),
        ``"finish"`` (ends the attempt).
    value : float
        The new value (SI units of the action).
    """

    step: int
    action: str
    value: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"step": int(self.step), "action": self.action, "value": float(self.value)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputEvent:
        return cls(step=int(d["step"]), action=str(d["action"]), value=float(d.get("value", 0.0)))


@dataclass(frozen=True)
class Event:
    """A discrete event of the session (target reached, perforation...)."""

    t: float
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t": float(self.t), "kind": self.kind, "data": dict(self.data)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(t=float(d["t"]), kind=str(d["kind"]), data=dict(d.get("data", {})))


@dataclass
class SessionLog:
    """What one attempt produced.

    Attributes
    ----------
    scenario_id, scenario_hash : str
        The scenario and the hash of its exact content.
    seed : int
        Random seed of the session.
    dt : float
        Physics step, seconds.
    inputs : list of InputEvent
        The input log, in step order.
    samples : dict of str to ndarray
        Recorded channels (see :data:`SAMPLE_CHANNELS`), all with the same length.
    events : list of Event
        Discrete events in time order.
    reference_path_length : float
        Centerline length from access to target, metres (for economy of motion).
    """

    scenario_id: str
    scenario_hash: str
    seed: int
    dt: float
    inputs: list[InputEvent] = field(default_factory=list)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    reference_path_length: float = 0.0

    @property
    def duration(self) -> float:
        """Seconds from start to the last sample."""
        t = self.samples.get("t")
        return float(t[-1]) if t is not None and len(t) else 0.0

    def to_dict(self, *, packed_samples: bool = False) -> dict[str, Any]:
        """JSON-compatible dict.

        Parameters
        ----------
        packed_samples : bool
            False: ``"samples"`` holds the arrays as nested lists (readable, large).
            True: ``"samples_packed"`` holds them as base64 of :func:`pack_samples`
            (exact bits, several times smaller); :meth:`from_dict` reads both.
        """
        d = self.to_dict_without_samples()
        if packed_samples:
            try:
                d["samples_packed"] = base64.b64encode(pack_samples(self.samples)).decode("ascii")
                return d
            except RecordsError:  # a channel that is not a number array: as lists
                pass
        d["samples"] = {k: np.asarray(v).tolist() for k, v in self.samples.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionLog:
        """The log of a :meth:`to_dict` dict (samples as lists or packed)."""
        if "samples_packed" in d:
            samples = unpack_samples(base64.b64decode(d["samples_packed"], validate=True))
        else:
            samples = {k: np.asarray(v) for k, v in d.get("samples", {}).items()}
        return cls(
            scenario_id=d["scenario_id"],
            scenario_hash=d["scenario_hash"],
            seed=int(d["seed"]),
            dt=float(d["dt"]),
            inputs=[InputEvent.from_dict(e) for e in d.get("inputs", [])],
            samples=samples,
            events=[Event.from_dict(e) for e in d.get("events", [])],
            reference_path_length=float(d.get("reference_path_length", 0.0)),
        )

    def to_bytes(self) -> bytes:
        """The compact, lossless stored form (what records store).

        Format 2 (:data:`LOG_MAGIC`, then one xz stream): the canonical JSON of
        :meth:`to_dict_without_samples` and the sample channels as binary columns
        (see :func:`pack_samples`). Every sample keeps its exact bits and dtype, so
        :meth:`hash` is equal after :meth:`from_bytes`. A log with a channel that is
        not a plain number array falls back to format 1 (zlib of the canonical JSON
        of :meth:`to_dict`), which :meth:`from_bytes` also reads.
        """
        try:
            table, data = _encode_samples(self.samples)
        except _Unpackable:
            return self.to_bytes_v1()
        meta = json.dumps(self.to_dict_without_samples(), sort_keys=True, separators=(",", ":"))
        meta_b = meta.encode("utf-8")
        body = b"".join((struct.pack("<I", len(meta_b)), meta_b, table, data))
        return LOG_MAGIC + lzma.compress(body, check=lzma.CHECK_CRC32, preset=_LZMA_PRESET)

    def to_bytes_v1(self) -> bytes:
        """Format 1: zlib of the canonical JSON of :meth:`to_dict` (the first stored form)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return zlib.compress(text.encode("utf-8"), 6)

    @classmethod
    def from_bytes(cls, blob: bytes) -> SessionLog:
        """Read either stored format (2: :data:`LOG_MAGIC`; 1: zlib of JSON).

        Raises
        ------
        RecordsError
            The bytes are neither format (damaged or not a session log).
        """
        blob = bytes(blob)
        try:
            if blob.startswith(LOG_MAGIC):
                body = lzma.decompress(blob[len(LOG_MAGIC):])
                (n,) = struct.unpack_from("<I", body, 0)
                meta = json.loads(body[4:4 + n].decode("utf-8"))
                meta["samples"] = _decode_samples(body, 4 + n)
                return cls.from_dict(meta)
            d = json.loads(zlib.decompress(blob).decode("utf-8"))  # format 1
            if not isinstance(d, dict):
                raise ValueError(f"a JSON {type(d).__name__}, not an object")
            return cls.from_dict(d)
        except (lzma.LZMAError, zlib.error, struct.error, ValueError, KeyError, TypeError) as exc:
            raise RecordsError(
                f"the stored session log (starting {blob[:8]!r}) is damaged or not a surgsim "
                f"session log of format 1 or 2 ({exc}); restore it from a backup"
            ) from exc

    def input_hash(self) -> str:
        """SHA-256 of the canonical input log (what replay must reproduce from)."""
        text = json.dumps([e.to_dict() for e in self.inputs], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def hash(self) -> str:
        """SHA-256 of the whole log, independent of how it is stored.

        Metadata, inputs and events as canonical JSON, then each sample channel's
        kind, shape and little-endian bytes in name order: milliseconds for a
        10-minute log, and equal after a :meth:`to_bytes` / :meth:`from_bytes`
        round trip.
        """
        h = hashlib.sha256()
        meta = self.to_dict_without_samples()
        h.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        for name in sorted(self.samples):
            a = np.asarray(self.samples[name])
            kind = "f" if a.dtype.kind == "f" else "i"
            a = np.ascontiguousarray(a, dtype="<f8" if kind == "f" else "<i8")
            h.update(f"|{name}|{kind}|{a.shape}|".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def to_dict_without_samples(self) -> dict[str, Any]:
        """:meth:`to_dict` less the (large) sample arrays."""
        return {
            "scenario_id": self.scenario_id,
            "scenario_hash": self.scenario_hash,
            "seed": int(self.seed),
            "dt": float(self.dt),
            "inputs": [e.to_dict() for e in self.inputs],
            "events": [e.to_dict() for e in self.events],
            "reference_path_length": float(self.reference_path_length),
        }


# ------------------------------------------------------------------ compact samples
#
# Each channel is stored as binary columns ((m,) arrays; an (m, 3) channel is three
# columns) in its own little-endian dtype, transformed so that a general-purpose
# compressor sees mostly zero bytes, losslessly:
#
# - ``d1`` / ``d2``: first / second differences of the column's bit pattern taken as
#   an integer (modulo 2**bits), zigzag-coded (small negatives become small
#   positives). Time, depth and hub rotation grow by nearly constant steps (d2 is
#   near zero); positions and forces move smoothly (d1 or d2 is small).
# - ``xor``: each bit pattern XOR the previous one (repeated values become zero).
# - ``none``: the bit patterns as they are.
#
# then byte-shuffled (all first bytes, then all second bytes ...) except ``raw``,
# which keeps whole values together (best for a few values that recur, e.g. a
# settled wall force). The transform of each column is the one zlib (level 1)
# compresses best on up to 8 blocks of 2048 values spread over the column; the
# whole is then compressed with xz. Measured on the scripted attempts of
# catheter-lcca-basic: ~21 bytes per 100 Hz sample while the device moves, ~11 at
# rest (format 1, zlib of JSON: ~42 and ~23), i.e. 2 to 3.9 MB for 30 minutes.

#: First bytes of a format-2 stored log (:meth:`SessionLog.to_bytes`).
LOG_MAGIC = b"SGLOG\x02"
#: First bytes of packed samples (:func:`pack_samples`).
SAMPLES_MAGIC = b"SGSMP\x01"
_LZMA_PRESET = 1  # xz preset 6 saves 2 % more at three times the time
_TRIAL_BLOCK = 2048
_TRIAL_BLOCKS = 8
_TRANSFORMS = ("raw", "none", "xor", "d1", "d2")
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_INT = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


class _Unpackable(Exception):
    """A channel that is not a plain number array (stored as format 1 instead)."""


def pack_samples(samples: dict[str, np.ndarray]) -> bytes:
    """Sample channels as compact, exact bytes (xz of binary columns).

    Parameters
    ----------
    samples : dict of str to ndarray
        Channels of bool, integer or float dtype, any shape (first axis: samples).

    Returns
    -------
    bytes
        :data:`SAMPLES_MAGIC` and an xz stream; :func:`unpack_samples` gives back
        arrays with the same dtype, shape and bits.

    Raises
    ------
    RecordsError
        A channel is not a bool, integer or float array.
    """
    try:
        table, data = _encode_samples(samples)
    except _Unpackable as exc:
        raise RecordsError(f"cannot pack the sample channels: {exc}") from exc
    return SAMPLES_MAGIC + lzma.compress(table + data, check=lzma.CHECK_CRC32, preset=_LZMA_PRESET)


def unpack_samples(blob: bytes) -> dict[str, np.ndarray]:
    """The channels of :func:`pack_samples` bytes.

    Raises
    ------
    RecordsError
        Not packed samples, or damaged.
    """
    blob = bytes(blob)
    if not blob.startswith(SAMPLES_MAGIC):
        raise RecordsError(f"packed samples start with {blob[:8]!r}, not {SAMPLES_MAGIC!r}")
    try:
        return _decode_samples(lzma.decompress(blob[len(SAMPLES_MAGIC):]), 0)
    except (lzma.LZMAError, struct.error, ValueError, KeyError, TypeError) as exc:
        raise RecordsError(f"the packed samples are damaged ({exc})") from exc


def _columns(a: np.ndarray) -> np.ndarray:
    """(m, c) little-endian view of a channel (a scalar is one sample of one column)."""
    m = a.shape[0] if a.ndim else 1
    c = int(np.prod(a.shape[1:], dtype=np.int64)) if a.ndim > 1 else 1
    return np.ascontiguousarray(a.reshape(m, c), dtype=a.dtype.newbyteorder("<"))


def _zigzag(d: np.ndarray, width: int) -> np.ndarray:
    s = d.view(_INT[width])
    return ((s << 1) ^ (s >> (8 * width - 1))).view(_UINT[width])


def _unzigzag(z: np.ndarray, width: int) -> np.ndarray:
    ones = np.iinfo(_UINT[width]).max
    return (z >> 1) ^ ((z & 1) * _UINT[width](ones))


def _diff(u: np.ndarray) -> np.ndarray:
    d = u.copy()
    d[1:] -= u[:-1]  # modulo 2**bits
    return d


def _forward(u: np.ndarray, transform: str, width: int) -> np.ndarray:
    if transform in ("raw", "none"):
        return u
    if transform == "xor":
        x = u.copy()
        x[1:] ^= u[:-1]
        return x
    d = _diff(u)
    if transform == "d2":
        d = _diff(d)
    return _zigzag(d, width)


def _inverse(t: np.ndarray, transform: str, width: int) -> np.ndarray:
    if transform in ("raw", "none"):
        return t
    if transform == "xor":
        return np.bitwise_xor.accumulate(t)
    d = _unzigzag(t, width)
    u = np.cumsum(d, dtype=d.dtype)
    return np.cumsum(u, dtype=d.dtype) if transform == "d2" else u


def _shuffle(t: np.ndarray, width: int) -> bytes:
    return np.ascontiguousarray(t.view(np.uint8).reshape(-1, width).T).tobytes()


def _unshuffle(b: bytes, width: int, m: int, dtype: type) -> np.ndarray:
    planes = np.frombuffer(b, np.uint8).reshape(width, m)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(m)


def _trial(u: np.ndarray) -> np.ndarray:
    """Up to :data:`_TRIAL_BLOCKS` evenly spread blocks of :data:`_TRIAL_BLOCK` values."""
    if len(u) <= _TRIAL_BLOCKS * _TRIAL_BLOCK:
        return u
    starts = np.linspace(0, len(u) - _TRIAL_BLOCK, _TRIAL_BLOCKS).astype(np.int64)
    return np.concatenate([u[s:s + _TRIAL_BLOCK] for s in starts])


def _column_bytes(t: np.ndarray, transform: str, width: int) -> bytes:
    return t.tobytes() if transform == "raw" else _shuffle(t, width)


def _encode_column(u: np.ndarray, width: int) -> tuple[str, bytes]:
    """The transform zlib compresses best (tried on a part of a long column), and the
    column's bytes under it."""
    trial = _trial(u)
    sizes = [
        len(zlib.compress(_column_bytes(_forward(trial, name, width), name, width), 1))
        for name in _TRANSFORMS
    ]
    name = _TRANSFORMS[int(np.argmin(sizes))]
    return name, _column_bytes(_forward(u, name, width), name, width)


def _encode_samples(samples: dict[str, np.ndarray]) -> tuple[bytes, bytes]:
    """``(u32 length + channel table JSON, column bytes)`` of the sample channels."""
    table: list[dict[str, Any]] = []
    parts: list[bytes] = []
    for name in sorted(samples):
        a = np.asarray(samples[name])
        if a.dtype.kind not in "biuf" or a.dtype.itemsize not in _UINT:
            raise _Unpackable(f"channel {name!r} has dtype {a.dtype}, not a bool, integer or float")
        cols = _columns(a)
        width = a.dtype.itemsize
        transforms = []
        for j in range(cols.shape[1]):
            u = np.ascontiguousarray(cols[:, j]).view(_UINT[width])
            tname, b = _encode_column(u, width) if len(u) else ("none", b"")
            transforms.append(tname)
            parts.append(b)
        table.append({"name": name, "dtype": cols.dtype.str, "shape": list(a.shape),
                      "transforms": transforms})
    tb = json.dumps(table, separators=(",", ":")).encode("utf-8")
    return struct.pack("<I", len(tb)) + tb, b"".join(parts)


def _decode_samples(buf: bytes, offset: int) -> dict[str, np.ndarray]:
    """The channels that :func:`_encode_samples` wrote at ``buf[offset:]``."""
    (n,) = struct.unpack_from("<I", buf, offset)
    pos = offset + 4
    table = json.loads(buf[pos:pos + n].decode("utf-8"))
    pos += n
    out: dict[str, np.ndarray] = {}
    for ch in table:
        dtype = np.dtype(ch["dtype"])
        width = dtype.itemsize
        shape = tuple(int(x) for x in ch["shape"])
        m = shape[0] if shape else 1
        cols = np.empty((m, len(ch["transforms"])), dtype=_UINT[width])
        for j, tname in enumerate(ch["transforms"]):
            if tname not in _TRANSFORMS:
                raise ValueError(f"unknown column transform {tname!r} of channel {ch['name']!r}")
            b = buf[pos:pos + m * width]
            if len(b) != m * width:
                raise ValueError(f"channel {ch['name']!r} is truncated")
            pos += m * width
            t = np.frombuffer(b, _UINT[width]).copy() if tname == "raw" else _unshuffle(
                b, width, m, _UINT[width])
            cols[:, j] = _inverse(t, tname, width)
        out[ch["name"]] = cols.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)
    if pos != len(buf):
        raise ValueError(f"{len(buf) - pos} bytes after the last channel")
    return out
