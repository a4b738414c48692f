"""surgsim.instruments."""
