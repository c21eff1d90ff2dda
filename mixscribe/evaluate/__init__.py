"""Post-processing (note creation, timbre clustering) and, later, metrics and evaluation."""
