"""surgsim.physiology."""
