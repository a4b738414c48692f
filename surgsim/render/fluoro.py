"""Fluoroscopy: digitally reconstructed radiographs with devices, contrast and roadmap.

Geometry
--------
A C-arm with a point source and a flat square detector. The source-to-image
distance is :data:`SID` (1.0 m), the source-to-isocentre distance :data:`SOD`
(0.7 m, magnification 1.43 at the isocentre), the detector :data:`DETECTOR_SIZE`
(0.40 m) wide with ``size x size`` pixels. The patient lies supine; at
``lao = cran = 0`` the beam runs posterior to anterior (tube under the table,
detector above). Angles follow :mod:`surgsim.session.imaging`: the detector
direction from the isocentre is ``(sin(lao) cos(cran), -cos(lao) cos(cran),
sin(cran))`` in LPS, the image's column axis ``u = (cos(lao), sin(lao), 0)``
(the patient's left at AP) and its row axis ``v = u x d`` (down the screen:
toward the feet at AP). The image is shown as seen facing the patient, the
patient's right on the viewer's left, head up (radiological convention).

Image
-----
The anatomy image is the line integral of the linear attenuation
``mu = MU_WATER (1 + HU / 1000)`` (``MU_WATER`` = 20.6 /m, water at about
60 keV) through the CT, ray-cast per pixel with trilinear sampling every
:data:`RAY_STEP`. The CT is a contrast CT: its lumen (the segmentation) and a
one-voxel rim around it are set to blood (40 HU) first, so vessels are
invisible without contrast, as in a patient before an injection.

Display convention (the one angiography monitors use): intensity shown as
transmitted, so attenuating matter is dark: bone, contrast-filled vessels
("black vessels") and devices ("black wire") are dark, lung is bright. The
log-domain image is windowed per angle from the anatomy image's
:data:`WINDOW_PERCENTILES` within the body (like the automatic brightness control,
fixed per angle), with soft shoulders so a device over the spine still shows.

Per angle, the anatomy image and a sparse matrix ``M`` (pixels x centerline
points) are computed once and kept in an LRU cache keyed by the angles rounded
to 1 degree and the table position rounded to 1 cm. ``M`` maps a concentration
per centerline point to the lumen's path length per pixel: each lumen voxel is
split into sub-voxels smaller than a pixel, labelled with its nearest
centerline point and splatted bilinearly with the weight
``volume * magnification^2 / pitch^2`` (its mean path length over a pixel).
A frame then only adds ``CONTRAST_MU * M @ c`` (contrast), the devices drawn
as anti-aliased thick polylines, the roadmap and quantum noise.

Contrast: a concentration of 1 is undiluted iodinated contrast (300 mg I/ml),
taken as :data:`CONTRAST_HU` (12,000 HU over blood: iodine adds about 40 HU
per mg I/ml at the ~55 keV effective energy of fluoroscopy, more than at CT's).

Roadmap: the roadmap's lumen image (its peak concentrations projected at its
own angles, which must equal the current ones) brightens the live image
(vessels white, devices black), as a subtracted roadmap does.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage, sparse
from scipy.spatial import cKDTree

from surgsim.errors import AnatomyError

#: Source-to-image distance, metres.
SID = 1.0
#: Source-to-isocentre distance, metres.
SOD = 0.7
#: Detector width and height, metres.
DETECTOR_SIZE = 0.40
#: Linear attenuation of water at the effective energy of fluoroscopy (~60 keV), 1/m.
MU_WATER = 20.6
#: HU of blood, set in the lumen of the contrast CT.
HU_BLOOD = 40.0
#: Attenuation of undiluted contrast (300 mg I/ml) over blood at fluoroscopy energies, HU.
CONTRAST_HU = 12000.0
#: Linear attenuation added per unit concentration of contrast, 1/m.
CONTRAST_MU = MU_WATER * CONTRAST_HU / 1000.0
#: Ray-marching step, metres.
RAY_STEP = 1.0e-3
#: Device attenuation over its outer diameter, 1/m (radiopaque polymer, metal wire).
DEVICE_MU = {"catheter": 400.0, "guidewire": 2500.0}
#: Standard deviation of the quantum noise on the display scale (0..1).
NOISE = 0.012
#: Strength of the roadmap overlay (0..1).
ROADMAP_ALPHA = 0.65
#: Percentiles of the anatomy's line integral (within the body) mapped to the window's ends.
WINDOW_PERCENTILES = (2.0, 98.0)
#: Soft shoulder of the display curve (fraction of the window at each end).
SHOULDER = 0.15


@dataclass(frozen=True)
class DeviceDraw:
    """A device to draw: its node positions, outer diameter and material.

    Attributes
    ----------
    points : (n, 3) float, metres (LPS)
    diameter : float, metres
    kind : str, ``"catheter"`` or ``"guidewire"`` (sets the attenuation)
    """

    points: np.ndarray
    diameter: float = 5.0e-3 / 3.0
    kind: str = "catheter"


def device_from_rod(rod, spec=None) -> DeviceDraw:
    """A :class:`DeviceDraw` of a :class:`~surgsim.physics.rod.RodSolver`'s current shape."""
    spec = spec if spec is not None else rod.spec
    return DeviceDraw(np.asarray(rod.positions, dtype=float).copy(), float(spec.outer_diameter), spec.kind)


