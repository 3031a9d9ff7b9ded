r"""Wirings: modules that turn one weight per candidate edge into the active edges of a step.

Every wiring maps the candidate weights :math:`w \in \mathbb{R}^E` to :class:`ActiveEdges`: the effective
weights :math:`\tilde w = w \odot m` (zero off the active set), the active indices (ascending, so in CSR
order) and the mask :math:`m`.  They differ in how :math:`m` is chosen and in the gradient of :math:`\tilde w`:

* :class:`TopKWiring` (DNW): :math:`m` = the :math:`k` largest :math:`|w|` every step, and the gradient is
  straight-through, :math:`\partial L / \partial w = \partial L / \partial \tilde w` for **every** candidate,
  so an inactive edge receives the gradient it would get if it were active and can grow into the top-k.
* :class:`RandomWiring`: a fixed random set with the same budget; only active edges get gradients.
* :class:`CompleteWiring`: every candidate active.
* :class:`FixedWiring`: a set chosen once (top-k of the initial weights: DNW "no update"; of trained
  weights: fine-tuning and lottery tickets) and never changed.

Budgets are a count ``k`` (at least 1) or a ``density`` (fraction of candidates kept), over the whole graph
(``scope="global"``), per target node (``"per_node"``) or per block of target nodes (``"per_block"``).  A
per-node or per-block count must fit every node / block that has candidates (see :func:`resolve_budget`);
those without any, like input nodes, keep none.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import numpy as np

import torch
from torch import Tensor, nn

from neuralgraphs._compat import eager_in_compile
from neuralgraphs._checks import check_bool
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.wiring.select import SegmentLayout, topk_indices, topk_masks

SCOPES = ("global", "per_node", "per_block")


class ActiveEdges(NamedTuple):
    """The active edges of one step.

    Attributes:
        weight: effective weight per candidate ``[E]`` (shaped like the weights given: a layer's weight
            tensor stays in its shape), zero for inactive candidates.
        index: indices of the active candidates, ascending (CSR order), ``[k]``.
        mask: boolean ``[E]``, true for active candidates.
        straight_through: whether every candidate receives a gradient (DNW) or only active ones.
    """

    weight: Tensor
    index: Tensor
    mask: Tensor
    straight_through: bool


class _StraightThroughMask(torch.autograd.Function):
    """Forward ``w * mask``; backward passes the gradient to every candidate unchanged."""

    @staticmethod
    def forward(ctx, weight: Tensor, mask: Tensor) -> Tensor:
        # a select, not a product: a boolean mask would first be copied to the weight's dtype
        return torch.where(mask, weight, weight.new_zeros(())) if mask.dtype == torch.bool else weight * mask

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def straight_through_mask(weight: Tensor, mask: Tensor) -> Tensor:
    """``weight * mask`` in the forward pass, identity in the backward pass.  A boolean ``mask`` is used as
    is (no float copy of it is made)."""
    return _StraightThroughMask.apply(weight, mask)


def activate(weight: Tensor, index: Tensor, straight_through: bool) -> ActiveEdges:
    """The :class:`ActiveEdges` of ``weight`` when the candidates ``index`` (ascending) are active."""
    with torch.no_grad():
        mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
        mask[index] = True
    shaped = mask.view(weight.shape)
    if straight_through:
        eff = straight_through_mask(weight, shaped)
    else:
        eff = weight * shaped
    return ActiveEdges(eff, index, mask, straight_through)


def _check_graph(graph: Union[NeuralGraph, int]) -> int:
    """The number of candidates of ``graph``: a :class:`NeuralGraph`, or a count of candidates for wirings of
    layers whose candidates are the entries of a weight tensor (sparse layers, :class:`~neuralgraphs.nn.DNWConv`)."""
    if isinstance(graph, NeuralGraph):
        return graph.num_edges
    if isinstance(graph, (int, np.integer)) and not isinstance(graph, bool):
        if graph < 0:
            raise ValueError(f"graph: expected a non-negative number of candidate edges, got {graph}")
        return int(graph)
    raise TypeError(f"graph: expected a NeuralGraph or a number of candidate edges (int), got {type(graph).__name__}")


def _check_budget(k: Optional[int], density: Optional[float]) -> None:
    if (k is None) == (density is None):
        raise ValueError("budget: give exactly one of k (a count) or density (a fraction kept)")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k: expected an int, got {type(k).__name__}")
        if k < 1:
            # k = 0 would silence every edge: the network would output the same zeros for every input
            raise ValueError(f"k: expected at least 1 active edge, got {k}")
    else:
        if isinstance(density, bool) or not isinstance(density, (int, float)):
            raise TypeError(f"density: expected a float in (0, 1], got {type(density).__name__}")
        if not 0.0 < float(density) <= 1.0:
            raise ValueError(f"density: expected a fraction kept in (0, 1], got {density}")


def _global_total(num_edges: int, k: Optional[int], density: Optional[float]) -> int:
    """Active edges of a checked global budget over ``num_edges`` candidates (0 when there are none)."""
    if k is not None:
        if k > num_edges:
            raise ValueError(f"k: budget of {k} edges is larger than the {num_edges} candidate edges")
        return k
    return max(1, int(round(float(density) * num_edges))) if num_edges else 0


def _segment_name(graph: NeuralGraph, scope: str, segment: int, labels: Optional[Tensor]) -> str:
    if scope == "per_block":
        return f"block {int(labels[segment])}"
    if graph.node_labels is not None and graph.node_labels[segment] != segment:
        return f"node {segment} (label {graph.node_labels[segment]!r})"
    return f"node {segment}"


def resolve_budget(graph: NeuralGraph, k: Optional[int] = None, density: Optional[float] = None,
                   scope: str = "global") -> Tuple[int, Optional[SegmentLayout]]:
    """Turn a budget into the total number of active edges and, for segmented scopes, their layout.

    Args:
        graph: the candidate graph, or the number of candidates (a count has only the global scope).
        k: number of edges kept, at least 1: over the whole graph, or in each node / block that has
            candidates for the segmented scopes (at most the fewest candidates of such a node / block; nodes
            and blocks without candidates, like input nodes, keep none).
        density: fraction of candidates kept, in ``(0, 1]`` (globally or in each node / block, at least one
            edge in each node / block that has candidates).
        scope: ``"global"``, ``"per_node"`` (segments = target nodes) or ``"per_block"`` (segments = blocks
            of target nodes, from ``graph.blocks``).

    Returns:
        ``(total, layout)``: total active edges and a :class:`SegmentLayout` (:obj:`None` for global).

    Raises:
        ValueError: if both or neither of ``k`` / ``density`` is given, if they are out of range (``k < 1``
            included), if ``k`` exceeds the candidate set (global) or the candidates of a node / block that
            has some (segmented scopes), or if ``per_block`` is asked of a graph without blocks.
    """
    num_candidates = _check_graph(graph)
    if scope not in SCOPES:
        raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")
    _check_budget(k, density)
    if scope == "global":
        return _global_total(num_candidates, k, density), None
    if not isinstance(graph, NeuralGraph):
        raise ValueError(f"scope: {scope!r} needs a NeuralGraph (its target nodes or blocks); candidates known "
                         "only by their count have the 'global' scope")
    labels = None
    if scope == "per_node":
        segment = graph.edge_index[1]
        num_seg = graph.num_nodes
    else:
        if graph.blocks is None:
            raise ValueError("scope: 'per_block' needs a graph with blocks (see blocked_dag)")
        labels, blocks = torch.unique(graph.blocks, return_inverse=True)
        segment = blocks[graph.edge_index[1]]
        num_seg = labels.numel()
    counts = torch.bincount(segment, minlength=num_seg)
    if k is not None:
        # A segment without candidates (an input node, the input block) needs no budget; any other must
        # hold k candidates, or the budget would be cut silently there (and keep everything when k
        # exceeds every segment).
        fewest = int(torch.where(counts > 0, counts, counts.max() + 1).argmin())
        if k > int(counts[fewest]):
            unit, c = ("node" if scope == "per_node" else "block"), int(counts[fewest])
            raise ValueError(
                f"k: scope={scope!r} keeps k={k} edges in every {unit} with candidate edges, but "
                f"{_segment_name(graph, scope, fewest, labels)} has only {c} candidate{'s' * (c != 1)}; "
                f"expected 1 <= k <= {c}, or density= to keep a fraction of each {unit}'s candidates")
        per = counts.clamp(max=k)  # k in every segment with candidates, 0 in the others
    else:
        per = torch.round(counts.double() * float(density)).long()
        per = torch.where(counts > 0, per.clamp(min=1), per)
    return int(per.sum()), SegmentLayout(segment, per)


class Wiring(nn.Module):
    """Base class of wirings.  Subclasses implement :meth:`select` (indices of the active candidates).

    A wiring built from a :class:`NeuralGraph` takes its candidate weights as one 1-D tensor; one built from
    a count of candidates (a layer's weight entries) takes them in any shape, read in row-major order.
    """

    straight_through: bool = False
    graph_based: bool = True

    def __init__(self, graph: NeuralGraph, k: Optional[int] = None, density: Optional[float] = None,
                 scope: str = "global") -> None:
        super().__init__()
        self.num_candidates = _check_graph(graph)
        self.graph_based = isinstance(graph, NeuralGraph)
        self.scope = scope
        self.num_active, self._layout = resolve_budget(graph, k=k, density=density, scope=scope)

    def select(self, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _check_weight(self, weight: Tensor) -> None:
        if not isinstance(weight, Tensor):
            raise TypeError(f"weight: expected a tensor, got {type(weight).__name__}")
        # A layer's weight tensor (a sparse conv's [out, in / groups, kh, kw]) is its candidates in row-major
        # order; a graph's candidates are one 1-D tensor.
        if weight.numel() != self.num_candidates or weight.dim() == 0 or (self.graph_based and weight.dim() != 1):
            raise ValueError(f"weight: expected {self.num_candidates} entries (one per candidate edge: shape "
                             f"[{self.num_candidates}], or a layer's weight tensor), got shape {list(weight.shape)}")

    # torch.compile runs the selection eagerly: its output size and the CPU path's search depend on the data
    @eager_in_compile
    def forward(self, weight: Tensor) -> ActiveEdges:
        """Select the active edges for this step and return them with the effective weights."""
        self._check_weight(weight)
        with torch.no_grad():
            index = self.select(weight.reshape(-1))
        return activate(weight, index, self.straight_through)

    def masked(self, weight: Tensor) -> Tensor:
        """This step's effective weights ``w * m`` alone, shaped like ``weight`` (what a layer multiplies
        with); the same selection and gradient as :meth:`forward`."""
        return self(weight).weight

    def extra_repr(self) -> str:
        return f"active={self.num_active}/{self.num_candidates}, scope={self.scope}"


class TopKWiring(Wiring):
    r"""Discovering Neural Wirings: the :math:`k` candidates of largest :math:`|w|`, re-chosen every step,
    with the straight-through gradient (`Wortsman et al., 2019 <https://arxiv.org/abs/1906.00586>`_).

    Selection runs on fp32 :math:`|w|`, ties go to the lower candidate index, and on CUDA it needs no host
    synchronisation.  On CPU the previous threshold narrows the search, which stays exact.

    Args:
        graph: the candidate graph, or the number of candidates (a count has only the global scope).
        k: number of active edges, at least 1 (in each node / block with candidates for the segmented
            scopes).  (give ``k`` or ``density``)
        density: fraction of candidates kept.
        scope: ``"global"``, ``"per_node"`` or ``"per_block"``.  (default: ``"global"``)
    """

    straight_through = True

    def __init__(self, graph: NeuralGraph, k: Optional[int] = None, density: Optional[float] = None,
                 scope: str = "global") -> None:
        super().__init__(graph, k=k, density=density, scope=scope)
        self._hint: Optional[float] = None
        self._bounds = None

    @classmethod
    def for_edges(cls, num_edges: int, k: Optional[int] = None, density: Optional[float] = None) -> "TopKWiring":
        """A global top-k wiring over ``num_edges`` candidates known only by their count: for operators whose
        edges are an input of each call (:class:`~neuralgraphs.nn.DNWConv`), not a :class:`NeuralGraph`.

        Args:
            num_edges: number of candidate edges; ``0`` is allowed with ``density`` (nothing to keep).
            k: number of active edges, ``1 <= k <= num_edges``.  (give ``k`` or ``density``)
            density: fraction of candidates kept, in ``(0, 1]``.

        Raises:
            TypeError, ValueError: on a count or budget of the wrong type or out of range.
        """
        if isinstance(num_edges, bool) or not isinstance(num_edges, int):
            raise TypeError(f"num_edges: expected an int, got {type(num_edges).__name__}")
        if num_edges < 0:
            raise ValueError(f"num_edges: expected a non-negative count, got {num_edges}")
        return cls(num_edges, k=k, density=density)

    def select(self, weight: Tensor) -> Tensor:
        scores = weight.detach().abs().float()
        if self._layout is not None:
            return self._layout.select(scores)
        index, self._hint = topk_indices(scores, self.num_active, self._hint)
        return index

    def masked(self, weight: Tensor) -> Tensor:
        if self._layout is not None or weight.dim() == 1:
            return super().masked(weight)
        # A layer's weight tensor (a sparse layer): the mask is all it needs, so no index list is built and
        # the search keeps to a narrow band around the last threshold (a fifth of the indexed selection's cost
        # on ResNet-50's weights).
        self._check_weight(weight)
        with torch.no_grad():
            scores = weight.detach().reshape(-1).abs().float()
            (mask,), self._bounds = topk_masks([scores], self.num_active, getattr(self, "_bounds", None))
        return straight_through_mask(weight, mask.view(weight.shape))


class _StoredWiring(Wiring):
    """A wiring whose active set is a buffer (restored by ``load_state_dict``)."""

    def __init__(self, graph: NeuralGraph, k=None, density=None, scope="global") -> None:
        super().__init__(graph, k=k, density=density, scope=scope)
        self._register_state()

    def _register_state(self) -> None:
        self.register_buffer("active_index", torch.zeros(self.num_active, dtype=torch.long))
        # Persisted so that a saved, not yet frozen lazy wiring stays lazy when loaded.
        self.register_buffer("frozen", torch.tensor(False))
        self._ready = False
        self._host_index: Optional[Tensor] = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "frozen"
        if key in state_dict:
            self._ready = bool(state_dict[key])
        index = state_dict.get(prefix + "active_index")
        self._host_index = index.clone() if isinstance(index, Tensor) and index.device.type == "cpu" else None

    def host_index(self) -> Optional[Tensor]:
        """A CPU copy of the fixed active set when one was made without reading device memory (the set was
        chosen or loaded on the host), else :obj:`None`.  Graph modules read level counts from it, so a
        fixed wiring never makes a step wait for a GPU."""
        return self._host_index if self._ready else None

    def _fix(self, index: Tensor) -> None:
        self.active_index = index.to(self.active_index.device)
        self._host_index = index.clone() if index.device.type == "cpu" else None
        self.frozen.fill_(True)
        self._ready = True

    def _choose(self, scores: Tensor) -> Tensor:
        if self._layout is not None:
            return self._layout.select(scores)
        return topk_indices(scores, self.num_active)[0]

    def select(self, weight: Tensor) -> Tensor:
        if not self._ready:
            self.freeze_from(weight)
        return self.active_index

    def freeze_from(self, weight: Tensor) -> None:
        raise NotImplementedError


class RandomWiring(_StoredWiring):
    """A fixed random wiring with the same budget (the paper's "random graph" baseline).

    The active set is the top-k of i.i.d. uniform scores drawn from ``seed``, so it honours per-node and
    per-block budgets exactly.  Only active edges receive gradients.

    Args:
        graph: the candidate graph, or the number of candidates (a count has only the global scope).
        k, density, scope: the budget, as for :class:`TopKWiring`.
        seed: random seed.  (default: ``0``)
    """

    def __init__(self, graph: NeuralGraph, k=None, density=None, scope="global", seed: int = 0) -> None:
        super().__init__(graph, k=k, density=density, scope=scope)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        gen = torch.Generator().manual_seed(seed)
        self._fix(self._choose(torch.rand(self.num_candidates, generator=gen)))


class CompleteWiring(_StoredWiring):
    """Every candidate is active (the complete-graph baseline)."""

    def __init__(self, graph: NeuralGraph) -> None:
        num_candidates = _check_graph(graph)
        nn.Module.__init__(self)
        # every candidate, also none at all (a graph without candidate edges): no budget to check
        self.num_candidates = self.num_active = num_candidates
        self.graph_based = isinstance(graph, NeuralGraph)
        self.scope, self._layout = "global", None
        self._register_state()
        self._fix(torch.arange(self.num_candidates))


class FixedWiring(_StoredWiring):
    """Top-k of given weights, chosen once and never updated.

    With ``weight=None`` the set is taken from the weights seen at the first forward pass, i.e. the
    initial weights: DNW's "no update" ablation.  Built from trained weights (:meth:`from_weights`), it
    fine-tunes a learned wiring; with the weights reset to their initial values it is a one-shot lottery
    ticket (see :func:`neuralgraphs.wiring.freeze_wiring`).

    By default only the active edges receive gradients.  With ``straight_through=True`` every candidate gets
    the gradient it would get if it were active, as under DNW, while the active set stays fixed: the
    gradients then show which edges DNW would swap in, and the model computes what a DNW step computes
    except the re-selection (``benchmarks/tiny.py`` uses it to separate the two costs).

    Args:
        graph: the candidate graph, or the number of candidates (a count has only the global scope).
        k, density, scope: the budget, as for :class:`TopKWiring`.
        weight: weights to choose from now.  (default: :obj:`None`, the first forward's weights)
        straight_through: give every candidate its straight-through gradient.  (default: :obj:`False`)
    """

    def __init__(self, graph: NeuralGraph, k=None, density=None, scope="global",
                 weight: Optional[Tensor] = None, straight_through: bool = False) -> None:
        super().__init__(graph, k=k, density=density, scope=scope)
        self.straight_through = check_bool("straight_through", straight_through)
        if weight is not None:
            self._check_weight(weight)
            self.freeze_from(weight)

    @classmethod
    def like(cls, wiring: Wiring, weight: Tensor, straight_through: bool = False) -> "FixedWiring":
        """A fixed wiring with the budget of ``wiring`` (same count, scope and segments), frozen to the
        top-k of ``weight``."""
        if not isinstance(wiring, Wiring):
            raise TypeError(f"wiring: expected a Wiring, got {type(wiring).__name__}")
        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        obj.straight_through = check_bool("straight_through", straight_through)
        obj.num_candidates, obj.scope = wiring.num_candidates, wiring.scope
        obj.graph_based = getattr(wiring, "graph_based", True)
        obj.num_active, obj._layout = wiring.num_active, wiring._layout
        obj._register_state()
        obj._check_weight(weight)
        obj.freeze_from(weight)
        return obj

    def extra_repr(self) -> str:
        return super().extra_repr() + (", straight_through=True" if self.straight_through else "")

    def freeze_from(self, weight: Tensor) -> None:
        """Fix the active set to the top-k of ``|weight|``."""
        self._fix(self._choose(weight.detach().reshape(-1).abs().float()))
