"""Labelled centerlines of vessel trees and airways from label masks.

The mask is thinned to a skeleton (scikit-image, 3D), the skeleton voxels are
joined into a graph (26-neighbourhood, world-space edge lengths) reduced to a
spanning tree, short spurs are pruned, and the tree is split into branches:
the main path first (the one carrying the most lumen volume, sum of r^2 ds),
then the side paths leaving it, recursively. Each branch is smoothed,
extended along its tangent to the end of the lumen at free ends, resampled
every millimetre, and given radii from the signed distance field.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from surgsim.anatomy.distance import DistanceField, _array_spacing, signed_distance
from surgsim.errors import AnatomyError

#: Sampling step of the output centerlines, metres.
STEP = 1e-3
#: Gaussian smoothing of the skeleton paths (standard deviation), metres.
SMOOTH_SIGMA = 2.5e-3
#: Spurs shorter than this many local radii are pruned.
SPUR_FACTOR = 1.5

ARCH_LABELS = ("brachiocephalic", "left_common_carotid", "left_subclavian")


# --------------------------------------------------------------------------- data


def _cumlen(points: np.ndarray) -> np.ndarray:
    if len(points) < 2:
        return np.zeros(len(points))
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def _project(points: np.ndarray, p: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Closest point of a polyline to ``p``: (arc length, distance, point)."""
    p = np.asarray(p, dtype=float).reshape(3)
    if len(points) == 1:
        return 0.0, float(np.linalg.norm(points[0] - p)), points[0].copy()
    a = points[:-1]
    ab = points[1:] - a
    denom = np.maximum((ab * ab).sum(axis=1), 1e-30)
    t = np.clip(((p - a) * ab).sum(axis=1) / denom, 0.0, 1.0)
    q = a + t[:, None] * ab
    d = np.linalg.norm(q - p, axis=1)
    i = int(np.argmin(d))
    s = _cumlen(points)
    return float(s[i] + t[i] * np.sqrt(denom[i])), float(d[i]), q[i]


