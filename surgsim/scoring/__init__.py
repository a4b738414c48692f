"""surgsim.scoring."""
