"""Weight matching: coordinate descent over permutation groups with linear assignment.

Ainsworth, Hayase, Srinivasa (2023), "Git Re-Basin: Merging Models modulo Permutation Symmetries".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from lsuite.align.apply import apply_permutation, identity_perms, permute_axis
from lsuite.align.apply import invert as _invert
from lsuite.align.spec import AxisRef, PermutationSpec, check_spec
from lsuite.errors import require


@dataclass(frozen=True)
class WeightMatchingResult:
    """Permutations that align ``state_b`` to ``state_a`` and the objective after each sweep.

    Args:
        perms: group name -> ``(C,)`` int64 permutation, to apply to ``b`` with
            `apply_permutation`.
        objective: ``sum_k <a_k, permuted b_k>`` over every tensor the spec names: entry 0 before
            any update, then one entry after each sweep over the groups (non-decreasing).
        iterations: sweeps run (the last one changed nothing unless ``max_iter`` was reached).
    """

    perms: dict[str, Tensor]
    objective: list[float]
    iterations: int


def channel_matrix(tensor: Tensor, ref: AxisRef, channels: int) -> Tensor:
    """Return ``tensor`` as a ``(C, -1)`` matrix with the group's channels as rows.

    Args:
        tensor: the parameter or buffer.
        ref: the axis the group acts on.
        channels: the group's size ``C``.

    Returns:
        ``(C, numel // C)`` view-or-copy of ``tensor``.
    """
    axis = ref.axis
    shape = tensor.shape
    outer = shape[axis] // (channels * ref.inner)
    blocks = tensor.reshape(*shape[:axis], outer, channels, ref.inner, *shape[axis + 1 :])
    return blocks.movedim(axis + 1, 0).reshape(channels, -1)


def solve_assignment(scores: Tensor, chunk: int) -> Tensor:
    """Return the permutation maximising ``sum_i scores[i, perm[i]]`` within diagonal chunks.

    Args:
        scores: ``(C, C)`` similarity of unit ``i`` of ``a`` to unit ``j`` of ``b``.
        chunk: the permutation maps each block of ``chunk`` consecutive indices onto itself.

    Returns:
        ``(C,)`` int64 permutation.
    """
    # minimise the negated scores: scipy would negate a copy itself for ``maximize=True``
    cost = np.negative(scores.detach().to(torch.float64).cpu().numpy())
    size = cost.shape[0]
    if chunk >= size:
        return torch.from_numpy(linear_sum_assignment(cost)[1].astype(np.int64))
    perm = np.empty(size, dtype=np.int64)
    for start in range(0, size, chunk):
        block = np.ascontiguousarray(cost[start : start + chunk, start : start + chunk])
        _, cols = linear_sum_assignment(block)
        perm[start : start + chunk] = cols + start
    return torch.from_numpy(perm)


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(threads)``, restoring the old count after.

    Args:
        threads: intra-op threads inside the body; ``None`` leaves the setting alone.

    Yields:
        Nothing.
    """
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tolerance(dtype: torch.dtype) -> float:
    # A gain below this is rounding noise; treating it as an improvement can cycle forever.
    return 1e-12 if dtype == torch.float64 else 1e-6


def _dot(a: Tensor, b: Tensor) -> float:
    return float(torch.dot(a.reshape(-1), b.reshape(-1)))


class _Block:
    """One tensor's contribution to one group's scores, kept up to date cheaply.

    Scores are kept transposed, ``B A^T`` with ``b``'s channels as rows, so reordering them
    after the group's own permutation moved is a row gather. When other groups moved a few
    columns of ``B``, a low-rank correction over the changed columns replaces the full product
    (refreshed in full every few updates to bound rounding drift).
    """

    def __init__(self, rows: Tensor) -> None:
        self.rows = rows  # (C, K) reference channels
        self.key: tuple[int, ...] | None = None
        self.cached = torch.empty(0)
        self.columns = torch.empty(0)
        self.perm = torch.empty(0, dtype=torch.int64)
        self.updates = 0

    def scores(self, key: tuple[int, ...], perm: Tensor, columns: Callable[[], Tensor]) -> Tensor:
        """Return the transposed ``(C, C)`` scores for the current permutations.

        Args:
            key: versions of the other groups acting on the tensor.
            perm: the group's current permutation.
            columns: builds the current ``(C, K)`` channel matrix of ``b``.

        Returns:
            ``columns() @ rows.T`` (row ``j``: unit ``j`` of the permuted ``b``).
        """
        if self.key is None:
            now = columns()
            out = now @ self.rows.T
            self.updates = 0
        else:
            same = torch.equal(perm, self.perm)
            reorder = None if same else _invert(self.perm)[perm]
            if key == self.key:
                return self.cached if same else self.cached[reorder]
            now = columns()
            old = self.columns if same else self.columns[reorder]
            moved = (now != old).any(0).nonzero().squeeze(1)
            if 2 * moved.numel() < now.shape[1] and self.updates < 8:
                delta = now[:, moved] - old[:, moved]
                base = self.cached if same else self.cached[reorder]
                out = base + delta @ self.rows[:, moved].T
                self.updates += 1
            else:
                out = now @ self.rows.T
                self.updates = 0
        self.key, self.cached, self.columns, self.perm = key, out, now, perm
        return out


def weight_matching(
    spec: PermutationSpec,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    max_iter: int = 100,
    seed: int = 0,
    init_perms: Mapping[str, Tensor] | None = None,
    threads: int | None = 1,
) -> WeightMatchingResult:
    """Find permutations of ``b`` maximising its inner product with ``a`` (coordinate descent).

    Each sweep visits the groups in a random order drawn from ``torch.Generator(seed)``; a group's
    permutation is the linear assignment (``scipy.optimize.linear_sum_assignment``, maximise) of
    ``sum_k A_k B_k^T`` over the tensors it acts on, with every other group held at its current
    permutation. A step counts as an improvement when it gains more than 1e-6 (float32) or
    1e-12 (float64) of the current score, so rounding cannot cycle. Sweeps stop when one changes
    nothing, or after ``max_iter``. Every tensor the spec names counts, parameters and buffers
    (BatchNorm running statistics) alike.

    The result equals the plain loop's (Ainsworth et al.'s ``weight_matching``, up to rounding)
    with less work: score blocks are cached and corrected for the columns other groups moved,
    and a group none of whose neighbours moved since it was last solved is skipped.

    Args:
        spec: the permutation spec (e.g. from `permutation_spec`).
        state_a: the reference state dict.
        state_b: the state dict to permute (same keys and shapes).
        max_iter: most sweeps, >= 1.
        seed: seed of the visiting order.
        init_perms: starting permutations (identity by default).
        threads: torch intra-op threads during the descent (restored after); ``None`` keeps the
            current setting. The products are small (C x K by K x C) and half the time is the
            single-threaded assignment, so one thread is as fast on an idle machine and several
            times faster on a loaded one (threads waiting on each other at every op).

    Returns:
        The permutations and the objective per sweep.

    Raises:
        ConfigError: if ``max_iter`` or ``threads`` is not a positive int or the spec does not
            fit the states.
    """
    require(isinstance(max_iter, int) and max_iter >= 1, "max_iter", max_iter, "an int >= 1")
    require(
        threads is None or (isinstance(threads, int) and threads >= 1),
        "threads",
        threads,
        "None or an int >= 1",
    )
    check_spec(spec, state_a)
    check_spec(spec, state_b)
    with intra_op_threads(threads):
        return _descend(spec, state_a, state_b, max_iter, seed, init_perms)


def _descend(
    spec: PermutationSpec,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    max_iter: int,
    seed: int,
    init_perms: Mapping[str, Tensor] | None,
) -> WeightMatchingResult:
    names = list(spec.groups)
    perms = {k: v.clone() for k, v in (init_perms or identity_perms(spec)).items()}
    acting: dict[str, set[str]] = {}
    for name, group in spec.groups.items():
        for ref in group.axes:
            acting.setdefault(ref.name, set()).add(name)
    version = dict.fromkeys(names, 0)
    neighbours = {
        name: sorted({h for ref in group.axes for h in acting[ref.name]} - {name})
        for name, group in spec.groups.items()
    }
    # a group whose neighbours did not move since it was last solved cannot improve: skip it
    solved_at: dict[str, tuple[int, ...]] = {}
    with torch.no_grad():
        current = apply_permutation(spec, perms, state_b)
        blocks = {
            name: [_Block(channel_matrix(state_a[ref.name], ref, group.size)) for ref in group.axes]
            for name, group in spec.groups.items()
        }
        generator = torch.Generator().manual_seed(seed)
        keys = sorted(acting)
        inner = {k: _dot(state_a[k], current[k]) for k in keys}
        objective = [sum(inner.values())]
        iterations = 0
        for _ in range(max_iter):
            iterations += 1
            changed = False
            for index in torch.randperm(len(names), generator=generator).tolist():
                name = names[index]
                group = spec.groups[name]
                around = tuple(version[h] for h in neighbours[name])
                if solved_at.get(name) == around:
                    continue
                solved_at[name] = around
                transposed = torch.zeros(())
                for block, ref in zip(blocks[name], group.axes, strict=True):
                    others = tuple(version[h] for h in sorted(acting[ref.name] - {name}))
                    transposed = transposed + block.scores(
                        others,
                        perms[name],
                        lambda r=ref, c=group.size: channel_matrix(current[r.name], r, c),
                    )
                scores = transposed.T
                step = solve_assignment(scores, group.chunk)
                gain = scores[torch.arange(group.size), step].sum() - scores.diagonal().sum()
                if gain <= _tolerance(scores.dtype) * scores.diagonal().abs().sum():
                    continue
                changed = True
                version[name] += 1
                perms[name] = perms[name][step]
                for ref in group.axes:
                    current[ref.name] = permute_axis(current[ref.name], ref.axis, step, ref.inner)
                for k in {ref.name for ref in group.axes}:
                    inner[k] = _dot(state_a[k], current[k])
            objective.append(sum(inner[k] for k in keys))
            if not changed:
                break
    return WeightMatchingResult(perms=perms, objective=objective, iterations=iterations)
