"""Read and write surfaces and label maps so other tools (3D Slicer, TotalSegmentator) can check them.

Surfaces: STL, OBJ, PLY, VTP (VTK XML), VTK (legacy) and GLB (binary glTF).
Inside surgsim points are LPS metres; files keep LPS and take the unit you ask
for (``units="m"``, the default, or ``"mm"`` as 3D Slicer expects). GLB is
the exception: glTF is defined as metres, +Y up, +Z toward the front of the
asset, so GLB files hold ``(x, y, z)_gltf = (x_L, z_S, -y_P)`` (a proper
rotation) and are read back into LPS.

Label maps: NRRD (pynrrd; ``space`` left-posterior-superior, millimetres, as
3D Slicer writes it) and NIfTI-1 (nibabel; ``.nii`` / ``.nii.gz``; the affine is
RAS millimetres by definition, so x and y are negated on the way in and out).
Arrays inside surgsim are indexed ``[k, j, i]``; files store ``i`` fastest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surgsim.errors import AnatomyError

os.environ.setdefault("VTK_SMP_BACKEND_IN_USE", "STDThread")

SURFACE_SUFFIXES = (".stl", ".obj", ".ply", ".vtp", ".vtk", ".glb")
LABELMAP_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz")

#: LPS <-> RAS (x and y flip), homogeneous.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
#: glTF axes from LPS: x_gltf = x_L, y_gltf = z_S, z_gltf = -y_P (determinant +1).
GLTF_FROM_LPS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

_UNIT_SCALE = {"m": 1.0, "mm": 1e3}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    if name.endswith(".seg.nrrd"):
        return ".nrrd"
    return path.suffix.lower()


def _scale_of(units: str, where: str) -> float:
    try:
        return _UNIT_SCALE[units]
    except KeyError:
        raise AnatomyError(f"{where}: units must be 'm' or 'mm', got {units!r}") from None


# --------------------------------------------------------------------------- surfaces


def write_surface(mesh, path: Path | str, *, units: str = "m") -> Path:
    """Write a triangle surface, format from the file suffix.

    Parameters
    ----------
    mesh : pyvista.PolyData
        Points in LPS metres.
    path : Path
        ``.stl`` (binary), ``.obj``, ``.ply`` (binary), ``.vtp``, ``.vtk`` or ``.glb``.
    units : {"m", "mm"}
        Unit of the coordinates in the file (GLB is always metres, glTF axes).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    AnatomyError
        Unknown suffix or the file cannot be written.
    """
    import pyvista as pv

    path = Path(path)
    suffix = _suffix(path)
    if suffix not in SURFACE_SUFFIXES:
        raise AnatomyError(
            f"{path}: unknown surface format {suffix or '(no suffix)'}; use one of "
            f"{', '.join(SURFACE_SUFFIXES)}"
        )
    scale = _scale_of(units, str(path))
    out = pv.PolyData(mesh.points.copy(), mesh.faces.copy()) if suffix in (".stl", ".obj", ".glb") else mesh.copy()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".glb":
            _write_glb(out, path)
            return path
        if scale != 1.0:
            out.points = np.asarray(out.points, dtype=float) * scale
        if suffix == ".obj":
            _write_obj(out, path)
        else:
            out.save(path, binary=True)
    except OSError as exc:
        raise AnatomyError(f"{path}: cannot write the surface ({exc.strerror or exc}); choose a writable path") from None
    return path


def _write_obj(mesh, path: Path) -> None:
    """Wavefront OBJ (vertices and triangles; comments say the frame and units)."""
    pts = np.asarray(mesh.points, dtype=float)
    tris = _tri_array(mesh)
    with open(path, "w", encoding="ascii") as fh:
        fh.write("# surgsim surface, LPS patient coordinates\n")
        np.savetxt(fh, pts, fmt="v %.9g %.9g %.9g")
        np.savetxt(fh, tris + 1, fmt="f %d %d %d")


def _tri_array(mesh) -> np.ndarray:
    if not mesh.is_all_triangles:
        mesh = mesh.triangulate()
    faces = np.asarray(mesh.faces)
    return faces.reshape(-1, 4)[:, 1:].astype(np.int64) if faces.size else np.zeros((0, 3), np.int64)


def _write_glb(mesh, path: Path) -> None:
    """Minimal binary glTF 2.0: one mesh, float32 positions and normals, uint32 indices.

    (VTK 9.7's vtkGLTFWriter crashes on plain poly data, so the few bytes are written here.)
    """
    import json
    import struct

    pts = (np.asarray(mesh.points, dtype=float) @ GLTF_FROM_LPS.T).astype("<f4")
    tris = _tri_array(mesh).astype("<u4")
    if len(tris) == 0:
        raise AnatomyError(f"{path}: the surface has no triangles to write")
    # area-weighted vertex normals (glTF wants them unit length)
    a, b, c = (pts[tris[:, n]].astype(float) for n in range(3))
    fn = np.cross(b - a, c - a)
    vn = np.zeros((len(pts), 3))
    for n in range(3):
        np.add.at(vn, tris[:, n], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    vn = np.where(norm > 0, vn / np.maximum(norm, 1e-30), [0.0, 1.0, 0.0]).astype("<f4")
    blobs = [pts.tobytes(), vn.tobytes(), tris.ravel().tobytes()]
    offsets = []
    buf = b""
    for blob in blobs:
        offsets.append(len(buf))
        buf += blob + b"\0" * (-len(blob) % 4)
    doc = {
        "asset": {"version": "2.0", "generator": "surgsim"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "surgsim-surface"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "mode": 4}]}],
        "buffers": [{"byteLength": len(buf)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": offsets[0], "byteLength": len(blobs[0]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[1], "byteLength": len(blobs[1]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[2], "byteLength": len(blobs[2]), "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(pts), "type": "VEC3",
             "min": pts.min(axis=0).tolist(), "max": pts.max(axis=0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(pts), "type": "VEC3"},
            {"bufferView": 2, "componentType": 5125, "count": int(tris.size), "type": "SCALAR"},
        ],
    }
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(buf)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<4sII", b"glTF", 2, total))
        fh.write(struct.pack("<I4s", len(js), b"JSON") + js)
        fh.write(struct.pack("<I4s", len(buf), b"BIN\0") + buf)


def _read_glb(path: Path):
    """Read the triangles of every mesh primitive of a binary glTF (node transforms ignored)."""
    import json
    import struct

    import pyvista as pv

    data = path.read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise AnatomyError(f"{path}: not a binary glTF file (no 'glTF' magic)")
    pos = 12
    doc = None
    binary = b""
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from("<I4s", data, pos)
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"JSON":
            doc = json.loads(chunk)
        elif kind == b"BIN\0":
            binary = chunk
        pos += 8 + length
    if doc is None:
        raise AnatomyError(f"{path}: glTF JSON chunk missing")
    types = {5126: "<f4", 5125: "<u4", 5123: "<u2", 5121: "u1"}
    width = {"SCALAR": 1, "VEC3": 3}

    def accessor(n: int) -> np.ndarray:
        acc = doc["accessors"][n]
        view = doc["bufferViews"][acc["bufferView"]]
        dt = np.dtype(types[acc["componentType"]])
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        count = acc["count"] * width[acc["type"]]
        return np.frombuffer(binary, dtype=dt, count=count, offset=start).reshape(acc["count"], -1)

    points, faces = [], []
    base = 0
    try:
        for m in doc.get("meshes", []):
            for prim in m.get("primitives", []):
                if prim.get("mode", 4) != 4:
                    continue
                p = accessor(prim["attributes"]["POSITION"]).astype(float)
                idx = (accessor(prim["indices"]).ravel() if "indices" in prim else np.arange(len(p)))
                points.append(p)
                faces.append(idx.reshape(-1, 3).astype(np.int64) + base)
                base += len(p)
    except (KeyError, IndexError, ValueError) as exc:
        raise AnatomyError(f"{path}: malformed glTF ({type(exc).__name__}: {exc})") from None
    if not points:
        raise AnatomyError(f"{path}: the glTF file holds no triangle mesh")
    tris = np.concatenate(faces)
    pts = np.concatenate(points) @ GLTF_FROM_LPS  # back to LPS
    return pv.PolyData(pts, np.hstack([np.full((len(tris), 1), 3), tris]).ravel())


def read_surface(
    path: Path | str,
    *,
    units: str = "auto",
    weld_tolerance: float | None = None,
):
    """Read a surface (STL, OBJ, PLY, VTP, VTK, GLB) into LPS metres, welded and oriented.

    Many exported meshes (one triangle soup per face, e.g. the Elastrat arch
    OBJ) repeat each vertex for every triangle; duplicates are merged so the
    surface is closed again.

    Parameters
    ----------
    path : Path
    units : {"auto", "m", "mm"}
        Unit of the file's coordinates. ``"auto"``: millimetres when the
        bounding box diagonal exceeds 3 (no anatomy is 3 m long), else metres.
        GLB is always metres.
    weld_tolerance : float, optional
        Vertices closer than this (file units) are merged; default 1e-6 of the
        bounding box diagonal.

    Returns
    -------
    pyvista.PolyData
        Triangles, points in metres, outward normals when closed. ``field_data["notes"]``
        says what was done (units, welded vertices).

    Raises
    ------
    AnatomyError
        Missing or unreadable file, unknown format, no triangles.
    """
    import pyvista as pv

    path = Path(path)
    suffix = _suffix(path)
    if suffix not in SURFACE_SUFFIXES:
        raise AnatomyError(
            f"{path}: unknown surface format {suffix or '(no suffix)'}; use one of "
            f"{', '.join(SURFACE_SUFFIXES)}"
        )
    if not path.is_file():
        raise AnatomyError(f"{path}: no such surface file")
    notes: list[str] = []
    try:
        if suffix == ".glb":
            mesh = _read_glb(path)
            units = "m"
        else:
            mesh = pv.read(path)
    except AnatomyError:
        raise
    except Exception as exc:
        raise AnatomyError(f"{path}: cannot read the surface ({type(exc).__name__}: {exc})") from None
    if not isinstance(mesh, pv.PolyData):
        mesh = mesh.extract_surface()
    if mesh.n_points == 0 or mesh.n_cells == 0:
        raise AnatomyError(f"{path}: the file holds no triangles")
    mesh = mesh.triangulate()
    pts = np.asarray(mesh.points, dtype=float)
    if not np.isfinite(pts).all():
        raise AnatomyError(f"{path}: the surface has non-finite vertex coordinates")
    diag = float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))
    if units == "auto":
        units = "mm" if diag > 3.0 else "m"
        notes.append(f"units taken as {units} (bounding box diagonal {diag:.4g} in file units)")
    scale = 1.0 / _scale_of(units, str(path))
    n_before = mesh.n_points
    tol = weld_tolerance if weld_tolerance is not None else 1e-6 * max(diag, 1e-12)
    mesh = mesh.clean(tolerance=tol, absolute=True, point_merging=True)
    mesh = pv.PolyData(np.asarray(mesh.points, dtype=float) * scale, mesh.faces)
    if mesh.n_points < n_before:
        notes.append(f"welded {n_before - mesh.n_points} duplicate vertices ({n_before} -> {mesh.n_points})")
    from surgsim.anatomy.surface import _signed_volume, mesh_quality

    q = mesh_quality(mesh)
    if q["watertight"] and q["manifold"]:
        # consistent orientation first, then outward
        mesh = mesh.compute_normals(cell_normals=True, point_normals=True, consistent_normals=True,
                                    auto_orient_normals=False, split_vertices=False)
        tris = _tri_array(mesh)
        if _signed_volume(np.asarray(mesh.points, dtype=float), tris) < 0:
            tris = tris[:, ::-1].copy()
        mesh = pv.PolyData(np.asarray(mesh.points, dtype=float),
                           np.hstack([np.full((len(tris), 1), 3), tris]).ravel())
    else:
        notes.append(
            f"surface is not closed ({q['boundary_edges']} boundary edges, "
            f"{q['nonmanifold_edges']} non-manifold edges)"
        )
    mesh = mesh.compute_normals(cell_normals=False, point_normals=True, split_vertices=False,
                                consistent_normals=False, auto_orient_normals=False)
    mesh.field_data["notes"] = np.array(notes if notes else [""], dtype=str)
    return mesh


# --------------------------------------------------------------------------- label maps


@dataclass(frozen=True)
class LabelMap:
    """A label volume on a regular grid.

    Attributes
    ----------
    array : (nk, nj, ni) integer or bool
        Label values indexed ``[k, j, i]``.
    world_from_voxel : (4, 4) float
        Maps ``(i, j, k, 1)`` to LPS metres.
    names : dict[int, str]
        Label value -> name, when the file says (3D Slicer ``.seg.nrrd``).
    """

    array: np.ndarray
    world_from_voxel: np.ndarray
    names: dict[int, str] = field(default_factory=dict)

    def mask(self, label: int | str | Sequence[int | str] | None = None) -> np.ndarray:
        """Boolean mask of one or several labels (by value or name); ``None``: every non-zero voxel.

        Returns
        -------
        (nk, nj, ni) bool

        Raises
        ------
        AnatomyError
            Unknown label name, or the selection is empty.
        """
        arr = np.asarray(self.array)
        if label is None:
            out = arr != 0
            what = "any non-zero label"
        else:
            wanted = [label] if isinstance(label, (int, str, np.integer)) else list(label)
            values = []
            for w in wanted:
                values.append(self._value(w))
            out = np.isin(arr, values)
            what = f"label(s) {', '.join(str(w) for w in wanted)}"
        if not out.any():
            present = np.unique(arr)
            present = present[present != 0][:20]
            raise AnatomyError(
                f"label map: no voxel with {what}; values present: "
                f"{', '.join(str(int(v)) for v in present) or 'none (empty label map)'}"
            )
        return out

    def _value(self, w: int | str) -> int:
        if isinstance(w, str) and not w.lstrip("-").isdigit():
            for value, name in self.names.items():
                if name.lower() == w.lower():
                    return value
            raise AnatomyError(
                f"label map: no label named {w!r}; names: {', '.join(self.names.values()) or 'none in this file'}"
            )
        return int(w)


def _check_affine(w: np.ndarray, path: Path) -> np.ndarray:
    if w.shape != (4, 4) or not np.isfinite(w).all() or abs(np.linalg.det(w[:3, :3])) < 1e-18:
        raise AnatomyError(f"{path}: the label map's voxel-to-world transform is missing or singular")
    return w


def write_labelmap(
    labels: np.ndarray,
    world_from_voxel: np.ndarray,
    path: Path | str,
    *,
    names: dict[int, str] | None = None,
) -> Path:
    """Write a label map as NRRD (LPS) or NIfTI (RAS), so 3D Slicer shows it in place.

    Parameters
    ----------
    labels : (nk, nj, ni) bool or integer
        Bool masks are written as 0/1 uint8.
    world_from_voxel : (4, 4) float
        ``(i, j, k, 1)`` -> LPS metres.
    path : Path
        ``.nrrd`` / ``.nhdr`` or ``.nii`` / ``.nii.gz``.
    names : dict[int, str], optional
        Label names, stored as 3D Slicer segment fields in NRRD.

    Returns
    -------
    Path
    """
    path = Path(path)
    suffix = _suffix(path)
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise AnatomyError(f"{path}: a label map must be 3D (nk, nj, ni), got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise AnatomyError(f"{path}: label values must be integers or bool, got {arr.dtype}")
    w = _check_affine(np.asarray(world_from_voxel, dtype=float), path)
    w_mm = w.copy()
    w_mm[:3, :] *= 1e3  # metres -> millimetres (the last row stays 0 0 0 1)
    data = np.ascontiguousarray(arr.transpose(2, 1, 0))  # (i, j, k): i fastest on disk in F order
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".nrrd" or suffix == ".nhdr":
            import nrrd

            header = {
                "space": "left-posterior-superior",
                "space directions": w_mm[:3, :3].T,  # one row per axis i, j, k
                "space origin": w_mm[:3, 3],
                "kinds": ["domain", "domain", "domain"],
                "encoding": "gzip",
            }
            for n, (value, name) in enumerate(sorted((names or {}).items())):
                header[f"Segment{n}_ID"] = f"Segment_{value}"
                header[f"Segment{n}_Name"] = name
                header[f"Segment{n}_LabelValue"] = str(value)
                header[f"Segment{n}_Layer"] = "0"
            nrrd.write(str(path), np.asfortranarray(data), header, index_order="F")
        elif suffix in (".nii", ".nii.gz"):
            import nibabel as nib

            affine = _FLIP @ w_mm  # RAS millimetres
            img = nib.Nifti1Image(np.asfortranarray(data), affine)
            img.set_sform(affine, code=1)  # scanner anatomical
            img.set_qform(affine, code=1)
            img.header.set_xyzt_units(xyz="mm")
            nib.save(img, str(path))
        else:
            raise AnatomyError(
                f"{path}: unknown label map format {suffix or '(no suffix)'}; use .nrrd, .nii or .nii.gz"
            )
    except OSError as exc:
        raise AnatomyError(f"{path}: cannot write the label map ({exc.strerror or exc})") from None
    return path


def read_labelmap(path: Path | str) -> LabelMap:
    """Read an NRRD or NIfTI label map (e.g. from 3D Slicer or TotalSegmentator).

    Returns
    -------
    LabelMap
        ``array`` (nk, nj, ni) as stored (integers), ``world_from_voxel`` LPS
        metres, ``names`` from 3D Slicer segment fields when present.

    Raises
    ------
    AnatomyError
        Missing, unreadable or non-3D file (the message names the file and field).
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise AnatomyError(f"{path}: no such label map file")
    if suffix in (".nrrd", ".nhdr"):
        return _read_nrrd(path)
    if suffix in (".nii", ".nii.gz"):
        return _read_nifti(path)
    raise AnatomyError(f"{path}: unknown label map format {suffix or '(no suffix)'}; use .nrrd, .nii or .nii.gz")


def _read_nrrd(path: Path) -> LabelMap:
    import nrrd

    try:
        data, header = nrrd.read(str(path), index_order="F")
    except Exception as exc:
        raise AnatomyError(f"{path}: cannot read NRRD ({type(exc).__name__}: {exc})") from None
    space = str(header.get("space", "")).lower()
    dirs = header.get("space directions")
    origin = header.get("space origin")
    if dirs is None or origin is None:
        raise AnatomyError(f"{path}: NRRD field 'space directions' or 'space origin' is missing; "
                           "the label map has no position in the patient")
    dirs = [None if d is None or (np.ndim(d) and np.isnan(np.asarray(d, dtype=float)).all()) else d
            for d in (dirs if isinstance(dirs, list) else list(dirs))]
    spatial = [n for n, d in enumerate(dirs) if d is not None]
    if len(spatial) != 3:
        raise AnatomyError(f"{path}: NRRD 'space directions' has {len(spatial)} spatial axes, need 3")
    if data.ndim == 4:  # Slicer multi-layer segmentation: list axis first
        list_axis = [n for n in range(4) if n not in spatial][0]
        if data.shape[list_axis] != 1:
            # merge layers: later layers win where they are set (overlaps are rare in practice)
            merged = np.zeros([data.shape[a] for a in spatial], dtype=data.dtype)
            for layer in np.moveaxis(data, list_axis, 0):
                merged = np.where(layer != 0, layer, merged)
            data = merged
        else:
            data = np.take(data, 0, axis=list_axis)
    if data.ndim != 3:
        raise AnatomyError(f"{path}: NRRD holds a {data.ndim}D array; a label map must be 3D")
    m = np.eye(4)
    m[:3, :3] = np.asarray([dirs[n] for n in spatial], dtype=float).T
    m[:3, 3] = np.asarray(origin, dtype=float)
    if space in ("right-anterior-superior", "ras", "scanner-xyz"):
        m = _FLIP @ m
    elif space not in ("left-posterior-superior", "lps"):
        raise AnatomyError(f"{path}: NRRD 'space' {space or '(missing)'} is not a patient space (LPS or RAS)")
    m[:3, :] *= 1e-3
    names: dict[int, str] = {}
    for key, val in header.items():
        if key.startswith("Segment") and key.endswith("_Name"):
            stem = key[: -len("_Name")]
            lv = header.get(f"{stem}_LabelValue")
            if lv is not None and str(lv).strip().lstrip("-").isdigit():
                names[int(lv)] = str(val)
    arr = np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0))
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        if not np.all(np.mod(arr, 1) == 0):
            raise AnatomyError(f"{path}: NRRD values are not integers; this is an image, not a label map")
        arr = arr.astype(np.int32)
    return LabelMap(array=arr, world_from_voxel=_check_affine(m, path), names=names)


def _read_nifti(path: Path) -> LabelMap:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise AnatomyError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise AnatomyError(f"{path}: NIfTI dim field says {data.ndim}D; a label map must be 3D")
    affine = np.asarray(img.affine, dtype=float)  # RAS, file units
    xyz_unit = img.header.get_xyzt_units()[0]
    to_mm = {"meter": 1e3, "micron": 1e-3}.get(xyz_unit, 1.0)
    m = _FLIP @ affine
    m[:3, :] *= to_mm * 1e-3
    arr = np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0))
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        if not np.all(np.mod(arr, 1) == 0):
            raise AnatomyError(f"{path}: NIfTI values are not integers; this is an image, not a label map")
        arr = arr.astype(np.int32)
    return LabelMap(array=arr, world_from_voxel=_check_affine(m, path))
