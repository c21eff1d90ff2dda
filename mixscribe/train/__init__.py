"""Training: targets from notes, on-the-fly remixing of stored stems (Ray Train)."""
