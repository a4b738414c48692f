"""``surgsim bench physics``: the device solver's speed, accuracy and wall fidelity.

In one run, on the default case's vessel (:func:`surgsim.cases.build.phantom_vessel_case`):

- steps per second of the rod solver (:class:`surgsim.physics.rod.RodSolver`) for a
  100-node catheter and a 200-node device pushed at 0.05 m/s into the lumen at
  dt = 1 ms, timed once the device is in wall contact, with the largest
  penetration (signed distance at the nodes plus the device radius);
- the same scene as a pybullet chain (the baseline of ``docs/baselines.md``:
  separate capsule bodies, point-to-point joints, explicit bending spring
  torques with inertia scaled to ``I >= 4 k dt^2``, the vessel loaded from a
  temporary OBJ as a concave triangle mesh), reported as a ratio;
- the cantilever check in the same configuration (the 100-node catheter,
  dt, iterations): tip deflection under a small tip load against
  Euler-Bernoulli ``F L^3 / (3 E I)``;
- the lumen's signed distance field at 0.5 mm, cropped to the lumen's
  bounding box, float32: memory and build time.

Timings are never asserted in tests; they are printed with the baseline's
figures from the same run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace

import numpy as np

#: dt of every run, seconds.
DT = 1e-3
#: Insertion speed of the hub while timed, m/s.
PUSH_SPEED = 0.05
#: Insertion speed while bringing the device to the wall (not timed), m/s.
WARMUP_SPEED = 0.1
#: Inserted length at which timing starts: the straight catheter meets the arch's
#: wall at about 0.28 m in the default case and enters the left subclavian by 0.38 m.
WARMUP_DEPTH = 0.30
#: Goals of issue 4.
GOALS = {"steps_per_s_min": 1000.0, "steps_per_s_target_100": 4000.0, "cantilever_rel_error": 0.05,
         "sdf_bytes": 256 * 2**20, "sdf_build_s": 15.0}


def _penetration(distance, points: np.ndarray, radius: float) -> float:
    """Largest penetration of nodes into the wall: max(phi + radius, 0), metres."""
    if len(points) == 0:
        return 0.0
    return float(max(0.0, float(np.max(distance.sample(points))) + radius))


def _inside_nodes(points: np.ndarray, case) -> np.ndarray:
    """Nodes past the entry plane of the access (the part inside the imaged vessel)."""
    return points[(points - case.access) @ case.access_direction > 0.0]


def bench_rod(case, spec, steps: int, warmup_depth: float = WARMUP_DEPTH) -> dict:
    """Steps per second of the rod solver pushing ``spec`` into the case's vessel.

    The device is pushed at :data:`WARMUP_SPEED` to ``warmup_depth`` (compiling
    and reaching the wall), then ``steps`` more at :data:`PUSH_SPEED` are timed
    in chunks of 10 (penetration is sampled between chunks).
    """
    from surgsim.physics.rod import RodSolver

    dist = case.distance
    rod = RodSolver(spec, dist.values, dist.voxel_from_world, case.access, case.access_direction,
                    dt=DT, initial_depth=0.02, damping=0.1)
    warm = 0
    while rod.depth < warmup_depth - 1e-9 and warm < 100_000:
        rod.run(10, WARMUP_SPEED * DT, 0.0)
        warm += 10
    adv = PUSH_SPEED * DT
    in_contact = int(np.count_nonzero(rod.in_contact))
    contact_steps = 0
    pen = 0.0
    wall = 0.0
    done = 0
    while done < steps:
        n = min(10, steps - done)
        t0 = time.perf_counter()
        rod.run(n, adv, 0.0)
        wall += time.perf_counter() - t0
        done += n
        if rod.in_contact.any():
            contact_steps += n
        pen = max(pen, _penetration(dist, _inside_nodes(rod.positions, case), spec.outer_radius))
    return {
        "nodes": spec.n_nodes,
        "steps": steps,
        "wall_s": wall,
        "steps_per_s": steps / wall if wall > 0 else float("inf"),
        "warmup_steps": warm,
        "contact_nodes_at_start": in_contact,
        "contact_fraction": contact_steps / max(steps, 1),
        "max_contact_nodes": int(np.count_nonzero(rod.in_contact)),
        "depth_m": rod.depth,
        "max_penetration_m": pen,
    }


def bench_coaxial(case, catheter, wire, steps: int, warmup_depth: float = WARMUP_DEPTH,
                  n_nodes: int = 200) -> dict:
    """Steps per second of a guidewire inside a catheter (one coaxial rod of ``n_nodes``)
    pushed together into the case's vessel, timed like :func:`bench_rod`."""
    from surgsim.physics.coaxial import CoaxialSolver

    dist = case.distance
    rod = CoaxialSolver(catheter, wire, dist.values, dist.voxel_from_world, case.access,
                        case.access_direction, dt=DT, catheter_depth=0.02, wire_depth=0.04,
                        damping=0.1, n_nodes=n_nodes)
    warm = 0
    while rod.catheter_depth < warmup_depth - 1e-9 and warm < 100_000:
        rod.run(10, WARMUP_SPEED * DT, 0.0, WARMUP_SPEED * DT, 0.0)
        warm += 10
    adv = PUSH_SPEED * DT
    contact_steps = 0
    pen = 0.0
    wall = 0.0
    done = 0
    while done < steps:
        n = min(10, steps - done)
        t0 = time.perf_counter()
        rod.run(n, adv, 0.0, adv, 0.0)
        wall += time.perf_counter() - t0
        done += n
        state = rod.state()
        if state.in_contact.any():
            contact_steps += n
        inside = state.inside
        radius = rod.contact_radius()[inside] if inside.any() else np.zeros(0)
        if inside.any():
            phi = dist.sample(state.positions[inside])
            pen = max(pen, float(np.max(phi + radius, initial=0.0)))
    return {
        "nodes": n_nodes,
        "steps": steps,
        "wall_s": wall,
        "steps_per_s": steps / wall if wall > 0 else float("inf"),
        "warmup_steps": warm,
        "contact_fraction": contact_steps / max(steps, 1),
        "catheter_depth_m": rod.catheter_depth,
        "wire_depth_m": rod.wire_depth,
        "max_penetration_m": pen,
    }


