"""surgsim.physics: the catheter/guidewire rod solver (numba) and, later, rigid-body worlds."""

from surgsim.physics.rod import RodSolver, RodState, sample_sdf, tube_sdf

__all__ = ["RodSolver", "RodState", "sample_sdf", "tube_sdf"]
