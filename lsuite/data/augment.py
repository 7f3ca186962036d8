"""Randomly crop and flip a batch of images, the standard CIFAR training augmentation."""

from __future__ import annotations

import torch
from torch import Tensor


def random_crop_flip(images: Tensor, padding: int = 4, fill: Tensor | float = 0.0) -> Tensor:
    """Pad each image, crop it back to its size at a random offset, and flip half of them.

    The batched equivalent of torchvision's ``RandomCrop(size, padding)`` followed by
    ``RandomHorizontalFlip()``. Draws come from the global torch RNG of ``images.device``
    (which Lightning's ``seed_everything`` seeds): the row offsets ``(B,)``, then the column
    offsets ``(B,)``, then the flip coins ``(B,)``.

    Args:
        images: ``(B, C, H, W)`` batch.
        padding: pixels added on each side before cropping; offsets are uniform in
            ``0..2 * padding``.
        fill: value of the padded pixels, a number or a ``(C,)`` tensor per channel (pass
            the normalised value of a black pixel to match torchvision on normalised data).

    Returns:
        ``(B, C, H, W)`` augmented batch, a new tensor.

    Raises:
        ValueError: when ``images`` is not 4-dimensional or ``padding`` is negative.
    """
    if images.ndim != 4:
        raise ValueError(f"images: got shape {tuple(images.shape)}; expected (B, C, H, W)")
    if padding < 0:
        raise ValueError(f"padding: got {padding}; expected an int >= 0")
    batch, channels, height, width = images.shape
    device = images.device
    padded = images.new_empty(batch, channels, height + 2 * padding, width + 2 * padding)
    padded[:] = torch.as_tensor(fill, dtype=images.dtype, device=device).reshape(-1, 1, 1)
    padded[:, :, padding : padding + height, padding : padding + width] = images
    top = torch.randint(0, 2 * padding + 1, (batch,), device=device)
    left = torch.randint(0, 2 * padding + 1, (batch,), device=device)
    rows = (top[:, None] + torch.arange(height, device=device))[:, :, None]  # (B, H, 1)
    cols = (left[:, None] + torch.arange(width, device=device))[:, None, :]  # (B, 1, W)
    index = torch.arange(batch, device=device)[:, None, None]
    # Advanced indices around a slice put their dimensions first: (B, H, W, C).
    crops = padded[index, :, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(batch, device=device) < 0.5
    return torch.where(flip[:, None, None, None], crops.flip(-1), crops)