@dataclass(frozen=True)
class Centerline:
    """One branch of a centerline tree.

    Attributes
    ----------
    label : str
        Anatomical name (``"aorta"``, ``"left_subclavian"``, ``"trachea"``...).
    points : (n, 3) float, metres (LPS)
        About 1 mm apart, from the branch start to its end. The aorta runs from
        the access end (descending aorta) to the aortic root; side branches
        start at their junction on the parent's centerline.
    radii : (n,) float, metres
        Lumen radius (distance to the wall) at each point.
    parent : str or None
        Label of the branch this one leaves.
    """

    label: str
    points: np.ndarray
    radii: np.ndarray
    parent: str | None = None

    @property
    def length(self) -> float:
        """Arc length, metres."""
        return float(_cumlen(np.asarray(self.points, dtype=float))[-1]) if len(self.points) else 0.0

    @property
    def arclength(self) -> np.ndarray:
        """(n,) cumulative arc length at each point, metres."""
        return _cumlen(np.asarray(self.points, dtype=float))

    def point_at(self, distance: float) -> np.ndarray:
        """(3,) point ``distance`` metres along the branch (clamped to its ends)."""
        pts = np.asarray(self.points, dtype=float)
        s = _cumlen(pts)
        d = float(np.clip(distance, 0.0, s[-1]))
        return np.array([np.interp(d, s, pts[:, a]) for a in range(3)])

    def radius_at(self, distance: float) -> float:
        """Lumen radius ``distance`` metres along the branch, metres."""
        s = _cumlen(np.asarray(self.points, dtype=float))
        return float(np.interp(np.clip(distance, 0.0, s[-1]), s, np.asarray(self.radii, dtype=float)))

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Arc length of the closest point of the branch to ``point`` and the distance to it, metres."""
        s, d, _ = _project(np.asarray(self.points, dtype=float), point)
        return s, d


@dataclass(frozen=True)
class CenterlineGraph:
    """Labelled centerline branches forming a tree (each branch starts on its parent)."""

    branches: dict[str, Centerline] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label, c in self.branches.items():
            if c.parent is not None and c.parent not in self.branches:
                raise AnatomyError(f"centerline {label!r} names a missing parent {c.parent!r}")

    def _get(self, label: str) -> Centerline:
        try:
            return self.branches[label]
        except KeyError:
            raise AnatomyError(
                f"no centerline labelled {label!r}; available: {', '.join(self.branches) or 'none'}"
            ) from None

    def point_at(self, label: str, distance: float) -> np.ndarray:
        """(3,) point ``distance`` metres along branch ``label`` from its start, metres."""
        return self._get(label).point_at(distance)

    def junction(self, label: str) -> float:
        """Arc length along the parent where branch ``label`` starts, metres (0 for a root)."""
        c = self._get(label)
        if c.parent is None:
            return 0.0
        s, _ = self._get(c.parent).project(np.asarray(c.points, dtype=float)[0])
        return s

    def locate(self, point: np.ndarray) -> tuple[str, float, float]:
        """Nearest branch to ``point``: (label, arc length along it, distance to it), metres."""
        if not self.branches:
            raise AnatomyError("the centerline graph is empty")
        best = None
        for label, c in self.branches.items():
            s, d = c.project(point)
            if best is None or d < best[2] - 1e-9:
                best = (label, s, d)
        return best  # type: ignore[return-value]

    def _chain(self, label: str, pos: float) -> list[tuple[str, float, float]]:
        """[(label, position, cost to climb here)] from a position up to the root."""
        out = [(label, pos, 0.0)]
        cost = 0.0
        seen = {label}
        while True:
            c = self.branches[label]
            if c.parent is None:
                return out
            cost += pos  # back to the branch start, which lies on the parent
            pos = self.junction(label)
            label = c.parent
            if label in seen:
                raise AnatomyError(f"centerline parents form a cycle through {label!r}")
            seen.add(label)
            out.append((label, pos, cost))

    def path_length(self, from_point: np.ndarray, to_label: str, to_distance: float) -> float:
        """Length along the tree from the branch point nearest ``from_point`` to a position.

        Parameters
        ----------
        from_point : (3,) float, metres
            Projected on the nearest branch.
        to_label : str
            Target branch.
        to_distance : float, metres
            Arc length along the target branch.

        Returns
        -------
        float, metres
        """
        target = self._get(to_label)
        to_distance = float(np.clip(to_distance, 0.0, target.length))
        a_label, a_pos, _ = self.locate(from_point)
        ca = self._chain(a_label, a_pos)
        cb = self._chain(to_label, to_distance)
        up_b = {lab: (pos, cost) for lab, pos, cost in cb}
        for lab, pos, cost in ca:
            if lab in up_b:
                pos_b, cost_b = up_b[lab]
                return float(cost + cost_b + abs(pos - pos_b))
        raise AnatomyError(f"{a_label!r} and {to_label!r} are not connected in the centerline graph")


# --------------------------------------------------------------------------- skeleton tree


@dataclass
class _Tree:
    pos: np.ndarray  # (n, 3) world points of skeleton nodes
    radius: np.ndarray  # (n,) metres
    adj: list[list[int]]
    sub_mask: np.ndarray  # cropped mask (with a 1-voxel False border)
    w_sub: np.ndarray  # world_from_voxel of the crop
    field: DistanceField  # signed distance of the crop
    spacing: np.ndarray  # (3,) voxel size along k, j, i
    vol_min: np.ndarray  # (3,) index (k, j, i) of the volume's first voxel in crop coordinates
    vol_max: np.ndarray  # (3,) index of its last voxel in crop coordinates


_OFFSETS = np.array(
    [(dk, dj, di) for dk in (-1, 0, 1) for dj in (-1, 0, 1) for di in (-1, 0, 1) if (dk, dj, di) > (0, 0, 0)]
)


def _skeleton_tree(mask: np.ndarray, world_from_voxel: np.ndarray, what: str) -> _Tree:
    from skimage.morphology import skeletonize

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or not mask.any():
        raise AnatomyError(f"{what} centerlines: the mask is empty; check the segmentation")
    w = np.asarray(world_from_voxel, dtype=float)
    sp = _array_spacing(w)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    lo = np.array([np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))[0] for a in range(3)])
    hi = np.array([np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))[-1] for a in range(3)])
    sub = np.pad(mask[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1], 1)
    shift = np.eye(4)
    shift[:3, 3] = (lo - 1)[::-1]
    w_sub = w @ shift
    phi = signed_distance(sub, sp)
    field = DistanceField(values=phi, world_from_voxel=w_sub)

    skel = skeletonize(sub).astype(bool)
    if not skel.any():
        raise AnatomyError(f"{what} centerlines: the mask thins to nothing (too small?)")
    faces = []
    for ax in range(3):
        if lo[ax] == 0:
            faces.append((ax, 1))
        if hi[ax] == mask.shape[ax] - 1:
            faces.append((ax, sub.shape[ax] - 2))
    if faces:
        _connect_cut_ends(sub, skel, phi, sp, faces)
    kji = np.argwhere(skel)
    g = _voxel_graph(kji, sub.shape, sp)
    ncomp, comp = csgraph.connected_components(g, directed=False)
    if ncomp > 1:
        keep = np.flatnonzero(comp == np.argmax(np.bincount(comp)))
        g = g[keep][:, keep]
        kji = kji[keep]
    mst = csgraph.minimum_spanning_tree(g)
    mst = (mst + mst.T).tocsr()
    adj = [list(mst.indices[mst.indptr[i] : mst.indptr[i + 1]]) for i in range(len(kji))]
    pos = kji[:, ::-1] @ w_sub[:3, :3].T + w_sub[:3, 3]
    radius = np.maximum(-phi[tuple(kji.T)].astype(float), 0.5 * float(sp.min()))
    tree = _Tree(
        pos=pos, radius=radius, adj=adj, sub_mask=sub, w_sub=w_sub, field=field, spacing=sp,
        vol_min=1 - lo, vol_max=np.asarray(mask.shape) - lo,
    )
    _prune(tree)
    return tree


def _voxel_graph(kji: np.ndarray, shape: tuple[int, ...], sp: np.ndarray, cost: np.ndarray | None = None):
    """Symmetric sparse graph of 26-neighbouring voxels; weight = world step length.

    With ``cost`` (one value per voxel), the weight is multiplied by the mean
    cost of the two voxels.
    """
    index = np.full(shape, -1, dtype=np.int64)
    index[tuple(kji.T)] = np.arange(len(kji))
    rows, cols, wts = [], [], []
    for off in _OFFSETS:
        nb = kji + off
        ok = np.all((nb >= 0) & (nb < np.array(shape)), axis=1)
        j = np.full(len(kji), -1)
        j[ok] = index[tuple(nb[ok].T)]
        good = np.flatnonzero(j >= 0)
        w = np.full(len(good), float(np.linalg.norm(off * sp)))
        if cost is not None:
            w = w * 0.5 * (cost[good] + cost[j[good]])
        rows.append(good)
        cols.append(j[good])
        wts.append(w)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    g = sparse.coo_matrix((np.concatenate(wts), (r, c)), shape=(len(kji), len(kji))).tocsr()
    return g + g.T


def _connect_cut_ends(
    sub: np.ndarray, skel: np.ndarray, phi: np.ndarray, sp: np.ndarray, faces: list[tuple[int, int]]
) -> None:
    """Join each place where the lumen is cut by a volume face to the skeleton.

    Thinning a straight tube cut flat by the volume border can retract its
    skeleton far from the face (tens of millimetres). A minimal path through
    the lumen, cost 1 / r^2 so it keeps to the centre, is traced from the
    centre of each cut section to the nearest skeleton voxel and added to the
    skeleton (in place).
    """
    kji = np.argwhere(sub)
    r = np.maximum(-phi[tuple(kji.T)].astype(float), 0.5 * float(sp.min()))
    g = _voxel_graph(kji, sub.shape, sp, cost=1.0 / r**2)
    index = np.full(sub.shape, -1, dtype=np.int64)
    index[tuple(kji.T)] = np.arange(len(kji))
    sources = []
    for ax, at in faces:
        plane = np.take(sub, at, axis=ax)
        labels, n = ndimage.label(plane)
        for lab in range(1, n + 1):
            pts = np.argwhere(labels == lab)
            if len(pts) < 4:
                continue
            c = pts.mean(axis=0)
            best = pts[np.argmin(np.linalg.norm(pts - c, axis=1))]
            v = list(best)
            v.insert(ax, at)
            sources.append(int(index[tuple(v)]))
    if not sources:
        return
    dist, pred, src = csgraph.dijkstra(g, indices=sources, min_only=True, return_predecessors=True)
    skel_ids = index[skel]
    skel_ids = skel_ids[skel_ids >= 0]
    for s in sources:
        mine = skel_ids[src[skel_ids] == s]
        if len(mine) == 0:
            continue
        node = int(mine[np.argmin(dist[mine])])
        while node != s and node >= 0:
            skel[tuple(kji[node])] = True
            node = int(pred[node])
        skel[tuple(kji[s])] = True


def _prune(tree: _Tree) -> None:
    """Remove spurs shorter than SPUR_FACTOR times the radius at their junction."""
    adj = tree.adj
    alive = np.ones(len(adj), dtype=bool)
    changed = True
    while changed:
        changed = False
        leaves = [i for i in range(len(adj)) if alive[i] and len(adj[i]) == 1]
        removal = []
        for leaf in leaves:
            path = [leaf]
            prev, cur = -1, leaf
            length = 0.0
            while True:
                nbs = [x for x in adj[cur] if x != prev]
                if len(adj[cur]) != 2 and cur != leaf:
                    break
                if not nbs:
                    break
                nxt = nbs[0]
                length += float(np.linalg.norm(tree.pos[nxt] - tree.pos[cur]))
                prev, cur = cur, nxt
                path.append(cur)
            junction = cur
            if len(adj[junction]) >= 3 and length < SPUR_FACTOR * tree.radius[junction]:
                removal.append((length, path[:-1], junction))
        # remove the shortest spur at each junction first; one pass per round keeps it stable
        done_junctions = set()
        for _length, nodes, junction in sorted(removal, key=lambda t: t[0]):
            if junction in done_junctions or len(adj[junction]) < 3:
                continue
            if any(not alive[n] for n in nodes):
                continue
            for n in nodes:
                for m in adj[n]:
                    if n in adj[m]:
                        adj[m].remove(n)
                adj[n] = []
                alive[n] = False
            done_junctions.add(junction)
            changed = True


def _best_path(tree: _Tree, root: int, blocked: int | None) -> list[int]:
    """Path from ``root`` into its subtree (away from ``blocked``) carrying the most r^2 ds."""
    score = {root: 0.0}
    parent = {root: -1}
    queue = deque([root])
    best, best_score = root, -1.0
    while queue:
        u = queue.popleft()
        leaf = True
        for v in tree.adj[u]:
            if v == blocked or v == parent[u]:
                continue
            leaf = False
            parent[v] = u
            ds = float(np.linalg.norm(tree.pos[v] - tree.pos[u]))
            score[v] = score[u] + tree.radius[v] ** 2 * ds
            queue.append(v)
        if leaf and score[u] > best_score:
            best, best_score = u, score[u]
    path = [best]
    while parent[path[-1]] != -1:
        path.append(parent[path[-1]])
    return path[::-1]


def _path_between(tree: _Tree, a: int, b: int) -> list[int]:
    parent = {a: -1}
    queue = deque([a])
    while queue:
        u = queue.popleft()
        if u == b:
            break
        for v in tree.adj[u]:
            if v not in parent:
                parent[v] = u
                queue.append(v)
    if b not in parent:
        raise AnatomyError("centerlines: skeleton ends are not connected")
    path = [b]
    while parent[path[-1]] != -1:
        path.append(parent[path[-1]])
    return path[::-1]


def _side_paths(tree: _Tree, path: list[int], first: int = 0) -> list[tuple[int, list[int]]]:
    """Side subtrees leaving ``path``: (index along path, node path starting at the junction).

    Nodes before ``first`` are not searched (a branch's first node is its
    junction on the parent, whose other neighbours belong to the parent).
    """
    on = set(path)
    out = []
    for idx, node in enumerate(path):
        if idx < first:
            continue
        for nb in tree.adj[node]:
            if nb in on:
                continue
            out.append((idx, [node] + _best_path(tree, nb, node)))
    return out


def _weight(tree: _Tree, path: list[int]) -> float:
    p = tree.pos[path]
    ds = np.linalg.norm(np.diff(p, axis=0), axis=1)
    return float((tree.radius[path[1:]] ** 2 * ds).sum())


# --------------------------------------------------------------------------- geometry of branches


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    s = _cumlen(points)
    if s[-1] <= 0:
        return points[:1].copy()
    n = max(int(np.floor(s[-1] / step + 1e-9)), 1)
    t = np.append(np.arange(n + 1) * step, s[-1]) if s[-1] - n * step > 0.2 * step else np.linspace(0, s[-1], n + 1)
    t = np.unique(np.clip(t, 0, s[-1]))
    return np.column_stack([np.interp(t, s, points[:, a]) for a in range(3)])


def _smooth(points: np.ndarray, sigma: float, step: float = 0.5e-3) -> np.ndarray:
    """Gaussian smoothing along arc length with both ends kept in place."""
    dense = _resample(points, step)
    if len(dense) < 3:
        return dense
    sig = sigma / step
    pad = min(int(4 * sig) + 1, len(dense) - 1)
    head = 2 * dense[0] - dense[pad:0:-1]
    tail = 2 * dense[-1] - dense[-2 : -pad - 2 : -1]
    ext = np.concatenate([head, dense, tail])
    sm = ndimage.gaussian_filter1d(ext, sig, axis=0, mode="nearest")
    return sm[pad : pad + len(dense)]


def _voxel_of(tree: _Tree, p: np.ndarray) -> np.ndarray:
    """Continuous (k, j, i) crop coordinates of a world point."""
    inv = np.linalg.inv(tree.w_sub)
    return (inv[:3, :3] @ p + inv[:3, 3])[::-1]


def _extend(
    tree: _Tree, pts: np.ndarray, at_end: bool, r_end: float | None = None, step: float = 0.5e-3
) -> np.ndarray:
    """Prolong an end cut by the volume border along its tangent up to that border.

    The skeleton of a tube cut flat by the volume face stops about one radius
    short of it: the end is prolonged to the face. At a blind end (inside the
    volume) the line is prolonged to the lumen's tip less the local radius,
    which is the centre of a rounded cap.
    """
    if len(pts) < 2:
        return pts
    seg = pts[::-1] if at_end else pts
    s = _cumlen(seg)
    j = int(np.searchsorted(s, min(5e-3, s[-1])))
    j = max(1, min(j, len(seg) - 1))
    t = seg[0] - seg[j]
    nt = np.linalg.norm(t)
    if nt == 0:
        return pts
    t /= nt
    r = float(-tree.field.sample(seg[:1])[0]) if r_end is None or not np.isfinite(r_end) else r_end
    limit = 3.0 * max(r, 1e-3) + 5e-3
    shape = np.asarray(tree.sub_mask.shape)
    added = []
    d = step
    reached_border = False
    while d <= limit:
        q = seg[0] + d * t
        c = _voxel_of(tree, q)
        if np.any(c < tree.vol_min - 1e-6) or np.any(c > tree.vol_max + 1e-6):
            reached_border = True  # left the volume: the lumen was cut by its face
            break
        v = np.rint(c).astype(int)
        if np.any(v < 0) or np.any(v >= shape) or not tree.sub_mask[tuple(v)]:
            break
        added.append(q)
        d += step
    if not reached_border:
        keep = int(np.floor(max(0.0, len(added) * step - max(r, 0.0)) / step))
        added = added[:keep]
    if not added:
        return pts
    added = np.asarray(added)
    return np.concatenate([pts, added]) if at_end else np.concatenate([added[::-1], pts])


def _cross_sections(tree: _Tree, pts: np.ndarray, fixed_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """Re-centre points on the lumen cross-section and measure its equivalent radius.

    For each point, the voxels in a slab normal to the local tangent and
    within a disc of 1.3 local radii (and inside the volume) are collected; the
    point moves to the centroid of those in the mask (in the plane) and the
    radius is that of a disc covering the same fraction of the sampling disc.
    Where the disc is nearly full (the point lies in a wider lumen, as at a
    junction) the point is kept and the radius is left NaN.

    Returns
    -------
    centres : (n, 3) float, metres
    radii : (n,) float, metres (NaN where not measured)
    """
    n = len(pts)
    out = pts.copy()
    radii = np.full(n, np.nan)
    if n < 3:
        return out, radii
    sp = tree.spacing
    inv = np.linalg.inv(tree.w_sub)
    tau = 2.0 * float(sp.max())  # slab thickness
    tang = np.gradient(pts, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-30)
    r_field = np.maximum(-tree.field.sample(pts), float(sp.min()))
    shape = np.asarray(tree.sub_mask.shape)
    for m in range(n):
        if m == 0 and fixed_start:
            continue
        p = pts[m]
        rad = 1.3 * r_field[m] + float(sp.max())
        c = (inv[:3, :3] @ p + inv[:3, 3])[::-1]
        half = np.ceil(rad / sp).astype(int) + 1
        # the box, limited to the crop and to the volume (beyond it nothing is known)
        lo = np.maximum(np.floor(c).astype(int) - half, np.maximum(tree.vol_min, 0))
        hi = np.minimum(np.floor(c).astype(int) + half + 1, np.minimum(tree.vol_max + 1, shape))
        if np.any(hi <= lo):
            continue
        kk, jj, ii = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
        kji = np.stack([kk.ravel(), jj.ravel(), ii.ravel()], axis=1)
        world = kji[:, ::-1] @ tree.w_sub[:3, :3].T + tree.w_sub[:3, 3]
        rel = world - p
        along = rel @ tang[m]
        inplane = rel - along[:, None] * tang[m]
        rr = np.linalg.norm(inplane, axis=1)
        sel = (np.abs(along) <= tau / 2) & (rr <= rad)
        total = int(sel.sum())
        if total < 8:
            continue
        inmask = tree.sub_mask[kk.ravel(), jj.ravel(), ii.ravel()] & sel
        count = int(inmask.sum())
        if count < 4:
            continue
        frac = count / total
        if frac > 0.8:
            continue  # saturated: inside a wider lumen
        radii[m] = rad * np.sqrt(frac)  # disc of the same area fraction
        out[m] = p + inplane[inmask].mean(axis=0)
    return out, radii


def _end_radius(pts: np.ndarray, radii: np.ndarray, at_end: bool, span: float = 10e-3) -> float:
    """Median measured radius over the last ``span`` metres at one end (NaN if none)."""
    s = _cumlen(pts)
    sel = (s >= s[-1] - span) if at_end else (s <= span)
    r = radii[sel]
    r = r[np.isfinite(r)]
    return float(np.median(r)) if len(r) else float("nan")


def _from_parent(pts: np.ndarray, parent: Centerline) -> np.ndarray:
    """Replace the part of a side branch inside its parent's lumen.

    Inside the parent the skeleton wanders toward the parent's centre in no
    defined way; the branch is instead continued straight back from its ostium
    (where it leaves the parent lumen) along its tangent there, to the nearest
    point of the parent's centerline.
    """
    ppts = np.asarray(parent.points, dtype=float)
    pr = np.asarray(parent.radii, dtype=float)
    ps = _cumlen(ppts)
    inside = np.zeros(len(pts), dtype=bool)
    for m, p in enumerate(pts):
        sp_, d, _ = _project(ppts, p)
        inside[m] = d < np.interp(sp_, ps, pr)
        if not inside[m] and m > 0:
            break
    out_idx = np.flatnonzero(~inside)
    if len(out_idx) == 0 or out_idx[0] == 0:
        return pts
    o = int(out_idx[0])
    s = _cumlen(pts)
    ahead = int(np.searchsorted(s, s[o] + 5e-3))
    ahead = min(max(ahead, o + 1), len(pts) - 1)
    if ahead <= o:
        return pts
    t = pts[ahead] - pts[o]
    t /= max(np.linalg.norm(t), 1e-30)
    r_par = float(np.interp(_project(ppts, pts[o])[0], ps, pr))
    ray = pts[o] - np.linspace(0.0, 2.0 * r_par + 5e-3, 80)[:, None] * t
    dist = np.array([_project(ppts, q)[1] for q in ray])
    q = ray[int(np.argmin(dist))]
    _, _, junction = _project(ppts, q)
    n = max(int(np.linalg.norm(pts[o] - junction) / 0.5e-3), 1)
    bridge = junction + np.linspace(0.0, 1.0, n + 1)[:-1, None] * (pts[o] - junction)
    return np.concatenate([bridge, pts[o:]])


def _make_branch(
    tree: _Tree,
    raw: np.ndarray,
    label: str,
    parent: Centerline | None,
    free_start: bool,
    free_end: bool,
) -> Centerline:
    pts = _resample(_smooth(raw, SMOOTH_SIGMA), STEP)
    area_r = np.full(len(pts), np.nan)
    for _ in range(2):
        centred, area_r = _cross_sections(tree, pts, fixed_start=not free_start)
        pts = _resample(_smooth(centred, SMOOTH_SIGMA), STEP)
        area_r = np.interp(_cumlen(pts), _cumlen(centred), area_r)
    r_start = _end_radius(pts, area_r, at_end=False)
    r_stop = _end_radius(pts, area_r, at_end=True)
    if parent is not None:
        pts = _resample(_smooth(_from_parent(pts, parent), 0.5 * SMOOTH_SIGMA), STEP)
    if free_start:
        pts = _extend(tree, pts, at_end=False, r_end=r_start)
    if free_end:
        pts = _extend(tree, pts, at_end=True, r_end=r_stop)
    pts = _resample(pts, STEP)
    _, area_r = _cross_sections(tree, pts, fixed_start=False)
    ok = np.flatnonzero(np.isfinite(area_r))
    if len(ok):  # free ends on the volume border: carry the last measured radius out
        if free_start:
            area_r[: ok[0]] = area_r[ok[0]]
        if free_end:
            area_r[ok[-1] + 1 :] = area_r[ok[-1]]
    field_r = np.maximum(-tree.field.sample(pts), 0.0)
    radii = np.where(np.isfinite(area_r), area_r, field_r)
    return Centerline(label=label, points=pts, radii=radii, parent=parent.label if parent else None)


def _branch_from_path(
    tree: _Tree,
    path: list[int],
    label: str,
    parent: Centerline | None,
    free_start: bool,
) -> Centerline:
    raw = tree.pos[path].astype(float)
    if parent is not None:
        _, _, q = _project(np.asarray(parent.points, dtype=float), raw[0])
        raw = np.concatenate([q[None, :], raw[1:]]) if len(raw) > 1 else q[None, :]
    free_end = len(tree.adj[path[-1]]) <= 1
    return _make_branch(tree, raw, label, parent, free_start, free_end)


def _add_subtrees(
    tree: _Tree,
    path: list[int],
    branch: Centerline,
    out: dict[str, Centerline],
    names: dict[int, str] | None = None,
) -> None:
    """Add the side branches of ``path`` (and theirs, recursively) to ``out``."""
    sides = _side_paths(tree, path, first=0 if branch.parent is None else 1)
    sides.sort(key=lambda t: t[0])
    n = 0
    for _idx, sub in sides:
        if len(sub) < 2:
            continue
        if names and sub[1] in names and names[sub[1]] not in out:
            label = names[sub[1]]
        else:
            n += 1
            label = f"{branch.label}_branch_{n}"
            while label in out:
                n += 1
                label = f"{branch.label}_branch_{n}"
        child = _branch_from_path(tree, sub, label, branch, free_start=False)
        if child.length <= 0:
            continue
        out[label] = child
        _add_subtrees(tree, sub, child, out)


# --------------------------------------------------------------------------- public


def vessel_centerlines(
    mask: np.ndarray,
    world_from_voxel: np.ndarray,
    access: np.ndarray | None = None,
) -> CenterlineGraph:
    """Labelled centerlines of an aorta with its arch branches.

    The aorta runs from the skeleton end nearest ``access`` (or the lowest end)
    to the end reached through the largest lumen (the aortic root). Side
    branches leaving the top of the arch (junction within 35 mm or three aortic
    radii of the arch's highest point, heading superior) are named, from the
    ascending to the descending side, ``brachiocephalic``,
    ``left_common_carotid`` and ``left_subclavian`` (type I arch); others are
    ``aorta_branch_<n>``, and their own side branches ``<label>_branch_<n>``.

    Parameters
    ----------
    mask : (nk, nj, ni) bool
        Lumen mask.
    world_from_voxel : (4, 4) float
    access : (3,) float, metres, optional
        Where devices enter (descending aorta end).

    Returns
    -------
    CenterlineGraph
        Points every ~1 mm; the aorta from the access end to the root.

    Raises
    ------
    AnatomyError
        Empty mask or a skeleton with no path.
    """
    tree = _skeleton_tree(mask, world_from_voxel, "vessel")
    leaves = [i for i, a in enumerate(tree.adj) if len(a) == 1]
    if len(leaves) < 2:
        raise AnatomyError(
            "vessel centerlines: the lumen has fewer than two ends; segment a vessel "
            "(check the seed) rather than a blob"
        )
    if access is not None:
        a = np.asarray(access, dtype=float).reshape(3)
        start = leaves[int(np.argmin(np.linalg.norm(tree.pos[leaves] - a, axis=1)))]
    else:
        start = leaves[int(np.argmin(tree.pos[leaves, 2]))]
    aorta_path = _best_path(tree, start, None)
    aorta = _branch_from_path(tree, aorta_path, "aorta", None, free_start=True)
    out: dict[str, Centerline] = {"aorta": aorta}

    # arch branches: junctions near the highest point of the aorta, heading up
    z = tree.pos[aorta_path, 2]
    top = float(z.max())
    r_aorta = float(np.median(tree.radius[aorta_path]))
    window = max(35e-3, 3.0 * r_aorta)
    sides = _side_paths(tree, aorta_path)
    arch = []
    for idx, sub in sides:
        end = tree.pos[sub[-1]]
        if z[idx] >= top - window and end[2] > tree.pos[sub[0], 2] + r_aorta:
            arch.append((idx, sub))
    if len(arch) > 3:  # keep the three largest
        arch = sorted(arch, key=lambda t: _weight(tree, t[1]), reverse=True)[:3]
    # from the ascending side (near the root, the end of the path) to the descending side
    arch.sort(key=lambda t: -t[0])
    names = {sub[1]: ARCH_LABELS[n] for n, (_, sub) in enumerate(arch)}
    _add_subtrees(tree, aorta_path, aorta, out, names=names)
    order = ["aorta", *(k for k in ARCH_LABELS if k in out)]
    ordered = {k: out[k] for k in order}
    ordered.update((k, c) for k, c in out.items() if k not in ordered)
    return CenterlineGraph(branches=ordered)


def airway_centerlines(mask: np.ndarray, world_from_voxel: np.ndarray) -> CenterlineGraph:
    """Labelled centerlines of the trachea and main bronchi.

    ``trachea`` runs from the highest skeleton end down to the first
    bifurcation (the carina, its last point); ``right_main_bronchus`` (toward
    -x, patient right) and ``left_main_bronchus`` (+x) run from the carina to
    their first bifurcation or their end. Deeper branches are named
    ``<parent>_branch_<n>``.

    Parameters
    ----------
    mask : (nk, nj, ni) bool
        Airway mask (trachea and bronchi, no lung parenchyma).
    world_from_voxel : (4, 4) float

    Returns
    -------
    CenterlineGraph

    Raises
    ------
    AnatomyError
        No bifurcation found (the mask is only a tube) or an empty mask.
    """
    tree = _skeleton_tree(mask, world_from_voxel, "airway")
    leaves = [i for i, a in enumerate(tree.adj) if len(a) == 1]
    if len(leaves) < 3:
        raise AnatomyError(
            "airway centerlines: no bifurcation found below the trachea; the airway mask "
            "must include the carina and both main bronchi"
        )
    top = leaves[int(np.argmax(tree.pos[leaves, 2]))]
    # walk down to the first junction
    path = [top]
    prev = -1
    while True:
        cur = path[-1]
        nxt = [x for x in tree.adj[cur] if x != prev]
        if len(nxt) != 1:
            break
        prev = cur
        path.append(nxt[0])
    carina = path[-1]
    if len(tree.adj[carina]) < 3:
        raise AnatomyError("airway centerlines: the trachea ends without a bifurcation")
    trachea = _branch_from_path(tree, path, "trachea", None, free_start=True)
    out: dict[str, Centerline] = {"trachea": trachea}
    children = [(nb, [carina] + _best_path(tree, nb, carina)) for nb in tree.adj[carina] if nb != path[-2]]
    children.sort(key=lambda t: _weight(tree, t[1]), reverse=True)
    main = children[:2]
    if len(main) < 2:
        raise AnatomyError("airway centerlines: only one bronchus leaves the carina")

    def mean_x(p: list[int]) -> float:
        pts = tree.pos[p]
        s = _cumlen(pts)
        return float(pts[s <= 30e-3, 0].mean())

    main.sort(key=lambda t: mean_x(t[1]))
    for (nb, _full), label in zip(main, ("right_main_bronchus", "left_main_bronchus"), strict=True):
        # main bronchus: from the carina to its first bifurcation (or its end)
        seg = [carina, nb]
        prev = carina
        while len(tree.adj[seg[-1]]) == 2:
            cur = seg[-1]
            nxt = [x for x in tree.adj[cur] if x != prev][0]
            prev = cur
            seg.append(nxt)
        bronchus = _branch_from_path(tree, seg, label, trachea, free_start=False)
        out[label] = bronchus
        end = seg[-1]
        if len(tree.adj[end]) >= 3:
            for k, nb2 in enumerate(x for x in tree.adj[end] if x != seg[-2]):
                sub = [end] + _best_path(tree, nb2, end)
                child_label = f"{label}_branch_{k + 1}"
                child = _branch_from_path(tree, sub, child_label, bronchus, free_start=False)
                out[child_label] = child
                _add_subtrees(tree, sub, child, out)
    for _nb, full in children[2:]:
        n = sum(1 for k in out if k.startswith("trachea_branch_")) + 1
        label = f"trachea_branch_{n}"
        child = _branch_from_path(tree, full, label, trachea, free_start=False)
        out[label] = child
        _add_subtrees(tree, full, child, out)
    return CenterlineGraph(branches=out)
