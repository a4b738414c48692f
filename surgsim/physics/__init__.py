"""surgsim.physics."""
