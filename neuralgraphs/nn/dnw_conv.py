"""A PyG ``MessagePassing`` operator whose edges are chosen by DNW top-k on the edge weights."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from neuralgraphs._compat import eager_in_compile, import_pyg
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.propagate import BACKENDS, propagate
from neuralgraphs.wiring.wiring import ActiveEdges, TopKWiring, _check_budget

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

    The edges are selected by a :class:`~neuralgraphs.wiring.TopKWiring` over the edges of the call (global
    top-k, ties to the lower edge index), :attr:`wiring`.  It is built for the edge count and budget of the
    first call and reused while calls have that many edges, so on CPU the previous threshold keeps narrowing
    the search; a call with another number of edges builds a new one.

    Like the graph modules, the operator exposes the wired-module protocol, about its last call:
    :attr:`wiring`, :attr:`weight` (the call's edge weights), :attr:`graph` (a
    :class:`~neuralgraphs.graph.NeuralGraph` of its edges) and :meth:`active`.  So
    :class:`~neuralgraphs.analysis.history.WiringHistory` records its selection (once it has been called:
    before, it has no weights) and :func:`~neuralgraphs.wiring.freeze_wiring` fixes it: the frozen wiring
    then keeps the same edge indices in every later call, which must have the same number of edges.

    Args:
        k: number of edges kept, at least 1.  (give ``k`` or ``density``)
        density: fraction of the edges kept, in ``(0, 1]``.
        backend: ``"auto"``, ``"dense"`` or ``"csr"``.  (default: ``"auto"``)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, edge indices :math:`(2, |\mathcal{E}|)`,
          edge weights :math:`(|\mathcal{E}|)`
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """

    def __init__(self, k: Optional[int] = None, density: Optional[float] = None, backend: str = "auto") -> None:
        super().__init__(aggr="add")
        _check_budget(k, density)
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.k, self.density, self.backend = k, density, backend
        self.wiring = None
        self._last: Optional[Tuple[int, Tensor, Tensor]] = None  # (num_nodes, edge_index, edge weights)
        self._graph: Optional[NeuralGraph] = None

    def reset_parameters(self) -> None:
        """Nothing to reset: the weights are the caller's ``edge_weight`` (the selection hint is dropped)."""
        wiring = getattr(self, "wiring", None)
        if isinstance(wiring, TopKWiring):
            wiring._hint = None

    def num_kept(self, num_edges: int) -> int:
        """Number of edges kept out of ``num_edges`` (with a density, 0 when there are none)."""
        if self.k is not None:
            if self.k > num_edges:
                raise ValueError(f"k: budget of {self.k} edges is larger than the {num_edges} edges given")
            return self.k
        if num_edges == 0:
            return 0
        return max(1, int(round(float(self.density) * num_edges)))

    @property
    def weight(self) -> Optional[Tensor]:
        """The edge weights of the last call, detached (they share its memory, so an in-place optimizer update
        of a parameter passed as ``edge_weight`` shows here); :obj:`None` before the first call."""
        return None if self._last is None else self._last[2]

    @property
    def graph(self) -> Optional[NeuralGraph]:
        """A :class:`~neuralgraphs.graph.NeuralGraph` of the last call's ``edge_index`` and node count (built on
        first access); :obj:`None` before the first call.

        Raises:
            ValueError: if those edges are not distinct and sorted by target, then source (the candidate order
                of a NeuralGraph): candidate ``i`` of the graph would then not be the edge of ``weight[i]``.
        """
        if self._last is None:
            return None
        if self._graph is None:
            num_nodes, edge_index, _ = self._last
            graph = NeuralGraph(num_nodes, edge_index)
            if not torch.equal(graph.edge_index, edge_index.detach().cpu()):
                raise ValueError(
                    "graph: the last call's edge_index is not sorted by target, then source, the candidate order "
                    "of a NeuralGraph, so graph.edge_index[:, i] would not be the edge of weight[i] and "
                    "wiring.index; pass the edges in that order (torch_geometric.utils.sort_edge_index(edge_index, "
                    "edge_weight, sort_by_row=False)) to read the graph")
            self._graph = graph
        return self._graph

    def active(self) -> ActiveEdges:
        """The :class:`~neuralgraphs.wiring.ActiveEdges` that :attr:`wiring` selects from :attr:`weight` (the
        last call's), without a gradient and leaving the selection hint as it was."""
        if self.wiring is None or self._last is None:
            raise ValueError("active: this DNWConv has not been called yet; its edges and weights are inputs of "
                             "each call, so there is nothing to select from")
        wiring = self.wiring
        hint = getattr(wiring, "_hint", None)
        with torch.no_grad():
            edges = wiring(self.weight)
        if isinstance(wiring, TopKWiring):
            wiring._hint = hint
        return edges

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
        active = self._select(x.size(0), edge_index, edge_weight)
        return propagate(x, edge_index, active.weight, num_nodes=x.size(0), active=active.index, backend=self.backend,
                         weights_masked=True)

    # torch.compile runs it eagerly: it may build a module, and it keeps the call's tensors
    @eager_in_compile
    def _select(self, num_nodes: int, edge_index: Tensor, edge_weight: Tensor) -> ActiveEdges:
        num_edges = edge_weight.numel()
        wiring = self.wiring
        if wiring is None or wiring.num_candidates != num_edges:
            if wiring is not None and not isinstance(wiring, TopKWiring):
                raise ValueError(
                    f"edge_weight: this DNWConv's wiring is a {type(wiring).__name__} fixed to "
                    f"{wiring.num_candidates} edges (see freeze_wiring), got {num_edges}; a fixed wiring keeps "
                    "edge indices, so every call needs the edges it was chosen from")
            self.num_kept(num_edges)  # names the call's edges when k exceeds them
            self.wiring = wiring = TopKWiring.for_edges(num_edges, k=self.k, density=self.density)
        self._last = (num_nodes, edge_index, edge_weight.detach())
        self._graph = None
        return wiring(edge_weight)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:  # pragma: no cover - forward bypasses it
        return edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        budget = f"k={self.k}" if self.k is not None else f"density={self.density}"
        return f"{self.__class__.__name__}({budget}, backend={self.backend!r})"
