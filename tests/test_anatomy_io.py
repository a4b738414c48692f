"""Surface and label-map files: formats, units, LPS/RAS, welding, label selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pyvista as pv

from surgsim.anatomy.io import (
    GLTF_FROM_LPS,
    SURFACE_SUFFIXES,
    read_labelmap,
    read_surface,
    write_labelmap,
    write_surface,
)
from surgsim.anatomy.surface import mesh_quality
from surgsim.errors import AnatomyError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# an oblique, anisotropic grid: i -> mostly -y, j -> +x, k -> +z with a tilt
W = np.array([
    [0.0, 0.8e-3, 0.1e-3, 0.012],
    [-0.9e-3, 0.0, 0.0, -0.034],
    [0.0, 0.0, 2.0e-3, 0.25],
    [0.0, 0.0, 0.0, 1.0],
])


def _labels():
    a = np.zeros((6, 7, 8), dtype=np.int16)
    a[2, 3, 4] = 7
    a[1, 1, 1] = 3
    a[4, 5, 6] = 3
    return a


@pytest.mark.parametrize("suffix", SURFACE_SUFFIXES)
def test_surface_round_trip(tmp_path, suffix):
    sphere = pv.Sphere(radius=0.015, center=(0.01, -0.02, 0.3))
    path = write_surface(sphere, tmp_path / f"s{suffix}")
    back = read_surface(path, units="m")
    assert back.n_cells == sphere.n_cells
    assert np.allclose(np.sort(back.points, axis=0), np.sort(sphere.points, axis=0), atol=1e-6)
    q = mesh_quality(back)
    assert q["watertight"] and q["manifold"] and q["volume_m3"] > 0  # closed, outward


def test_millimetre_files_are_detected_and_scaled(tmp_path):
    sphere = pv.Sphere(radius=0.015)
    path = write_surface(sphere, tmp_path / "mm.stl", units="mm")
    raw = pv.read(path)
    assert raw.bounds[1] == pytest.approx(sphere.bounds[1] * 1e3, rel=1e-5)  # the file holds mm
    back = read_surface(path)  # auto
    assert back.bounds[1] == pytest.approx(sphere.bounds[1], rel=1e-5)
    assert "mm" in " ".join(back.field_data["notes"])


def test_glb_uses_gltf_axes(tmp_path):
    pts = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 0.03]])
    tet = pv.PolyData(pts, np.array([3, 0, 2, 1, 3, 0, 1, 3, 3, 0, 3, 2, 3, 1, 2, 3]))
    path = write_surface(tet, tmp_path / "t.glb")
    import json
    import struct

    data = path.read_bytes()
    assert data[:4] == b"glTF"
    n = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + n])
    # superior (LPS +z) is glTF +y; posterior (LPS +y) is glTF -z
    assert doc["accessors"][0]["max"][1] == pytest.approx(0.03)
    assert doc["accessors"][0]["min"][2] == pytest.approx(-0.02)
    assert np.allclose(GLTF_FROM_LPS @ [0, 0, 1], [0, 1, 0])
    back = read_surface(path)
    assert np.allclose(np.sort(back.points, axis=0), np.sort(pts, axis=0), atol=1e-7)


def test_unknown_or_missing_surface_is_a_clear_error(tmp_path):
    with pytest.raises(AnatomyError, match="unknown surface format"):
        write_surface(pv.Sphere(), tmp_path / "x.foo")
    with pytest.raises(AnatomyError, match="no such surface file"):
        read_surface(tmp_path / "missing.stl")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"not a gltf at all")
    with pytest.raises(AnatomyError, match="bad.glb"):
        read_surface(bad)


@pytest.mark.parametrize("name", ["lab.nrrd", "lab.nii", "lab.nii.gz"])
def test_labelmap_round_trip_keeps_values_and_world(tmp_path, name):
    a = _labels()
    path = write_labelmap(a, W, tmp_path / name, names={7: "aorta", 3: "trachea"})
    lm = read_labelmap(path)
    assert np.array_equal(lm.array, a)
    assert np.allclose(lm.world_from_voxel, W, atol=1e-9)
    assert lm.mask(7).sum() == 1 and lm.mask([3, 7]).sum() == 3 and lm.mask().sum() == 3


def test_nifti_is_ras_and_nrrd_is_lps(tmp_path):
    import nibabel as nib
    import nrrd

    a = _labels()
    ijk = np.array([4.0, 3.0, 2.0, 1.0])  # voxel (i, j, k) of the value 7
    lps_mm = (W @ ijk)[:3] * 1e3
    write_labelmap(a, W, tmp_path / "x.nii.gz")
    img = nib.load(tmp_path / "x.nii.gz")
    ras_mm = (img.affine @ ijk)[:3]
    assert np.allclose(ras_mm, lps_mm * [-1, -1, 1], atol=1e-4)
    assert np.asarray(img.dataobj)[4, 3, 2] == 7  # NIfTI index order is (i, j, k)
    write_labelmap(a, W, tmp_path / "x.nrrd")
    data, header = nrrd.read(str(tmp_path / "x.nrrd"))
    assert header["space"] == "left-posterior-superior"
    assert data[4, 3, 2] == 7
    p = header["space origin"] + ijk[:3] @ header["space directions"]
    assert np.allclose(p, lps_mm, atol=1e-6)


def test_ras_nrrd_and_millimetre_nifti_from_other_tools(tmp_path):
    """A RAS-space NRRD and a TotalSegmentator-style NIfTI with several labels."""
    import nibabel as nib
    import nrrd

    a = _labels()
    data = np.asfortranarray(a.transpose(2, 1, 0))
    w_mm = W.copy()
    w_mm[:3] *= 1e3
    ras = np.diag([-1.0, -1, 1, 1]) @ w_mm
    nrrd.write(str(tmp_path / "ras.nrrd"), data, {"space": "right-anterior-superior",
                                                   "space directions": ras[:3, :3].T,
                                                   "space origin": ras[:3, 3]})
    lm = read_labelmap(tmp_path / "ras.nrrd")
    assert np.allclose(lm.world_from_voxel, W, atol=1e-9)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), ras), str(tmp_path / "ts.nii.gz"))
    lm = read_labelmap(tmp_path / "ts.nii.gz")
    assert np.allclose(lm.world_from_voxel, W, atol=1e-9)
    assert lm.mask(3).sum() == 2


def test_labelmap_errors_name_the_file(tmp_path):
    write_labelmap(_labels(), W, tmp_path / "l.nrrd", names={7: "aorta"})
    lm = read_labelmap(tmp_path / "l.nrrd")
    assert lm.mask("aorta").sum() == 1
    with pytest.raises(AnatomyError, match="no label named 'liver'"):
        lm.mask("liver")
    with pytest.raises(AnatomyError, match="values present: 3, 7"):
        lm.mask(5)
    with pytest.raises(AnatomyError, match="missing.nii.gz"):
        read_labelmap(tmp_path / "missing.nii.gz")
    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"NRRD0004\ngarbage\n")
    with pytest.raises(AnatomyError, match="junk.nrrd"):
        read_labelmap(junk)
    with pytest.raises(AnatomyError, match="unknown label map format"):
        write_labelmap(_labels(), W, tmp_path / "x.mha")
    with pytest.raises(AnatomyError, match="integers"):
        write_labelmap(np.zeros((2, 2, 2), float), W, tmp_path / "x.nrrd")


def test_unwelded_triangle_soup_is_welded_closed(tmp_path):
    sphere = pv.Sphere(radius=0.01).triangulate()
    tris = sphere.faces.reshape(-1, 4)[:, 1:]
    soup = sphere.points[tris.ravel()]  # every triangle has its own three vertices
    faces = np.hstack([np.full((len(tris), 1), 3), np.arange(soup.shape[0]).reshape(-1, 3)]).ravel()
    pv.PolyData(soup, faces).save(tmp_path / "soup.stl")
    back = read_surface(tmp_path / "soup.stl", units="m")
    assert back.n_points == sphere.n_points
    assert mesh_quality(back)["watertight"]


@pytest.mark.realdata
def test_elastrat_arch_obj_welds_to_a_closed_manifold_in_metres():
    path = SHARED / "meshes" / "aortic-arch-elastrat-phantom.obj"
    if not path.is_file():
        pytest.skip(f"real test data not found at {path}")
    mesh = read_surface(path)
    q = mesh_quality(mesh)
    assert q["watertight"] and q["manifold"] and q["volume_m3"] > 0
    assert 10_000 < q["n_triangles"] < 12_000
    extent = np.ptp(np.asarray(mesh.points), axis=0)
    assert 0.05 < extent.max() < 0.3  # metres: an aortic arch is about 0.1-0.2 m across
    assert math.isfinite(q["volume_m3"])
