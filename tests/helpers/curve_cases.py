"""Tiny networks and endpoint files for the curve and simplex tests (tests/curves)."""

import functools

import torch
from torch import nn


def tiny_net(batch_norm=False):
    layers = [nn.Flatten(), nn.Linear(64, 12)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(12))
    layers += [nn.Tanh(), nn.Linear(12, 10)]
    return nn.Sequential(*layers)


def endpoint_files(directory, count=2, batch_norm=False, seed=0):
    """Save ``count`` differently initialised tiny networks; return their paths and networks."""
    paths, nets = [], []
    for i in range(count):
        torch.manual_seed(seed + i)
        net = tiny_net(batch_norm)
        path = directory / f"end{i}.pt"
        torch.save(net.state_dict(), path)
        paths.append(str(path))
        nets.append(net.eval())
    return paths, nets


def sgd(lr=0.05):
    return functools.partial(torch.optim.SGD, lr=lr)
