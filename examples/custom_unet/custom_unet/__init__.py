"""A U-Net-style segmentation network for the ablate bring-your-own-model example."""

from custom_unet.model import UNet, build_unet

__all__ = ["UNet", "build_unet"]
