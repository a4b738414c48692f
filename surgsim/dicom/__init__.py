"""surgsim.dicom."""
