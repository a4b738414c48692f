"""surgsim.render."""
