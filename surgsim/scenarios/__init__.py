"""surgsim.scenarios."""
