"""The three feature layouts a product reads and writes, and the copy-free views between them and the caller's
tensors (see the package docstring)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

# The three feature layouts a product reads and writes (see the package docstring).
NODE_MAJOR, FEATURE_MAJOR, BATCHED = "node_major", "feature_major", "batched"


def _nodes_of(m: Tensor, layout: str) -> int:
    return m.size(0) if layout == NODE_MAJOR else m.size(1)


def _canonical(x: Tensor, node_dim: int) -> Tuple[Tensor, str]:
    """A copy-free matrix view of ``x`` in the layout its memory already has (a copy only when ``x`` has
    none of the three layouts)."""
    n = x.size(node_dim)
    if node_dim == 0:
        return x.reshape(n, -1).contiguous(), NODE_MAJOR
    b = x.size(0)
    if b == 1 and x.is_contiguous():
        return x.view(n, -1), NODE_MAJOR
    if x.transpose(0, 1).is_contiguous():
        return x.transpose(0, 1).reshape(n, -1), NODE_MAJOR
    last = x.movedim(1, -1)
    if last.is_contiguous():
        return last.reshape(-1, n), FEATURE_MAJOR
    if x.is_contiguous():
        return x.view(b, n, -1), BATCHED
    # Read in place only in single and double precision: torch 2.13's CPU matmul in bfloat16 reads past the
    # end of a row-strided operand's rows (the columns after the prefix leak into the product).
    if x.dtype in (torch.float32, torch.float64):
        rows = _row_strided(last)
        if rows is not None:
            return rows, FEATURE_MAJOR
        batched = _batch_strided(x)
        if batched is not None:
            return batched, BATCHED
    return last.reshape(-1, n).contiguous(), FEATURE_MAJOR


def _row_strided(last: Tensor) -> Optional[Tensor]:
    """``last`` ``[*, n]`` as a ``[F, n]`` matrix with unit column stride and one row stride of at least
    ``n`` (the first nodes of a state with the nodes innermost), or :obj:`None`."""
    n = last.size(-1)
    if last.stride(-1) != 1 or last.dim() < 2:
        return None
    row = last.stride(-2)
    expected = row
    for size, stride in zip(reversed(last.shape[:-1]), reversed(last.stride()[:-1])):
        if size != 1 and stride != expected:
            return None
        expected *= size
    if row < n:
        return None
    return last.as_strided((last.numel() // n, n), (row, 1))


def _batch_strided(x: Tensor) -> Optional[Tensor]:
    """``x`` ``[B, n, *]`` as a ``[B, n, F]`` tensor with contiguous node rows and a batch stride of at least
    ``n * F`` (the first nodes of a batched state), or :obj:`None`."""
    b, n = x.size(0), x.size(1)
    inner = x[0, 0] if b and n else None
    if inner is None or not inner.is_contiguous():
        return None
    f = inner.numel()
    if (n > 1 and x.stride(1) != f) or x.stride(0) < n * f:
        return None
    return x.as_strided((b, n, f), (x.stride(0), f, 1))


def _as_layout(g: Tensor, node_dim: int, layout: str) -> Tensor:
    """``g`` (the shape of an output) as a contiguous matrix in ``layout``."""
    n = g.size(node_dim)
    if layout == NODE_MAJOR:
        return g.movedim(node_dim, 0).reshape(n, -1).contiguous()
    if layout == FEATURE_MAJOR:
        return g.movedim(1, -1).reshape(-1, n).contiguous()
    return g.reshape(g.size(0), n, -1).contiguous()


def _shaped(m: Tensor, layout: str, shape: Tuple[int, ...], node_dim: int) -> Tensor:
    """The matrix ``m`` (in ``layout``) viewed with the caller's ``shape``."""
    if node_dim == 0 or layout == BATCHED:
        return m.view(shape)
    n, b, rest = shape[1], shape[0], shape[2:]
    if layout == NODE_MAJOR:
        return m.view((n, b) + rest).transpose(0, 1)
    return m.view((b,) + rest + (n,)).movedim(-1, 1)


def _node_major(m: Tensor, layout: str) -> Tensor:
    """A node-major ``[n, F]`` matrix (a transposed view for feature-major input, a copy for batched)."""
    if layout == NODE_MAJOR:
        return m
    if layout == FEATURE_MAJOR:
        return m.t()
    return m.transpose(0, 1).reshape(m.size(1), -1)
