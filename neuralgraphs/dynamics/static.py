"""Static neural graphs: a DAG evaluated once, one topological level at a time."""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import maps_zero_to_zero
from neuralgraphs.propagate import PropagationPlan
from neuralgraphs._compat import eager_in_compile
from neuralgraphs.dynamics._state import _State, level_pieces
from neuralgraphs.wiring import Wiring, straight_through_mask as silence
from neuralgraphs.dynamics.base import WiredGraph

# A level whose candidate edges come from at most this fraction of the nodes before it reads those nodes
# alone (one gathered copy) when nodes carry several channels.  The product over the whole prefix moves
# all ``r`` earlier nodes' maps forward and backward (about 5 passes over ``r`` maps, by count); the
# gathered one about 8 passes over its ``s`` sources, so it pays below about s = r / 2.  On the RandWire
# stage of benchmarks/randwire.py (32 nodes of 78 x 28 x 28, 2-10 sources among 3-31 earlier nodes per
# level; CPU, batch 4 / 16) the step against node by node was 0.77x / 0.59x without gathering and 1.07x /
# 0.81x with it (10 of 12 levels gathered); gathering the last two as well moved it within noise.
GATHER_MAX_FRACTION = 0.5


class StaticGraph(WiredGraph):
    r"""A static neural graph (DNW's SNG): a DAG evaluated once in topological order.

    .. math::
        \mathbf{I}_v = \mathbf{x}_v [v \in \text{inputs}] + \sum_{(u \to v)\ \text{active}} w_{uv} \mathbf{Z}_u,
        \qquad \mathbf{Z}_v = f_v(\mathbf{I}_v)

    All nodes of one topological level of the **candidate** graph are computed together: one graph product
    and one call of the node operation per level.  Output nodes read out :math:`\mathbf{Z}_v`.

    The nodes are renumbered once so that every level is a contiguous range; :attr:`graph` is the renumbered
    graph (its ``node_labels`` name the original nodes) and :attr:`weight` follows its candidate order.

    Args:
        graph: a DAG (cycles or self-loops raise, naming one cycle).
        node_op: node operation ``f`` (e.g. :func:`~neuralgraphs.nodes.image_node_op` with
            ``order="norm-relu-conv"``).
        wiring, k, density, scope, seed, backend, weight_transform: see
            :class:`~neuralgraphs.dynamics.base.WiredGraph`.

    Shapes:
        input ``[B, len(graph.inputs), *]``; output ``[B, len(graph.outputs), *]``.
    """

    def __init__(self, graph: NeuralGraph, node_op: nn.Module, wiring: Union[str, Wiring, None] = "dnw", *,
                 k: Optional[int] = None, density: Optional[float] = None, scope: str = "global",
                 seed: int = 0, backend: str = "auto",
                 weight_transform: Optional[str] = None) -> None:
        if not isinstance(graph, NeuralGraph):
            raise TypeError(f"graph: expected a NeuralGraph, got {type(graph).__name__}")
        graph.check_acyclic()
        perm = torch.argsort(graph.levels(), stable=True)
        graph = graph.relabel(perm)
        super().__init__(graph, node_op, wiring, k=k, density=density, scope=scope, seed=seed, backend=backend,
                         weight_transform=weight_transform)
        self._levels = self._level_structure(graph)
        level_start = torch.tensor([lv[0] for lv in self._levels])[graph.levels()]
        # Edges with targets numbered inside their level: a level's product is [n_level, nodes before it].
        local = graph.edge_index.clone()
        local[1] -= level_start[local[1]]
        self.register_buffer("local_edge_index", local, persistent=False)
        # Levels fed by few earlier nodes: those nodes' ids, and the level's edges with sources renumbered
        # among them (a monotone renumbering: the edges stay sorted by (target, source)).
        gathered, sources, self._gather = local.clone(), [], []
        bounds = [lv[1] for lv in self._levels]
        at = 0
        for (r0, _, c0, c1) in self._levels:
            used = torch.unique(local[0, c0:c1])
            if c1 > c0 and used.numel() <= GATHER_MAX_FRACTION * r0:
                gathered[0, c0:c1] = torch.searchsorted(used, local[0, c0:c1])
                sources.append(used)
                self._gather.append((at, at + used.numel(), level_pieces(used, bounds)))
                at += used.numel()
            else:
                self._gather.append(None)
        self.register_buffer("gather_edge_index", gathered, persistent=False)
        self.register_buffer("gather_sources", torch.cat(sources) if sources else torch.zeros(0, dtype=torch.long),
                             persistent=False)
        # the outputs are read in ascending order, then put in the graph's order
        out_sorted, order = torch.sort(graph.outputs)
        self.register_buffer("_outputs_sorted", out_sorted, persistent=False)
        self._output_pieces = level_pieces(out_sorted, bounds)
        self._outputs_in_order = bool((order == torch.arange(order.numel())).all())
        self.register_buffer("_output_unsort", torch.argsort(order), persistent=False)
        # Input nodes sorted by node id, so each level's inputs are one contiguous range.
        by_node = torch.argsort(graph.inputs)
        self.register_buffer("inject_rows", graph.inputs[by_node] - level_start[graph.inputs[by_node]],
                             persistent=False)
        self.register_buffer("inject_cols", by_node, persistent=False)
        bounds = torch.searchsorted(graph.inputs[by_node], torch.tensor([lv[1] for lv in self._levels]))
        self._inject = list(zip([0] + bounds.tolist()[:-1], bounds.tolist()))
        # A node that no input reaches through active edges outputs zeros.  An operation that maps zeros to
        # zeros guarantees it; for the others (batch norm, an affine shift) each level's output is masked.
        self._mask_silent = not maps_zero_to_zero(node_op)
        is_input = torch.zeros(graph.num_nodes)
        is_input[graph.inputs] = 1.0
        self.register_buffer("_is_input", is_input, persistent=False)
        self._segment_counts = self._segmented_level_counts()

    @staticmethod
    def _level_structure(graph: NeuralGraph) -> List[Tuple[int, int, int, int]]:
        """``(first node, end node, first candidate, end candidate)`` of each level, as host ints."""
        counts = torch.bincount(graph.levels()).tolist()
        ptr = graph.ptr.tolist()
        out, start = [], 0
        for c in counts:
            out.append((start, start + c, ptr[start], ptr[start + c]))
            start += c
        return out

    @property
    def silences_unreached(self) -> bool:
        return True

    @property
    def num_levels(self) -> int:
        return len(self._levels)

    def _level_edges(self, gathered: bool = False) -> List[Tensor]:
        """Each level's slice of ``local_edge_index`` (of ``gather_edge_index`` with ``gathered``), kept so
        the propagation cache sees the same tensors at every forward (rebuilt when the buffers move to
        another device)."""
        key = (self.local_edge_index.data_ptr(), self.local_edge_index.device)
        if getattr(self, "_level_edges_key", None) != key:
            self._level_edges_cache = {
                g: [buf[:, c0:c1] for (_, _, c0, c1) in self._levels]
                for g, buf in ((False, self.local_edge_index), (True, self.gather_edge_index))}
            self._level_edges_key = key
        return self._level_edges_cache[gathered]

    def _signal(self, mask: Tensor) -> Tensor:
        """``[N]``: 1 for the nodes an input reaches through the active edges ``mask``, else 0."""
        with torch.no_grad():
            signal = self._is_input.float().clone()  # written in place below
            mask = mask.float()
            for (r0, r1, c0, c1), edges in zip(self._levels, self._level_edges()):
                if c1 > c0:
                    heard = torch.zeros(r1 - r0, device=mask.device).index_add_(
                        0, edges[1], signal[edges[0]] * mask[c0:c1])
                    signal[r0:r1] = torch.maximum(signal[r0:r1], (heard > 0).float())
        return signal

    def _reached_levels(self) -> Optional[List[bool]]:
        """For a wiring whose active set is known on the host: whether every node of each level is reached
        from an input (its outputs then need no mask), else :obj:`None`.  Computed once per active set."""
        host = self.wiring.host_index() if hasattr(self.wiring, "host_index") else None
        if host is None:
            return None
        key = (id(host), host._version)
        if getattr(self, "_reached_key", None) != key:
            mask = torch.zeros(self.graph.num_edges, dtype=torch.bool)
            mask[host] = True
            signal = torch.zeros(self.graph.num_nodes, dtype=torch.bool)  # the graph stays on the host
            signal[self.graph.inputs] = True
            src, dst = self.graph.edge_index
            for (r0, r1, c0, c1) in self._levels:  # an edge into a level comes from an earlier one
                on = mask[c0:c1] & signal[src[c0:c1]]
                signal[dst[c0:c1][on]] = True
            self._reached_cache = [bool(signal[r0:r1].all()) for (r0, r1, _, _) in self._levels]
            self._reached_key = key
        return self._reached_cache

    def _level_counts(self) -> Optional[List[int]]:
        """Active edges of each level when the wiring fixes them (a fixed set known on the host, or a
        per-node / per-block budget whose segments lie inside levels), else :obj:`None` (a global top-k
        moves edges between levels).  Nothing is read from the device."""
        host = self.wiring.host_index() if hasattr(self.wiring, "host_index") else None
        if host is not None:
            key = (id(host), host._version)
            if getattr(self, "_counts_key", None) != key:
                bounds = torch.tensor([lv[2] for lv in self._levels] + [self._levels[-1][3]])
                cum = torch.searchsorted(host, bounds)
                self._counts_cache, self._counts_key = (cum[1:] - cum[:-1]).tolist(), key
            return self._counts_cache
        return self._segment_counts

    def _segmented_level_counts(self) -> Optional[List[int]]:
        layout = getattr(self.wiring, "_layout", None)
        if layout is None:
            return None
        segment, per = layout.row.cpu(), layout.k_per_segment.cpu()
        counts = []
        for (_, _, c0, c1) in self._levels:
            inside = segment[c0:c1].unique()
            counts.append(int(per[inside].sum()))
        # every segment's candidates in one level, or its budget could be spent in any of them
        if sum(counts) != int(per.sum()):
            return None
        return counts

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        a = self.active()
        counts = self._level_counts()
        if counts is None and self.backend == "csr":
            # asked for explicitly: the level counts of a global top-k, read once per forward (on a GPU one
            # synchronisation; "auto" takes the dense product instead and reads nothing)
            bounds = torch.tensor([lv[2] for lv in self._levels] + [self._levels[-1][3]], device=a.index.device)
            cum = torch.searchsorted(a.index, bounds).tolist()
            counts = [hi - lo for lo, hi in zip(cum[:-1], cum[1:])]
        return self._run_levels(x, a, counts)

    # torch.compile runs the levels eagerly (a clean graph break): the state aliases its storage (see
    # neuralgraphs.dynamics._state), which dynamo does not trace
    @eager_in_compile
    def _run_levels(self, x: Tensor, a, counts: Optional[List[int]]) -> Tensor:
        """Every level in order, written into one state; the outputs of the output nodes ``[B, O, *]``."""
        feat = tuple(x.shape[2:])
        b = x.size(0)
        state = _State(x, self.graph.num_nodes)
        reached = (self._reached_levels() if self._mask_silent else None) or [False] * len(self._levels)
        signal = self._signal(a.mask).to(x.dtype) if self._mask_silent and not all(reached) else None
        start = 0
        for (r0, r1, c0, c1), (i0, i1), edges, gathered, gather, count, every in zip(
                self._levels, self._inject, self._level_edges(), self._level_edges(True), self._gather,
                counts or [None] * len(self._levels), reached):
            n = r1 - r0
            if c1 > c0:
                if gather is not None and state.batched:
                    g0, g1, pieces = gather
                    feed, num_in, edges = state.select(self.gather_sources[g0:g1], r0, pieces), g1 - g0, gathered
                else:
                    feed, num_in = state.prefix(r0), r0
                # the level's active edges are a slice of the selection at known offsets, or (a global
                # top-k) unknown without reading them: then the dense product over masked weights
                active, backend = None, "dense" if self.backend == "auto" else self.backend
                if count is not None:
                    active = a.index[start:start + count] - c0
                    start += count
                    backend = self._backend_for(count, n, num_in, x)
                plan = PropagationPlan(edges, n, num_in, active=active, backend=backend,
                                       weight_grad=self.weight_grad, weights_masked=True, validated=True)
                inp = plan(feed, a.weight[c0:c1], node_dim=1)
            else:
                inp = x.new_zeros((b, n) + feat)
            if i1 > i0:
                inp = inp.index_add(1, self.inject_rows[i0:i1], x.index_select(1, self.inject_cols[i0:i1]))
            y = self.node_op(inp, slice(r0, r1))
            if signal is not None and not every:
                # zeros forward; backward as if the node were fed, the straight-through rule's "as if
                # active": the candidates that would feed a silent node learn that they would help
                y = silence(y, signal[r0:r1].view((1, n) + (1,) * len(feat)))
            state.write(r0, y)
        out = state.close(self._outputs_sorted, self._output_pieces)
        return out if self._outputs_in_order else out.index_select(1, self._output_unsort)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", levels={self.num_levels}"
