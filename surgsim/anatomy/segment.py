"""Label masks from a CT volume: contrast vessels, airway, bone and skin (body).

Every preset returns a boolean mask on the volume's own grid, indexed
``[k, j, i]`` like :attr:`Volume.array`. Thresholds are in Hounsfield units.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from surgsim.dicom.volume import Volume
from surgsim.errors import AnatomyError

PRESETS = ("vessels", "airway", "bone", "skin")

#: Contrast-filled lumen range (HU) after light smoothing.
VESSEL_HU = (150.0, 600.0)
#: Cortical bone (HU): contrast components touching it are bone, not vessels.
CORTEX_HU = 700.0
#: Air (HU) for the body outline.
AIR_HU = -500.0
#: Airway region growing: thresholds tried from strict to loose (HU).
AIRWAY_THRESHOLDS = tuple(float(t) for t in range(-960, -490, 30))
#: Bone threshold (HU).
BONE_HU = 200.0

_SMOOTH_SIGMA_VOXELS = 0.7


# --------------------------------------------------------------------------- geometry helpers


def array_spacing(world_from_voxel: np.ndarray) -> np.ndarray:
    """Voxel size along the array axes ``(k, j, i)``.

    Parameters
    ----------
    world_from_voxel : (4, 4) float

    Returns
    -------
    (3,) float, metres
    """
    w = np.asarray(world_from_voxel, dtype=float)
    return np.linalg.norm(w[:3, :3], axis=0)[::-1].copy()


def axial_axis(world_from_voxel: np.ndarray) -> tuple[int, int]:
    """Array axis closest to the patient's z (superior) axis and its sign.

    Returns
    -------
    axis : int
        0, 1 or 2 in array order ``(k, j, i)``.
    sign : int
        +1 if increasing index goes superior, -1 if inferior.
    """
    w = np.asarray(world_from_voxel, dtype=float)[:3, :3]
    dirs = w / np.linalg.norm(w, axis=0)  # columns = world direction of i, j, k
    zcomp = dirs[2, ::-1]  # array order k, j, i
    axis = int(np.argmax(np.abs(zcomp)))
    return axis, (1 if zcomp[axis] > 0 else -1)


def _world_to_index(volume: Volume, point: np.ndarray) -> tuple[int, int, int]:
    ijk = volume.to_voxel(np.asarray(point, dtype=float).reshape(1, 3))[0]
    kji = np.rint(ijk[::-1]).astype(int)
    return int(kji[0]), int(kji[1]), int(kji[2])


def _fmt_mm(point: np.ndarray) -> str:
    p = np.asarray(point, dtype=float).reshape(3) * 1e3
    return f"({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm"


_SMOOTH_TRUNCATE = 3.0


def _gaussian_weights() -> np.ndarray:
    """The smoothing kernel exactly as scipy applies it: its response to a unit impulse.

    Returns
    -------
    (2 r + 1,) float64, symmetric, ``r = int(3 sigma + 0.5)``
    """
    r = int(_SMOOTH_TRUNCATE * _SMOOTH_SIGMA_VOXELS + 0.5)
    impulse = np.zeros(4 * r + 1)
    impulse[2 * r] = 1.0
    resp = ndimage.gaussian_filter1d(impulse, _SMOOTH_SIGMA_VOXELS, output=np.float64, truncate=_SMOOTH_TRUNCATE)
    return resp[r : 3 * r + 1].copy()


def _smooth_axis0(arr: np.ndarray, out: np.ndarray) -> None:
    """``gaussian_filter1d(arr, sigma, axis=0, output=out)`` (mode reflect), bit for bit.

    scipy filters along the slowest axis line by line (strided, and slow for
    float32 input); here whole planes are combined in blocks of a few slices.
    The arithmetic is scipy's symmetric-kernel loop (float64 accumulation, outer
    taps first, rounded once to float32), so the result is identical.

    Parameters
    ----------
    arr : (nk, nj, ni) float32 (or an integer type), C-contiguous, ``nk > 2 r``
    out : (nk, nj, ni) float32, not sharing memory with ``arr``
    """
    w = _gaussian_weights()
    r = (w.size - 1) // 2
    n = arr.shape[0]
    plane = max(1, arr.shape[1] * arr.shape[2])
    step = max(1, (1 << 20) // plane)
    for k0 in range(0, n, step):
        k1 = min(n, k0 + step)
        idx = np.arange(k0 - r, k1 + r)
        idx = np.where(idx < 0, -idx - 1, idx)  # reflect: d c b a | a b c d | d c b a
        idx = np.where(idx >= n, 2 * n - idx - 1, idx)
        blk = arr[idx].astype(np.float64)
        m = k1 - k0
        acc = blk[r : r + m] * w[r]
        for j in range(r, 0, -1):
            acc += (blk[r - j : r - j + m] + blk[r + j : r + j + m]) * w[r - j]
        out[k0:k1] = acc


def _smoothed(volume: Volume, reference: bool = False) -> np.ndarray:
    """The volume smoothed by a Gaussian of :data:`_SMOOTH_SIGMA_VOXELS` (truncated at 3 sigma).

    Same float32 result, bit for bit, as
    ``ndimage.gaussian_filter(arr, sigma, output=np.float32, truncate=3.0)``
    (axes 0, 1, 2 in turn, each pass rounded to float32); for float32 input
    the first pass is :func:`_smooth_axis0`; ``reference=True`` makes the single
    scipy call instead (the benchmark's naive baseline).

    Returns
    -------
    (nk, nj, ni) float32, HU
    """
    arr = np.asarray(volume.array)
    if arr.dtype not in (np.int16, np.uint8, np.int8, np.uint16, np.float32):
        arr = arr.astype(np.float32)
    elif not arr.flags.c_contiguous:
        # a cropped view: scipy filters a strided input far slower than it copies it
        arr = np.ascontiguousarray(arr)
    # integer input is read directly (exact in float32): no float copy of the volume
    r = int(_SMOOTH_TRUNCATE * _SMOOTH_SIGMA_VOXELS + 0.5)
    if reference or arr.ndim != 3 or arr.shape[0] <= 2 * r or arr.dtype != np.float32:
        # integer input: scipy's own first pass is as fast
        return ndimage.gaussian_filter(arr, _SMOOTH_SIGMA_VOXELS, output=np.float32, truncate=_SMOOTH_TRUNCATE)
    out = np.empty(arr.shape, dtype=np.float32)
    _smooth_axis0(arr, out)
    for ax in (1, 2):
        ndimage.gaussian_filter1d(out, _SMOOTH_SIGMA_VOXELS, axis=ax, output=out, truncate=_SMOOTH_TRUNCATE)
    return out


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of the true voxels (``None`` when there are none)."""
    idx = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        if nz.size == 0:
            return None
        idx.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(idx)


def _dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=n)`` (6-connected cross), about 10x faster.

    Parameters
    ----------
    mask : (nk, nj, ni) bool

    Returns
    -------
    (nk, nj, ni) bool
    """
    m = np.asarray(mask, dtype=bool)
    for _ in range(iterations):
        out = m.copy()
        out[1:] |= m[:-1]
        out[:-1] |= m[1:]
        out[:, 1:] |= m[:, :-1]
        out[:, :-1] |= m[:, 1:]
        out[:, :, 1:] |= m[:, :, :-1]
        out[:, :, :-1] |= m[:, :, 1:]
        m = out
    return m if iterations > 0 else m.copy()


def _erode(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndimage.binary_erosion(mask, iterations=n)`` (6-connected cross, outside = False)."""
    m = np.asarray(mask, dtype=bool)
    for _ in range(iterations):
        out = m.copy()
        out[1:] &= m[:-1]
        out[:-1] &= m[1:]
        out[:, 1:] &= m[:, :-1]
        out[:, :-1] &= m[:, 1:]
        out[:, :, 1:] &= m[:, :, :-1]
        out[:, :, :-1] &= m[:, :, 1:]
        out[0] = out[-1] = False
        out[:, 0] = out[:, -1] = False
        out[:, :, 0] = out[:, :, -1] = False
        m = out
    return m if iterations > 0 else m.copy()


