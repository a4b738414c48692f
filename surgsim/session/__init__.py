"""surgsim.session."""
