"""Propagate channel layouts through a traced graph; groups merge in a union-find."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx.passes.shape_prop import TensorMetadata

from lsuite.align.ops import (
    BATCH_NORM,
    BINARY_FUNCTIONS,
    BINARY_METHODS,
    CONV,
    POOL_FUNCTIONS,
    POOL_MODULES,
    REDUCTIONS,
    UNARY_FUNCTIONS,
    UNARY_METHODS,
    UNARY_MODULES,
)
from lsuite.align.spec import ActivationRef, AxisRef, PermutationGroup, PermutationSpec
from lsuite.errors import ConfigError

Dim = tuple[int, int] | None  # (group id, inner block size), or None for an axis never permuted
Layout = tuple[Dim, ...] | None  # one Dim per tensor dimension; None for non-tensor values

_FIXED = 0


def propagate(
    gm: fx.GraphModule, state: dict[str, Tensor], fixed: tuple[str, ...]
) -> PermutationSpec:
    """Return the permutation spec of a traced graph whose nodes carry ``tensor_meta``.

    Args:
        gm: graph module after ``ShapeProp``.
        state: the model's state dict (keys decide which attributes are parameters/buffers).
        fixed: module names whose unsupported ops hold channels fixed instead of raising.

    Returns:
        The spec.

    Raises:
        ConfigError: for an op or module that cannot be permuted outside ``fixed``.
    """
    return _Propagation(gm, state, fixed).run()


class _Propagation:
    """Propagate channel layouts through the graph with a union-find over permutation groups."""

    def __init__(
        self, gm: fx.GraphModule, state: dict[str, Tensor], fixed: tuple[str, ...]
    ) -> None:
        self.gm = gm
        self.state = state
        self.fixed = fixed
        self.modules = dict(gm.named_modules())
        self.parent = [_FIXED]
        self.size = [0]
        self.chunk = [0]
        self.creator = ["<fixed>"]
        self.entries: dict[tuple[str, int], tuple[int, int]] = {}
        self.points: dict[int, list[ActivationRef]] = {}
        self.env: dict[str, Layout] = {}

    # union-find ------------------------------------------------------------------------------
    def find(self, group: int) -> int:
        while self.parent[group] != group:
            self.parent[group] = self.parent[self.parent[group]]
            group = self.parent[group]
        return group

    def new_group(self, size: int, creator: str) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.chunk.append(size)
        self.creator.append(creator)
        return len(self.parent) - 1

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if _FIXED in (ra, rb) or self.size[ra] != self.size[rb]:
            self.parent[ra] = self.parent[rb] = _FIXED
            return _FIXED
        keep, drop = min(ra, rb), max(ra, rb)
        self.parent[drop] = keep
        self.chunk[keep] = math.gcd(self.chunk[keep], self.chunk[drop])
        return keep

    def fix(self, dim: Dim) -> None:
        if dim is not None:
            self.union(dim[0], _FIXED)

    def live(self, dim: Dim) -> Dim:
        return None if dim is None or self.find(dim[0]) == _FIXED else dim

    def add_entry(self, name: str, axis: int, dim: Dim) -> None:
        dim = self.live(dim)
        if dim is None or name not in self.state:
            return
        key = (name, axis)
        if key in self.entries:
            old = self.entries[key]
            if old[1] == dim[1]:
                self.union(old[0], dim[0])
            else:
                self.fix(old)
                self.fix(dim)
            return
        self.entries[key] = dim

    # helpers ---------------------------------------------------------------------------------
    def where(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return str(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        return next(reversed(stack.values()))[0] if stack else "<root>"

    def shape(self, node: Any) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
        return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None

    def blank(self, node: fx.Node) -> Layout:
        shape = self.shape(node)
        return None if shape is None else (None,) * len(shape)

    def layout(self, value: Any) -> Layout:
        if isinstance(value, fx.Node):
            return self.env.get(value.name)
        return None

    def fix_all(self, value: Any) -> None:
        def visit(item: Any) -> Any:
            layout = self.layout(item)
            for dim in layout or ():
                self.fix(dim)
            return item

        fx.node.map_aggregate(value, visit)

    def is_fixed(self, where: str) -> bool:
        return any(where == f or where.startswith(f + ".") for f in self.fixed)

    def unsupported(self, node: fx.Node, what: str) -> Layout:
        where = self.where(node)
        if self.is_fixed(where):
            self.fix_all((node.args, node.kwargs))
            return self.blank(node)
        hint = (
            "move it into a submodule and pass fixed=[its name]"
            if where == "<root>"
            else f"pass fixed=[{where!r}]"
        )
        raise ConfigError(
            f"permutation_spec: cannot permute through {what} in module {where!r} "
            f"(fx node {node.name!r}); {hint} to hold its channels fixed"
        )

    # main loop -------------------------------------------------------------------------------
    def run(self) -> PermutationSpec:
        for node in self.gm.graph.nodes:
            self.env[node.name] = self.visit(node)
        return self.build()

    def visit(self, node: fx.Node) -> Layout:
        if node.op == "placeholder":
            return self.blank(node)
        if node.op == "output":
            self.fix_all(node.args)
            return None
        if node.op == "get_attr":
            return self.visit_attr(node)
        if node.op == "call_module":
            if self.is_fixed(str(node.target)):
                self.fix_all((node.args, node.kwargs))
                return self.blank(node)
            return self.visit_module(node, self.modules[str(node.target)])
        if node.op == "call_function":
            return self.visit_function(node)
        return self.visit_method(node)

    def visit_attr(self, node: fx.Node) -> Layout:
        name = str(node.target)
        shape = self.shape(node)
        if shape is None or name not in self.state:
            return self.blank(node)
        dims = []
        for axis, size in enumerate(shape):
            dim = (self.new_group(size, name), 1)
            self.add_entry(name, axis, dim)
            dims.append(dim)
        return tuple(dims)

    def unary(self, node: fx.Node) -> Layout:
        return self.layout(node.args[0]) if node.args else self.blank(node)

    def visit_module(self, node: fx.Node, module: nn.Module) -> Layout:
        target = str(node.target)
        source = self.layout(node.args[0]) if node.args else None
        if isinstance(module, UNARY_MODULES):
            return source
        if isinstance(module, nn.Linear):
            return self.linear(node, target, source)
        if isinstance(module, CONV):
            return self.conv(node, module, target, source)
        if isinstance(module, (*BATCH_NORM, nn.GroupNorm)):
            if source is None or len(source) < 2:
                return source
            channel = self.live(source[1])
            if channel is not None and channel[1] != 1:
                self.fix(channel)
                channel = None
            if channel is not None and isinstance(module, nn.GroupNorm):
                root = self.find(channel[0])
                self.chunk[root] = math.gcd(
                    self.chunk[root], module.num_channels // module.num_groups
                )
            for key in ("weight", "bias", "running_mean", "running_var"):
                self.add_entry(f"{target}.{key}", 0, channel)
            return source
        if isinstance(module, nn.LayerNorm):
            if source is None:
                return source
            count = len(module.normalized_shape)
            for axis, dim in enumerate(source[len(source) - count :]):
                self.add_entry(f"{target}.weight", axis, dim)
                self.add_entry(f"{target}.bias", axis, dim)
            return source
        if isinstance(module, nn.Embedding):
            shape = self.shape(node)
            group = (self.new_group(module.embedding_dim, target), 1)
            self.add_entry(f"{target}.weight", 1, group)
            return (*(None,) * (len(shape) - 1), group) if shape else None
        if isinstance(module, nn.Flatten):
            return self.reshape(node, source)
        pooled = next((k for t, k in POOL_MODULES.items() if isinstance(module, t)), None)
        if pooled is not None and not getattr(module, "return_indices", False):
            return self.pool(source, pooled)
        return self.unsupported(node, f"module {type(module).__name__}")

    def linear(self, node: fx.Node, target: str, source: Layout) -> Layout:
        if source is None:
            return self.blank(node)
        self.add_entry(f"{target}.weight", 1, source[-1])
        self.point(node.args[0], len(source) - 1, source[-1])
        out = self.shape(node)
        group = (self.new_group(out[-1], target), 1)
        self.add_entry(f"{target}.weight", 0, group)
        self.add_entry(f"{target}.bias", 0, group)
        return (*source[:-1], group)

    def conv(self, node: fx.Node, module: nn.Module, target: str, source: Layout) -> Layout:
        if source is None:
            return self.blank(node)
        spatial = len(module.kernel_size)
        channel_dim = len(source) - spatial - 1
        channel = self.live(source[channel_dim])
        batch = source[:channel_dim]
        rest = (None,) * spatial
        if module.groups == 1:
            if channel is not None and channel[1] != 1:
                self.fix(channel)
                channel = None
            self.add_entry(f"{target}.weight", 1, channel)
            self.point(node.args[0], channel_dim, channel)
            group = (self.new_group(module.out_channels, target), 1)
            self.add_entry(f"{target}.weight", 0, group)
            self.add_entry(f"{target}.bias", 0, group)
            return (*batch, group, *rest)
        if module.groups == module.in_channels == module.out_channels and channel is not None:
            self.add_entry(f"{target}.weight", 0, channel)
            self.add_entry(f"{target}.bias", 0, channel)
            return (*batch, channel, *rest)
        self.fix(channel)
        return (*batch, None, *rest)

    def point(self, value: Any, dim: int, channel: Dim) -> None:
        channel = self.live(channel)
        if channel is not None and isinstance(value, fx.Node):
            ref = ActivationRef(value.name, dim, channel[1])
            refs = self.points.setdefault(channel[0], [])
            if ref not in refs:
                refs.append(ref)

    def pool(self, source: Layout, spatial: int) -> Layout:
        if source is None:
            return None
        return (*source[: len(source) - spatial], *(None,) * spatial)

    def visit_function(self, node: fx.Node) -> Layout:
        target = node.target
        if target in UNARY_FUNCTIONS:
            return self.unary(node)
        if target in BINARY_FUNCTIONS:
            return self.binary(node, node.args[:2])
        if target in POOL_FUNCTIONS:
            return self.pool(self.layout(node.args[0]), POOL_FUNCTIONS[target])
        if target in (torch.flatten, torch.reshape):
            return self.reshape(node, self.layout(node.args[0]))
        if target is operator.getitem:
            return self.getitem(node)
        if target is getattr or target is torch.Tensor.size:
            return None
        if target is F.pad:
            return self.pad(node)
        if target is F.linear:
            return self.functional_linear(node)
        name = getattr(target, "__name__", "")
        if name in REDUCTIONS and getattr(torch, name, None) is target:
            return self.reduction(node)
        if target is torch.transpose:
            return self.transpose(node, node.args[1], node.args[2])
        label = f"torch.{name}" if getattr(torch, name, None) is target else None
        label = (
            label
            or f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"
        )
        return self.unsupported(node, f"function {label}")

    def visit_method(self, node: fx.Node) -> Layout:
        method = str(node.target)
        if method in UNARY_METHODS:
            return self.unary(node)
        if method in BINARY_METHODS:
            return self.binary(node, node.args[:2])
        if method in ("flatten", "view", "reshape"):
            return self.reshape(node, self.layout(node.args[0]))
        if method in REDUCTIONS:
            return self.reduction(node)
        if method in ("size", "dim"):
            return None
        if method == "transpose":
            return self.transpose(node, node.args[1], node.args[2])
        if method == "permute":
            source = self.layout(node.args[0])
            order = node.args[1] if isinstance(node.args[1], Sequence) else node.args[1:]
            return tuple(source[i] for i in order) if source is not None else None
        if method == "unsqueeze":
            source = self.layout(node.args[0])
            if source is None:
                return self.blank(node)
            at = node.args[1] % (len(source) + 1)
            return (*source[:at], None, *source[at:])
        return self.unsupported(node, f"method Tensor.{method}")

    def binary(self, node: fx.Node, operands: Sequence[Any]) -> Layout:
        out = self.shape(node)
        if out is None:
            return None
        tensors = [(self.layout(v), self.shape(v)) for v in operands if self.layout(v) is not None]
        dims: list[Dim] = []
        for position in range(1, len(out) + 1):
            found: list[Dim] = []
            plain = False
            for layout, shape in tensors:
                if position > len(layout) or shape[-position] == 1 < out[-position]:
                    continue
                dim = self.live(layout[-position])
                if dim is None:
                    plain = True
                else:
                    found.append(dim)
            if not found:
                dims.append(None)
                continue
            if plain or len({d[1] for d in found}) > 1:
                for dim in found:
                    self.fix(dim)
                dims.append(None)
                continue
            root = found[0][0]
            for dim in found[1:]:
                root = self.union(root, dim[0])
            dims.append(self.live((root, found[0][1])))
        return tuple(reversed(dims))

    def reduction(self, node: fx.Node) -> Layout:
        source = self.layout(node.args[0])
        if source is None:
            return None
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        if dim is None:
            return self.blank(node)
        reduced = {d % len(source) for d in (dim if isinstance(dim, Sequence) else (dim,))}
        if keep:
            return tuple(None if i in reduced else d for i, d in enumerate(source))
        return tuple(d for i, d in enumerate(source) if i not in reduced)

    def transpose(self, node: fx.Node, a: int, b: int) -> Layout:
        source = self.layout(node.args[0])
        if source is None:
            return None
        dims = list(source)
        a, b = a % len(dims), b % len(dims)
        dims[a], dims[b] = dims[b], dims[a]
        return tuple(dims)

    def reshape(self, node: fx.Node, source: Layout) -> Layout:
        in_shape, out_shape = self.shape(node.args[0]), self.shape(node)
        if source is None or in_shape is None or out_shape is None:
            return self.blank(node)
        out: list[Dim] = []
        i = j = 0
        while i < len(in_shape) or j < len(out_shape):
            i0, j0 = i, j
            a = in_shape[i] if i < len(in_shape) else 1
            b = out_shape[j] if j < len(out_shape) else 1
            i, j = i + 1, j + 1
            while a != b:
                if a < b:
                    a *= in_shape[i]
                    i += 1
                else:
                    b *= out_shape[j]
                    j += 1
            out.extend(self.regroup(source[i0:i], in_shape[i0:i], out_shape[j0:j]))
        return tuple(out[: len(out_shape)])

    def regroup(
        self, dims: Sequence[Dim], in_sizes: Sequence[int], out_sizes: Sequence[int]
    ) -> list[Dim]:
        live = [(k, d) for k, d in enumerate(dims) if self.live(d) is not None]
        if not live:
            return [None] * len(out_sizes)
        if len(in_sizes) == len(out_sizes) and tuple(in_sizes) == tuple(out_sizes):
            return list(dims)
        if len(live) == 1 and len(out_sizes) == 1:
            k, (group, inner) = live[0]
            return [(group, inner * math.prod(in_sizes[k + 1 :]))]
        if len(live) == 1 and len(in_sizes) == 1:
            group, inner = live[0][1]
            channels = self.size[self.find(group)]
            for j, size in enumerate(out_sizes):
                if size == channels and math.prod(out_sizes[j + 1 :]) == inner:
                    return [(group, 1) if k == j else None for k in range(len(out_sizes))]
        for _, dim in live:
            self.fix(dim)
        return [None] * len(out_sizes)

    def getitem(self, node: fx.Node) -> Layout:
        source = self.layout(node.args[0])
        index = node.args[1]
        if source is None or self.shape(node.args[0]) is None:
            return self.blank(node)
        items = index if isinstance(index, tuple) else (index,)
        if Ellipsis in items:
            at = items.index(Ellipsis)
            fill = len(source) - (len(items) - 1 - sum(i is None for i in items))
            items = (*items[:at], *(slice(None),) * fill, *items[at + 1 :])
        out: list[Dim] = []
        position = 0
        for item in items:
            if item is None:
                out.append(None)
                continue
            dim = source[position]
            position += 1
            if item == slice(None):
                out.append(dim)
            elif isinstance(item, slice):
                self.fix(dim)
                out.append(None)
            elif isinstance(item, int):
                self.fix(dim)
            else:
                return self.unsupported(node, "indexing with a tensor")
        return (*out, *source[position:])

    def pad(self, node: fx.Node) -> Layout:
        source = self.layout(node.args[0])
        widths = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
        if source is None:
            return self.blank(node)
        dims = list(source)
        for k in range(len(widths) // 2):
            if widths[2 * k] or widths[2 * k + 1]:
                self.fix(dims[-1 - k])
                dims[-1 - k] = None
        return tuple(dims)

    def functional_linear(self, node: fx.Node) -> Layout:
        source = self.layout(node.args[0])
        weight = self.layout(node.kwargs.get("weight", node.args[1]))
        bias = node.kwargs.get("bias", node.args[2] if len(node.args) > 2 else None)
        if source is None or weight is None:
            return self.unsupported(node, "F.linear without a parameter weight")
        self.binary_dims(source[-1], weight[1])
        self.point(node.args[0], len(source) - 1, source[-1])
        bias_layout = self.layout(bias)
        if bias_layout is not None:
            self.binary_dims(weight[0], bias_layout[0])
        return (*source[:-1], self.live(weight[0]))

    def binary_dims(self, a: Dim, b: Dim) -> None:
        a, b = self.live(a), self.live(b)
        if a is not None and b is not None and a[1] == b[1]:
            self.union(a[0], b[0])
        else:
            self.fix(a)
            self.fix(b)

    # result ----------------------------------------------------------------------------------
    def build(self) -> PermutationSpec:
        axes: dict[int, list[AxisRef]] = {}
        for (name, axis), (group, inner) in self.entries.items():
            root = self.find(group)
            if root != _FIXED:
                axes.setdefault(root, []).append(AxisRef(name, axis, inner))
        points: dict[int, list[ActivationRef]] = {}
        for group, refs in self.points.items():
            root = self.find(group)
            if root != _FIXED:
                points.setdefault(root, []).extend(r for r in refs if r not in points.get(root, []))
        groups: dict[str, PermutationGroup] = {}
        for root in sorted(axes):
            name = self.creator[root]
            while name in groups:
                name += "'"
            groups[name] = PermutationGroup(
                size=self.size[root],
                axes=tuple(axes[root]),
                chunk=self.chunk[root],
                activations=tuple(points.get(root, ())),
            )
        shapes = {
            ref.name: tuple(self.state[ref.name].shape) for g in groups.values() for ref in g.axes
        }
        return PermutationSpec(groups=groups, shapes=shapes, fixed=self.fixed)
