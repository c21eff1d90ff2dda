"""Audio -> notes -> tracks, the path every user takes: the windowed model run (inference), note
creation and clustering (decode), the number of instruments (kestimate) and the files written
(outputs). Evaluation, training and the CLI build on it; it builds only on the model and the core.
`mixscribe.transcribe(...)` is its public entry point."""
