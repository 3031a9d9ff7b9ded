"""The three feature layouts a product reads and writes, and the copy-free views between them and the caller's
tensors (see the package docstring)."""

from __future__ import annotations

from typing import Tuple

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
    return last.reshape(-1, n).contiguous(), FEATURE_MAJOR


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
