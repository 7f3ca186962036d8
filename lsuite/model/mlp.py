"""Multilayer perceptron classifier on flattened inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from lsuite.errors import require

Activation = Literal["relu", "tanh", "gelu"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    """Fully connected network: flatten, ``depth`` hidden layers of ``width``, linear head.

    Each hidden layer is ``Linear -> activation -> Dropout``. Parameters are named
    ``hidden.<i>.weight`` / ``hidden.<i>.bias`` (``i`` = 0 .. depth - 1) and ``head.weight`` /
    ``head.bias``.

    Args:
        input_shape: per-sample shape without the batch dimension, e.g. ``(1, 8, 8)``.
        num_classes: number of output logits.
        width: units in each hidden layer.
        depth: number of hidden layers.
        activation: nonlinearity after each hidden layer, one of ``relu``, ``tanh``, ``gelu``.
        dropout: dropout probability after each hidden activation, in ``[0, 1)``.

    Raises:
        ConfigError: if an argument is out of range or ``activation`` is unknown.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        width: int = 128,
        depth: int = 2,
        activation: Activation = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        shape = tuple(input_shape)
        require(
            len(shape) >= 1 and min(shape) >= 1,
            "model.input_shape",
            input_shape,
            "a non-empty shape of positive sizes",
        )
        require(
            isinstance(num_classes, int) and num_classes >= 1,
            "model.num_classes",
            num_classes,
            "an int >= 1",
        )
        require(isinstance(width, int) and width >= 1, "model.width", width, "an int >= 1")
        require(isinstance(depth, int) and depth >= 1, "model.depth", depth, "an int >= 1")
        require(
            activation in _ACTIVATIONS,
            "model.activation",
            activation,
            f"one of {sorted(_ACTIVATIONS)}",
        )
        require(
            isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0,
            "model.dropout",
            dropout,
            "a float in [0, 1)",
        )

        in_features = math.prod(shape)
        self.flatten = nn.Flatten()
        self.hidden = nn.ModuleList(
            nn.Linear(in_features if i == 0 else width, width) for i in range(depth)
        )
        self.activation = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits.

        Args:
            x: inputs of shape ``(B, *input_shape)``.

        Returns:
            Logits of shape ``(B, num_classes)``.
        """
        x = self.flatten(x)  # (B, prod(input_shape))
        for layer in self.hidden:
            x = self.dropout(self.activation(layer(x)))
        return self.head(x)