def _fill_holes_cropped(mask: np.ndarray) -> np.ndarray:
    """3D hole filling (6-connected background) restricted to the mask's bounding box.

    Same result as ``ndimage.binary_fill_holes``: the background is labelled
    once in the box and every part not touching a face of the box is filled
    (one labelling pass instead of an iterated dilation; no copy when every
    background part touches a face, the usual case).
    """
    sl = _bbox(mask)
    if sl is None:
        return mask
    sub = ~mask[sl]
    labels, n = ndimage.label(sub)
    out = mask.copy()
    outside = _border_labels(labels, skip_axis=None)
    if outside.size == n:
        return out
    is_hole = np.ones(n + 1, dtype=bool)
    is_hole[outside] = False
    is_hole[0] = False
    out[sl] |= is_hole[labels]
    return out


def _component_at(mask: np.ndarray, seed: tuple[int, int, int]) -> np.ndarray:
    """The 6-connected component of ``mask`` holding voxel ``seed``.

    Same as ``labels == labels[seed]`` with ``labels = ndimage.label(mask)[0]``
    (all False when ``mask[seed]`` is False), by a flood fill that visits only
    the component instead of labelling the whole array.

    Parameters
    ----------
    mask : (nk, nj, ni) bool
    seed : (3,) int, ``(k, j, i)``

    Returns
    -------
    (nk, nj, ni) bool
    """
    from skimage.segmentation import flood

    m = np.asarray(mask, dtype=bool)
    if not m[seed]:
        return np.zeros(m.shape, dtype=bool)
    return flood(m, tuple(int(c) for c in seed), connectivity=1)


