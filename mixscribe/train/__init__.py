"""Training: targets from notes, on-the-fly remixing of stored stems (Ray Train trainer: issue 4)."""
