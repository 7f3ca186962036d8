"""Small convolutional classifier for 1-D ``(C, L)`` or 2-D ``(C, H, W)`` inputs."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from lsuite.errors import require

Norm = Literal["none", "batch", "group"]
Pool = Literal["avg", "flatten"]

_NORMS = ("none", "batch", "group")
_POOLS = ("avg", "flatten")


class CNN(nn.Module):
    """Stack of conv stages followed by a global pool (or flatten) and a linear head.

    Each stage is ``conv -> norm -> ReLU -> MaxPool(2)``, with ``Conv1d`` for 1-D inputs
    ``(C, L)`` and ``Conv2d`` for 2-D inputs ``(C, H, W)``. Convolutions use "same" padding, so only
    the pooling shrinks the signal; a stage skips its pooling when that would leave a spatial size
    below 2 (so 8x8 digits give 8 -> 4 -> 2). Parameters are named ``features.<i>.conv.*``,
    ``features.<i>.norm.*``, then ``hidden.*`` (when ``hidden`` is set) and ``head.*``.

    Args:
        input_shape: per-sample shape without the batch dimension: ``(C, L)`` or ``(C, H, W)``.
        num_classes: number of output logits.
        channels: output channels of each conv stage; its length is the number of stages.
        kernel_size: odd convolution kernel size.
        norm: normalisation after each conv: ``none``, ``batch`` (BatchNorm) or ``group``
            (GroupNorm). Convs carry a bias only with ``none``.
        num_groups: for ``norm: group``, the most groups per layer; each layer uses the largest
            divisor of its channel count that is at most ``num_groups``.
        pool: how the last feature map becomes a vector: ``avg`` (global average pool, ``(B, C)``)
            or ``flatten`` (``(B, C * spatial)``).
        hidden: units of a ReLU hidden layer before the head, or ``None`` for a linear head.

    Raises:
        ConfigError: if an argument is out of range or an option is unknown.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        norm: Norm = "none",
        num_groups: int = 8,
        pool: Pool = "flatten",
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(input_shape)
        channels = tuple(channels)
        require(
            len(shape) in (2, 3) and min(shape) >= 1,
            "model.input_shape",
            input_shape,
            "(C, L) or (C, H, W) with positive sizes",
        )
        require(
            isinstance(num_classes, int) and num_classes >= 1,
            "model.num_classes",
            num_classes,
            "an int >= 1",
        )
        require(
            len(channels) >= 1 and all(isinstance(c, int) and c >= 1 for c in channels),
            "model.channels",
            channels,
            "a non-empty list of ints >= 1",
        )
        require(
            isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1,
            "model.kernel_size",
            kernel_size,
            "an odd int >= 1",
        )
        require(norm in _NORMS, "model.norm", norm, f"one of {list(_NORMS)}")
        require(
            isinstance(num_groups, int) and num_groups >= 1,
            "model.num_groups",
            num_groups,
            "an int >= 1",
        )
        require(pool in _POOLS, "model.pool", pool, f"one of {list(_POOLS)}")
        require(
            hidden is None or (isinstance(hidden, int) and hidden >= 1),
            "model.hidden",
            hidden,
            "null or an int >= 1",
        )

        conv_cls = nn.Conv1d if len(shape) == 2 else nn.Conv2d
        pool_cls = nn.MaxPool1d if len(shape) == 2 else nn.MaxPool2d
        spatial = list(shape[1:])
        stages = []
        in_channels = shape[0]
        for out_channels in channels:
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            layers["conv"] = conv_cls(
                in_channels,
                out_channels,
                kernel_size,
                padding=kernel_size // 2,
                bias=norm == "none",
            )
            if norm != "none":
                layers["norm"] = _make_norm(norm, out_channels, num_groups, len(spatial))
            layers["act"] = nn.ReLU()
            if min(spatial) // 2 >= 2:
                layers["pool"] = pool_cls(2)
                spatial = [n // 2 for n in spatial]
            stages.append(nn.Sequential(layers))
            in_channels = out_channels
        self.features = nn.Sequential(*stages)
        self.pool = pool

        features = in_channels * (math.prod(spatial) if pool == "flatten" else 1)
        self.hidden = nn.Linear(features, hidden) if hidden is not None else None
        self.head = nn.Linear(hidden if hidden is not None else features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits.

        Args:
            x: inputs of shape ``(B, *input_shape)``.

        Returns:
            Logits of shape ``(B, num_classes)``.
        """
        x = self.features(x)  # (B, C, *spatial)
        x = x.mean(dim=tuple(range(2, x.dim()))) if self.pool == "avg" else torch.flatten(x, 1)
        if self.hidden is not None:
            x = torch.relu(self.hidden(x))
        return self.head(x)


def _make_norm(norm: Norm, channels: int, num_groups: int, dims: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    groups = max(g for g in range(1, min(num_groups, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)
