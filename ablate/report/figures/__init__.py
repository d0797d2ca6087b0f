"""Figures of the effects: forest plot, every seed, probability of improvement, per-class
effects (``style`` holds what they share: sizes for a paper, palette, verdict marks)."""
