"""A network used as a stateless skeleton: its parameters given at each call, or materialised."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from lsuite.functional.params import Params


def strip_parameters(net: nn.Module) -> Params:
    """Remove the parameters of ``net`` (their slots become None) and return them, detached.

    The network keeps its buffers (BatchNorm statistics, which still train in place) and then
    runs only through ``torch.func.functional_call(net, params, ...)`` (or a `ParameterBinding`
    made before stripping) with every parameter given. Its ``state_dict`` then holds the buffers
    only. Every slot of a tied parameter is emptied.

    Args:
        net: the network; changed in place.

    Returns:
        The parameters by name (``net.named_parameters()`` order, one entry per tied tensor),
        detached.
    """
    params = {name: p.detach() for name, p in net.named_parameters()}
    for name, _ in net.named_parameters(remove_duplicate=False):
        owner, _, leaf = name.rpartition(".")
        net.get_submodule(owner)._parameters[leaf] = None
    return params


class ParameterBinding:
    """Call a network with given tensors in its parameter slots: ``functional_call`` made once.

    ``binding(params, inputs)`` equals ``torch.func.functional_call(net, params, (inputs,))``
    (tied parameters included: every slot of a tied tensor gets the tensor of its first name):
    the tensors are put into the slots, the network is called, and the slots get back what they
    held (None for a stripped network, its own parameters otherwise), also on error. The slots
    are found once, here, so a call costs no more than the network's own forward
    (``functional_call`` re-walks the module tree and checks for tied weights at every call,
    about 50 us on the digits MLP, a tenth of a training step).

    Args:
        net: the network, before `strip_parameters` if it is to be stripped.
        names: the parameters to bind (first names of tied tensors), or None for all; the
            others keep their own tensors.

    Given ``buffers`` (a subset of the network's buffers by name, e.g. recomputed BatchNorm
    statistics), their slots are filled the same way for the call, as ``functional_call`` with
    ``{**buffers, **params}`` and ``strict=False`` does.

    Attributes:
        slots: ``(owner._parameters, leaf, name)`` for every bound slot.
        buffer_slots: ``(owner._buffers, leaf, name)`` for every buffer slot of the network.
    """

    def __init__(self, net: nn.Module, names: Sequence[str] | None = None) -> None:
        first = {id(p): name for name, p in reversed(list(net.named_parameters()))}
        wanted = set(first.values()) if names is None else set(names)
        self.net = net
        self.slots: list[tuple[dict[str, Any], str, str]] = []
        for name, p in net.named_parameters(remove_duplicate=False):
            owner, _, leaf = name.rpartition(".")
            if first[id(p)] in wanted:
                self.slots.append((net.get_submodule(owner)._parameters, leaf, first[id(p)]))
        self.buffer_slots: list[tuple[dict[str, Any], str, str]] = []
        for name, _ in net.named_buffers(remove_duplicate=False):
            owner, _, leaf = name.rpartition(".")
            self.buffer_slots.append((net.get_submodule(owner)._buffers, leaf, name))

    def __call__(
        self, params: Mapping[str, Tensor], *args: Any, buffers: Mapping[str, Tensor] | None = None
    ) -> Any:
        """Return ``net(*args)`` with ``params`` (one tensor per parameter name) in the slots.

        ``buffers``: tensors for some of the network's buffers during the call, or None.
        """
        slots, values = self.slots, params
        if buffers:
            slots = [*slots, *(slot for slot in self.buffer_slots if slot[2] in buffers)]
            values = {**buffers, **params}
        saved = [table[leaf] for table, leaf, _ in slots]
        try:
            for table, leaf, name in slots:
                table[leaf] = values[name]
            return self.net(*args)
        finally:
            for (table, leaf, _), value in zip(slots, saved, strict=True):
                table[leaf] = value


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