def _write_obj(mesh, path: str, open_below: tuple[np.ndarray, np.ndarray] | None) -> int:
    """Write a triangle mesh as OBJ; drop the faces behind the access plane (open the entry)."""
    pts = np.asarray(mesh.points, dtype=float)
    faces = np.asarray(mesh.faces).reshape(-1, 4)[:, 1:]
    if open_below is not None:
        p0, n = open_below
        behind = ((pts[faces] - p0) @ n).max(axis=1) < 1e-3
        faces = faces[~behind]
    with open(path, "w") as f:
        f.write("".join(f"v {x:.7f} {y:.7f} {z:.7f}\n" for x, y, z in pts))
        f.write("".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces))
    return int(len(faces))


def bench_pybullet(case, spec, steps: int, warmup_depth: float = WARMUP_DEPTH) -> dict:
    """The same push as :func:`bench_rod` with a pybullet chain of capsules (baseline).

    Capsules of the rod's segment length and radius, consecutive ones joined by
    point-to-point constraints, bending springs ``k = EI / l`` applied as
    external torques every step, inertia scaled to ``4 k dt^2``. The hub link
    is driven along the access direction by a constraint limited to the
    device's push force. The vessel's faces behind the access plane are
    removed so the chain enters through an open end.
    """
    import pybullet as p
    from scipy.spatial.transform import Rotation

    n = spec.n_nodes
    seg = spec.segment_length
    r = spec.outer_radius
    k_bend = spec.EI / seg
    mass = spec.linear_density * seg
    inertia = max(4.0 * k_bend * DT**2, mass * (3 * r * r + seg * seg) / 12.0)
    direc = np.asarray(case.access_direction, dtype=float)
    access = np.asarray(case.access, dtype=float)
    cid = p.connect(p.DIRECT)
    try:
        p.setTimeStep(DT, physicsClientId=cid)
        p.setGravity(0, 0, 0, physicsClientId=cid)
        p.setPhysicsEngineParameter(numSolverIterations=10, contactBreakingThreshold=1e-3,
                                    physicsClientId=cid)
        with tempfile.TemporaryDirectory() as tmp:
            obj = os.path.join(tmp, "vessel.obj")
            n_tri = _write_obj(case.mesh, obj, (access, direc))
            shape = p.createCollisionShape(p.GEOM_MESH, fileName=obj, flags=p.GEOM_FORCE_CONCAVE_TRIMESH,
                                           physicsClientId=cid)
            vessel = p.createMultiBody(0, shape, physicsClientId=cid)
        p.changeDynamics(vessel, -1, contactProcessingThreshold=0.0, lateralFriction=spec.friction,
                         physicsClientId=cid)
        # capsule axis is local z: rotate z onto the access direction
        rot, _ = Rotation.align_vectors([direc], [[0.0, 0.0, 1.0]])
        quat = rot.as_quat()  # x, y, z, w as pybullet wants
        cap = p.createCollisionShape(p.GEOM_CAPSULE, radius=r, height=max(seg - 2 * r, 1e-4),
                                     physicsClientId=cid)
        depth0 = 0.02
        links = []
        for i in range(n - 1):  # link i spans nodes i (distal) .. i+1
            s_mid = (i + 0.5) * seg
            centre = access - (s_mid - depth0) * direc
            b = p.createMultiBody(mass, cap, basePosition=centre.tolist(), baseOrientation=quat.tolist(),
                                  physicsClientId=cid)
            p.changeDynamics(b, -1, mass=mass, localInertiaDiagonal=[inertia] * 3, linearDamping=0.1,
                             angularDamping=0.1, lateralFriction=spec.friction,
                             contactProcessingThreshold=0.0, physicsClientId=cid)
            p.setCollisionFilterGroupMask(b, -1, 1, 2, physicsClientId=cid)  # links hit only the vessel
            links.append(b)
        p.setCollisionFilterGroupMask(vessel, -1, 2, 1, physicsClientId=cid)
        half = np.array([0.0, 0.0, 0.5 * seg])
        # local +z points distally: node i+1 is link i's -z end and link i+1's +z end
        for i in range(len(links) - 1):
            p.createConstraint(links[i], -1, links[i + 1], -1, p.JOINT_POINT2POINT, [0, 0, 0],
                               (-half).tolist(), half.tolist(), physicsClientId=cid)
        hub = links[-1]
        hub_start = access - ((n - 1.5) * seg - depth0) * direc
        drive = p.createConstraint(hub, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], [0, 0, 0],
                                   hub_start.tolist(), childFrameOrientation=quat.tolist(),
                                   physicsClientId=cid)
        p.changeConstraint(drive, hub_start.tolist(), jointChildFrameOrientation=quat.tolist(),
                           maxForce=spec.max_push_force, physicsClientId=cid)

        def axes() -> tuple[np.ndarray, np.ndarray]:
            pos = np.empty((len(links), 3))
            zax = np.empty((len(links), 3))
            for m, b in enumerate(links):
                x, q = p.getBasePositionAndOrientation(b, physicsClientId=cid)
                pos[m] = x
                mat = p.getMatrixFromQuaternion(q)
                zax[m] = (mat[2], mat[5], mat[8])
            return pos, zax

        def one_step(pushed: float) -> None:
            target = hub_start + pushed * direc
            p.changeConstraint(drive, target.tolist(), jointChildFrameOrientation=quat.tolist(),
                               maxForce=spec.max_push_force, physicsClientId=cid)
            _, zax = axes()
            # bending springs: torque k * angle between consecutive link axes
            cross = np.cross(zax[:-1], zax[1:])  # rotates link i onto link i+1 (distal -> proximal)
            for m in range(len(links) - 1):
                tq = k_bend * cross[m]
                p.applyExternalTorque(links[m], -1, tq.tolist(), p.WORLD_FRAME, physicsClientId=cid)
                p.applyExternalTorque(links[m + 1], -1, (-tq).tolist(), p.WORLD_FRAME, physicsClientId=cid)
            p.stepSimulation(physicsClientId=cid)

        pushed = 0.0
        warm = 0
        while pushed < warmup_depth - depth0 - 1e-9:
            pushed += WARMUP_SPEED * DT
            warm += 1
            one_step(pushed)
        wall = 0.0
        pen = 0.0
        gap = 0.0
        contact_steps = 0
        for s in range(steps):
            t0 = time.perf_counter()
            pushed += PUSH_SPEED * DT
            one_step(pushed)
            wall += time.perf_counter() - t0
            if s % 10 == 9:
                pos, zax = axes()
                ends = np.concatenate([pos - 0.5 * seg * zax, pos + 0.5 * seg * zax])
                pen = max(pen, _penetration(case.distance, _inside_nodes(ends, case), r))
                joint_gap = np.linalg.norm((pos[:-1] - 0.5 * seg * zax[:-1]) - (pos[1:] + 0.5 * seg * zax[1:]),
                                           axis=1)
                gap = max(gap, float(joint_gap.max()) / seg)
                if p.getContactPoints(bodyA=vessel, physicsClientId=cid):
                    contact_steps += 10
        return {
            "nodes": n,
            "links": len(links),
            "vessel_triangles": n_tri,
            "steps": steps,
            "warmup_steps": warm,
            "wall_s": wall,
            "steps_per_s": steps / wall if wall > 0 else float("inf"),
            "contact_fraction": contact_steps / max(steps, 1),
            "max_penetration_m": pen,
            "max_joint_gap_fraction": gap,
        }
    finally:
        p.disconnect(physicsClientId=cid)


