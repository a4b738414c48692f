"""surgsim.records."""
