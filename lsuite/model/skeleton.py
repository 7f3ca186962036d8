"""A network used as a stateless skeleton: its parameters given at each call, or materialised."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from torch import Tensor, nn

from lsuite.functional.params import Params


def strip_parameters(net: nn.Module) -> Params:
    """Remove the parameters of ``net`` (their slots become None) and return them, detached.

    The network keeps its buffers (BatchNorm statistics, which still train in place) and then
    runs only through ``torch.func.functional_call(net, params, ...)`` with every parameter
    given. Its ``state_dict`` then holds the buffers only.

    Args:
        net: the network; changed in place.

    Returns:
        The parameters by name (``net.named_parameters()`` order), detached.
    """
    params = {name: p.detach() for name, p in net.named_parameters()}
    for name in params:
        owner, _, leaf = name.rpartition(".")
        net.get_submodule(owner)._parameters[leaf] = None
    return params


def network_at(skeleton: nn.Module, params: Mapping[str, Tensor]) -> nn.Module:
    """Return a copy of ``skeleton`` (buffers and modes included) whose parameters are ``params``.

    The copy owns fresh ``nn.Parameter``s (``requires_grad=True``) holding detached clones of
    ``params``; the skeleton is not changed. This is what a module's ``probe_network()`` returns
    when the network it trains is a point computed from other tensors.

    Args:
        skeleton: the network (with or without its parameter slots filled).
        params: a tensor for every parameter name of the network.

    Returns:
        The new network.
    """
    net = copy.deepcopy(skeleton)
    for name, value in params.items():
        owner, _, leaf = name.rpartition(".")
        net.get_submodule(owner).register_parameter(leaf, nn.Parameter(value.detach().clone()))
    return net
