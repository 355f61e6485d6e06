"""Small shared helpers: devices, atomic file writes, image encoding, checkpoints."""