# --------------------------------------------------------------------------- geometry


def carm_axes(lao: float, cran: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detector direction and image axes of the C-arm.

    Parameters
    ----------
    lao, cran : float, radians

    Returns
    -------
    d : (3,) unit vector from the isocentre toward the detector
    u : (3,) unit vector of increasing image column (screen right)
    v : (3,) unit vector of increasing image row (screen down)
    """
    cl, sl = math.cos(lao), math.sin(lao)
    cc, sc = math.cos(cran), math.sin(cran)
    d = np.array([sl * cc, -cl * cc, sc])
    u = np.array([cl, sl, 0.0])
    v = np.cross(u, d)
    return d, u, v


@dataclass
class View:
    """One C-arm pose with its precomputed images (see :meth:`FluoroRenderer.view`).

    Attributes
    ----------
    lao, cran : float, radians (rounded to a degree)
    source : (3,) float, metres
    det_center : (3,) float, metres
    d, u, v : (3,) float, unit vectors (see :func:`carm_axes`)
    pitch : float, metres per detector pixel
    size : int, pixels per side
    anatomy : (size, size) float32, line integral of mu (dimensionless)
    lumen : scipy.sparse.csr_matrix (size * size, n_points), metres of lumen per pixel and point
    lo, hi : float, display window of the line integral
    """

    lao: float
    cran: float
    source: np.ndarray
    det_center: np.ndarray
    d: np.ndarray
    u: np.ndarray
    v: np.ndarray
    pitch: float
    size: int
    anatomy: np.ndarray | None = None
    lumen: object = None
    lo: float = 0.0
    hi: float = 1.0

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points onto the detector.

        Parameters
        ----------
        points : (n, 3) float, metres (LPS)

        Returns
        -------
        colrow : (n, 2) float, pixel coordinates (column, row); pixel ``(r, c)``
            has its centre at ``(c, r)``
        magnification : (n,) float, detector size over object size at each point
        """
        x = np.atleast_2d(np.asarray(points, dtype=float)) - self.source
        depth = x @ self.d
        depth = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
        mag = SID / depth
        p = x * mag[:, None]  # on the detector plane, relative to the source
        rel = p - (self.det_center - self.source)
        half = 0.5 * (self.size - 1)
        col = rel @ self.u / self.pitch + half
        row = rel @ self.v / self.pitch + half
        return np.stack([col, row], axis=1), mag


# --------------------------------------------------------------------------- kernels


@numba.njit(parallel=True, fastmath=True, cache=True)
def _drr(mu, vfw, src, det0, du, dv, size, ds, out):  # pragma: no cover - compiled
    nk, nj, ni = mu.shape
    dims = (float(ni - 1), float(nj - 1), float(nk - 1))
    a0 = vfw[0, 0] * src[0] + vfw[0, 1] * src[1] + vfw[0, 2] * src[2] + vfw[0, 3]
    a1 = vfw[1, 0] * src[0] + vfw[1, 1] * src[1] + vfw[1, 2] * src[2] + vfw[1, 3]
    a2 = vfw[2, 0] * src[0] + vfw[2, 1] * src[1] + vfw[2, 2] * src[2] + vfw[2, 3]
    for r in numba.prange(size):
        for c in range(size):
            px = det0[0] + c * du[0] + r * dv[0]
            py = det0[1] + c * du[1] + r * dv[1]
            pz = det0[2] + c * du[2] + r * dv[2]
            b0 = vfw[0, 0] * px + vfw[0, 1] * py + vfw[0, 2] * pz + vfw[0, 3]
            b1 = vfw[1, 0] * px + vfw[1, 1] * py + vfw[1, 2] * pz + vfw[1, 3]
            b2 = vfw[2, 0] * px + vfw[2, 1] * py + vfw[2, 2] * pz + vfw[2, 3]
            length = math.sqrt((px - src[0]) ** 2 + (py - src[1]) ** 2 + (pz - src[2]) ** 2)
            t0 = 0.0
            t1 = 1.0
            ok = True
            for ax in range(3):
                if ax == 0:
                    a, d = a0, b0 - a0
                elif ax == 1:
                    a, d = a1, b1 - a1
                else:
                    a, d = a2, b2 - a2
                hi = dims[ax]
                if abs(d) < 1e-12:
                    if a < 0.0 or a > hi:
                        ok = False
                else:
                    ta = (0.0 - a) / d
                    tb = (hi - a) / d
                    if ta > tb:
                        ta, tb = tb, ta
                    t0 = max(t0, ta)
                    t1 = min(t1, tb)
            if not ok or t1 <= t0:
                out[r, c] = 0.0
                continue
            nseg = int((t1 - t0) * length / ds) + 1
            dt = (t1 - t0) / nseg
            acc = 0.0
            for m in range(nseg):
                t = t0 + (m + 0.5) * dt
                x = a0 + t * (b0 - a0)
                y = a1 + t * (b1 - a1)
                z = a2 + t * (b2 - a2)
                i0 = min(int(x), ni - 2)
                j0 = min(int(y), nj - 2)
                k0 = min(int(z), nk - 2)
                fx = x - i0
                fy = y - j0
                fz = z - k0
                c00 = mu[k0, j0, i0] * (1 - fx) + mu[k0, j0, i0 + 1] * fx
                c01 = mu[k0, j0 + 1, i0] * (1 - fx) + mu[k0, j0 + 1, i0 + 1] * fx
                c10 = mu[k0 + 1, j0, i0] * (1 - fx) + mu[k0 + 1, j0, i0 + 1] * fx
                c11 = mu[k0 + 1, j0 + 1, i0] * (1 - fx) + mu[k0 + 1, j0 + 1, i0 + 1] * fx
                acc += (c00 * (1 - fy) + c01 * fy) * (1 - fz) + (c10 * (1 - fy) + c11 * fy) * fz
            out[r, c] = acc * dt * length


@numba.njit(cache=True)
def _draw_polyline(buf, colrow, width, amp):  # pragma: no cover - compiled
    """Max-combine an anti-aliased thick polyline into ``buf``.

    colrow : (n, 2) pixel coordinates; width : (n,) pixels; amp : (n,) value at full coverage.
    """
    h, w = buf.shape
    for s in range(colrow.shape[0] - 1):
        x0, y0 = colrow[s, 0], colrow[s, 1]
        x1, y1 = colrow[s + 1, 0], colrow[s + 1, 1]
        if not (np.isfinite(x0) and np.isfinite(y0) and np.isfinite(x1) and np.isfinite(y1)):
            continue
        wd = 0.5 * (width[s] + width[s + 1])
        ap = 0.5 * (amp[s] + amp[s + 1])
        we = max(wd, 1.0)
        reach = 0.5 * we + 1.0
        cmin = max(int(math.floor(min(x0, x1) - reach)), 0)
        cmax = min(int(math.ceil(max(x0, x1) + reach)), w - 1)
        rmin = max(int(math.floor(min(y0, y1) - reach)), 0)
        rmax = min(int(math.ceil(max(y0, y1) + reach)), h - 1)
        if cmin > cmax or rmin > rmax:
            continue
        ex, ey = x1 - x0, y1 - y0
        e2 = ex * ex + ey * ey
        for r in range(rmin, rmax + 1):
            for c in range(cmin, cmax + 1):
                if e2 > 1e-12:
                    t = ((c - x0) * ex + (r - y0) * ey) / e2
                    t = min(max(t, 0.0), 1.0)
                else:
                    t = 0.0
                dx = c - (x0 + t * ex)
                dy = r - (y0 + t * ey)
                dist = math.sqrt(dx * dx + dy * dy)
                cov = 0.5 * (we + 1.0) - dist
                if cov <= 0.0:
                    continue
                if cov > 1.0:
                    cov = 1.0
                val = ap * cov
                if val > buf[r, c]:
                    buf[r, c] = val


def _display(x: np.ndarray) -> np.ndarray:
    """Map the normalised line integral (0 = window low, 1 = high) to brightness 0..1.

    Linear (brightness ``1 - x``) in the middle, with exponential shoulders of
    matching slope at both ends, so it never saturates.
    """
    s = SHOULDER
    y = 1.0 - x
    hi = x > 1.0 - s
    y = np.where(hi, s * np.exp(-(x - (1.0 - s)) / s), y)
    lo = x < s
    y = np.where(lo, 1.0 - s * np.exp((x - s) / s), y)
    return y


# --------------------------------------------------------------------------- renderer


class FluoroRenderer:
    """Fluoroscopy images of one CT and its vessel lumen.

    Parameters
    ----------
    volume : Volume
        The contrast CT (HU).
    lumen_mask : (nk, nj, ni) bool
        The vessel lumen on the volume grid (``segment(volume, "vessels")``).
    centerlines : CenterlineGraph
        The case's labelled centerlines (contrast follows them).
    size : int
        Detector pixels per side.
    isocenter : (3,) float, metres, optional
        Default: on the aorta, 5 cm below its highest point (the arch in view).
    cache_size : int
        Angles kept in the LRU cache.
    noise : float
        Standard deviation of the display noise (0 for none).
    """

    def __init__(self, volume, lumen_mask: np.ndarray, centerlines, size: int = 256,
                 isocenter=None, cache_size: int = 24, noise: float = NOISE) -> None:
        mask = np.asarray(lumen_mask, dtype=bool)
        hu = np.asarray(volume.array)
        if mask.shape != hu.shape:
            raise AnatomyError(
                f"FluoroRenderer: lumen_mask shape {mask.shape} differs from the volume's {hu.shape}; "
                "segment the same volume"
            )
        if not mask.any():
            raise AnatomyError("FluoroRenderer: the lumen mask is empty; check the vessel segmentation")
        if not (isinstance(size, (int, np.integer)) and 32 <= size <= 2048):
            raise AnatomyError(f"FluoroRenderer: size must be an integer in 32..2048 pixels, got {size!r}")
        self.size = int(size)
        self.pitch = DETECTOR_SIZE / self.size
        self.centerlines = centerlines
        self.world_from_voxel = np.asarray(volume.world_from_voxel, dtype=float)
        self.voxel_from_world = np.linalg.inv(self.world_from_voxel)
        self.noise = float(noise)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict = OrderedDict()
        self._frame_no = 0
        self.last_frame: np.ndarray | None = None
        self._roadmap_key = None
        self._roadmap_img: np.ndarray | None = None

        # contrast-free CT: lumen and a one-voxel rim set to blood
        lo = np.array([np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))[0] for a in range(3)])
        hi = np.array([np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))[-1] for a in range(3)])
        lo = np.maximum(lo - 2, 0)
        hi = np.minimum(hi + 3, mask.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        sub = mask[box]
        rim = ndimage.binary_dilation(sub, iterations=1) & ~sub
        hu_f = hu.astype(np.float32, copy=True)
        hsub = hu_f[box]
        hsub[sub] = HU_BLOOD
        hsub[rim & (hsub > HU_BLOOD)] = HU_BLOOD
        self.mu = np.ascontiguousarray(np.maximum(0.0, MU_WATER * (1.0 + hu_f / 1000.0)), dtype=np.float32)
        del hu_f

        # centerline points (global index) and the lumen's sub-voxels labelled with them
        self._labels = list(centerlines.branches)
        pts, offsets, keep = [], {}, []
        n = 0
        for label, c in centerlines.branches.items():
            p = np.asarray(c.points, dtype=float)
            offsets[label] = (n, n + len(p))
            ok = np.ones(len(p), dtype=bool)
            if c.parent is not None:  # points still inside the parent's lumen belong to the parent
                par = centerlines.branches[c.parent]
                ps = par.arclength
                for m in range(min(len(p), 60)):
                    s, d = par.project(p[m])
                    if d < float(np.interp(s, ps, par.radii)):
                        ok[m] = False
                    else:
                        break
            pts.append(p)
            keep.append(ok)
            n += len(p)
        self._offsets = offsets
        self.n_points = n
        all_pts = np.concatenate(pts)
        keep_idx = np.flatnonzero(np.concatenate(keep))
        tree = cKDTree(all_pts[keep_idx])
        kji = np.argwhere(mask)
        ijk = kji[:, ::-1].astype(float)
        world = ijk @ self.world_from_voxel[:3, :3].T + self.world_from_voxel[:3, 3]
        _, nearest = tree.query(world)
        voxel_label = keep_idx[nearest]
        # sub-voxels smaller than a pixel at the isocentre
        pix_obj = self.pitch * SOD / SID
        spacing = np.linalg.norm(self.world_from_voxel[:3, :3], axis=0)  # i, j, k
        f = np.maximum(1, np.ceil(spacing / pix_obj).astype(int))
        offs = [((np.arange(fa) + 0.5) / fa - 0.5) for fa in f]
        oi, oj, ok_ = np.meshgrid(*offs, indexing="ij")
        sub_off = np.stack([oi.ravel(), oj.ravel(), ok_.ravel()], axis=1) @ self.world_from_voxel[:3, :3].T
        self._sub_world = (world[:, None, :] + sub_off[None, :, :]).reshape(-1, 3).astype(np.float32)
        self._sub_label = np.repeat(voxel_label, len(sub_off)).astype(np.int64)
        self._sub_volume = abs(float(np.linalg.det(self.world_from_voxel[:3, :3]))) / len(sub_off)

        if isocenter is None:
            roots = [c for c in centerlines.branches.values() if c.parent is None]
            aorta = roots[0] if roots else next(iter(centerlines.branches.values()))
            ap = np.asarray(aorta.points, dtype=float)
            top = ap[int(np.argmax(ap[:, 2]))]
            isocenter = np.array([0.5 * (ap[:, 0].min() + ap[:, 0].max()),
                                  0.5 * (ap[:, 1].min() + ap[:, 1].max()), top[2] - 0.05])
        self.isocenter = np.asarray(isocenter, dtype=float).reshape(3)
        rng = np.random.default_rng(0)
        self._noise_bank = (rng.standard_normal((4, self.size, self.size)) * self.noise).astype(np.float32)

    # ------------------------------------------------------------------ views
    @staticmethod
    def key(lao: float, cran: float, table=None) -> tuple[int, int, int, int, int]:
        """Cache key: angles rounded to whole degrees, table offset to whole centimetres."""
        t = np.zeros(3) if table is None else np.asarray(table, dtype=float)
        return (int(round(math.degrees(lao))), int(round(math.degrees(cran))),
                *(int(round(x * 100.0)) for x in t))

    def geometry(self, lao: float, cran: float, table=None) -> View:
        """The pose for these angles (rounded to a degree), without images."""
        k = self.key(lao, cran, table)
        lao_r, cran_r = math.radians(k[0]), math.radians(k[1])
        d, u, v = carm_axes(lao_r, cran_r)
        iso = self.isocenter + np.array(k[2:], dtype=float) / 100.0
        source = iso - SOD * d
        det_center = source + SID * d
        return View(lao_r, cran_r, source, det_center, d, u, v, self.pitch, self.size)

    def view(self, lao: float, cran: float, table=None) -> View:
        """The pose with its anatomy and lumen images, from the cache or computed now."""
        k = self.key(lao, cran, table)
        hit = self._cache.get(k)
        if hit is not None:
            self._cache.move_to_end(k)
            return hit
        v = self.geometry(lao, cran, table)
        v.anatomy = self._anatomy(v)
        v.lumen = self._lumen(v)
        body = v.anatomy[v.anatomy > 0.05]
        if body.size:
            v.lo, v.hi = (float(x) for x in np.percentile(body, WINDOW_PERCENTILES))
        if v.hi - v.lo < 1e-6:
            v.hi = v.lo + 1.0
        self._cache[k] = v
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return v

    def _anatomy(self, v: View) -> np.ndarray:
        half = 0.5 * (self.size - 1)
        det0 = v.det_center - half * self.pitch * (v.u + v.v)
        out = np.zeros((self.size, self.size), dtype=np.float32)
        _drr(self.mu, self.voxel_from_world, v.source, det0, v.u * self.pitch, v.v * self.pitch,
             self.size, RAY_STEP, out)
        return out

    def _lumen(self, v: View):
        colrow, mag = v.project(self._sub_world.astype(float))
        w = self._sub_volume * mag**2 / self.pitch**2
        c0 = np.floor(colrow[:, 0]).astype(np.int64)
        r0 = np.floor(colrow[:, 1]).astype(np.int64)
        fc = colrow[:, 0] - c0
        fr = colrow[:, 1] - r0
        rows, cols, vals = [], [], []
        for dr, dc, wt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                           (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
            rr, cc = r0 + dr, c0 + dc
            ok = (rr >= 0) & (rr < self.size) & (cc >= 0) & (cc < self.size)
            rows.append(rr[ok] * self.size + cc[ok])
            cols.append(self._sub_label[ok])
            vals.append((w * wt)[ok])
        m = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.size * self.size, self.n_points),
        )
        m.sum_duplicates()
        return m

    # ------------------------------------------------------------------ frames
    def _conc_vector(self, conc: dict) -> np.ndarray:
        vec = np.zeros(self.n_points)
        for label, (a, b) in self._offsets.items():
            c = conc.get(label)
            if c is not None:
                vec[a:b] = np.asarray(c, dtype=float)[: b - a]
        return vec

    def contrast_image(self, v: View, concentration: dict) -> np.ndarray:
        """Line integral added by contrast, (size, size) float32 (0 where none)."""
        vec = self._conc_vector(concentration)
        if not np.any(vec > 0):
            return np.zeros((self.size, self.size), dtype=np.float32)
        return (CONTRAST_MU * (v.lumen @ vec)).reshape(self.size, self.size).astype(np.float32)

    def device_image(self, v: View, devices) -> np.ndarray:
        """Line integral added by the devices, (size, size) float32."""
        total = np.zeros((self.size, self.size), dtype=np.float32)
        if devices is None:
            return total
        if isinstance(devices, (DeviceDraw, np.ndarray)):
            devices = [devices]
        buf = np.zeros_like(total)
        for dev in devices:
            if isinstance(dev, np.ndarray):
                dev = DeviceDraw(dev)
            elif isinstance(dev, tuple):
                dev = DeviceDraw(*dev)
            pts = np.asarray(dev.points, dtype=float)
            if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2:
                continue
            colrow, mag = v.project(pts)
            width = dev.diameter * mag / self.pitch
            mu = DEVICE_MU.get(dev.kind, DEVICE_MU["catheter"])
            amp = mu * 0.25 * math.pi * dev.diameter * np.minimum(width, 1.0)
            buf[:] = 0.0
            _draw_polyline(buf, np.ascontiguousarray(colrow), np.ascontiguousarray(width),
                           np.ascontiguousarray(amp))
            total += buf
        return total

    def _roadmap_image(self, imaging, v: View) -> np.ndarray | None:
        if imaging is None or not hasattr(imaging, "roadmap_valid") or not imaging.roadmap_valid():
            return None
        rm = imaging.roadmap
        key = (id(rm), rm.time, self.key(v.lao, v.cran, getattr(imaging, "table", None)))
        if key != self._roadmap_key:
            img = self.contrast_image(v, rm.concentration)
            ref = float(np.percentile(img[img > 0], 99)) if np.any(img > 0) else 1.0
            self._roadmap_img = np.clip(img / max(ref, 1e-6), 0.0, 1.0)
            self._roadmap_key = key
        return self._roadmap_img

    def frame(self, device_polylines=None, imaging_state=None) -> np.ndarray:
        """One fluoroscopy frame.

        Parameters
        ----------
        device_polylines : DeviceDraw, (n, 3) array, (points, diameter, kind) tuple, or a list of them
            Device node positions, metres (LPS); a bare array is a 5 Fr catheter.
        imaging_state : Imaging, optional
            Supplies ``lao``, ``cran``, ``table`` (optional), ``concentration()``
            and the roadmap; ``None`` is an AP view without contrast.

        Returns
        -------
        (size, size) uint8
            Brightness (dark = attenuating: bone, contrast, devices).
        """
        lao = getattr(imaging_state, "lao", 0.0) if imaging_state is not None else 0.0
        cran = getattr(imaging_state, "cran", 0.0) if imaging_state is not None else 0.0
        table = getattr(imaging_state, "table", None) if imaging_state is not None else None
        v = self.view(lao, cran, table)
        line = v.anatomy
        if imaging_state is not None:
            line = line + self.contrast_image(v, imaging_state.concentration())
        dev = self.device_image(v, device_polylines)
        x = (line + dev - v.lo) * (1.0 / (v.hi - v.lo))
        y = _display(x)
        road = self._roadmap_image(imaging_state, v)
        if road is not None:
            y = y + ROADMAP_ALPHA * road * (1.0 - y) * np.exp(-4.0 * dev)
        if self.noise > 0:
            y = y + self._noise_bank[self._frame_no % len(self._noise_bank)]
        self._frame_no += 1
        out = np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)
        self.last_frame = out
        return out


