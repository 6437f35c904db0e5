"""Single-purpose layers of the model: rotary positions, attention, transformer blocks, per-session layers."""
