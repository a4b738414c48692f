"""surgsim: patient-specific surgical and procedure training simulator.

The core packages (dicom, anatomy, physics, instruments, physiology,
scenarios, session, scoring, records, cases) never import Qt; ``render``
uses pyvista without Qt; ``gui`` is the only place PySide6 appears.
All quantities inside the code are SI (metres, seconds, newtons, radians)
and the world frame is DICOM patient coordinates (LPS).
"""

__version__ = "0.1.0"
