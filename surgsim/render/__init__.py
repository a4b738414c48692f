"""Rendering with pyvista and no Qt: scenes built from session state."""
