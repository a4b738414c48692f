"""surgsim.anatomy."""
