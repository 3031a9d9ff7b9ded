"""A PyG ``MessagePassing`` operator whose edges are chosen by DNW top-k on the edge weights."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from neuralgraphs._compat import import_pyg
from neuralgraphs.propagate import BACKENDS, propagate
from neuralgraphs.wiring.select import topk_indices
from neuralgraphs.wiring.wiring import activate

MessagePassing = import_pyg().nn.MessagePassing


class DNWConv(MessagePassing):
    r"""Weighted sum over the :math:`k` incoming edges of largest :math:`|w|`
    (`Discovering Neural Wirings <https://arxiv.org/abs/1906.00586>`_).

    .. math::
        \mathbf{x}'_t = \sum_{e = (s \to t) \in \operatorname{top}_k(|\mathbf{w}|)} w_e \, \mathbf{x}_s

    The selection is straight-through: every edge of ``edge_index`` receives the gradient
    :math:`\partial L / \partial w_e = \langle \partial L / \partial \mathbf{x}'_t, \mathbf{x}_s \rangle` it
    would get if it were selected, so unselected edges can grow into the top-k.  The product runs on the
    library's core (:func:`~neuralgraphs.propagate.propagate`), never materialising one message per edge.

    Args:
        k: number of edges kept.  (give ``k`` or ``density``)
        density: fraction of the edges kept, in ``(0, 1]``.
        backend: ``"auto"``, ``"dense"`` or ``"csr"``.  (default: ``"auto"``)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, edge indices :math:`(2, |\mathcal{E}|)`,
          edge weights :math:`(|\mathcal{E}|)`
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """

    def __init__(self, k: Optional[int] = None, density: Optional[float] = None, backend: str = "auto") -> None:
        super().__init__(aggr="add")
        if (k is None) == (density is None):
            raise ValueError("budget: give exactly one of k (a count) or density (a fraction kept)")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise ValueError(f"k: expected a non-negative int, got {k!r}")
        if density is not None and (isinstance(density, bool) or not isinstance(density, (int, float))
                                    or not 0.0 < float(density) <= 1.0):
            raise ValueError(f"density: expected a fraction kept in (0, 1], got {density!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.k, self.density, self.backend = k, density, backend
        self._hint: Optional[float] = None

    def reset_parameters(self) -> None:
        """Nothing to reset: the weights are the caller's ``edge_weight``."""
        self._hint = None

    def num_kept(self, num_edges: int) -> int:
        if self.k is not None:
            if self.k > num_edges:
                raise ValueError(f"k: budget of {self.k} edges is larger than the {num_edges} edges given")
            return self.k
        if num_edges == 0:
            return 0
        return max(1, int(round(float(self.density) * num_edges)))

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a tensor of node features, got {type(x).__name__}")
        if not isinstance(edge_index, Tensor):
            raise TypeError(f"edge_index: expected an int64 tensor of shape [2, E], got {type(edge_index).__name__}")
        if not isinstance(edge_weight, Tensor) or edge_weight.dim() != 1:
            raise ValueError("edge_weight: expected a 1-D tensor with one weight per edge")
        if edge_index.dim() != 2 or edge_weight.numel() != edge_index.size(1):
            raise ValueError(f"edge_weight: expected {edge_index.size(-1)} weights (one per edge), "
                             f"got {edge_weight.numel()}")
        k = self.num_kept(edge_weight.numel())
        with torch.no_grad():
            index, self._hint = topk_indices(edge_weight.detach().abs().float(), k, self._hint)
        active = activate(edge_weight, index, straight_through=True)
        return propagate(x, edge_index, active.weight, num_nodes=x.size(0), active=index, backend=self.backend,
                         weights_masked=True)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:  # pragma: no cover - forward bypasses it
        return edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        budget = f"k={self.k}" if self.k is not None else f"density={self.density}"
        return f"{self.__class__.__name__}({budget}, backend={self.backend!r})"