def bench_cantilever(spec, length: float = 0.3, force: float = 5e-5, steps: int = 3000) -> dict:
    """Tip deflection of a clamped rod under a small tip load vs Euler-Bernoulli ``F L^3 / (3 E I)``.

    Same solver configuration as :func:`bench_rod` (dt, iterations), free space.
    """
    from surgsim.physics.rod import RodSolver

    direc = np.array([1.0, 0.0, 0.0])
    fext = np.zeros((spec.n_nodes, 3))
    fext[0, 2] = -force
    rod = RodSolver(spec, None, None, [0.0, 0.0, 0.0], direc, dt=DT, initial_depth=length,
                    external_force=fext)
    rod.run(steps)
    # the discrete clamp acts half a segment behind the first held node (see surgsim.physics.rod)
    clamp = (int(rod.free.sum()) + 0.5) * spec.segment_length
    deflection = float(-rod.positions[0, 2])
    theory = force * clamp**3 / (3.0 * spec.EI)
    return {
        "length_m": clamp,
        "force_n": force,
        "deflection_m": deflection,
        "theory_m": theory,
        "rel_error": abs(deflection - theory) / theory,
        "nodes": spec.n_nodes,
    }


def bench_distance_field(spacing: float = 0.5e-3, volume=None, mask=None) -> dict:
    """Memory and build time of the lumen's signed distance field at ``spacing``.

    The default phantom's vessel mask (segmented here unless given); the field
    is cropped to the lumen's bounding box (plus the default 5 mm margin) and
    stored as float32.
    """
    from surgsim.anatomy.distance import distance_field_from_mask

    seg_s = 0.0
    if mask is None:
        from surgsim.anatomy.segment import segment
        from surgsim.cases.default import default_case_dicom_dir
        from surgsim.dicom.load import load_series

        volume = load_series(default_case_dicom_dir())
        t0 = time.perf_counter()
        mask = segment(volume, "vessels")
        seg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    field = distance_field_from_mask(mask, volume.world_from_voxel, spacing=spacing)
    build = time.perf_counter() - t0
    values = np.asarray(field.values)
    return {
        "spacing_m": spacing,
        "shape": list(values.shape),
        "dtype": str(values.dtype),
        "bytes": int(values.nbytes),
        "mib": values.nbytes / 2**20,
        "build_s": build,
        "segment_s": seg_s,
    }


