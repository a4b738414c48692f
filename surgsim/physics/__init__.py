"""surgsim.physics: the catheter/guidewire rod solvers (numba) and the airway's rigid-body world."""

from surgsim.physics.coaxial import CoaxialSolver, CoaxialState, DeviceState
from surgsim.physics.rod import RodSolver, RodState, sample_sdf, tube_sdf

__all__ = ["CoaxialSolver", "CoaxialState", "DeviceState", "RodSolver", "RodState", "sample_sdf", "tube_sdf"]
