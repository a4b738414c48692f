"""The Qt desktop app (PySide6 + pyvistaqt): the only place Qt is imported."""
