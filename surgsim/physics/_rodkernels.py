"""Compiled inner loop of the rod solver (numba, cached on disk).

Everything here works on plain arrays; :mod:`surgsim.physics.rod` owns the
model, its documentation and the checks on inputs. Node 0 is the distal tip,
node ``N - 1`` the proximal (hub) end. The unknowns of the global solve are
the free nodes ``0 .. n - 1`` interleaved by coordinate ``(x0, y0, z0, x1, ...)``
so the matrix is symmetric positive definite with 6 sub-diagonals.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# -- indices into the parameter array ------------------------------------------------
P_L = 0  # rest segment length, m
P_DT = 1  # time step, s
P_KS = 2  # stretch stiffness EA / l, N/m (reference; the solve uses the per-segment array)
P_KB = 3  # bending stiffness EI / l^3, N/m (reference; the solve uses the per-node array)
P_WC = 4  # contact penalty stiffness, N/m
P_MU = 5  # wall friction coefficient (reference; the solve uses the per-point array)
P_DAMP = 6  # velocity damping per step (0..1)
P_R = 7  # reference contact radius (largest outer radius), m; P_MARGIN and P_HOLD are given for it
P_FMAX = 8  # push force limit, N
P_EPS = 9  # friction regularisation (stick) displacement, m
P_VMAX = 10  # node speed cap, m/s
P_MARGIN = 11  # contact activation margin, m
P_ADH = 12  # pull (N) below which a contact is kept rather than released
P_EXTRA = 13  # extra iterations allowed to release contacts that pull
P_FTOL = 14  # friction above this multiple of mu * lambda earns another iteration
P_HOLD = 15  # a contact that pressed in the last solve stays active this far (m) from the wall
P_TWIST = 16  # 1: finite torsion (twist unknowns per segment, ``tw``); 0: torsionally rigid
P_EPS_SPIN = 17  # friction regularisation (stick) displacement of the twist solve, m
N_PARAMS = 18

# -- indices into the scalar state array ---------------------------------------------
S_DEPTH = 0  # inserted length, m
S_HUB = 1  # hub rotation, rad
S_PUSH = 2  # axial force the sheath/hand applies, N (compression positive)
S_TWIST = 3  # accumulated rotation of the tip frame about its tangent, rad
S_DEPTH_MAX = 4  # largest depth (two nodes stay clamped), m
S_TIP_INIT = 5  # 1 once the tip frame has been recorded
S_ITERS = 6  # global solves done in the last step
S_TORQUE = 7  # torque the hub applies to the free part in the last step, N m (about the access direction)
N_SCALARS = 8

# -- rows of the twist array ``tw`` (N_TW, N) ----------------------------------------------
TW_TH = 0  # twist angle of segment s relative to the hub's parallel-transported frame, rad
TW_TH0 = 1  # the same at the start of the step
TW_OM = 2  # its rate, rad/s
TW_KT = 3  # torsional stiffness GJ / l at node i (couples segments i - 1 and i), N m / rad
TW_IROT = 4  # rotational inertia rho J l of segment s, kg m^2
TW_D = 5  # scratch: diagonal of the tridiagonal twist system
TW_O = 6  # scratch: its sub-diagonal (row i couples i - 1 and i)
TW_R = 7  # scratch: right-hand side / solution
N_TW = 8

BAND = 6  # sub-diagonals of the interleaved system

# -- status codes ---------------------------------------------------------------------
OK = 0
ERR_NOT_FINITE = 1
ERR_NOT_SPD = 2


@njit(cache=True)
def sdf_value(sdf, vfw, wfv, x0, x1, x2):
    """Trilinear signed distance only (cheap test before :func:`sdf_sample`); same clamping."""
    nk, nj, ni = sdf.shape
    u = vfw[0, 0] * x0 + vfw[0, 1] * x1 + vfw[0, 2] * x2 + vfw[0, 3]
    v = vfw[1, 0] * x0 + vfw[1, 1] * x1 + vfw[1, 2] * x2 + vfw[1, 3]
    w = vfw[2, 0] * x0 + vfw[2, 1] * x1 + vfw[2, 2] * x2 + vfw[2, 3]
    clamped = False
    if not (u > 0.0):
        u = 0.0
        clamped = True
    elif u > ni - 1.0:
        u = ni - 1.0
        clamped = True
    if not (v > 0.0):
        v = 0.0
        clamped = True
    elif v > nj - 1.0:
        v = nj - 1.0
        clamped = True
    if not (w > 0.0):
        w = 0.0
        clamped = True
    elif w > nk - 1.0:
        w = nk - 1.0
        clamped = True
    i0 = min(int(u), ni - 2)
    j0 = min(int(v), nj - 2)
    k0 = min(int(w), nk - 2)
    fu = u - i0
    fv = v - j0
    fw = w - k0
    c00 = sdf[k0, j0, i0] + (sdf[k0, j0, i0 + 1] - sdf[k0, j0, i0]) * fu
    c10 = sdf[k0, j0 + 1, i0] + (sdf[k0, j0 + 1, i0 + 1] - sdf[k0, j0 + 1, i0]) * fu
    c01 = sdf[k0 + 1, j0, i0] + (sdf[k0 + 1, j0, i0 + 1] - sdf[k0 + 1, j0, i0]) * fu
    c11 = sdf[k0 + 1, j0 + 1, i0] + (sdf[k0 + 1, j0 + 1, i0 + 1] - sdf[k0 + 1, j0 + 1, i0]) * fu
    c0 = c00 + (c10 - c00) * fv
    c1 = c01 + (c11 - c01) * fv
    phi = c0 + (c1 - c0) * fw
    if clamped and phi > 0.0:
        q0 = x0 - (wfv[0, 0] * u + wfv[0, 1] * v + wfv[0, 2] * w + wfv[0, 3])
        q1 = x1 - (wfv[1, 0] * u + wfv[1, 1] * v + wfv[1, 2] * w + wfv[1, 3])
        q2 = x2 - (wfv[2, 0] * u + wfv[2, 1] * v + wfv[2, 2] * w + wfv[2, 3])
        phi += math.sqrt(q0 * q0 + q1 * q1 + q2 * q2)
    return phi


@njit(cache=True)
def sdf_sample(sdf, vfw, wfv, x0, x1, x2, grad):
    """Trilinear signed distance at world point (x0, x1, x2); gradient into ``grad`` (3,).

    ``vfw`` maps world to voxel, ``wfv`` is its inverse. Outside the grid the point
    is clamped to the grid's faces: where the clamped value is inside the lumen
    (a vessel crossing the border) the tube continues straight; where it is
    outside, the distance from the point to the grid is added so that the field
    keeps growing away from the grid and its gradient leads back to it.
    """
    nk, nj, ni = sdf.shape
    u = vfw[0, 0] * x0 + vfw[0, 1] * x1 + vfw[0, 2] * x2 + vfw[0, 3]
    v = vfw[1, 0] * x0 + vfw[1, 1] * x1 + vfw[1, 2] * x2 + vfw[1, 3]
    w = vfw[2, 0] * x0 + vfw[2, 1] * x1 + vfw[2, 2] * x2 + vfw[2, 3]
    au = 1.0
    av = 1.0
    aw = 1.0
    clamped = False
    if not (u > 0.0):  # also catches NaN
        u = 0.0
        au = 0.0
        clamped = True
    elif u > ni - 1.0:
        u = ni - 1.0
        au = 0.0
        clamped = True
    if not (v > 0.0):
        v = 0.0
        av = 0.0
        clamped = True
    elif v > nj - 1.0:
        v = nj - 1.0
        av = 0.0
        clamped = True
    if not (w > 0.0):
        w = 0.0
        aw = 0.0
        clamped = True
    elif w > nk - 1.0:
        w = nk - 1.0
        aw = 0.0
        clamped = True
    i0 = min(int(u), ni - 2)
    j0 = min(int(v), nj - 2)
    k0 = min(int(w), nk - 2)
    fu = u - i0
    fv = v - j0
    fw = w - k0
    c000 = sdf[k0, j0, i0]
    c100 = sdf[k0, j0, i0 + 1]
    c010 = sdf[k0, j0 + 1, i0]
    c110 = sdf[k0, j0 + 1, i0 + 1]
    c001 = sdf[k0 + 1, j0, i0]
    c101 = sdf[k0 + 1, j0, i0 + 1]
    c011 = sdf[k0 + 1, j0 + 1, i0]
    c111 = sdf[k0 + 1, j0 + 1, i0 + 1]
    c00 = c000 + (c100 - c000) * fu
    c10 = c010 + (c110 - c010) * fu
    c01 = c001 + (c101 - c001) * fu
    c11 = c011 + (c111 - c011) * fu
    c0 = c00 + (c10 - c00) * fv
    c1 = c01 + (c11 - c01) * fv
    phi = c0 + (c1 - c0) * fw
    # gradient: trilinear blend of central differences at the 8 corners, so the
    # contact normal is continuous across voxel faces (a piecewise-constant
    # trilinear derivative makes nodes flip between facets every step)
    du = 0.0
    dv = 0.0
    dw = 0.0
    for ck in range(2):
        wk = fw if ck == 1 else 1.0 - fw
        kk = k0 + ck
        for cj in range(2):
            wj = fv if cj == 1 else 1.0 - fv
            jj = j0 + cj
            for ci in range(2):
                wi = fu if ci == 1 else 1.0 - fu
                ii = i0 + ci
                wgt = wk * wj * wi
                ip = min(ii + 1, ni - 1)
                im = max(ii - 1, 0)
                jp = min(jj + 1, nj - 1)
                jm = max(jj - 1, 0)
                kp = min(kk + 1, nk - 1)
                km = max(kk - 1, 0)
                du += wgt * (sdf[kk, jj, ip] - sdf[kk, jj, im]) / (ip - im)
                dv += wgt * (sdf[kk, jp, ii] - sdf[kk, jm, ii]) / (jp - jm)
                dw += wgt * (sdf[kp, jj, ii] - sdf[km, jj, ii]) / (kp - km)
    du *= au
    dv *= av
    dw *= aw
    # world gradient = J^T grad_voxel with J = d(voxel)/d(world)
    grad[0] = vfw[0, 0] * du + vfw[1, 0] * dv + vfw[2, 0] * dw
    grad[1] = vfw[0, 1] * du + vfw[1, 1] * dv + vfw[2, 1] * dw
    grad[2] = vfw[0, 2] * du + vfw[1, 2] * dv + vfw[2, 2] * dw
    if clamped and phi > 0.0:
        q0 = x0 - (wfv[0, 0] * u + wfv[0, 1] * v + wfv[0, 2] * w + wfv[0, 3])
        q1 = x1 - (wfv[1, 0] * u + wfv[1, 1] * v + wfv[1, 2] * w + wfv[1, 3])
        q2 = x2 - (wfv[2, 0] * u + wfv[2, 1] * v + wfv[2, 2] * w + wfv[2, 3])
        dout = math.sqrt(q0 * q0 + q1 * q1 + q2 * q2)
        if dout > 0.0:
            phi += dout
            grad[0] += q0 / dout
            grad[1] += q1 / dout
            grad[2] += q2 / dout
    return phi


@njit(cache=True)
def sdf_sample_many(sdf, vfw, wfv, points, out_phi, out_grad):
    """Sample the field at ``points`` (m, 3) into ``out_phi`` (m,) and ``out_grad`` (m, 3)."""
    g = np.empty(3)
    for p in range(points.shape[0]):
        out_phi[p] = sdf_sample(sdf, vfw, wfv, points[p, 0], points[p, 1], points[p, 2], g)
        out_grad[p, 0] = g[0]
        out_grad[p, 1] = g[1]
        out_grad[p, 2] = g[2]


@njit(cache=True)
def polyline_tube_sdf(pts, radius, wfv, closed_start, closed_end, out):
    """Fill ``out`` (nk, nj, ni) with distance to the polyline ``pts`` (m, 3) minus ``radius``.

    ``wfv`` is world_from_voxel. Open ends extend their end segment without limit.
    """
    nk, nj, ni = out.shape
    m = pts.shape[0]
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                p0 = wfv[0, 0] * i + wfv[0, 1] * j + wfv[0, 2] * k + wfv[0, 3]
                p1 = wfv[1, 0] * i + wfv[1, 1] * j + wfv[1, 2] * k + wfv[1, 3]
                p2 = wfv[2, 0] * i + wfv[2, 1] * j + wfv[2, 2] * k + wfv[2, 3]
                best = np.inf
                for s in range(m - 1):
                    a0 = pts[s, 0]
                    a1 = pts[s, 1]
                    a2 = pts[s, 2]
                    b0 = pts[s + 1, 0] - a0
                    b1 = pts[s + 1, 1] - a1
                    b2 = pts[s + 1, 2] - a2
                    bb = b0 * b0 + b1 * b1 + b2 * b2
                    if bb <= 0.0:
                        continue
                    t = ((p0 - a0) * b0 + (p1 - a1) * b1 + (p2 - a2) * b2) / bb
                    if t < 0.0 and (s > 0 or closed_start):
                        t = 0.0
                    if t > 1.0 and (s < m - 2 or closed_end):
                        t = 1.0
                    d0 = p0 - a0 - t * b0
                    d1 = p1 - a1 - t * b1
                    d2 = p2 - a2 - t * b2
                    dd = d0 * d0 + d1 * d1 + d2 * d2
                    if dd < best:
                        best = dd
                out[k, j, i] = math.sqrt(best) - radius


@njit(cache=True)
def _transport(u, a, b, out):
    """Parallel-transport ``u`` (perpendicular to unit ``a``) to unit tangent ``b``; unit result."""
    c = a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
    bu = b[0] * u[0] + b[1] * u[1] + b[2] * u[2]
    if c > -0.999999:
        f = bu / (1.0 + c)
        o0 = u[0] - f * (a[0] + b[0])
        o1 = u[1] - f * (a[1] + b[1])
        o2 = u[2] - f * (a[2] + b[2])
    else:  # folded back: keep u, made perpendicular to b below
        o0 = u[0]
        o1 = u[1]
        o2 = u[2]
    # re-orthonormalise against b
    d = o0 * b[0] + o1 * b[1] + o2 * b[2]
    o0 -= d * b[0]
    o1 -= d * b[1]
    o2 -= d * b[2]
    nrm = math.sqrt(o0 * o0 + o1 * o1 + o2 * o2)
    if nrm < 1e-12:  # u was parallel to b: any perpendicular
        if abs(b[0]) < 0.9:
            o0, o1, o2 = 0.0, -b[2], b[1]
        else:
            o0, o1, o2 = b[2], 0.0, -b[0]
        nrm = math.sqrt(o0 * o0 + o1 * o1 + o2 * o2)
    out[0] = o0 / nrm
    out[1] = o1 / nrm
    out[2] = o2 / nrm


@njit(cache=True)
def compute_frames(y, direc, uref, hub, tseg, useg):
    """Segment tangents (toward the tip) and material directions, transported from the hub.

    ``tseg[s]`` is the unit vector from node ``s + 1`` to node ``s``; ``useg[s]`` the
    material frame's first direction on that segment: the hub frame
    (``uref`` turned by ``hub`` about ``direc``) parallel-transported along the
    current centreline.
    """
    N = y.shape[0]
    ch = math.cos(hub)
    sh = math.sin(hub)
    # hub direction: uref cos + (direc x uref) sin
    hx = uref[0] * ch + (direc[1] * uref[2] - direc[2] * uref[1]) * sh
    hy = uref[1] * ch + (direc[2] * uref[0] - direc[0] * uref[2]) * sh
    hz = uref[2] * ch + (direc[0] * uref[1] - direc[1] * uref[0]) * sh
    for s in range(N - 1):
        e0 = y[s, 0] - y[s + 1, 0]
        e1 = y[s, 1] - y[s + 1, 1]
        e2 = y[s, 2] - y[s + 1, 2]
        ln = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
        if ln > 1e-12:
            tseg[s, 0] = e0 / ln
            tseg[s, 1] = e1 / ln
            tseg[s, 2] = e2 / ln
        else:
            tseg[s, 0] = direc[0]
            tseg[s, 1] = direc[1]
            tseg[s, 2] = direc[2]
    tmp = np.empty(3)
    tmp[0] = hx
    tmp[1] = hy
    tmp[2] = hz
    _transport(tmp, direc, tseg[N - 2], useg[N - 2])
    for s in range(N - 3, -1, -1):
        _transport(useg[s + 1], tseg[s + 1], tseg[s], useg[s])


@njit(cache=True)
def compute_bend_targets(tseg, useg, bend_c, th, dvec):
    """Rest second differences ``d_i`` turned into the current material frame at node i.

    ``bend_c[i] = 2 l sin(phi_i / 2) * kappa_i / |kappa_i|`` (precomputed), so
    ``d_i = c_1 m1 + c_2 m2`` with ``(m1, m2)`` the node's reference frame and
    ``(c_1, c_2)`` = ``bend_c[i]`` turned by the node's twist ``(th[i - 1] + th[i]) / 2``
    (``th`` (>= N - 1,) the segments' twist relative to the reference frame; zeros for a
    torsionally rigid device).
    """
    N = tseg.shape[0] + 1
    tn = np.empty(3)
    m1 = np.empty(3)
    for i in range(N):
        dvec[i, 0] = 0.0
        dvec[i, 1] = 0.0
        dvec[i, 2] = 0.0
    for i in range(1, N - 1):
        c1 = bend_c[i, 0]
        c2 = bend_c[i, 1]
        if c1 == 0.0 and c2 == 0.0:
            continue
        ph = 0.5 * (th[i - 1] + th[i])
        if ph != 0.0:
            cp = math.cos(ph)
            sp = math.sin(ph)
            c1, c2 = c1 * cp - c2 * sp, c1 * sp + c2 * cp
        a0 = tseg[i - 1, 0] + tseg[i, 0]
        a1 = tseg[i - 1, 1] + tseg[i, 1]
        a2 = tseg[i - 1, 2] + tseg[i, 2]
        ln = math.sqrt(a0 * a0 + a1 * a1 + a2 * a2)
        if ln < 1e-9:  # fully folded: use the proximal segment
            tn[0] = tseg[i, 0]
            tn[1] = tseg[i, 1]
            tn[2] = tseg[i, 2]
        else:
            tn[0] = a0 / ln
            tn[1] = a1 / ln
            tn[2] = a2 / ln
        _transport(useg[i], tseg[i], tn, m1)
        # m2 = tn x m1
        m20 = tn[1] * m1[2] - tn[2] * m1[1]
        m21 = tn[2] * m1[0] - tn[0] * m1[2]
        m22 = tn[0] * m1[1] - tn[1] * m1[0]
        dvec[i, 0] = c1 * m1[0] + c2 * m20
        dvec[i, 1] = c1 * m1[1] + c2 * m21
        dvec[i, 2] = c1 * m1[2] + c2 * m22


@njit(cache=True)
def _band_cholesky_solve(Ab, rhs, n3, out):
    """Solve A x = rhs for SPD banded A (lower band ``Ab[r, d] = A[r, r - d]``), in place.

    Returns False when A is not positive definite.
    """
    p = BAND
    for j in range(n3):
        s = Ab[j, 0]
        for k in range(max(0, j - p), j):
            ljk = Ab[j, j - k]
            s -= ljk * ljk
        if not (s > 0.0):
            return False
        ljj = math.sqrt(s)
        Ab[j, 0] = ljj
        for i in range(j + 1, min(j + p + 1, n3)):
            t = Ab[i, i - j]
            for k in range(max(0, i - p), j):
                t -= Ab[i, i - k] * Ab[j, j - k]
            Ab[i, i - j] = t / ljj
    # forward L z = b
    for i in range(n3):
        t = rhs[i]
        for k in range(max(0, i - p), i):
            t -= Ab[i, i - k] * out[k]
        out[i] = t / Ab[i, 0]
    # backward L^T x = z
    for i in range(n3 - 1, -1, -1):
        t = out[i]
        for k in range(i + 1, min(i + p + 1, n3)):
            t -= Ab[k, k - i] * out[k]
        out[i] = t / Ab[i, 0]
    return True


@njit(cache=True)
def _add_block(Ab, a, b, m00, m01, m02, m10, m11, m12, m20, m21, m22):
    """Add the 3x3 block M at node block (a, b), a >= b, keeping only the lower band."""
    ra = 3 * a
    cb = 3 * b
    if a == b:
        Ab[ra, 0] += m00
        Ab[ra + 1, 1] += m10
        Ab[ra + 1, 0] += m11
        Ab[ra + 2, 2] += m20
        Ab[ra + 2, 1] += m21
        Ab[ra + 2, 0] += m22
    else:
        Ab[ra, ra - cb] += m00
        Ab[ra, ra - cb - 1] += m01
        Ab[ra, ra - cb - 2] += m02
        Ab[ra + 1, ra + 1 - cb] += m10
        Ab[ra + 1, ra - cb] += m11
        Ab[ra + 1, ra - cb - 1] += m12
        Ab[ra + 2, ra + 2 - cb] += m20
        Ab[ra + 2, ra + 1 - cb] += m21
        Ab[ra + 2, ra - cb] += m22


@njit(cache=True)
def _nfree(depth, h, N):
    """Number of free nodes: those whose arc length from the tip is below ``depth - l``.

    The held line's first segment (nodes n, n + 1) sets the clamped slope, so the
    discrete clamp sits at ``s_n + l / 2``; holding nodes from ``depth - l`` on
    centres that clamp on the entry (within half a segment).
    """
    n = 0
    lim = depth - h - 1e-9 * h
    for i in range(N):
        if i * h < lim:
            n = i + 1
        else:
            break
    return n


@njit(cache=True)
def _sheath_force(x, n, direc, prm, dvec, ks_seg, kb_node):
    """Axial force (N, compression positive) the clamped part applies to the free part."""
    N = x.shape[0]
    if n < 1:
        return 0.0
    h = prm[P_L]
    f = 0.0
    # stretch segment (n - 1, n): force on node n - 1 = -ks (|e| - l) t
    e0 = x[n - 1, 0] - x[n, 0]
    e1 = x[n - 1, 1] - x[n, 1]
    e2 = x[n - 1, 2] - x[n, 2]
    ln = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
    if ln > 1e-12:
        f += -ks_seg[n - 1] * (ln - h) * (e0 * direc[0] + e1 * direc[1] + e2 * direc[2]) / ln
    # bending terms whose stencil mixes free and clamped nodes
    for i in range(max(1, n - 1), min(N - 2, n) + 1):
        r0 = x[i - 1, 0] - 2.0 * x[i, 0] + x[i + 1, 0] - dvec[i, 0]
        r1 = x[i - 1, 1] - 2.0 * x[i, 1] + x[i + 1, 1] - dvec[i, 1]
        r2 = x[i - 1, 2] - 2.0 * x[i, 2] + x[i + 1, 2] - dvec[i, 2]
        rd = r0 * direc[0] + r1 * direc[1] + r2 * direc[2]
        for q in range(3):
            a = i - 1 + q
            if a < n:
                c = 1.0 if q != 1 else -2.0
                f += -kb_node[i] * c * rd
    return f


@njit(cache=True)
def _add_sym_point(Ab, ia, ib, wa, wb, m00, m01, m02, m11, m12, m22):
    """Add J^T M J for the contact point p = wa x_ia + wb x_ib (ib = ia + 1, or wb = 0)."""
    f = wa * wa
    _add_block(Ab, ia, ia, f * m00, f * m01, f * m02, f * m01, f * m11, f * m12,
               f * m02, f * m12, f * m22)  # fmt: skip
    if wb != 0.0:
        f = wb * wb
        _add_block(Ab, ib, ib, f * m00, f * m01, f * m02, f * m01, f * m11, f * m12,
                   f * m02, f * m12, f * m22)  # fmt: skip
        f = wa * wb
        _add_block(Ab, ib, ia, f * m00, f * m01, f * m02, f * m01, f * m11, f * m12,
                   f * m02, f * m12, f * m22)  # fmt: skip


@njit(cache=True)
def _first_exit(sdf, vfw, wfv, o0, o1, o2, p0, p1, p2, spacing, g):
    """First sample on the path o -> p (every ``spacing`` m, o excluded) outside the lumen.

    Only paths longer than ``spacing`` are sampled (a shorter move cannot cross
    a wall, and its end point is checked anyway), so a node that moved far in one
    iteration (a snapping pre-shaped tip, a fast push) cannot hop across a thin
    wall. Returns (t, nsub, phi) with the gradient at that sample in ``g``, or
    t = -1 if the path stays in the lumen.
    """
    d0 = p0 - o0
    d1 = p1 - o1
    d2 = p2 - o2
    dist = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
    if not (dist > spacing):
        return -1.0, 1, 0.0
    nsub = min(int(math.ceil(dist / spacing)), 1000)
    for j in range(1, nsub + 1):
        t = j / nsub
        phi = sdf_value(sdf, vfw, wfv, o0 + t * d0, o1 + t * d1, o2 + t * d2)
        if phi > 0.0:
            phi = sdf_sample(sdf, vfw, wfv, o0 + t * d0, o1 + t * d1, o2 + t * d2, g)
            return t, nsub, phi
    return -1.0, nsub, 0.0


@njit(cache=True)
def _point(k, N):
    """Contact point k: node k (k < N) or the midpoint of segment k - N. Returns (ia, ib, wa, wb)."""
    if k < N:
        return k, k, 1.0, 0.0
    return k - N, k - N + 1, 0.5, 0.5


@njit(cache=True)
def _contact_spin(k, N, tseg, nrm, b):
    """Where contact point k's spin comes from: ``b = t x n`` into ``b`` (3,) and its segments.

    ``t`` is the rod's distal tangent at the point (a node's: the mean of its segments'),
    ``n`` the wall normal; a material rotation ``da`` about ``t`` moves the rod's surface at
    the contact by ``r da b``. The point turns with the mean twist of segments ``sa`` and
    ``sb``, weighted ``fa`` and ``fb``. Returns (sa, sb, fa, fb).
    """
    if k < N:
        if k == 0:
            t0, t1, t2 = tseg[0, 0], tseg[0, 1], tseg[0, 2]
            sa, sb, fa, fb = 0, 0, 1.0, 0.0
        else:
            s = min(k, N - 2)
            t0 = tseg[k - 1, 0] + tseg[s, 0]
            t1 = tseg[k - 1, 1] + tseg[s, 1]
            t2 = tseg[k - 1, 2] + tseg[s, 2]
            ln = math.sqrt(t0 * t0 + t1 * t1 + t2 * t2)
            if ln > 1e-9:
                t0 /= ln
                t1 /= ln
                t2 /= ln
            sa, sb, fa, fb = k - 1, s, 0.5, 0.5
    else:
        s = k - N
        t0, t1, t2 = tseg[s, 0], tseg[s, 1], tseg[s, 2]
        sa, sb, fa, fb = s, s, 1.0, 0.0
    n0, n1, n2 = nrm[k, 0], nrm[k, 1], nrm[k, 2]
    b[0] = t1 * n2 - t2 * n1
    b[1] = t2 * n0 - t0 * n2
    b[2] = t0 * n1 - t1 * n0
    return sa, sb, fa, fb


@njit(cache=True)
def _twist_solve(n, rot, x, y, tseg, dvec, bend_c, kb_node, tw, lam, active, nrm, rad_pt, mu_pt,
                 eps, dt, has_wall):  # fmt: skip
    """One Newton step on the twist of the free segments ``0 .. n - 1`` with the centreline fixed.

    Energy (per step): rotational inertia ``I / (2 dt^2) (th - th0 - dt om)^2``; twist
    ``GJ / (2 l) (th_i - th_i-1)^2`` at the nodes (the held segments have th = 0, they turn
    with the hub); the bending energy's dependence on the twist through the rest curvature
    (Gauss-Newton); regularised Coulomb friction on the slip of the rod's surface at each
    pressing contact, ``u + r da b`` (tangential displacement of the point plus the spin
    ``da = rot + dth`` times the radius), coefficient ``mu lambda / max(|slip|, eps)`` (``eps``
    far smaller than the translation's: the rod's surface turns at only millimetres a
    second, so a regularisation of centimetres a second would leave no static friction). The
    tridiagonal system is solved directly; ``tw[TW_TH]`` is updated. Returns False if the
    system is not positive definite.
    """
    N = y.shape[0]
    m = n
    if m <= 0:
        return True
    th = tw[TW_TH]
    th0 = tw[TW_TH0]
    om = tw[TW_OM]
    dg = tw[TW_D]
    od = tw[TW_O]
    rh = tw[TW_R]
    inv_dt2 = 1.0 / (dt * dt)
    for s in range(m):
        a = tw[TW_IROT, s] * inv_dt2
        dg[s] = a
        od[s] = 0.0
        rh[s] = -a * (th[s] - th0[s] - dt * om[s])
    # twist springs; node m couples the last free segment with the held one (th = 0)
    for i in range(1, m + 1):
        k = tw[TW_KT, i]
        thi = th[i] if i < m else 0.0
        g = k * (thi - th[i - 1])
        dg[i - 1] += k
        rh[i - 1] += g
        if i < m:
            dg[i] += k
            od[i] -= k
            rh[i] -= g
    # bending: the rest curvature turns with the node's twist (th_i-1 + th_i) / 2
    tn = np.empty(3)
    for i in range(1, min(m, N - 2) + 1):
        if bend_c[i, 0] == 0.0 and bend_c[i, 1] == 0.0:
            continue
        kb = kb_node[i]
        a0 = tseg[i - 1, 0] + tseg[i, 0]
        a1 = tseg[i - 1, 1] + tseg[i, 1]
        a2 = tseg[i - 1, 2] + tseg[i, 2]
        ln = math.sqrt(a0 * a0 + a1 * a1 + a2 * a2)
        if ln < 1e-9:
            continue
        tn[0] = a0 / ln
        tn[1] = a1 / ln
        tn[2] = a2 / ln
        d0 = dvec[i, 0]
        d1 = dvec[i, 1]
        d2 = dvec[i, 2]
        # dd/dphi = tn x d
        p0 = tn[1] * d2 - tn[2] * d1
        p1 = tn[2] * d0 - tn[0] * d2
        p2 = tn[0] * d1 - tn[1] * d0
        r0 = y[i - 1, 0] - 2.0 * y[i, 0] + y[i + 1, 0] - d0
        r1 = y[i - 1, 1] - 2.0 * y[i, 1] + y[i + 1, 1] - d1
        r2 = y[i - 1, 2] - 2.0 * y[i, 2] + y[i + 1, 2] - d2
        gphi = -kb * (r0 * p0 + r1 * p1 + r2 * p2)
        hphi = kb * (d0 * d0 + d1 * d1 + d2 * d2)
        rh[i - 1] -= 0.5 * gphi
        dg[i - 1] += 0.25 * hphi
        if i < m:
            rh[i] -= 0.5 * gphi
            dg[i] += 0.25 * hphi
            od[i] += 0.25 * hphi
    # friction against the spin at pressing contacts
    if has_wall:
        b = np.empty(3)
        for k in range(2 * N):
            if not active[k] or lam[k] <= 0.0 or mu_pt[k] <= 0.0:
                continue
            ia, ib, wa, wb = _point(k, N)
            if ib >= n:
                continue
            sa, sb, fa, fb = _contact_spin(k, N, tseg, nrm, b)
            bb = b[0] * b[0] + b[1] * b[1] + b[2] * b[2]
            if bb < 1e-12:
                continue
            n0, n1, n2 = nrm[k, 0], nrm[k, 1], nrm[k, 2]
            u0 = wa * (y[ia, 0] - x[ia, 0]) + wb * (y[ib, 0] - x[ib, 0])
            u1 = wa * (y[ia, 1] - x[ia, 1]) + wb * (y[ib, 1] - x[ib, 1])
            u2 = wa * (y[ia, 2] - x[ia, 2]) + wb * (y[ib, 2] - x[ib, 2])
            un = u0 * n0 + u1 * n1 + u2 * n2
            u0 -= un * n0
            u1 -= un * n1
            u2 -= un * n2
            rk = rad_pt[k]
            da = rot + fa * (th[sa] - th0[sa]) + fb * (th[sb] - th0[sb])
            s0 = u0 + rk * da * b[0]
            s1 = u1 + rk * da * b[1]
            s2 = u2 + rk * da * b[2]
            c = mu_pt[k] * lam[k] / max(math.sqrt(s0 * s0 + s1 * s1 + s2 * s2), eps)
            g = c * rk * (b[0] * s0 + b[1] * s1 + b[2] * s2)
            hh = c * rk * rk * bb
            rh[sa] -= fa * g
            dg[sa] += fa * fa * hh
            if fb != 0.0:
                rh[sb] -= fb * g
                dg[sb] += fb * fb * hh
                od[sb] += fa * fb * hh
    # symmetric tridiagonal solve (Thomas), then the update
    if not (dg[0] > 0.0):
        return False
    for i in range(1, m):
        w = od[i] / dg[i - 1]
        dg[i] -= w * od[i]
        rh[i] -= w * rh[i - 1]
        if not (dg[i] > 0.0):
            return False
    rh[m - 1] /= dg[m - 1]
    for i in range(m - 2, -1, -1):
        rh[i] = (rh[i] - od[i + 1] * rh[i + 1]) / dg[i]
    for s in range(m):
        th[s] += rh[s]
    return True


@njit(cache=True)
def _step(
    a, rot, x, v, fext, mass, bend_c, sc, tipst, prm, iters,
    access, direc, uref, sdf, vfw, wfv, has_wall,
    lam, cforce, incontact, active, released, nrm, cpl,
    y, ystar, tseg, useg, dvec, Ab, rhs, sol, ks_seg, kb_node, rad_pt, mu_pt, tw,
):  # fmt: skip
    """One time step: push ``a`` m, turn the hub ``rot`` rad. Returns a status code.

    Contact points ``k`` (arrays of length 2 N: ``lam``, ``active``, ``released``,
    ``nrm``, ``cpl``) are the free nodes (k < N) and the midpoints of segments
    between two free nodes (k = N + s), so a segment cannot cut through a thin
    wall or a sharp carina between its nodes.

    Material properties may vary along the rod: ``ks_seg`` (N - 1) stretch
    stiffness per segment, ``kb_node`` (N) bending stiffness per node,
    ``rad_pt`` (2 N) contact radius and ``mu_pt`` (2 N) wall friction per
    contact point. ``prm[P_R]`` is the reference radius the activation margin
    and hold band (``prm[P_MARGIN]``, ``prm[P_HOLD]``) are given for; they
    scale with each point's radius.

    Torsion (``prm[P_TWIST]`` = 1): each Gauss-Newton iteration first solves the twist
    of the free segments with the centreline fixed (:func:`_twist_solve`), then the
    centreline with the twist fixed; friction acts on the slip of the rod's surface,
    translation plus spin. With ``prm[P_TWIST]`` = 0 the twist stays 0 (rigid torsion)
    and friction sees translation only.
    """
    N = x.shape[0]
    twist = prm[P_TWIST] > 0.0
    th = tw[TW_TH]
    th0 = tw[TW_TH0]
    om = tw[TW_OM]
    bsp = np.empty(3)
    h = prm[P_L]
    dt = prm[P_DT]
    wc = prm[P_WC]
    damp = prm[P_DAMP]
    r = prm[P_R]
    eps = prm[P_EPS]
    vmax = prm[P_VMAX]
    margin = prm[P_MARGIN]
    adh = prm[P_ADH]
    hold = prm[P_HOLD]
    inv_dt2 = 1.0 / (dt * dt)
    g = np.empty(3)
    cfr = np.zeros(2 * N)  # friction coefficient (N/m) each contact point used this iteration
    wsp = np.zeros((2 * N, 3))  # surface slip from spin at each contact point this iteration, m
    coef = np.empty(3)
    coef[0] = 1.0
    coef[1] = -2.0
    coef[2] = 1.0
    # ---- insertion
    depth_old = sc[S_DEPTH]
    depth = depth_old + a
    if depth < 0.0:
        depth = 0.0
    if depth > sc[S_DEPTH_MAX]:
        depth = sc[S_DEPTH_MAX]
    sc[S_DEPTH] = depth
    vin = (depth - depth_old) / dt
    sc[S_HUB] += rot
    hub = sc[S_HUB]
    n = _nfree(depth, h, N)
    for i in range(n, N):
        s = i * h
        for c in range(3):
            x[i, c] = access[c] - (s - depth) * direc[c]
            v[i, c] = vin * direc[c]
            y[i, c] = x[i, c]
        cforce[i] = 0.0
        incontact[i] = False
    for i in range(N):
        if i >= n or i >= N - 1:
            th[i] = 0.0
            om[i] = 0.0
        th0[i] = th[i]
    # contact points in use: nodes 0..n-1 and segments 0..n-2
    for k in range(2 * N):
        active[k] = False
        released[k] = False
        if (k < N and k >= n) or (k >= N and k - N >= n - 1):
            lam[k] = 0.0
    # ---- prediction; the first iterate (where stretch, frames and contacts are first
    # linearised) leaves out the external loads: a load that is large for a light node
    # throws its prediction centimetres away, where those linearisations are meaningless
    for i in range(n):
        for c in range(3):
            ystar[i, c] = x[i, c] + dt * v[i, c] + dt * dt * fext[i, c] / mass[i]
            y[i, c] = x[i, c] + dt * v[i, c]
    n3 = 3 * n
    it = 0
    max_it = iters + int(prm[P_EXTRA])
    while n > 0:
        # ---- local step: material frames -> bending targets; contacts
        compute_frames(y, direc, uref, hub, tseg, useg)
        compute_bend_targets(tseg, useg, bend_c, th, dvec)
        if has_wall:
            for k in range(2 * N):
                ia, ib, wa, wb = _point(k, N)
                if ib >= n:
                    continue
                rk = rad_pt[k]
                p0 = wa * y[ia, 0] + wb * y[ib, 0]
                p1 = wa * y[ia, 1] + wb * y[ib, 1]
                p2 = wa * y[ia, 2] + wb * y[ib, 2]
                phi = sdf_value(sdf, vfw, wfv, p0, p1, p2)
                mk = margin * (rk / r)
                if released[k]:
                    # released because it pulled; a later iterate that penetrates the wall
                    # again by more than the margin makes it a contact again (else it
                    # would tunnel until the final projection, which throws the node back
                    # with a one-step force); shallower touches stay released, so a
                    # contact cannot flip on and off at every iteration
                    if phi > -rk + mk:
                        released[k] = False
                    else:
                        active[k] = False
                        lam[k] = 0.0
                        continue
                # a contact that pressed in the last solve (this step or the previous one)
                # stays in the active set while it is within ``hold`` of the wall: a point
                # sliding along its tangent plane over a convex stretch (an ostium lip, a
                # carina) drifts off the curved wall by more than ``margin`` in one
                # iteration; dropping it then frees the node for a whole solve, in which
                # the load throws it deep into the wall and the next iteration answers
                # with a huge penalty force. Whether it still presses is decided by the sign
                # of its multiplier after the next solve (released if it pulls).
                band = mk
                hk = hold * (rk / r)
                if lam[k] > 0.0 and hk > band:
                    band = hk
                if phi > rk:
                    # far into the wall (a prediction thrown by a large load on a light node):
                    # linearise the wall where the path from the step's start leaves the lumen,
                    # not at the far point, where the field (clamped beyond its grid) is poor
                    o0 = wa * x[ia, 0] + wb * x[ib, 0]
                    o1 = wa * x[ia, 1] + wb * x[ib, 1]
                    o2 = wa * x[ia, 2] + wb * x[ib, 2]
                    t, nsub, phi_t = _first_exit(sdf, vfw, wfv, o0, o1, o2, p0, p1, p2,
                                                 0.5 * rk, g)  # fmt: skip
                    if t > 0.0:
                        phi = phi_t
                        p0 = o0 + t * (p0 - o0)
                        p1 = o1 + t * (p1 - o1)
                        p2 = o2 + t * (p2 - o2)
                    else:
                        phi = sdf_sample(sdf, vfw, wfv, p0, p1, p2, g)
                elif phi > -rk - band:
                    phi = sdf_sample(sdf, vfw, wfv, p0, p1, p2, g)
                else:
                    # end point free: did the path leave the lumen on the way (a hop)?
                    o0 = wa * x[ia, 0] + wb * x[ib, 0]
                    o1 = wa * x[ia, 1] + wb * x[ib, 1]
                    o2 = wa * x[ia, 2] + wb * x[ib, 2]
                    t, nsub, phi_t = _first_exit(sdf, vfw, wfv, o0, o1, o2, p0, p1, p2,
                                                 0.5 * rk, g)  # fmt: skip
                    if t > 0.0:
                        phi = phi_t
                        p0 = o0 + t * (p0 - o0)
                        p1 = o1 + t * (p1 - o1)
                        p2 = o2 + t * (p2 - o2)
                gn = math.sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2])
                if phi > -rk - band and gn > 1e-9:
                    active[k] = True
                    nrm[k, 0] = g[0] / gn
                    nrm[k, 1] = g[1] / gn
                    nrm[k, 2] = g[2] / gn
                    cpl[k] = nrm[k, 0] * p0 + nrm[k, 1] * p1 + nrm[k, 2] * p2 - (phi + rk) / gn
                else:
                    active[k] = False
                    lam[k] = 0.0
        # ---- twist with the centreline fixed, then the centreline with the twist fixed
        if twist:
            if not _twist_solve(n, rot, x, y, tseg, dvec, bend_c, kb_node, tw, lam, active, nrm,
                                rad_pt, mu_pt, prm[P_EPS_SPIN], dt, has_wall):  # fmt: skip
                return ERR_NOT_SPD
            compute_bend_targets(tseg, useg, bend_c, th, dvec)
        # ---- global step: assemble the banded system
        for row in range(n3):
            rhs[row] = 0.0
            for d in range(BAND + 1):
                Ab[row, d] = 0.0
        for i in range(n):
            mi = mass[i] * inv_dt2
            for c in range(3):
                Ab[3 * i + c, 0] += mi
                rhs[3 * i + c] += mi * ystar[i, c]
        # stretch, Gauss-Newton: ks/2 (t . (x_s - x_s+1) - l)^2
        for s in range(min(n, N - 1)):
            ks = ks_seg[s]
            t0 = tseg[s, 0]
            t1 = tseg[s, 1]
            t2 = tseg[s, 2]
            k00 = ks * t0 * t0
            k01 = ks * t0 * t1
            k02 = ks * t0 * t2
            k11 = ks * t1 * t1
            k12 = ks * t1 * t2
            k22 = ks * t2 * t2
            _add_block(Ab, s, s, k00, k01, k02, k01, k11, k12, k02, k12, k22)
            rhs[3 * s] += ks * h * t0
            rhs[3 * s + 1] += ks * h * t1
            rhs[3 * s + 2] += ks * h * t2
            q = s + 1
            if q < n:
                _add_block(Ab, q, q, k00, k01, k02, k01, k11, k12, k02, k12, k22)
                _add_block(Ab, q, s, -k00, -k01, -k02, -k01, -k11, -k12, -k02, -k12, -k22)
                rhs[3 * q] -= ks * h * t0
                rhs[3 * q + 1] -= ks * h * t1
                rhs[3 * q + 2] -= ks * h * t2
            else:
                rhs[3 * s] += k00 * y[q, 0] + k01 * y[q, 1] + k02 * y[q, 2]
                rhs[3 * s + 1] += k01 * y[q, 0] + k11 * y[q, 1] + k12 * y[q, 2]
                rhs[3 * s + 2] += k02 * y[q, 0] + k12 * y[q, 1] + k22 * y[q, 2]
        # bending, co-rotational: kb/2 |x_i-1 - 2 x_i + x_i+1 - d_i|^2
        for i in range(1, min(n + 1, N - 1)):
            kb = kb_node[i]
            for qa in range(3):
                na = i - 1 + qa
                if na >= n:
                    continue
                ca = coef[qa]
                for c in range(3):
                    rhs[3 * na + c] += kb * ca * dvec[i, c]
                for qb in range(3):
                    nb = i - 1 + qb
                    w = kb * ca * coef[qb]
                    if nb < n:
                        if na >= nb:
                            dd = 3 * (na - nb)
                            for c in range(3):
                                Ab[3 * na + c, dd] += w
                    else:
                        for c in range(3):
                            rhs[3 * na + c] -= w * y[nb, c]
        # contact (normal penalty) and regularised Coulomb friction (tangential)
        if has_wall:
            for k in range(2 * N):
                cfr[k] = 0.0
                if not active[k]:
                    continue
                ia, ib, wa, wb = _point(k, N)
                n0 = nrm[k, 0]
                n1 = nrm[k, 1]
                n2 = nrm[k, 2]
                _add_sym_point(Ab, ia, ib, wa, wb, wc * n0 * n0, wc * n0 * n1, wc * n0 * n2,
                               wc * n1 * n1, wc * n1 * n2, wc * n2 * n2)  # fmt: skip
                f = wc * cpl[k]
                for c in range(3):
                    rhs[3 * ia + c] += wa * f * nrm[k, c]
                    if wb != 0.0:
                        rhs[3 * ib + c] += wb * f * nrm[k, c]
                mu = mu_pt[k]
                if mu > 0.0 and lam[k] > 0.0:
                    # tangential displacement of the contact point since the step began
                    d0 = wa * (y[ia, 0] - x[ia, 0]) + wb * (y[ib, 0] - x[ib, 0])
                    d1 = wa * (y[ia, 1] - x[ia, 1]) + wb * (y[ib, 1] - x[ib, 1])
                    d2 = wa * (y[ia, 2] - x[ia, 2]) + wb * (y[ib, 2] - x[ib, 2])
                    dn = d0 * n0 + d1 * n1 + d2 * n2
                    d0 -= dn * n0
                    d1 -= dn * n1
                    d2 -= dn * n2
                    w0 = 0.0
                    w1 = 0.0
                    w2 = 0.0
                    if twist:
                        # the spin moves the surface at the contact by r da b (rolling)
                        sa, sb, fa, fb = _contact_spin(k, N, tseg, nrm, bsp)
                        da = rot + fa * (th[sa] - th0[sa]) + fb * (th[sb] - th0[sb])
                        w0 = rad_pt[k] * da * bsp[0]
                        w1 = rad_pt[k] * da * bsp[1]
                        w2 = rad_pt[k] * da * bsp[2]
                    wsp[k, 0] = w0
                    wsp[k, 1] = w1
                    wsp[k, 2] = w2
                    d0 += w0
                    d1 += w1
                    d2 += w2
                    dtan = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
                    cf = mu * lam[k] / max(dtan, eps)
                    cfr[k] = cf
                    p00 = cf * (1.0 - n0 * n0)
                    p01 = -cf * n0 * n1
                    p02 = -cf * n0 * n2
                    p11 = cf * (1.0 - n1 * n1)
                    p12 = -cf * n1 * n2
                    p22 = cf * (1.0 - n2 * n2)
                    _add_sym_point(Ab, ia, ib, wa, wb, p00, p01, p02, p11, p12, p22)
                    # pull toward the contact point's position at the start of the step (less
                    # the spin's slip, which lies in the tangent plane)
                    o0 = wa * x[ia, 0] + wb * x[ib, 0]
                    o1 = wa * x[ia, 1] + wb * x[ib, 1]
                    o2 = wa * x[ia, 2] + wb * x[ib, 2]
                    r0 = p00 * o0 + p01 * o1 + p02 * o2 - cf * w0
                    r1 = p01 * o0 + p11 * o1 + p12 * o2 - cf * w1
                    r2 = p02 * o0 + p12 * o1 + p22 * o2 - cf * w2
                    rhs[3 * ia] += wa * r0
                    rhs[3 * ia + 1] += wa * r1
                    rhs[3 * ia + 2] += wa * r2
                    if wb != 0.0:
                        rhs[3 * ib] += wb * r0
                        rhs[3 * ib + 1] += wb * r1
                        rhs[3 * ib + 2] += wb * r2
        if not _band_cholesky_solve(Ab, rhs, n3, sol):
            return ERR_NOT_SPD
        for i in range(n):
            y[i, 0] = sol[3 * i]
            y[i, 1] = sol[3 * i + 1]
            y[i, 2] = sol[3 * i + 2]
        # contact multipliers; contacts that pull are released for the rest of the step.
        # The lagged friction coefficient can hold a contact that should start to slide
        # (force above Coulomb's mu * lambda): such contacts also earn another iteration.
        unsettled = False
        for k in range(2 * N):
            if active[k]:
                ia, ib, wa, wb = _point(k, N)
                pn = 0.0
                for c in range(3):
                    pn += nrm[k, c] * (wa * y[ia, c] + wb * y[ib, c])
                lm = wc * (pn - cpl[k])
                if lm < -adh:
                    unsettled = True
                    released[k] = True
                    lam[k] = 0.0
                else:
                    lam[k] = max(lm, 0.0)
                if cfr[k] > 0.0:
                    dt2 = 0.0
                    dn = 0.0
                    for c in range(3):
                        dn += nrm[k, c] * (wa * (y[ia, c] - x[ia, c]) + wb * (y[ib, c] - x[ib, c]))
                    for c in range(3):
                        dc = (wa * (y[ia, c] - x[ia, c]) + wb * (y[ib, c] - x[ib, c]) - dn * nrm[k, c]
                              + wsp[k, c])
                        dt2 += dc * dc
                    if cfr[k] * math.sqrt(dt2) > prm[P_FTOL] * mu_pt[k] * lam[k] + 1e-9:
                        unsettled = True
            else:
                lam[k] = 0.0
        # a large rotation within one step (a tip snapping into shape) leaves the
        # linearised stretch unconverged: iterate on while a segment is off by > 1 %
        if not unsettled:
            for s in range(min(n, N - 1)):
                e0 = y[s, 0] - y[s + 1, 0]
                e1 = y[s, 1] - y[s + 1, 1]
                e2 = y[s, 2] - y[s + 1, 2]
                if abs(math.sqrt(e0 * e0 + e1 * e1 + e2 * e2) - h) > 0.01 * h:
                    unsettled = True
                    break
        it += 1
        if it >= max_it or (it >= iters and not unsettled):
            break
    sc[S_ITERS] = it
    # ---- velocities from the solve, then hard projection onto phi <= -r (nodes, segment
    # midpoints, nodes again). Projection moves positions only and removes velocity into
    # the wall ("split impulse"), so recovering from penetration never injects energy.
    for i in range(n):
        cforce[i] = 0.0
        for c in range(3):
            v[i, c] = (y[i, c] - x[i, c]) / dt * (1.0 - damp)
        om[i] = (th[i] - th0[i]) / dt * (1.0 - damp)
    if has_wall:
        for rnd in range(3):
            for k in range(2 * N):
                if (rnd == 1) != (k >= N):
                    continue
                ia, ib, wa, wb = _point(k, N)
                if ib >= n:
                    continue
                if rnd == 0:
                    # a long move that left the lumen on the way is cut back to its last
                    # sample inside, so the projection below cannot finish a hop
                    o0 = wa * x[ia, 0] + wb * x[ib, 0]
                    o1 = wa * x[ia, 1] + wb * x[ib, 1]
                    o2 = wa * x[ia, 2] + wb * x[ib, 2]
                    p0 = wa * y[ia, 0] + wb * y[ib, 0]
                    p1 = wa * y[ia, 1] + wb * y[ib, 1]
                    p2 = wa * y[ia, 2] + wb * y[ib, 2]
                    t, nsub, phi = _first_exit(sdf, vfw, wfv, o0, o1, o2, p0, p1, p2,
                                               0.5 * rad_pt[k], g)  # fmt: skip
                    if t > 0.0:
                        keep = t - 1.0 / nsub
                        for j in range(2):
                            node = ia if j == 0 else ib
                            if j == 1 and wb == 0.0:
                                break
                            for c in range(3):
                                y[node, c] = x[node, c] + keep * (y[node, c] - x[node, c])
                                v[node, c] = (y[node, c] - x[node, c]) / dt * (1.0 - damp)
                rk = rad_pt[k]
                for _k in range(3):
                    p0 = wa * y[ia, 0] + wb * y[ib, 0]
                    p1 = wa * y[ia, 1] + wb * y[ib, 1]
                    p2 = wa * y[ia, 2] + wb * y[ib, 2]
                    if sdf_value(sdf, vfw, wfv, p0, p1, p2) <= -rk:
                        break
                    phi = sdf_sample(sdf, vfw, wfv, p0, p1, p2, g)
                    gn2 = g[0] * g[0] + g[1] * g[1] + g[2] * g[2]
                    if phi <= -rk or gn2 < 1e-18:
                        break
                    f = (phi + rk) / gn2
                    for c in range(3):
                        y[ia, c] -= f * g[c]
                    if wb != 0.0:
                        for c in range(3):
                            y[ib, c] -= f * g[c]
                    # force estimate for a point only the projection held
                    if lam[k] <= 0.0:
                        cforce[ia] += mass[ia] * f * math.sqrt(gn2) * inv_dt2
                    for j in range(2):
                        node = ia if j == 0 else ib
                        if j == 1 and wb == 0.0:
                            break
                        vn = (v[node, 0] * g[0] + v[node, 1] * g[1] + v[node, 2] * g[2]) / gn2
                        if vn > 0.0:
                            for c in range(3):
                                v[node, c] -= vn * g[c]
    # normal forces per node: node multipliers plus half of each adjacent midpoint's
    for k in range(2 * N):
        if lam[k] > 0.0:
            ia, ib, wa, wb = _point(k, N)
            cforce[ia] += wa * lam[k]
            if wb != 0.0:
                cforce[ib] += wb * lam[k]
    for i in range(n):
        incontact[i] = cforce[i] > 0.0
        sp = math.sqrt(v[i, 0] * v[i, 0] + v[i, 1] * v[i, 1] + v[i, 2] * v[i, 2])
        if sp > vmax:
            for c in range(3):
                v[i, c] *= vmax / sp
        for c in range(3):
            x[i, c] = y[i, c]
        if not (
            math.isfinite(x[i, 0]) and math.isfinite(x[i, 1]) and math.isfinite(x[i, 2])
            and math.isfinite(v[i, 0]) and math.isfinite(v[i, 1]) and math.isfinite(v[i, 2])
        ):  # fmt: skip
            return ERR_NOT_FINITE
    # ---- readouts: sheath force, tip frame rotation
    compute_frames(x, direc, uref, hub, tseg, useg)
    compute_bend_targets(tseg, useg, bend_c, th, dvec)
    sc[S_PUSH] = _sheath_force(x, n, direc, prm, dvec, ks_seg, kb_node)
    sc[S_TORQUE] = -tw[TW_KT, n] * th[n - 1] if (twist and n > 0) else 0.0
    if sc[S_TIP_INIT] > 0.0:
        pt = tipst[0:3]
        pu = tipst[3:6]
        _transport(pu, pt, tseg[0], g)
        cr0 = g[1] * useg[0, 2] - g[2] * useg[0, 1]
        cr1 = g[2] * useg[0, 0] - g[0] * useg[0, 2]
        cr2 = g[0] * useg[0, 1] - g[1] * useg[0, 0]
        sn = cr0 * tseg[0, 0] + cr1 * tseg[0, 1] + cr2 * tseg[0, 2]
        cs = g[0] * useg[0, 0] + g[1] * useg[0, 1] + g[2] * useg[0, 2]
        sc[S_TWIST] += math.atan2(sn, cs) + (th[0] - th0[0])
    for c in range(3):
        tipst[c] = tseg[0, c]
        tipst[3 + c] = useg[0, c]
    sc[S_TIP_INIT] = 1.0
    if not math.isfinite(sc[S_PUSH]):
        return ERR_NOT_FINITE
    return OK


@njit(cache=True)
def run_steps(
    n_steps, adv, rot, x, v, fext, mass, bend_c, sc, tipst, prm, iters,
    access, direc, uref, sdf, vfw, wfv, has_wall,
    lam, cforce, incontact, active, released, nrm, cpl,
    y, ystar, tseg, useg, dvec, Ab, rhs, sol, saved, facc, ks_seg, kb_node, rad_pt, mu_pt, tw,
):  # fmt: skip
    """Advance the rod ``n_steps`` steps; each step pushes ``adv`` m and turns the hub ``rot`` rad.

    ``facc`` (N,) accumulates each step's contact force per node (for
    sensor-like averages over a recording interval).

    Force limit: no advance while the entry force is at ``max_push_force`` in
    compression (no retraction while it is at the limit in tension); a step
    that takes the force past the limit is redone with the advance scaled
    (secant on the force) so that the force lands on the limit.
    ``saved`` is scratch space of at least ``10 N + 6 + N_SCALARS`` floats; ``tw`` (N_TW, N)
    holds the twist state and parameters (see ``TW_*``).
    Returns a status code (``OK`` or an ``ERR_*``).
    """
    fmax = prm[P_FMAX]
    for _s in range(n_steps):
        f0 = sc[S_PUSH]
        a = adv
        if (a > 0.0 and f0 >= fmax) or (a < 0.0 and f0 <= -fmax):
            a = 0.0
        if a != 0.0:
            _save(x, v, lam, tipst, sc, tw, saved)
        for attempt in range(2):
            status = _step(
                a, rot, x, v, fext, mass, bend_c, sc, tipst, prm, iters,
                access, direc, uref, sdf, vfw, wfv, has_wall,
                lam, cforce, incontact, active, released, nrm, cpl,
                y, ystar, tseg, useg, dvec, Ab, rhs, sol, ks_seg, kb_node, rad_pt, mu_pt, tw,
            )  # fmt: skip
            if status != OK:
                return status
            f1 = sc[S_PUSH]
            if attempt == 0 and a > 0.0 and f1 > fmax and f1 > f0:
                a *= min(max((fmax - f0) / (f1 - f0), 0.0), 1.0)
                _restore(x, v, lam, tipst, sc, tw, saved)
            elif attempt == 0 and a < 0.0 and f1 < -fmax and f1 < f0:
                a *= min(max((-fmax - f0) / (f1 - f0), 0.0), 1.0)
                _restore(x, v, lam, tipst, sc, tw, saved)
            else:
                break
        for i in range(x.shape[0]):
            facc[i] += cforce[i]
    return OK


@njit(cache=True)
def _save(x, v, lam, tipst, sc, tw, saved):
    N = x.shape[0]
    q = 0
    for i in range(N):
        for c in range(3):
            saved[q] = x[i, c]
            saved[q + 1] = v[i, c]
            q += 2
        saved[q] = lam[i]
        saved[q + 1] = lam[N + i]
        saved[q + 2] = tw[TW_TH, i]
        saved[q + 3] = tw[TW_OM, i]
        q += 4
    for c in range(6):
        saved[q] = tipst[c]
        q += 1
    for c in range(sc.shape[0]):
        saved[q] = sc[c]
        q += 1


@njit(cache=True)
def _restore(x, v, lam, tipst, sc, tw, saved):
    N = x.shape[0]
    q = 0
    for i in range(N):
        for c in range(3):
            x[i, c] = saved[q]
            v[i, c] = saved[q + 1]
            q += 2
        lam[i] = saved[q]
        lam[N + i] = saved[q + 1]
        tw[TW_TH, i] = saved[q + 2]
        tw[TW_OM, i] = saved[q + 3]
        q += 4
    for c in range(6):
        tipst[c] = saved[q]
        q += 1
    for c in range(sc.shape[0]):
        sc[c] = saved[q]
        q += 1


# -- coaxial devices (a guidewire inside a catheter) -------------------------------------
# Per-device constants, rows of ``dev_sc`` (device 0 = catheter, 1 = guidewire)
D_EA = 0  # axial stiffness EA, N
D_EI = 1  # bending stiffness EI of the full section, N m^2
D_RHOA = 2  # mass per length, kg/m
D_R = 3  # outer radius, m
D_MU = 4  # wall friction coefficient
D_FMAX = 5  # push force limit, N
D_NB = 6  # number of intervals in the device's piecewise table (``dev_bp``, ``dev_ei``, ``dev_kap``)
N_DEV = 7

# Coaxial scalar state ``cs``
C_DEPTH = 0  # depths: C_DEPTH + k for device k, m
C_HUB = 2  # hub angles: C_HUB + k, rad
C_PUSH = 4  # axial force per device: C_PUSH + k, N (compression positive)
C_MUSCALE = 6  # friction scale of the catheter-covered part in the last step
N_COAX = 7


@njit(cache=True)
def _dev_integrals(k, a, b, dev_sc, dev_bp, dev_ei, dev_kap):
    """Integrals of EI and EI kappa of device ``k`` over its material arc [a, b] (from its tip).

    The device's table is piecewise: on interval j (``dev_bp[k, j]``..``dev_bp[k, j + 1]``)
    the curvature is ``dev_kap[k, j]`` and EI goes linearly from ``dev_ei[k, j]`` to
    ``dev_ei[k, j + 1]``; beyond the last breakpoint EI is the full section's, curvature 0.
    Returns (int EI ds, int EI kappa ds, int kappa ds) in N m^3, N m^2 and radians.
    """
    if a < 0.0:
        a = 0.0
    if not (b > a):
        return 0.0, 0.0, 0.0
    nb = int(dev_sc[k, D_NB])
    if a >= dev_bp[k, nb]:  # the uniform, straight shaft
        return dev_sc[k, D_EI] * (b - a), 0.0, 0.0
    ii = 0.0
    jj = 0.0
    kk = 0.0
    for j in range(nb):
        b0 = dev_bp[k, j]
        b1 = dev_bp[k, j + 1]
        lo = max(a, b0)
        hi = min(b, b1)
        if hi > lo and b1 > b0:
            e0 = dev_ei[k, j]
            de = (dev_ei[k, j + 1] - e0) / (b1 - b0)
            val = 0.5 * ((e0 + de * (lo - b0)) + (e0 + de * (hi - b0))) * (hi - lo)
            ii += val
            jj += dev_kap[k, j] * val
            kk += dev_kap[k, j] * (hi - lo)
    tail = max(a, dev_bp[k, nb])
    if b > tail:
        ii += dev_sc[k, D_EI] * (b - tail)
    return ii, jj, kk


@njit(cache=True)
def coax_properties(depth, dc, dw, thc, thw, h, taper, mu_scale, dev_sc, dev_bp, dev_ei, dev_kap,
                    ks_seg, kb_node, bend_c, mass, rad_pt, mu_pt):  # fmt: skip
    """Material of the combined rod for device depths ``dc``, ``dw`` and hub angles ``thc``, ``thw``.

    Node ``i`` lies ``s = i h`` from the distal end of the union, whose depth is
    ``depth = max(dc, dw)``; device ``k`` covers ``s >= depth - d_k``. Integrals
    over each node's dual cell make every property a continuous function of the
    depths (no jump when a device tip crosses a node or the other tip):

    - ``ks_seg`` (N - 1): sum of the EA of the devices covering the segment / l^2;
    - ``kb_node`` (N): cell mean of the summed EI / l^3;
    - ``bend_c`` (N, 2): turning vector ``2 l sin(phi / 2) phi_hat`` in the hub-0
      reference frame, where ``phi`` is the node cell's integral of the rest
      curvature ``sum_k EI_k R(theta_k) kappa_k / sum_k EI_k`` (each device's
      curvature turned by its own hub angle: rigid torsion per device). The cell
      is split where a device starts: a stretch with one device contributes that
      device's own turning ``int kappa``, a stretch with both the stiffness-weighted
      mean over the stretch, so the turning moves linearly with the coverage;
    - ``mass`` (N): cell integral of the summed mass per length;
    - ``rad_pt`` (2 N): outer radius of what is present at each node and segment
      midpoint; the catheter's tip tapers onto the wire over ``taper`` metres;
    - ``mu_pt`` (2 N): the outer device's wall friction (``mu_scale`` times the
      catheter's where it covers the wire).
    """
    N = mass.shape[0]
    s_dev = np.empty(2)
    s_dev[0] = depth - dc
    s_dev[1] = depth - dw
    cth = np.empty(2)
    sth = np.empty(2)
    cth[0] = math.cos(thc)
    sth[0] = math.sin(thc)
    cth[1] = math.cos(thw)
    sth[1] = math.sin(thw)
    inv_h4 = 1.0 / (h * h * h * h)
    cuts = np.empty(4)
    for s in range(N - 1):
        lo = s * h
        hi = lo + h
        ea = 0.0
        for k in range(2):
            cov = hi - max(lo, s_dev[k])
            if cov > 0.0:
                ea += dev_sc[k, D_EA] * cov
        ks_seg[s] = ea / (h * h)
    for i in range(N):
        lo = (i - 0.5) * h
        if lo < 0.0:
            lo = 0.0
        hi = (i + 0.5) * h
        m = 0.0
        for k in range(2):
            cov = hi - max(lo, s_dev[k])
            if cov > 0.0:
                m += dev_sc[k, D_RHOA] * cov
        mass[i] = m
        kb_node[i] = 0.0
        bend_c[i, 0] = 0.0
        bend_c[i, 1] = 0.0
        if i == 0 or i == N - 1:
            continue
        # stiffness over the node's cell; turning over the cell (node 1 also takes the
        # tip's half cell, which has no bending term)
        ei_cell = 0.0
        for k in range(2):
            a, _, _ = _dev_integrals(k, lo - s_dev[k], hi - s_dev[k], dev_sc, dev_bp, dev_ei, dev_kap)
            ei_cell += a
        kb_node[i] = ei_cell * inv_h4
        lo_t = 0.0 if i == 1 else lo
        cuts[0] = lo_t
        cuts[1] = min(max(s_dev[0], lo_t), hi)
        cuts[2] = min(max(s_dev[1], lo_t), hi)
        if cuts[2] < cuts[1]:
            tmp = cuts[1]
            cuts[1] = cuts[2]
            cuts[2] = tmp
        cuts[3] = hi
        p0 = 0.0
        p1 = 0.0
        for q in range(3):
            a = cuts[q]
            b = cuts[q + 1]
            if not (b > a):
                continue
            ei_sum = 0.0
            j0 = 0.0
            j1 = 0.0
            t0 = 0.0
            t1 = 0.0
            n_here = 0
            for k in range(2):
                if s_dev[k] <= a:
                    n_here += 1
                    e, c, t = _dev_integrals(k, a - s_dev[k], b - s_dev[k], dev_sc, dev_bp,
                                             dev_ei, dev_kap)  # fmt: skip
                    ei_sum += e
                    j0 += c * cth[k]
                    j1 += c * sth[k]
                    t0 += t * cth[k]
                    t1 += t * sth[k]
            if n_here == 1:
                p0 += t0
                p1 += t1
            elif n_here == 2 and ei_sum > 0.0:
                p0 += (b - a) * j0 / ei_sum
                p1 += (b - a) * j1 / ei_sum
        if p0 != 0.0 or p1 != 0.0:
            mag = math.sqrt(p0 * p0 + p1 * p1)
            if mag > 0.0:
                amp = 2.0 * h * math.sin(0.5 * mag) / mag
                bend_c[i, 0] = p0 * amp
                bend_c[i, 1] = p1 * amp
    rc = dev_sc[0, D_R]
    rw = dev_sc[1, D_R]
    for kp in range(2 * N):
        s = kp * h if kp < N else (kp - N + 0.5) * h
        r = 0.0
        mu = 0.0
        if s >= s_dev[1]:
            r = rw
            mu = dev_sc[1, D_MU]
        if s >= s_dev[0]:
            f = (s - s_dev[0]) / taper if taper > 0.0 else 1.0
            if f > 1.0:
                f = 1.0
            rt = rw + (rc - rw) * f
            if rt > r:
                r = rt
            mu = mu_scale * dev_sc[0, D_MU]
        if r <= 0.0:  # cannot happen (the leading device covers s >= 0); stay safe
            r = max(rc, rw)
        rad_pt[kp] = r
        mu_pt[kp] = mu


@njit(cache=True)
def _follower_load(k, depth, dk, h, n_in, cforce, kb_node, dev_sc):
    """Sliding resistance estimate (N) of device ``k`` moving behind the union's tip.

    The catheter riding over the wire carries the wall load of the nodes it
    covers; the wire inside the catheter presses on its lumen with the share
    ``EI_w / EI`` of that load. Both slide with their own friction coefficient.
    ``cforce`` is the wall force per node averaged over the last ~10 ms (one-step
    reactions of the penetration recovery would otherwise stall the hand).
    """
    s_k = depth - dk
    h3 = h * h * h
    total = 0.0
    for i in range(n_in):
        if i * h >= s_k and cforce[i] > 0.0:
            share = 1.0
            if k == 1 and kb_node[i] > 0.0:
                share = min(dev_sc[1, D_EI] / (kb_node[i] * h3), 1.0)
            total += share * cforce[i]
    return dev_sc[k, D_MU] * total


@njit(cache=True)
def run_coaxial_steps(
    n_steps, adv_c, adv_w, rot_c, rot_w, cs, dev_sc, dev_bp, dev_ei, dev_kap, taper,
    x, v, fext, mass, bend_c, sc, tipst, prm, iters,
    access, direc, uref, sdf, vfw, wfv, has_wall,
    lam, cforce, incontact, active, released, nrm, cpl,
    y, ystar, tseg, useg, dvec, Ab, rhs, sol, saved, facc, ks_seg, kb_node, rad_pt, mu_pt, tw,
    cf_mean,
):  # fmt: skip
    """Advance a catheter over a guidewire ``n_steps`` steps (constant hand inputs per step).

    ``adv_c``, ``adv_w`` (m) and ``rot_c``, ``rot_w`` (rad) per step move the
    catheter (device 0) and the wire (device 1). The combined rod's nodes are
    material points of the union's distal end: its depth is the larger device
    depth, so pushing the leading device moves the nodes (the sheath pushes the
    held line as for one device) while the device behind it slides over or
    inside it (its covered stretch shifts along the nodes, :func:`coax_properties`).

    Push limits: the union's advance is refused while the sheath force is at
    the summed limit of the devices that drive it (those advancing at least as
    far as the union's end) and a step that overshoots is redone with a smaller
    advance (secant), as for one device; retraction likewise in tension. A
    device behind the union's end is refused while its sliding resistance
    (:func:`_follower_load`) reaches its own limit. ``cf_mean`` (N) is the wall
    force per node, averaged exponentially over 10 ms (updated here).
    """
    N = x.shape[0]
    h = prm[P_L]
    dmax = sc[S_DEPTH_MAX]
    adv = np.empty(2)
    adv[0] = adv_c
    adv[1] = adv_w
    d_old = np.empty(2)
    prop = np.empty(2)
    new = np.empty(2)
    drive = np.zeros(2, dtype=np.bool_)
    for _s in range(n_steps):
        depth0 = sc[S_DEPTH]
        n_in = 0
        for i in range(N):
            if i * h < depth0:
                n_in = i + 1
        for k in range(2):
            d_old[k] = cs[C_DEPTH + k]
            p = d_old[k] + adv[k]
            prop[k] = min(max(p, 0.0), dmax)
        cs[C_HUB] += rot_c
        cs[C_HUB + 1] += rot_w
        # a device behind the union's end slides over / inside the other one
        for k in range(2):
            cs[C_PUSH + k] = 0.0
            if d_old[k] < depth0 and prop[k] != d_old[k]:
                load = _follower_load(k, depth0, d_old[k], h, n_in, cf_mean, kb_node, dev_sc)
                if load >= dev_sc[k, D_FMAX]:
                    load = dev_sc[k, D_FMAX]
                    prop[k] = d_old[k]
                cs[C_PUSH + k] = load if adv[k] > 0.0 else -load
        dp = max(prop[0], prop[1])
        a_union = dp - depth0
        fmax = 0.0
        for k in range(2):
            drive[k] = False
            if a_union > 0.0 and prop[k] - d_old[k] >= a_union - 1e-15:
                drive[k] = True
            elif a_union < 0.0 and prop[k] - d_old[k] <= a_union + 1e-15:
                drive[k] = True
            elif a_union == 0.0 and d_old[k] >= depth0:
                drive[k] = True
            if drive[k]:
                fmax += dev_sc[k, D_FMAX]
        f0 = sc[S_PUSH]
        if (a_union > 0.0 and f0 >= fmax) or (a_union < 0.0 and f0 <= -fmax):
            a_union = 0.0
        if a_union != 0.0:
            _save(x, v, lam, tipst, sc, tw, saved)
        a_req = dp - depth0
        for attempt in range(2):
            # the union's end lands on depth0 + a_union: an advance refused or cut short
            # holds the advancing devices there, a retraction refused or cut short holds
            # the retracting leader(s)
            target = depth0 + a_union
            for k in range(2):
                new[k] = prop[k]
                if a_req > 0.0 and new[k] > target:
                    new[k] = target
                if a_req < a_union and d_old[k] >= depth0 and new[k] < target:
                    new[k] = target
            mu_scale = 1.0
            if new[0] < target and a_union != 0.0:  # wire leads: is the catheter moving with it?
                mu_scale = min(max((new[0] - d_old[0]) / a_union, 0.0), 1.0)
            cs[C_MUSCALE] = mu_scale
            coax_properties(target, new[0], new[1], cs[C_HUB], cs[C_HUB + 1], h, taper, mu_scale,
                            dev_sc, dev_bp, dev_ei, dev_kap, ks_seg, kb_node, bend_c, mass,
                            rad_pt, mu_pt)  # fmt: skip
            status = _step(
                a_union, 0.0, x, v, fext, mass, bend_c, sc, tipst, prm, iters,
                access, direc, uref, sdf, vfw, wfv, has_wall,
                lam, cforce, incontact, active, released, nrm, cpl,
                y, ystar, tseg, useg, dvec, Ab, rhs, sol, ks_seg, kb_node, rad_pt, mu_pt, tw,
            )  # fmt: skip
            if status != OK:
                return status
            f1 = sc[S_PUSH]
            if attempt == 0 and a_union > 0.0 and f1 > fmax and f1 > f0:
                a_union *= min(max((fmax - f0) / (f1 - f0), 0.0), 1.0)
                _restore(x, v, lam, tipst, sc, tw, saved)
            elif attempt == 0 and a_union < 0.0 and f1 < -fmax and f1 < f0:
                a_union *= min(max((-fmax - f0) / (f1 - f0), 0.0), 1.0)
                _restore(x, v, lam, tipst, sc, tw, saved)
            else:
                break
        # the union's end is exactly the kernel's depth
        depth1 = sc[S_DEPTH]
        lead = 0 if new[0] >= new[1] else 1
        new[lead] = depth1
        if new[1 - lead] > depth1:
            new[1 - lead] = depth1
        for k in range(2):
            cs[C_DEPTH + k] = new[k]
        # axial force per device: the driving device(s) share the sheath force by their limits
        for k in range(2):
            if drive[k]:
                cs[C_PUSH + k] = sc[S_PUSH] * dev_sc[k, D_FMAX] / fmax
        alpha = min(prm[P_DT] / 0.01, 1.0)
        for i in range(N):
            facc[i] += cforce[i]
            cf_mean[i] += alpha * (cforce[i] - cf_mean[i])
    return OK
