"""surgsim.cases."""
