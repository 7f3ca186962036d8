"""Which torch ops and modules preserve, create or reduce channel axes (tables for tracing)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

UNARY_MODULES = (
    nn.ReLU,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SiLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Softplus,
    nn.Hardtanh,
    nn.ReLU6,
    nn.Mish,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Softmax,
    nn.LogSoftmax,
)
UNARY_FUNCTIONS: set[Callable[..., Any]] = {
    F.relu,
    torch.relu,
    F.gelu,
    torch.tanh,
    F.tanh,
    torch.sigmoid,
    F.sigmoid,
    F.silu,
    F.elu,
    F.leaky_relu,
    F.softplus,
    F.dropout,
    F.hardtanh,
    F.relu6,
    F.mish,
    F.softmax,
    F.log_softmax,
    torch.abs,
    torch.neg,
    operator.neg,
    torch.exp,
    torch.square,
    torch.clamp,
}
UNARY_METHODS = {
    "relu",
    "tanh",
    "sigmoid",
    "contiguous",
    "clone",
    "float",
    "double",
    "to",
    "detach",
    "softmax",
    "log_softmax",
    "exp",
    "abs",
    "neg",
    "clamp",
    "square",
}
BINARY_FUNCTIONS: set[Callable[..., Any]] = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.iadd,
    operator.imul,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
}
BINARY_METHODS = {"add", "sub", "mul", "div", "add_", "mul_", "pow"}
REDUCTIONS = {"mean", "sum", "amax", "amin", "var", "std"}
POOL_MODULES: dict[type[nn.Module], int] = {
    nn.MaxPool1d: 1,
    nn.MaxPool2d: 2,
    nn.MaxPool3d: 3,
    nn.AvgPool1d: 1,
    nn.AvgPool2d: 2,
    nn.AvgPool3d: 3,
    nn.AdaptiveAvgPool1d: 1,
    nn.AdaptiveAvgPool2d: 2,
    nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1,
    nn.AdaptiveMaxPool2d: 2,
}
POOL_FUNCTIONS: dict[Callable[..., Any], int] = {
    F.max_pool1d: 1,
    F.max_pool2d: 2,
    F.avg_pool1d: 1,
    F.avg_pool2d: 2,
    F.adaptive_avg_pool1d: 1,
    F.adaptive_avg_pool2d: 2,
    F.adaptive_max_pool1d: 1,
    F.adaptive_max_pool2d: 2,
}
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
