"""Statistics over finished trials: per-axis effects with intervals (pure, no I/O)."""
