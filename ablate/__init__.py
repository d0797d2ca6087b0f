"""ablate: architecture ablation studies for efficient semantic-segmentation networks."""

__version__ = "0.1.0"