def _first_true(mask: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first True voxel in C order (``None`` when there is none)."""
    flat = int(np.argmax(mask))
    idx = np.unravel_index(flat, mask.shape)
    return tuple(int(c) for c in idx) if mask[idx] else None


def _inplane_structure(axis: int) -> np.ndarray:
    """3x3x3 structure connecting voxels only within planes normal to ``axis``."""
    s = np.zeros((3, 3, 3), dtype=bool)
    idx = [slice(None)] * 3
    idx[axis] = 1
    s[tuple(idx)] = ndimage.generate_binary_structure(2, 1)
    return s


def _border_labels(labels: np.ndarray, skip_axis: int | None) -> np.ndarray:
    """Labels present on the array faces (those normal to ``skip_axis`` excluded)."""
    found = []
    for ax in range(3):
        if ax == skip_axis:
            continue
        found.append(np.take(labels, 0, axis=ax).ravel())
        found.append(np.take(labels, labels.shape[ax] - 1, axis=ax).ravel())
    u = np.unique(np.concatenate(found))
    return u[u > 0]


def _largest_component(
    mask: np.ndarray, structure: np.ndarray | None = None, reference: bool = False
) -> np.ndarray:
    """Largest connected component of ``mask`` (the first in C order on ties).

    Labelled in the mask's bounding box only, and not counted when there is a
    single component (the usual body); ``reference=True`` labels and counts the
    whole array (same result).

    Parameters
    ----------
    mask : (nk, nj, ni) bool
    structure : (3, 3, 3) bool, optional
        Connectivity (6-connected by default).

    Returns
    -------
    (nk, nj, ni) bool
    """
    sl = None if reference else _bbox(mask)
    if sl is None:
        labels, n = ndimage.label(mask, structure=structure)
        if n == 0:
            return mask.copy()
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        return labels == int(np.argmax(sizes))
    labels, n = ndimage.label(mask[sl], structure=structure)
    if n == 1:  # the mask is one component
        return np.asarray(mask, dtype=bool).copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    out = np.zeros(mask.shape, dtype=bool)
    out[sl] = labels == int(np.argmax(sizes))
    return out


def body_mask(volume: Volume, smoothed: np.ndarray | None = None, *, reference: bool = False) -> np.ndarray:
    """Patient body: everything not connected to the outside air, holes filled.

    Outside air is found slice by slice (axial planes) from the slice border, so
    an airway that leaves through the top or bottom face stays inside the body.
    ``reference=True`` runs the unoptimised counting (same mask; see :func:`segment`).

    Returns
    -------
    (nk, nj, ni) bool
    """
    s = _smoothed(volume, reference) if smoothed is None else smoothed
    axis, _ = axial_axis(volume.world_from_voxel)
    air = s < AIR_HU
    struct = _inplane_structure(axis)
    labels, n = ndimage.label(air, structure=struct)
    if n:
        is_border = np.zeros(n + 1, dtype=bool)
        is_border[_border_labels(labels, skip_axis=axis)] = True
        body = ~is_border[labels]
    else:
        body = ~air
    # Lungs and airway (air not connected in-plane to the slice border) are kept:
    # they are exactly the in-plane holes of the outline, so no hole filling is needed.
    del labels
    body = _largest_component(body, reference=reference)
    return body


# --------------------------------------------------------------------------- vessels


def _circular_blob(mask2d: np.ndarray, pixel_area: float) -> tuple[bool, float]:
    """Whether the largest blob of a 2D mask is roughly a disc; returns (ok, area m^2)."""
    labels, n = ndimage.label(mask2d)
    if n == 0:
        return False, 0.0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    lab = int(np.argmax(sizes))
    sl = ndimage.find_objects((labels == lab).astype(np.uint8))[0]
    h = sl[0].stop - sl[0].start
    w = sl[1].stop - sl[1].start
    fill = sizes[lab] / (np.pi / 4.0 * h * w)
    aspect = min(h, w) / max(h, w)
    return bool(fill > 0.7 and aspect > 0.5 and sizes[lab] >= 12), float(sizes[lab] * pixel_area)


#: Lumen band searched by the automatic aorta seed (HU): low enough for portal-venous contrast.
AORTA_SEARCH_HU = 120.0
#: In-plane erosion depth that separates a lumen from what it touches (vertebra, organs), metres.
AORTA_CORE_DEPTH = 4e-3
#: Aortic lumen radius range accepted by the automatic seed, metres.
AORTA_RADIUS = (6e-3, 25e-3)
#: Largest HU standard deviation inside a lumen core (cancellous bone is far less uniform).
AORTA_MAX_STD_HU = 40.0


def _erode_inplane(mask: np.ndarray, axis: int, iterations: int) -> np.ndarray:
    """Erosion by a 4-connected cross within the planes normal to ``axis`` (outside = False)."""
    m = np.asarray(mask, dtype=bool)
    others = [a for a in range(3) if a != axis]
    for _ in range(iterations):
        out = m.copy()
        for a in others:
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[a], hi[a] = slice(1, None), slice(None, -1)
            out[tuple(lo)] &= m[tuple(hi)]
            out[tuple(hi)] &= m[tuple(lo)]
            edge = [slice(None)] * 3
            edge[a] = 0
            out[tuple(edge)] = False
            edge[a] = -1
            out[tuple(edge)] = False
        m = out
    return m


def _dilate_inplane(mask: np.ndarray, axis: int, iterations: int) -> np.ndarray:
    """Dilation by a 4-connected cross within the planes normal to ``axis``."""
    m = np.asarray(mask, dtype=bool)
    others = [a for a in range(3) if a != axis]
    for _ in range(iterations):
        out = m.copy()
        for a in others:
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[a], hi[a] = slice(1, None), slice(None, -1)
            out[tuple(lo)] |= m[tuple(hi)]
            out[tuple(hi)] |= m[tuple(lo)]
        m = out
    return m


def _aorta_seed(
    volume: Volume, s: np.ndarray, body: np.ndarray, reference: bool = False
) -> tuple[int, int, int] | None:
    """Voxel ``(k, j, i)`` inside the aorta's lumen, or ``None`` when no candidate fits.

    The aorta is a large, round, uniformly bright tube near the midline, anterior
    to (and often touching) the vertebral body, persistent over many slices.
    Voxels of the body between :data:`AORTA_SEARCH_HU` and the top of the
    vessel band are eroded in plane by :data:`AORTA_CORE_DEPTH`, which cuts a
    lumen from the bone or organ it touches; the eroded cores are labelled in
    3D (tubes). A candidate must have a lumen radius within
    :data:`AORTA_RADIUS`, uniform HU (:data:`AORTA_MAX_STD_HU`: cancellous bone
    is not), round cross-sections, surroundings darker than the lumen (a
    vertebral body's marrow is ringed by brighter cortex) and a length of at least half the
    scan (or 25 mm). The longest, widest candidate near the midline wins.
    """
    w = np.asarray(volume.world_from_voxel, dtype=float)
    axis, _ = axial_axis(w)
    sp = array_spacing(w)
    others = [a for a in range(3) if a != axis]
    px = float(np.sqrt(sp[others[0]] * sp[others[1]]))
    n_erode = max(1, int(round(AORTA_CORE_DEPTH / px)))
    depth = n_erode * px
    band = (s >= AORTA_SEARCH_HU) & (s <= VESSEL_HU[1]) & body
    core = _erode_inplane(band, axis, n_erode)
    labels, n = ndimage.label(core)
    if n == 0:
        return None
    # component sizes counted over the core voxels only (label 0 is never used below)
    lab_of = labels[core]
    sizes = np.bincount(labels.ravel() if reference else lab_of, minlength=n + 1)
    objects = ndimage.find_objects(labels)
    span = np.array([o[axis].stop - o[axis].start for o in objects], dtype=float)
    length = span * sp[axis]
    area = sizes[1:] * px * px / span  # mean core cross-section, m^2
    radius = np.sqrt(area / np.pi) + depth  # lumen radius estimate
    extent = s.shape[axis] * sp[axis]
    min_len = min(25e-3, 0.5 * extent)
    ok = (length >= min_len - 1e-9) & (radius >= AORTA_RADIUS[0]) & (radius <= AORTA_RADIUS[1])
    cand = np.flatnonzero(ok) + 1
    if cand.size == 0:
        return None
    # HU mean and spread of each core (over the core voxels only: one pass)
    vals = s[core].astype(np.float64)
    total = np.bincount(lab_of, weights=vals, minlength=n + 1)
    total2 = np.bincount(lab_of, weights=vals * vals, minlength=n + 1)
    mean = total[cand] / sizes[cand]
    std = np.sqrt(np.maximum(total2[cand] / sizes[cand] - mean * mean, 0.0))
    del lab_of, vals
    keep = std <= AORTA_MAX_STD_HU
    cand, mean = cand[keep], mean[keep]
    if cand.size == 0:
        return None
    # body midline (patient left-right) for the position prior
    bsl = _bbox(body)
    body_centre = np.array([(x.start + x.stop - 1) / 2.0 for x in bsl])[::-1]  # (i, j, k)
    centre_w = volume.to_world(body_centre.reshape(1, 3))[0]
    best = None
    for idx, lab in enumerate(cand):
        lab = int(lab)
        sl = objects[lab - 1]
        pad = n_erode + 4
        box = tuple(
            slice(x.start, x.stop) if a == axis else slice(max(0, x.start - pad), min(s.shape[a], x.stop + pad))
            for a, x in enumerate(sl)
        )
        c = labels[box] == lab
        # round cross-sections: fill of the bounding ellipse and aspect, on up to 7 planes
        planes = np.unique(np.linspace(0, c.shape[axis] - 1, 7).round().astype(int))
        fills, aspects = [], []
        for p in planes:
            plane = np.take(c, p, axis=axis)
            if not plane.any():
                continue
            rows = np.flatnonzero(plane.any(axis=1))
            cols = np.flatnonzero(plane.any(axis=0))
            h = (rows[-1] - rows[0] + 1) * sp[others[0]]
            wd = (cols[-1] - cols[0] + 1) * sp[others[1]]
            a_px = np.count_nonzero(plane) * sp[others[0]] * sp[others[1]]
            fills.append(a_px / (np.pi / 4.0 * h * wd))
            aspects.append(min(h, wd) / max(h, wd))
        if not fills or np.median(fills) < 0.6 or np.median(aspects) < 0.6:
            continue
        # not a bone marrow cylinder: the ring just outside the lumen is not cortex
        lumen = _dilate_inplane(c, axis, n_erode + 1) & band[box]
        ring = _dilate_inplane(lumen, axis, 2) & ~lumen
        ring_vals = s[box][ring]
        if ring_vals.size and float(np.median(ring_vals)) > float(mean[idx]) - 50.0:
            continue  # brighter around than inside: marrow within a cortex, not a lumen
        k0 = c.shape[axis] // 2
        mid = np.take(c, k0, axis=axis)
        if not mid.any():
            mid_idx = int(np.argmax(c.sum(axis=tuple(others))))
            k0, mid = mid_idx, np.take(c, mid_idx, axis=axis)
        pts = np.argwhere(mid)
        centre2 = pts.mean(axis=0)
        p2 = pts[np.argmin(((pts - centre2) ** 2).sum(axis=1))]
        seed = [0, 0, 0]
        seed[axis] = box[axis].start + k0
        seed[others[0]] = box[others[0]].start + int(p2[0])
        seed[others[1]] = box[others[1]].start + int(p2[1])
        pos_w = volume.to_world(np.asarray(seed[::-1], dtype=float).reshape(1, 3))[0]
        dx = float(pos_w[0] - centre_w[0])  # + toward the patient's left
        off = max(0.0, abs(dx - 10e-3) - 30e-3) / 20e-3
        score = float(length[lab - 1] * radius[lab - 1]) / (1.0 + off * off)
        if best is None or score > best[0]:
            best = (score, (int(seed[0]), int(seed[1]), int(seed[2])))
    return None if best is None else best[1]


def _segment_vessels(volume: Volume, s: np.ndarray, seed: np.ndarray | None, reference: bool = False) -> np.ndarray:
    return segment_vessels_with_seed(volume, s, seed, reference=reference)[0]


def segment_vessels_with_seed(
    volume: Volume, s: np.ndarray, seed: np.ndarray | None, refine: bool = True, *, reference: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Vessel lumen mask and the seed it grew from.

    Parameters
    ----------
    volume : Volume
    s : (nk, nj, ni) float32
        The volume smoothed as :func:`segment` does.
    seed : (3,) float, metres (LPS), or None
        ``None``: the aorta is found by :func:`_aorta_seed` (or, failing that,
        the largest tubular contrast component is taken).
    refine : bool
        Move the boundary to the half-way level and fill holes (``False`` for
        a quick coarse mask).
    reference : bool
        Unoptimised counting passes (same result; see :func:`segment`).

    Returns
    -------
    mask : (nk, nj, ni) bool
    seed : (3,) float, metres, or None
        The seed used (``None`` when the fallback choice was made).
    """
    lo, hi = VESSEL_HU
    if seed is None:
        body = body_mask(volume, s, reference=reference)
        found = _aorta_seed(volume, s, body, reference)
        if found is None:
            return _segment_vessels_largest(volume, s, body, refine), None
        seed = volume.to_world(np.asarray(found[::-1], dtype=float).reshape(1, 3))[0]
    lo = _seeded_lower_threshold(volume, s, seed, lo)
    cand = (s >= lo) & (s <= hi)
    sp = array_spacing(volume.world_from_voxel)
    k, j, i = _world_to_index(volume, seed)
    shape = cand.shape
    if not (0 <= k < shape[0] and 0 <= j < shape[1] and 0 <= i < shape[2]):
        raise AnatomyError(
            f"vessels preset: seed {_fmt_mm(seed)} lies outside the volume; "
            "pass --seed x,y,z (metres, LPS) inside the aorta"
        )
    if not cand.any():
        raise AnatomyError(
            f"vessels preset: no voxel between {lo:.0f} and {hi:.0f} HU: this is not a "
            "contrast CT; use the airway, bone or skin preset, or a contrast-enhanced series"
        )
    start: tuple[int, ...] | None = (k, j, i)
    if not cand[k, j, i]:  # look for a contrast voxel within 3 voxels
        start = None
        r = 3
        sl = tuple(slice(max(0, c - r), c + r + 1) for c in (k, j, i))
        sub = cand[sl]
        if sub.any():
            idx = np.argwhere(sub)
            centre = np.array([k, j, i]) - np.array([x.start for x in sl])
            best = idx[np.argmin(np.linalg.norm((idx - centre) * sp, axis=1))]
            start = tuple(int(b + x.start) for b, x in zip(best, sl, strict=True))
    if start is None:
        raise AnatomyError(
            f"vessels preset: seed {_fmt_mm(seed)} has {float(s[k, j, i]):.0f} HU, outside "
            f"the contrast range {lo:.0f}..{hi:.0f} HU; pass --seed x,y,z inside the "
            "contrast-filled lumen of the aorta"
        )
    # the seed's connected component (a flood fill: labelling every component costs far more)
    comp = _component_at(cand, start)  # type: ignore[arg-type]
    del cand
    comp = _cut_bone_leak(comp, s, (k, j, i), sp)
    return (_fill_holes_cropped(_refine_boundary(comp, s)) if refine else comp), np.asarray(seed, dtype=float)


def _segment_vessels_largest(volume: Volume, s: np.ndarray, body: np.ndarray, refine: bool = True) -> np.ndarray:
    """Fallback automatic choice: the largest contrast component away from bone, tubular if possible."""
    lo, hi = VESSEL_HU
    cand = (s >= lo) & (s <= hi) & body  # the CT table and outside objects are not vessels
    labels, n = ndimage.label(cand)
    if n == 0:
        raise AnatomyError(
            f"vessels preset: no voxel between {lo:.0f} and {hi:.0f} HU: this is not a "
            "contrast CT; use the airway, bone or skin preset, or a contrast-enhanced series"
        )
    sp = array_spacing(volume.world_from_voxel)
    voxel_ml = float(np.prod(sp)) * 1e6
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    cortex = _dilate(s > CORTEX_HU, 2)
    near_bone = np.bincount(labels[cortex], minlength=n + 1)
    axis, sign = axial_axis(volume.world_from_voxel)
    min_vox = max(1, int(1.0 / voxel_ml))  # at least 1 ml
    order = np.argsort(sizes)[::-1]
    best_plain = None
    best_tubular = None
    objects = ndimage.find_objects(labels)
    pixel_area = float(np.prod(np.delete(sp, axis)))
    for lab in order[:40]:
        lab = int(lab)
        if lab == 0 or sizes[lab] < min_vox:
            break
        if near_bone[lab] > 0.02 * sizes[lab]:
            continue  # cancellous bone and bone edges
        if best_plain is None:
            best_plain = lab
        # the lumen's most inferior cross-section should be a roughly circular blob
        sl = objects[lab - 1]
        lowest = sl[axis].start if sign > 0 else sl[axis].stop - 1
        plane = np.take(labels[tuple(sl[a] if a != axis else slice(None) for a in range(3))],
                        lowest, axis=axis) == lab
        ok, area = _circular_blob(plane, pixel_area)
        if ok and 20e-6 < area < 2500e-6:
            best_tubular = lab
            break
    lab = best_tubular if best_tubular is not None else best_plain
    if lab is None:
        raise AnatomyError(
            "vessels preset: no contrast-filled lumen found (every component between "
            f"{lo:.0f} and {hi:.0f} HU is small or touches bone); pass --seed x,y,z "
            "(metres, LPS) inside the aorta"
        )
    comp = labels == lab
    return _fill_holes_cropped(_refine_boundary(comp, s)) if refine else comp


#: Lowest lower threshold a faint (portal-venous) lumen may lower the vessel band to (HU).
MIN_SEEDED_LO_HU = 100.0
#: Radius of the opening that cuts a lumen from bone it touches (metres, at most).
BONE_CUT_RADIUS = 4e-3


def _seeded_lower_threshold(volume: Volume, s: np.ndarray, seed: np.ndarray, lo: float) -> float:
    """Lower the vessel band for a faintly enhanced lumen around a user seed.

    The lumen level is the median HU within 3 mm of the seed (voxels above 50 HU);
    the band starts half-way between it and 100 HU (upper soft tissue), never
    above :data:`VESSEL_HU` nor below :data:`MIN_SEEDED_LO_HU`. A bright lumen
    (CT angiography, above 200 HU) keeps the standard band.
    """
    k, j, i = _world_to_index(volume, seed)
    if not (0 <= k < s.shape[0] and 0 <= j < s.shape[1] and 0 <= i < s.shape[2]):
        return lo
    sp = array_spacing(volume.world_from_voxel)
    r = np.maximum(np.ceil(3e-3 / sp).astype(int), 1)
    sl = tuple(slice(max(0, c - n), c + n + 1) for c, n in zip((k, j, i), r, strict=True))
    vals = s[sl]
    vals = vals[(vals > 50.0) & (vals < VESSEL_HU[1])]
    if vals.size < 5:
        return lo
    lumen = float(np.median(vals))
    return float(min(lo, max(MIN_SEEDED_LO_HU, 0.5 * (lumen + 100.0))))


def _cut_bone_leak(comp: np.ndarray, s: np.ndarray, seed_kji: tuple[int, int, int], sp: np.ndarray) -> np.ndarray:
    """Separate a seeded lumen from bone it touches (a calcified aorta on a vertebra).

    When more than 2 % of the component lies next to cortical bone, the lumen
    is opened by reconstruction: the part deeper than ``r`` (at most 4 mm, and
    at most 60 % of the seed's depth) connected to the seed, grown back by
    ``r`` inside the component. Necks thinner than ``2 r`` (the bridge to the
    bone) are cut; vessels thinner than that are lost too, which is why this
    runs only when bone is touched.
    """
    sl = _bbox(comp)
    sl = tuple(slice(max(0, x.start - 2), min(n, x.stop + 2)) for x, n in zip(sl, comp.shape, strict=True))
    c = comp[sl]
    cortex = _dilate(s[sl] > CORTEX_HU, 2)
    if np.count_nonzero(c & cortex) <= 0.02 * np.count_nonzero(c):
        return comp
    local = tuple(x - b.start for x, b in zip(seed_kji, sl, strict=True))
    depth = ndimage.distance_transform_edt(c, sampling=sp)
    seed_depth = float(depth[local]) if c[local] else float(depth.max())
    r = min(BONE_CUT_RADIUS, 0.6 * seed_depth)
    if r < 1.5 * float(sp.max()):
        return comp  # too thin to open without losing the lumen
    core = depth > r
    labels, n = ndimage.label(core)
    if n == 0:
        return comp
    lab = int(labels[local]) if labels[local] else 0
    if lab == 0:  # seed near the wall: take the core component nearest to it
        idx = np.argwhere(core)
        lab = int(labels[tuple(idx[np.argmin(np.linalg.norm((idx - np.asarray(local)) * sp, axis=1))])])
    grown = (ndimage.distance_transform_edt(labels != lab, sampling=sp) <= r + 0.5 * float(sp.min())) & c
    out = np.zeros_like(comp)
    out[sl] = grown
    return out


def _refine_boundary(comp: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Move the lumen boundary to the half-way level between lumen and surrounding tissue.

    The fixed lower threshold (150 HU) finds the lumen robustly but puts its
    wall where partial volume is only about a third contrast, so the mask is
    too wide by a fraction of a voxel. The boundary is re-thresholded at the
    mean of the lumen's median HU and the median HU of a thin shell around
    it, within one voxel of the first mask.
    """
    sl = _bbox(comp)
    sl = tuple(slice(max(0, x.start - 3), min(n, x.stop + 3)) for x, n in zip(sl, comp.shape, strict=True))
    c = comp[sl]
    v = s[sl]
    core = _erode(c, 2)
    if np.count_nonzero(core) < 10:
        return comp
    d1 = _dilate(c, 1)
    shell = _dilate(d1, 1) & ~c
    if np.count_nonzero(shell) < 10:
        return comp
    lumen_hu = float(np.median(v[core]))
    tissue_hu = float(np.median(v[shell]))
    mid = 0.5 * (lumen_hu + tissue_hu)
    if not (tissue_hu + 50.0 < mid < lumen_hu - 50.0):
        return comp  # no clear contrast step: keep the threshold mask
    grown = d1 & (v >= mid) & (v <= VESSEL_HU[1])
    out = np.zeros_like(comp)
    # the component of ``grown`` that overlaps the core most: when one component holds
    # every overlapping voxel (the usual case) it is found by a flood fill from one of them
    hits = grown & core
    first = _first_true(hits)
    if first is not None:
        part = _component_at(grown, first)
        if not np.any(hits & ~part):
            out[sl] = part
            return out
    labels, n = ndimage.label(grown)
    if n == 0:
        return comp
    overlap = np.bincount(labels[core], minlength=n + 1)
    overlap[0] = 0
    out[sl] = labels == int(np.argmax(overlap))
    return out


# --------------------------------------------------------------------------- airway


def _airway_seed(volume: Volume, s: np.ndarray, body: np.ndarray) -> tuple[int, int, int]:
    axis, sign = axial_axis(volume.world_from_voxel)
    sp = array_spacing(volume.world_from_voxel)
    pixel_area = float(np.prod(np.delete(sp, axis)))
    air = (s < -900.0) & body
    labels, n = ndimage.label(air)
    if n == 0:
        raise AnatomyError(
            "airway preset: no air below -900 HU inside the body; pass --seed x,y,z "
            "(metres, LPS) inside the trachea"
        )
    objects = ndimage.find_objects(labels)
    extent = np.array([(o[axis].stop - o[axis].start) * sp[axis] for o in objects])
    body_sl = _bbox(body)
    nslices = s.shape[axis]
    order = range(nslices - 1, -1, -1) if sign > 0 else range(nslices)
    inplane_axes = [a for a in range(3) if a != axis]
    # body centre in plane (midline)
    centre = np.array([(body_sl[a].start + body_sl[a].stop - 1) / 2.0 for a in inplane_axes])
    half = np.array([(body_sl[a].stop - body_sl[a].start) / 2.0 for a in inplane_axes])
    for idx in order:
        plane = np.take(labels, idx, axis=axis)
        if not plane.any():
            continue
        labs = np.unique(plane)
        best = None
        for lab in labs[labs > 0]:
            if extent[lab - 1] < 30e-3:
                continue  # trachea is long; skip small pockets
            blob = plane == lab
            ok, area = _circular_blob(blob, pixel_area)
            if not ok or not (50e-6 < area < 1200e-6):
                continue
            c = np.array(ndimage.center_of_mass(blob))
            if np.all(np.abs(c - centre) < 0.4 * half + 1):
                if best is None or area > best[0]:
                    best = (area, c)
        if best is not None:
            c = np.rint(best[1]).astype(int)
            out = [0, 0, 0]
            out[axis] = idx
            out[inplane_axes[0]], out[inplane_axes[1]] = int(c[0]), int(c[1])
            if labels[tuple(out)] == 0:  # centroid of a crescent: use any voxel of the blob
                pts = np.argwhere(np.take(labels, idx, axis=axis) > 0)
                d = np.linalg.norm(pts - c, axis=1)
                c = pts[np.argmin(d)]
                out[inplane_axes[0]], out[inplane_axes[1]] = int(c[0]), int(c[1])
            return int(out[0]), int(out[1]), int(out[2])
    raise AnatomyError(
        "airway preset: no tube of air found in the upper slices inside the body (trachea); "
        "pass --seed x,y,z (metres, LPS) inside the trachea"
    )


def _seed_component(
    full: np.ndarray | None,
    s: np.ndarray,
    body: np.ndarray,
    t: float,
    seed: tuple[int, int, int],
    box: tuple[slice, ...] | None,
    margin: np.ndarray,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Component of ``(s < t) & body`` holding ``seed``, searched in a window when possible.

    The window is the previous component's bounding box plus ``margin``; if the
    component reaches a window face that is not a volume face, it is labelled
    again on the whole volume. Returns the mask and the next window.
    """
    shape = s.shape
    if box is not None:
        sub = (s[box] < t) & body[box]
        labels, _ = ndimage.label(sub)
        local = tuple(c - b.start for c, b in zip(seed, box, strict=True))
        comp_sub = labels == labels[local]
        touches = False
        for ax in range(3):
            if box[ax].start > 0 and np.take(comp_sub, 0, axis=ax).any():
                touches = True
            if box[ax].stop < shape[ax] and np.take(comp_sub, comp_sub.shape[ax] - 1, axis=ax).any():
                touches = True
        if not touches:
            comp = np.zeros(shape, dtype=bool)
            comp[box] = comp_sub
            inner = _grow_box(comp_sub, np.zeros(3, dtype=int))
            offset = tuple(slice(b.start + x.start, b.start + x.stop) for b, x in zip(box, inner, strict=True))
            return comp, tuple(
                slice(max(0, x.start - m), min(n, x.stop + m))
                for x, m, n in zip(offset, margin, shape, strict=True)
            )
    if full is None:
        full = (s < t) & body
    labels, _ = ndimage.label(full)
    comp = labels == labels[seed]
    return comp, _grow_box(comp, margin)


def _grow_box(comp: np.ndarray, margin: np.ndarray) -> tuple[slice, ...]:
    sl = _bbox(comp)
    return tuple(
        slice(max(0, x.start - m), min(n, x.stop + m))
        for x, m, n in zip(sl, margin, comp.shape, strict=True)
    )


def _segment_airway(volume: Volume, s: np.ndarray, seed: np.ndarray | None) -> np.ndarray:
    body = body_mask(volume, s)
    if seed is not None:
        k, j, i = _world_to_index(volume, seed)
        shape = s.shape
        if not (0 <= k < shape[0] and 0 <= j < shape[1] and 0 <= i < shape[2]):
            raise AnatomyError(
                f"airway preset: seed {_fmt_mm(seed)} lies outside the volume; "
                "pass --seed x,y,z (metres, LPS) inside the trachea"
            )
        if s[k, j, i] >= AIRWAY_THRESHOLDS[-1]:
            raise AnatomyError(
                f"airway preset: seed {_fmt_mm(seed)} has {float(s[k, j, i]):.0f} HU, not air; "
                "pass --seed x,y,z inside the trachea"
            )
    else:
        k, j, i = _airway_seed(volume, s, body)
    # region growing with leakage control: loosen the threshold while the volume
    # grows smoothly; stop before the step where it explodes into the lungs.
    sp = array_spacing(volume.world_from_voxel)
    voxel_ml = float(np.prod(sp)) * 1e6
    best = None
    prev_vol = None
    box = None
    margin = np.maximum(np.ceil(20e-3 / sp).astype(int), 2)
    for t in AIRWAY_THRESHOLDS:
        if s[k, j, i] >= t:
            continue
        comp, box = _seed_component((s < t) & body if box is None else None, s, body, t, (k, j, i), box, margin)
        vol = float(comp.sum()) * voxel_ml
        if prev_vol is not None and (vol > 1.6 * prev_vol + 5.0 or vol > 800.0):
            break
        best, prev_vol = comp, vol
    if best is None:
        raise AnatomyError(
            "airway preset: the seed region leaks into the lungs at every threshold; "
            "pass --seed x,y,z inside the trachea, away from the lung"
        )
    return _fill_holes_cropped(best)


# --------------------------------------------------------------------------- bone, skin


def _segment_bone(volume: Volume, s: np.ndarray) -> np.ndarray:
    bone = s > BONE_HU
    try:
        vessels = _segment_vessels(volume, s, None)
    except AnatomyError:
        vessels = None
    if vessels is not None:
        bone &= ~_dilate(vessels, 1)
    labels, n = ndimage.label(bone)
    if n == 0:
        raise AnatomyError(
            f"bone preset: no voxel above {BONE_HU:.0f} HU; is this a CT in Hounsfield units?"
        )
    sizes = np.bincount(labels.ravel())
    sp = array_spacing(volume.world_from_voxel)
    min_vox = max(1, int(0.1 / (float(np.prod(sp)) * 1e6)))  # drop specks < 0.1 ml
    # bone has a cortex: other bright components (contrast organs, bowel) do not
    cortical = np.bincount(labels[s > CORTEX_HU], minlength=n + 1)
    keep = (sizes >= min_vox) & (cortical > 0)
    keep[0] = False
    bone = keep[labels]
    if not bone.any():
        raise AnatomyError(
            f"bone preset: nothing above {BONE_HU:.0f} HU with a cortex above {CORTEX_HU:.0f} HU; "
            "is this a CT in Hounsfield units?"
        )
    return _fill_holes_cropped(bone)


def segment(volume: Volume, preset: str, seed: np.ndarray | None = None, *, reference: bool = False) -> np.ndarray:
    """Segment one structure of a CT volume.

    Parameters
    ----------
    volume : Volume
        CT in Hounsfield units.
    preset : str
        One of :data:`PRESETS`: ``"vessels"`` (contrast-filled lumen connected to
        the seed, or the largest tubular contrast component), ``"airway"``
        (trachea and bronchi, lungs excluded), ``"bone"`` (above 200 HU, contrast
        lumen excluded) or ``"skin"`` (the filled body).
    seed : (3,) float, metres (LPS), optional
        A point inside the structure (vessels, airway); found automatically when
        omitted.
    reference : bool
        Run the unoptimised implementation: one ``scipy.ndimage.gaussian_filter``
        call for the smoothing and full-volume component counting (the same
        mask, bit for bit, only slower): the anatomy benchmark's naive baseline.

    Returns
    -------
    (nk, nj, ni) bool

    Raises
    ------
    AnatomyError
        Unknown preset, or nothing usable found (the message says what to try).
    """
    if preset not in PRESETS:
        raise AnatomyError(f"unknown segmentation preset {preset!r}; use one of {', '.join(PRESETS)}")
    if np.asarray(volume.array).ndim != 3 or min(volume.shape) < 2:
        raise AnatomyError(f"{preset} preset: the volume must be 3D with at least 2 slices, got {volume.shape}")
    s = _smoothed(volume, reference)
    if preset == "vessels":
        return _segment_vessels(volume, s, seed, reference)
    if preset == "airway":
        return _segment_airway(volume, s, seed)
    if preset == "bone":
        return _segment_bone(volume, s)
    body = body_mask(volume, s)
    if not body.any():
        raise AnatomyError("skin preset: no body found (the whole volume is air?)")
    return _fill_holes_cropped(body)
