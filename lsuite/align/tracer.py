"""Trace a model with ``torch.fx``, answering shape queries from a run on example inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from lsuite.errors import ConfigError


class _ShadowProxy(fx.Proxy):
    """Proxy that answers ``dim()``, ``size()`` and ``shape`` from the example run."""

    def _value(self) -> Tensor:
        value = self.tracer.values.get(self.node)  # type: ignore[attr-defined]
        if not isinstance(value, Tensor):
            raise TypeError(f"no example value for fx node {self.node.name!r}")
        return value

    def dim(self) -> int:
        return self._value().dim()

    def size(self, dim: int | None = None) -> Any:
        return self._value().size() if dim is None else self._value().size(dim)

    @property
    def shape(self) -> torch.Size:
        return self._value().shape


class _Tracer(fx.Tracer):
    """Tracer with concrete shape queries, ``fixed`` modules as leaves and named failures.

    The example inputs run alongside the trace, so ``dim()``/``size()``/``shape`` are concrete.
    """

    def __init__(self, inputs: tuple[Tensor, ...], fixed: Sequence[str]) -> None:
        super().__init__()
        self.inputs = list(inputs)
        self.fixed = tuple(fixed)
        self.values: dict[fx.Node, Any] = {}
        self.concrete = False

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.fixed or super().is_leaf_module(
            m, module_qualified_name
        )

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self.concrete:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ShadowProxy(node, self)

    def create_proxy(
        self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **kw: Any
    ) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **kw)
        try:
            self.values[proxy.node] = self._evaluate(kind, target, args, kwargs)
        except Exception:  # a value only answers shape queries; ops without one still trace
            self.values[proxy.node] = None
        return proxy

    def _evaluate(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        def concrete(value: Any) -> Any:
            if isinstance(value, fx.Proxy):
                return self.values.get(value.node)
            return value

        args = fx.node.map_aggregate(args, concrete)
        kwargs = fx.node.map_aggregate(kwargs, concrete)
        self.concrete = True
        try:
            return self._run(kind, target, args, kwargs)
        finally:
            self.concrete = False

    def _run(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        with torch.no_grad():
            if kind == "placeholder":
                return self.inputs.pop(0) if self.inputs else None
            if kind == "get_attr":
                value: Any = self.root
                for atom in str(target).split("."):
                    value = getattr(value, atom)
                return value
            if kind == "call_module":
                return self.root.get_submodule(str(target)).forward(*args, **kwargs)
            if kind == "call_function":
                return target(*args, **kwargs)
            if kind == "call_method":
                return getattr(args[0], str(target))(*args[1:], **kwargs)
        return None

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if self.concrete:
            return forward(*args, **kwargs)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as error:
            if not hasattr(error, "lsuite_module"):
                error.lsuite_module = (self.path_of_module(m) or "<root>", type(m).__name__)
            raise


def trace(
    model: nn.Module, example_inputs: tuple[Tensor, ...], fixed: Sequence[str] = ()
) -> fx.GraphModule:
    """Trace ``model`` symbolically into a graph module (``fixed`` modules stay leaves).

    Shape queries (``x.dim()``, ``x.size(1)``, ``x.shape``) are answered from a run on
    ``example_inputs``, so they become constants of the graph.

    Args:
        model: the network; it is traced and run as is (pass a copy in eval mode).
        example_inputs: positional inputs of the forward.
        fixed: module names kept as opaque leaves.

    Returns:
        The ``torch.fx.GraphModule``.

    Raises:
        ConfigError: when ``torch.fx`` cannot trace the model, naming the module.
    """
    tracer = _Tracer(example_inputs, fixed)
    try:
        graph = tracer.trace(model)
    except Exception as error:
        where, kind = getattr(error, "lsuite_module", ("<root>", type(model).__name__))
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"permutation_spec: torch.fx cannot trace module {where!r} ({kind}): {first}; "
            f"pass fixed=[{where!r}] to keep it opaque"
        ) from error
    return fx.GraphModule(tracer.root, graph)
