"""surgsim.gui."""
