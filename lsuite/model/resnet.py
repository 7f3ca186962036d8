"""CIFAR-style residual network (ResNet-20 family) for ``(C, H, W)`` images or ``(C, L)`` signals.

He, Zhang, Ren, Sun (2016), "Deep Residual Learning for Image Recognition", section 4.2.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsuite.errors import require

Norm = Literal["batch", "group", "none"]
Shortcut = Literal["conv", "pad"]

_NORMS = ("batch", "group", "none")
_SHORTCUTS = ("conv", "pad")
_BASE_CHANNELS = (16, 32, 64)


class ResNet(nn.Module):
    """ResNet for small inputs: 3x3 stem, three stages of basic blocks, global average pool, linear.

    Stage ``s`` (0, 1, 2) has ``(depth - 2) // 6`` basic blocks with
    ``round(width * (16, 32, 64)[s])`` channels; the first block of stages 1 and 2 has stride 2.
    A basic block computes ``relu(norm(conv(relu(norm(conv(x))))) + shortcut(x))``. Any input size
    works (8x8 digits give feature maps of 8, 4 and 2). The layers follow the input: ``(C, H, W)``
    images get Conv2d / BatchNorm2d (3x3 kernels), ``(C, L)`` signals such as MNIST-1D get Conv1d /
    BatchNorm1d (kernels of 3; a length of 40 gives feature maps of 40, 20 and 10), with the
    same parameter names. Parameters are named ``stem.conv.*``,
    ``stem.norm.*``, ``stages.<s>.<b>.{conv1,norm1,conv2,norm2}.*``,
    ``stages.<s>.0.shortcut.{conv,norm}.*`` (for ``shortcut: conv``) and ``head.*``.

    Convolutions use He-normal (fan-in) initialisation. With ``norm: none`` every conv gets a
    bias and the last conv of each residual branch is scaled by ``num_blocks ** -0.5``, so the
    residual stream's variance grows by at most a factor of about ``e`` over the whole network and
    the net trains without normalisation (the same idea as Fixup, Zhang et al. 2019), while no
    weight is exactly zero (filter normalisation divides by filter norms).

    Args:
        input_shape: per-sample shape without the batch dimension, ``(C, H, W)`` (2-D layers)
            or ``(C, L)`` (1-D layers).
        num_classes: number of output logits.
        depth: number of weighted layers, with ``(depth - 2) % 6 == 0`` (8, 14, 20, 32, 44, ...).
        width: multiplier on the stage channels 16, 32, 64.
        norm: normalisation after each conv: ``batch`` (BatchNorm), ``group`` (GroupNorm) or
            ``none`` (no normalisation and scaled residual init, for weight-space methods).
        num_groups: for ``norm: group``, the most groups per layer; each layer uses the largest
            divisor of its channel count that is at most ``num_groups``.
        shortcut: for blocks that change shape, ``conv`` (1x1 strided conv + norm, option B of
            He et al.) or ``pad`` (strided identity with zero-padded channels, option A; no
            parameters, but it ties the channel order of consecutive stages).

    Raises:
        ConfigError: if an argument is out of range or an option is unknown.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 20,
        width: float = 1.0,
        norm: Norm = "batch",
        num_groups: int = 8,
        shortcut: Shortcut = "conv",
    ) -> None:
        super().__init__()
        shape = tuple(input_shape)
        require(
            len(shape) in (2, 3) and min(shape) >= 1,
            "model.input_shape",
            input_shape,
            "(C, H, W) or (C, L) with positive sizes",
        )
        require(
            isinstance(num_classes, int) and num_classes >= 1,
            "model.num_classes",
            num_classes,
            "an int >= 1",
        )
        require(
            isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0,
            "model.depth",
            depth,
            "an int >= 8 with (depth - 2) % 6 == 0, e.g. 8, 14, 20, 32, 44, 56, 110",
        )
        require(
            isinstance(width, (int, float)) and round(width * _BASE_CHANNELS[0]) >= 1,
            "model.width",
            width,
            f"a number >= {0.5 / _BASE_CHANNELS[0]} (at least one channel in the first stage)",
        )
        require(norm in _NORMS, "model.norm", norm, f"one of {list(_NORMS)}")
        require(
            isinstance(num_groups, int) and num_groups >= 1,
            "model.num_groups",
            num_groups,
            "an int >= 1",
        )
        require(shortcut in _SHORTCUTS, "model.shortcut", shortcut, f"one of {list(_SHORTCUTS)}")

        blocks_per_stage = (depth - 2) // 6
        residual_scale = (3 * blocks_per_stage) ** -0.5 if norm == "none" else 1.0
        channels = [round(width * c) for c in _BASE_CHANNELS]
        dims = len(shape) - 1

        self.stem = nn.Sequential(
            OrderedDict(
                conv=_conv(dims, shape[0], channels[0], 3, 1, norm),
                norm=_make_norm(dims, norm, channels[0], num_groups),
                act=nn.ReLU(),
            )
        )
        stages = []
        in_channels = channels[0]
        for index, out_channels in enumerate(channels):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(
                    _BasicBlock(
                        dims,
                        in_channels,
                        out_channels,
                        stride,
                        norm,
                        num_groups,
                        shortcut,
                        residual_scale,
                    )
                )
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits.

        Args:
            x: inputs of shape ``(B, C, H, W)`` (or ``(B, C, L)`` for 1-D layers).

        Returns:
            Logits of shape ``(B, num_classes)``.
        """
        x = self.stages(self.stem(x))  # (B, 64 * width, H / 4, W / 4) or (B, 64 * width, L / 4)
        return self.head(x.mean(dim=tuple(range(2, x.dim()))))


class _BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; ``stride`` applies to the first conv."""

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm: Norm,
        num_groups: int,
        shortcut: Shortcut,
        residual_scale: float,
    ) -> None:
        super().__init__()
        self.conv1 = _conv(dims, in_channels, out_channels, 3, stride, norm)
        self.norm1 = _make_norm(dims, norm, out_channels, num_groups)
        self.conv2 = _conv(dims, out_channels, out_channels, 3, 1, norm, scale=residual_scale)
        self.norm2 = _make_norm(dims, norm, out_channels, num_groups)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "conv":
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=_conv(dims, in_channels, out_channels, 1, stride, norm),
                    norm=_make_norm(dims, norm, out_channels, num_groups),
                )
            )
        else:
            self.shortcut = _PadShortcut(out_channels - in_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: features of shape ``(B, C_in, H, W)`` (or ``(B, C_in, L)``).

        Returns:
            Features of shape ``(B, C_out, ceil(H / stride), ceil(W / stride))`` (or
            ``(B, C_out, ceil(L / stride))``).
        """
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad ``extra`` channels on both sides."""

    def __init__(self, extra: int, stride: int) -> None:
        super().__init__()
        self.extra = extra
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """Subsample and pad.

        Args:
            x: features of shape ``(B, C, H, W)`` (or ``(B, C, L)``).

        Returns:
            Features of shape ``(B, C + extra, ceil(H / stride), ceil(W / stride))`` (or
            ``(B, C + extra, ceil(L / stride))``).
        """
        spatial = x.dim() - 2
        x = x[(slice(None), slice(None)) + (slice(None, None, self.stride),) * spatial]
        return F.pad(x, (0, 0) * spatial + (self.extra // 2, self.extra - self.extra // 2))


def _conv(
    dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    norm: Norm,
    scale: float = 1.0,
) -> nn.Conv1d | nn.Conv2d:
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=norm == "none",
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    with torch.no_grad():
        conv.weight.mul_(scale)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _make_norm(dims: int, norm: Norm, channels: int, num_groups: int) -> nn.Module:
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    groups = max(g for g in range(1, min(num_groups, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)