# --------------------------------------------------------------------------- builders


def fluoro_renderer_for_case(case, volume, lumen_mask: np.ndarray | None = None, size: int = 256,
                             **kwargs) -> FluoroRenderer:
    """A :class:`FluoroRenderer` of a :class:`~surgsim.cases.build.VesselCase` and its CT.

    Parameters
    ----------
    case : VesselCase
    volume : Volume
        The CT the case was built from.
    lumen_mask : (nk, nj, ni) bool, optional
        Default: ``segment(volume, "vessels")`` (about 1 s).
    size : int, detector pixels per side
    """
    if lumen_mask is None:
        from surgsim.anatomy.segment import segment

        lumen_mask = segment(volume, "vessels")
    return FluoroRenderer(volume, lumen_mask, case.centerlines, size=size, **kwargs)


def default_fluoro_renderer(size: int = 256, **kwargs) -> tuple[FluoroRenderer, object]:
    """The default phantom's case and a renderer of it: ``(renderer, case)``."""
    from surgsim.cases.build import phantom_vessel_case
    from surgsim.cases.default import default_case_dicom_dir
    from surgsim.dicom.load import load_series

    case = phantom_vessel_case("default")
    volume = load_series(default_case_dicom_dir())
    return fluoro_renderer_for_case(case, volume, size=size, **kwargs), case