def run_physics_bench(json_out: bool = False, steps: int = 3000, warmup_depth: float = WARMUP_DEPTH,
                      pybullet_steps: int | None = None, cantilever_steps: int = 3000,
                      distance_field: bool = True) -> dict:
    """Run the physics benchmark; print the figures (as JSON when ``json_out``) and return them.

    Parameters
    ----------
    json_out : bool
        Print one JSON document instead of the text report.
    steps : int
        Timed steps per solver run (after ``warmup`` steps of pushing).
    warmup_depth : float, metres
        Inserted length reached (untimed) before timing: in wall contact in the arch.
    pybullet_steps : int, optional
        Timed steps of the baseline (default: ``min(steps, 1000)``).
    cantilever_steps : int
        Steps to let the cantilever settle.
    distance_field : bool
        Also measure the 0.5 mm distance field.

    Returns
    -------
    dict
        ``rod_100``, ``rod_200``, ``pybullet_100`` (each with ``steps_per_s``,
        ``max_penetration_m``...), ``speedup_vs_pybullet``, ``cantilever``,
        ``distance_field``, ``case`` (triangles of the vessel) and ``goals``.
    """
    from surgsim.cases.build import phantom_vessel_case
    from surgsim.instruments.catheter import CATALOGUE

    case = phantom_vessel_case("default")
    cath = CATALOGUE["straight_5fr"]  # 100 nodes, 0.5 m
    long = replace(cath, name="straight_5fr_200", n_nodes=200)
    res: dict = {"dt_s": DT, "push_speed_m_s": PUSH_SPEED,
                 "case": {"triangles": int(case.mesh.n_cells), "case_id": case.case_id}}
    res["rod_100"] = bench_rod(case, cath, steps, warmup_depth)
    res["rod_200"] = bench_rod(case, long, steps, warmup_depth)
    res["coaxial_200"] = bench_coaxial(case, CATALOGUE["angled_5fr"], CATALOGUE["guidewire_035"],
                                       steps, warmup_depth)
    pb_steps = min(steps, 1000) if pybullet_steps is None else pybullet_steps
    res["pybullet_100"] = bench_pybullet(case, cath, pb_steps, warmup_depth)
    res["speedup_vs_pybullet"] = res["rod_100"]["steps_per_s"] / res["pybullet_100"]["steps_per_s"]
    res["cantilever"] = bench_cantilever(cath, steps=cantilever_steps)
    if distance_field:
        res["distance_field"] = bench_distance_field()
    res["goals"] = GOALS
    if json_out:
        print(json.dumps(res, indent=2))
        return res
    r1, r2, pb, cl = res["rod_100"], res["rod_200"], res["pybullet_100"], res["cantilever"]
    print(f"surgsim bench physics (default case, {res['case']['triangles']:,} triangles, dt = 1 ms, "
          f"push {PUSH_SPEED} m/s)")
    for name, r in (("rod 100 nodes", r1), ("rod 200 nodes", r2),
                    ("coaxial wire + catheter 200 nodes", res["coaxial_200"])):
        print(f"  {name}: {r['steps_per_s']:,.0f} steps/s ({r['steps_per_s'] * DT:.1f}x real time), "
              f"in contact {100 * r['contact_fraction']:.0f} % of steps, "
              f"max penetration {1e3 * r['max_penetration_m']:.2f} mm")
    print(f"  pybullet capsule chain 100 nodes (baseline): {pb['steps_per_s']:,.0f} steps/s, "
          f"max penetration {1e3 * pb['max_penetration_m']:.2f} mm, joints apart up to "
          f"{100 * pb['max_joint_gap_fraction']:.1f} % of a link")
    print(f"  rod / pybullet: {res['speedup_vs_pybullet']:.1f}x")
    print(f"  cantilever: {1e3 * cl['deflection_m']:.3f} mm vs {1e3 * cl['theory_m']:.3f} mm theory "
          f"({100 * cl['rel_error']:.1f} % error; goal < 5 %)")
    if "distance_field" in res:
        df = res["distance_field"]
        print(f"  distance field 0.5 mm: {df['shape']} {df['dtype']}, {df['mib']:.1f} MiB "
              f"(goal < 256 MiB), built in {df['build_s']:.1f} s (goal < 15 s)")
    return res


if __name__ == "__main__":  # pragma: no cover
    run_physics_bench(json_out=False)
