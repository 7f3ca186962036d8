"""A tiny network with a BatchNorm layer: ``(B, 5)`` inputs, ``(B, 3)`` logits."""

import torch
from torch import nn


class BatchNormNet(nn.Module):
    """Linear(5, 6), BatchNorm1d(6), ReLU, Linear(6, 3)."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(5, 6)
        self.norm = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.first(x))))
