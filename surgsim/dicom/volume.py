"""The image volume every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Volume:
    """A scalar volume on a regular grid with its voxel-to-patient transform.

    Attributes
    ----------
    array : (nk, nj, ni) float32 or int16
        Voxel values (Hounsfield units for CT) indexed ``[k, j, i]``: ``k`` the
        slice, ``j`` the row, ``i`` the column. C order, so ``i`` varies fastest
        (what VTK expects).
    world_from_voxel : (4, 4) float64
        Maps homogeneous voxel indices ``(i, j, k, 1)`` to DICOM patient
        coordinates (LPS) in metres.
    modality : str
        DICOM Modality (``"CT"``, ``"MR"``...).
    series_uid : str
        De-identified series UID (never the scanner's original).
    description : str
        Short human description (no PHI).
    notes : tuple of str
        What the loader did that a user should know (resampled, padding...).
    """

    array: np.ndarray
    world_from_voxel: np.ndarray
    modality: str = "CT"
    series_uid: str = ""
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nk, nj, ni) voxel counts."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """(3,) voxel size along i, j, k in metres."""
        return np.linalg.norm(self.world_from_voxel[:3, :3], axis=0)

    @property
    def voxel_from_world(self) -> np.ndarray:
        """(4, 4) inverse of :attr:`world_from_voxel`."""
        return np.linalg.inv(self.world_from_voxel)

    def to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices to patient coordinates.

        Parameters
        ----------
        ijk : (n, 3) float
            Voxel indices ``(i, j, k)``.

        Returns
        -------
        (n, 3) float, metres (LPS)
        """
        ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
        return ijk @ self.world_from_voxel[:3, :3].T + self.world_from_voxel[:3, 3]

    def to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """Map patient coordinates (metres, LPS) to fractional voxel indices ``(n, 3)``."""
        xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
        inv = self.voxel_from_world
        return xyz @ inv[:3, :3].T + inv[:3, 3]
