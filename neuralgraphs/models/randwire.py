r"""Randomly wired networks (RandWire, Xie et al., ICCV 2019) and their learned-wiring (DNW) counterpart.

A RandWire *stage* is a DAG of :math:`N` nodes, all with :math:`C` channels.  Node :math:`v` computes

.. math::
    \mathbf{a}_v = \sum_{u \to v} \sigma(\theta_{uv})\, \mathbf{z}_u, \qquad
    \mathbf{z}_v = \mathrm{BN}_v\big(\mathrm{PW}_v(\mathrm{DW}_v(\mathrm{ReLU}(\mathbf{a}_v)))\big)

(a positive weighted sum, then ReLU -> 3x3 depthwise -> 1x1 pointwise -> BN).  A unique input node (no
computation) feeds every node without predecessors -- those nodes use stride 2 and map ``in_channels`` to
``out_channels`` -- and a unique output node (no computation) averages, unweighted, every node without
successors.  An isolated node is both.

**Execution.**  The aggregation always goes through :class:`neuralgraphs.propagate.PropagationPlan` on
node-major features ``[N, B*C*H*W]`` (one scalar per edge multiplies a whole ``C``-channel node output).  Two
schedules share the same per-node parameters:

* ``"level"``: the nodes of one topological level run together -- one propagate call, one grouped depthwise
  conv (``groups = n_level * C``), one grouped 1x1 conv (``groups = n_level``) and one BN over
  ``n_level * C`` channels per level;
* ``"node"``: the node-by-node reference (one propagate call and one conv pair per node).

Both give the same outputs and gradients to float tolerance (BN statistics are per channel, so grouping
does not change them).  ``"auto"`` picks ``"level"`` on every device: on an idle 2-core CPU
``benchmarks/randwire.py`` measured it 1.6x (batch 4) and 2.4x (batch 16) faster than node by node for a
C = 78, WS(4, 0.75) stage, and it trains the 8x8 digits network faster too.

**DropPath** (``drop_path = p > 0``, training only): per sample, every node's output is dropped with
probability ``p`` -- zeroed on *all* its out-edges, including the edge to the output node -- and kept outputs
are scaled by ``1 / (1 - p)``.  Equivalently, every path through that node is dropped for that sample.  The
mask ``[N, B]`` is drawn once per forward from torch's global generator, before any node runs, so both
schedules draw the same mask.  In eval mode nothing is dropped and the forward is deterministic.

**Learned wiring** (:class:`DNWStage`): the same node operation, but the edges are chosen every step by
:class:`~neuralgraphs.wiring.TopKWiring` among all candidates of the complete DAG over the ``N`` nodes plus
``input -> v`` and ``v -> output`` for every node; see :class:`DNWStage` for the design and why the
comparison stays fair.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralgraphs.generators.random_graphs import parse_generator, random_dag, stage_seeds
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.propagate import PropagationPlan
from neuralgraphs.wiring import CompleteWiring, TopKWiring

__all__ = ["RandWireStage", "DNWStage", "RandWireNet", "digits_network", "DIGITS_KINDS", "SCHEDULES",
           "AUTO_SCHEDULE", "resolve_schedule", "default_generator_params",
           "stage_edge_count", "dnw_candidates", "DigitsRandWire"]

SCHEDULES = ("auto", "level", "node")

#: Schedule picked by ``schedule="auto"`` (on every device; see the module docstring for the measurements).
AUTO_SCHEDULE = "level"

#: Kinds accepted by :func:`digits_network`.
DIGITS_KINDS = ("ws", "er", "ba", "dnw", "complete")

_BN_MOMENTUM = 0.1
_BN_EPS = 1e-5


# ------------------------------------------------------------------------------------------------ checks
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float in [0, 1), got {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}: expected a drop probability in [0, 1), got {value}")
    return float(value)


def resolve_schedule(schedule: str) -> str:
    """The schedule ``"level"`` / ``"node"`` that ``schedule`` means on ``device``.

    Args:
        schedule: ``"auto"``, ``"level"`` or ``"node"``.

    Returns:
        ``"level"`` or ``"node"`` (``"auto"`` means :data:`AUTO_SCHEDULE`).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
    if schedule != "auto":
        return schedule
    return AUTO_SCHEDULE


def _conv_out(size: int, stride: int) -> int:
    # 3x3 conv with padding 1
    return (size - 1) // stride + 1


def _init_uniform(shape: Sequence[int], fan_in: int, gen: Optional[torch.Generator]) -> Tensor:
    # PyTorch's default conv init (kaiming_uniform with a = sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(*shape, generator=gen) * 2 - 1) * bound


# ------------------------------------------------------------------------------------------- node ops
class _NodeOps(nn.Module):
    """Per-node parameters of a stage and the batched node operation over any group of nodes.

    Nodes are either *fed* (read the stage input: ``in_channels -> C``, the stage's stride) or *inner*
    (``C -> C``, stride 1).  Each node owns one row of the parameter tensors below; a group of nodes is run
    with its rows gathered into one grouped depthwise conv, one grouped 1x1 conv and one BN.
    """

    # the BN's affine parameters, which weight decay skips as it does those of any normalisation layer
    no_weight_decay = ("bn_weight", "bn_bias")

    def __init__(self, num_nodes: int, fed: Sequence[bool], in_channels: int, channels: int, stride: int,
                 gen: Optional[torch.Generator]) -> None:
        super().__init__()
        fed_t = torch.tensor(list(fed), dtype=torch.bool)
        self.num_nodes, self.in_channels, self.channels, self.stride = num_nodes, in_channels, channels, stride
        n_fed = int(fed_t.sum())
        n_inner = num_nodes - n_fed
        row = torch.empty(num_nodes, dtype=torch.long)
        row[fed_t] = torch.arange(n_fed)
        row[~fed_t] = torch.arange(n_inner)
        self.register_buffer("fed", fed_t, persistent=False)
        self.register_buffer("row", row, persistent=False)
        c, ci = channels, in_channels
        # A kind with no node gets no parameter (rather than an empty, never-used one).
        for name, shape, fan, count in (("dw_fed", (n_fed, ci, 1, 3, 3), 9, n_fed),
                                        ("pw_fed", (n_fed, c, ci, 1, 1), ci, n_fed),
                                        ("dw", (n_inner, c, 1, 3, 3), 9, n_inner),
                                        ("pw", (n_inner, c, c, 1, 1), c, n_inner)):
            self.register_parameter(name, nn.Parameter(_init_uniform(shape, fan, gen)) if count else None)
        self.bn_weight = nn.Parameter(torch.ones(num_nodes, c))
        self.bn_bias = nn.Parameter(torch.zeros(num_nodes, c))
        self.register_buffer("running_mean", torch.zeros(num_nodes, c))
        self.register_buffer("running_var", torch.ones(num_nodes, c))

    def forward(self, a: Tensor, nodes: Tensor, fed: bool) -> Tensor:
        """Run the nodes ``nodes`` (all fed or all inner) on ``a = [B, n * c_in, H, W]``; ``[B, n * C, h, w]``."""
        n = nodes.numel()
        c = self.channels
        rows = self.row[nodes]
        if fed:
            ci, stride = self.in_channels, self.stride
            dw = self.dw_fed[rows].reshape(n * ci, 1, 3, 3)
            pw = self.pw_fed[rows].reshape(n * c, ci, 1, 1)
        else:
            ci, stride = c, 1
            dw = self.dw[rows].reshape(n * ci, 1, 3, 3)
            pw = self.pw[rows].reshape(n * c, ci, 1, 1)
        h = F.conv2d(F.relu(a), dw, stride=stride, padding=1, groups=n * ci)
        h = F.conv2d(h, pw, groups=n)
        weight = self.bn_weight[nodes].reshape(-1)
        bias = self.bn_bias[nodes].reshape(-1)
        rm = self.running_mean[nodes].reshape(-1)
        rv = self.running_var[nodes].reshape(-1)
        out = F.batch_norm(h, rm, rv, weight, bias, self.training, _BN_MOMENTUM, _BN_EPS)
        if self.training:
            # rm / rv are gathered copies: write the updated statistics back to the nodes' rows.
            with torch.no_grad():
                self.running_mean[nodes] = rm.view(n, c)
                self.running_var[nodes] = rv.view(n, c)
        return out

    def node_macs(self, fed: bool, h: int, w: int) -> int:
        ci = self.in_channels if fed else self.channels
        return (ci * 9 + ci * self.channels) * h * w


def _to_channels(agg: Tensor, b: int, c: int, h: int, w: int) -> Tensor:
    # node-major [n, B*c*h*w] -> [B, n*c, h, w] for the grouped convs
    n = agg.size(0)
    return agg.view(n, b, c, h, w).transpose(0, 1).reshape(b, n * c, h, w)


def _drop_mask(num_nodes: int, batch: int, p: float, device, dtype) -> Tensor:
    keep = torch.rand(num_nodes, batch, device=device) >= p
    return keep.to(dtype) / (1.0 - p)


def _hidden_dag(graph: Union[nx.DiGraph, NeuralGraph]) -> Tuple[int, np.ndarray, np.ndarray, list]:
    """``(N, src, dst, labels)`` of a stage DAG given as a networkx DiGraph or a NeuralGraph."""
    if isinstance(graph, NeuralGraph):
        if not graph.is_dag:
            raise ValueError("graph: expected a directed acyclic graph, got a graph with a cycle")
        src, dst = graph.edge_index.numpy()
        return graph.num_nodes, src.astype(np.int64), dst.astype(np.int64), list(range(graph.num_nodes))
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise TypeError(f"graph: expected a networkx.DiGraph (e.g. from random_dag) or a NeuralGraph, got "
                        f"{type(graph).__name__}")
    if graph.number_of_nodes() == 0:
        raise ValueError("graph: expected at least one node, got an empty graph")
    roles = [v for v, r in graph.nodes(data="role") if r in ("input", "output")]
    if roles:
        raise ValueError(f"graph: expected the hidden nodes only (the stage adds its own input and output "
                         f"nodes), got nodes with role input/output: {roles[:3]}")
    if not nx.is_directed_acyclic_graph(graph):
        raise ValueError("graph: expected a directed acyclic graph, got a graph with a cycle")
    labels = list(graph.nodes)
    index = {v: i for i, v in enumerate(labels)}
    edges = np.array([[index[u], index[v]] for u, v in graph.edges], dtype=np.int64).reshape(-1, 2)
    return len(labels), edges[:, 0].copy(), edges[:, 1].copy(), labels


def _longest_path_levels(n: int, src: np.ndarray, dst: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Level of every node (0 without predecessors, else 1 + max over predecessors) given a topological order."""
    level = np.zeros(n, dtype=np.int64)
    preds: List[List[int]] = [[] for _ in range(n)]
    for s, t in zip(src.tolist(), dst.tolist()):
        preds[t].append(s)
    for v in order:
        if preds[v]:
            level[v] = 1 + max(level[u] for u in preds[v])
    return level


def _sorted_local_edges(src_local: np.ndarray, dst_local: np.ndarray, num_in: int) -> np.ndarray:
    # PropagationPlan needs edges sorted by (target, source)
    return np.argsort(dst_local * num_in + src_local, kind="stable")


# --------------------------------------------------------------------------------------- RandWire stage
class RandWireStage(nn.Module):
    r"""One RandWire stage on a fixed DAG of ``N`` nodes with ``out_channels`` channels each.

    .. math::
        \mathbf{a}_v = \sum_{u \to v} \sigma(\theta_{uv})\,\mathbf{z}_u,\quad
        \mathbf{z}_v = \mathrm{BN}(\mathrm{PW}(\mathrm{DW}_{3\times3}(\mathrm{ReLU}(\mathbf{a}_v)))),\quad
        \mathbf{y} = \frac{1}{|\mathcal{S}|}\sum_{v \in \mathcal{S}} \mathbf{z}_v

    where ``u`` ranges over the predecessors of ``v`` -- the stage input ``x`` for a node without predecessors
    (such a node uses the stage ``stride`` and maps ``in_channels -> out_channels``) -- and
    :math:`\mathcal{S}` is the set of nodes without successors.  Every edge, including ``input -> source``,
    has its own learnable scalar :math:`\theta` (initialised to 0, i.e. weight 0.5); ``sink -> output`` edges
    are unweighted.  Isolated nodes are both sources and sinks.

    Args:
        graph: the stage DAG -- a ``networkx.DiGraph`` on the hidden nodes only (e.g. from
            :func:`~neuralgraphs.generators.random_graphs.random_dag`; nodes are numbered in ``graph.nodes``
            order) or a :class:`~neuralgraphs.graph.NeuralGraph` (its ``inputs`` / ``outputs`` are ignored:
            sources and sinks are read from the edges).
        in_channels: channels of the stage input.
        out_channels: channels ``C`` of every node and of the stage output.
        stride: stride of the nodes fed by the stage input.  (default: ``2``)
        drop_path: DropPath probability (see the module docstring), training only.  (default: ``0.0``)
        schedule: ``"auto"``, ``"level"`` or ``"node"``.  (default: ``"auto"``)
        seed: seed of the parameter initialisation; :obj:`None` uses torch's global generator.
            (default: :obj:`None`)

    Shapes:
        input :math:`(B, C_{in}, H, W)`; output :math:`(B, C, \lceil H / s \rceil, \lceil W / s \rceil)`.
    """

    def __init__(self, graph: Union[nx.DiGraph, NeuralGraph], in_channels: int, out_channels: int,
                 stride: int = 2, drop_path: float = 0.0, schedule: str = "auto",
                 seed: Optional[int] = None) -> None:
        super().__init__()
        n, src, dst, labels = _hidden_dag(graph)
        in_channels = _check_int("in_channels", in_channels, 1)
        out_channels = _check_int("out_channels", out_channels, 1)
        stride = _check_int("stride", stride, 1)
        self.drop_path = _check_rate("drop_path", drop_path)
        resolve_schedule(schedule)
        self.schedule = schedule
        if seed is not None:
            _check_int("seed", seed, 0)
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))

        self.num_nodes, self.in_channels, self.out_channels, self.stride = n, in_channels, out_channels, stride
        self.node_labels = labels
        indeg = np.bincount(dst, minlength=n)
        outdeg = np.bincount(src, minlength=n)
        sources = np.flatnonzero(indeg == 0)
        sinks = np.flatnonzero(outdeg == 0)
        self.num_hidden_edges = int(src.size)
        topo = nx.DiGraph()
        topo.add_nodes_from(range(n))
        topo.add_edges_from(zip(src.tolist(), dst.tolist()))
        order = list(nx.topological_sort(topo))
        level = _longest_path_levels(n, src, dst, order)
        self.register_buffer("levels", torch.from_numpy(level), persistent=False)

        # Parameters: one logit per hidden edge (in the order of ``edge_index``), then one per input edge.
        self.register_buffer("edge_index", torch.from_numpy(np.stack([src, dst])), persistent=False)
        self.register_buffer("sources", torch.from_numpy(sources), persistent=False)
        self.register_buffer("sinks", torch.from_numpy(sinks), persistent=False)
        self._sink_list = sinks.tolist()  # host copy: reading the buffer would synchronise with a GPU per step
        self.edge_logit = nn.Parameter(torch.zeros(src.size))
        self.input_logit = nn.Parameter(torch.zeros(sources.size))
        fed = indeg == 0
        self.ops = _NodeOps(n, fed.tolist(), in_channels, out_channels, stride, gen)

        input_slot = np.full(n, -1, dtype=np.int64)
        input_slot[sources] = np.arange(sources.size)
        level_groups = [np.flatnonzero(level == lv) for lv in range(int(level.max()) + 1)]
        node_groups = [np.array([v]) for v in sorted(range(n), key=lambda v: (level[v], v))]
        self._groups = {"level": [self._group(g, src, dst, fed, input_slot) for g in level_groups],
                        "node": [self._group(g, src, dst, fed, input_slot) for g in node_groups]}
        self._plans: Dict[Tuple[str, str], list] = {}

    @staticmethod
    def _group(nodes: np.ndarray, src: np.ndarray, dst: np.ndarray, fed: np.ndarray,
               input_slot: np.ndarray) -> Dict[str, Any]:
        # Nodes of one level are all fed (level 0 = the sources) or all inner.
        is_fed = bool(fed[nodes[0]])
        assert all(bool(fed[v]) == is_fed for v in nodes)
        local = {int(v): i for i, v in enumerate(nodes)}
        if is_fed:
            # input row 0 -> each node of the group, one logit per input edge
            return {"nodes": torch.from_numpy(nodes), "fed": True, "n": nodes.size,
                    "ei": np.stack([np.zeros(nodes.size, np.int64), np.arange(nodes.size)]),
                    "num_in": 1, "weight_ids": torch.from_numpy(input_slot[nodes]), "srcs": []}
        ids = np.flatnonzero(np.isin(dst, nodes))
        srcs = np.unique(src[ids])
        src_local = np.searchsorted(srcs, src[ids])
        dst_local = np.array([local[int(t)] for t in dst[ids]], dtype=np.int64)
        perm = _sorted_local_edges(src_local, dst_local, srcs.size)
        return {"nodes": torch.from_numpy(nodes), "fed": False, "n": nodes.size,
                "ei": np.stack([src_local[perm], dst_local[perm]]), "num_in": srcs.size,
                "weight_ids": torch.from_numpy(ids[perm]), "srcs": srcs.tolist()}

    def _plans_for(self, schedule: str, device: torch.device) -> list:
        key = (schedule, str(device))
        if key not in self._plans:
            plans = []
            for g in self._groups[schedule]:
                ei = torch.from_numpy(g["ei"]).to(device)
                plans.append((PropagationPlan(ei, g["n"], g["num_in"], backend="dense"),
                              g["weight_ids"].to(device), g["nodes"].to(device)))
            k = self.sinks.numel()
            ei = torch.stack([torch.arange(k), torch.zeros(k, dtype=torch.long)]).to(device)
            plans.append(PropagationPlan(ei, 1, k, backend="dense"))
            self._plans[key] = plans
        return self._plans[key]

    @property
    def num_edges(self) -> int:
        """Edges of the stage graph with its input and output nodes: hidden + input->source + sink->output."""
        return self.num_hidden_edges + int(self.sources.numel()) + int(self.sinks.numel())

    def edge_weights(self) -> Tuple[Tensor, Tensor]:
        """``(hidden, input)``: the positive weights :math:`\\sigma(\\theta)` of the hidden and input edges."""
        return torch.sigmoid(self.edge_logit), torch.sigmoid(self.input_logit)

    def forward(self, x: Tensor, schedule: Optional[str] = None) -> Tensor:
        """Run the stage.

        Args:
            x: ``[B, in_channels, H, W]``.
            schedule: override the stage's schedule for this call.  (default: :obj:`None`)
        """
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"x: expected shape [B, {self.in_channels}, H, W], got {list(x.shape)}")
        b, _, hh, ww = x.shape
        c = self.out_channels
        h, w = _conv_out(hh, self.stride), _conv_out(ww, self.stride)
        sched = resolve_schedule(self.schedule if schedule is None else schedule)
        plans = self._plans_for(sched, x.device)
        w_hidden, w_input = self.edge_weights()
        mask = None
        if self.training and self.drop_path > 0:
            mask = _drop_mask(self.num_nodes, b, self.drop_path, x.device, x.dtype)
        x_row = x.reshape(1, -1)
        z: List[Optional[Tensor]] = [None] * self.num_nodes  # node outputs, [B, C*h*w] views
        for g, (plan, wid, nodes) in zip(self._groups[sched], plans[:-1]):
            n = g["n"]
            if g["fed"]:
                agg = plan(x_row, w_input[wid])
                a = _to_channels(agg, b, self.in_channels, hh, ww)
            else:
                xs = torch.stack([z[u] for u in g["srcs"]]).view(len(g["srcs"]), -1)
                agg = plan(xs, w_hidden[wid])
                a = _to_channels(agg, b, c, h, w)
            y = self.ops(a, nodes, g["fed"]).view(b, n, c * h * w)
            if mask is not None:
                y = y * mask[nodes].t().unsqueeze(-1)
            for i, v in enumerate(g["nodes"].tolist()):
                z[v] = y[:, i]
        sinks = self._sink_list
        zs = torch.stack([z[v] for v in sinks]).view(len(sinks), -1)
        out = plans[-1](zs, zs.new_full((len(sinks),), 1.0 / len(sinks)))
        return out.view(b, c, h, w)

    def flops(self, input_size: Union[int, Tuple[int, int]]) -> Tuple[int, Tuple[int, int]]:
        """Multiply-adds per sample, and the output size, for an input of ``input_size`` (H or (H, W)).

        Counts the convolutions, one multiply-add per edge and element for the weighted sums, and the
        additions of the output mean; BN is not counted (it folds into the convolution at inference).
        """
        hh, ww = (input_size, input_size) if isinstance(input_size, int) else input_size
        h, w = _conv_out(hh, self.stride), _conv_out(ww, self.stride)
        c, n_fed = self.out_channels, int(self.sources.numel())
        macs = n_fed * (self.in_channels * hh * ww + self.ops.node_macs(True, h, w))
        macs += (self.num_nodes - n_fed) * self.ops.node_macs(False, h, w)
        macs += (self.num_hidden_edges + int(self.sinks.numel())) * c * h * w
        return macs, (h, w)

    def extra_repr(self) -> str:
        return (f"nodes={self.num_nodes}, edges={self.num_edges}, levels={int(self.levels.max()) + 1}, "
                f"in_channels={self.in_channels}, out_channels={self.out_channels}, stride={self.stride}, "
                f"drop_path={self.drop_path}, schedule={self.schedule!r}")


# ------------------------------------------------------------------------------------------ DNW stage
class _InactiveEdgeGrad(torch.autograd.Function):
    r"""Identity on a group's aggregate ``[n, F]`` that adds, in the backward pass, the straight-through
    gradient :math:`\langle \mathbf{z}_u, \partial L / \partial \mathbf{a}_v \rangle` to the raw weights of
    inactive candidates ``u -> v`` into the group.

    Their source ``u`` may run *after* ``v`` (it can sit in a later level of the active graph), so
    :math:`\mathbf{z}_u` is read from ``store`` -- filled with the detached node outputs once the whole
    forward has run, which is always before the backward.
    """

    @staticmethod
    def forward(ctx, agg: Tensor, weight: Tensor, store: Dict[str, Tensor], edge_ids: Tensor,
                src: Tensor, dst_local: Tensor) -> Tensor:
        ctx.store, ctx.num_weights = store, weight.numel()
        ctx.save_for_backward(edge_ids, src, dst_local)
        return agg.view_as(agg)

    @staticmethod
    def backward(ctx, grad: Tensor):
        edge_ids, src, dst_local = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[1]:
            z = ctx.store["z"]  # [N, F]
            m = grad.contiguous() @ z.t()  # [n, N]
            grad_w = grad.new_zeros(ctx.num_weights)
            grad_w[edge_ids] = m[dst_local, src]
        return grad, grad_w, None, None, None, None


def dnw_candidates(num_nodes: int) -> NeuralGraph:
    """Candidate graph of a :class:`DNWStage`: node ``0`` is the stage input, ``1..N`` the hidden nodes,
    ``N + 1`` the output; candidates are ``0 -> v``, ``u -> v`` for ``1 <= u < v <= N`` and ``v -> N + 1``
    (no ``0 -> N + 1`` shortcut): :math:`N(N-1)/2 + 2N` edges."""
    n = _check_int("num_nodes", num_nodes, 1)
    hid = torch.arange(1, n + 1)
    u, v = torch.triu_indices(n, n, offset=1)
    ei = torch.cat([torch.stack([torch.zeros(n, dtype=torch.long), hid]),
                    torch.stack([u + 1, v + 1]),
                    torch.stack([hid, torch.full((n,), n + 1)])], dim=1)
    return NeuralGraph(n + 2, ei, inputs=[0], outputs=[n + 1], order=torch.arange(n + 2))


class DNWStage(nn.Module):
    r"""A stage with the RandWire node operation whose wiring is learned (DNW, Wortsman et al. 2019).

    Candidates (:func:`dnw_candidates`) are every edge of the complete DAG over the ``N`` hidden nodes plus
    ``input -> v`` and ``v -> output`` for every node, so any node can be reached from the input and can
    reach the output.  Every step :class:`~neuralgraphs.wiring.TopKWiring` keeps the ``k`` candidates of
    largest :math:`|w|`; the forward uses their raw weights (any sign), and every candidate -- active or not
    -- receives the straight-through gradient :math:`\langle \mathbf{z}_u, \partial L/\partial\mathbf{a}_v
    \rangle`.  The output is the weighted sum over the active ``v -> output`` edges, normalised by a BN
    (:math:`2C` parameters).

    **Why the output has a BN.**  Every hidden node's input goes through ReLU, conv and BN, so the scale of
    its incoming weights does not matter; the output node had no BN, so the ``v -> output`` weights were the
    only ones whose scale reached the next stage or the logits.  In a trace of the digits comparison (seed
    0) they grew from 1.6 to about 100 in 40 steps and training fell back to chance for epochs: DNW 92.3 ±
    3.7 % over seeds 0-4, and 95.0 ± 1.2 % with the BN (WS 94.8 ± 2.1 %).  A random stage needs none: its
    output is the mean of its sinks, which are BN outputs, with fixed weights.

    **Input handling.**  The stage input is downsampled once, before any node: by a ``1 x 1`` conv with the
    stage stride plus BN when ``in_channels != out_channels`` (a projection, no ReLU and no 3x3), otherwise
    by a parameter-free ``stride x stride`` average pool (identity for stride 1).  Its output is the
    ``input`` node and every hidden node runs ``C -> C`` at stride 1, so a node may mix the stage input
    with other nodes' outputs at one resolution, and the spatial stride of the stage is that of the random
    stage.

    **Why the comparison is fair.**  ``k`` counts ``input -> v`` and ``v -> output`` edges exactly like the
    random graph's ``input -> source`` and ``sink -> output`` edges (``k = E + #sources + #sinks``, i.e.
    :attr:`RandWireStage.num_edges`), both stages have ``N`` nodes running the same ReLU -> 3x3 separable
    conv -> BN at the same output resolution, and the only extra computation is the one shared
    downsampling of the input (a ``1 x 1`` projection, or a pool when the channels already match; reported
    by :meth:`flops` and counted by ``num_parameters``) and the output BN (``2C`` parameters), in exchange
    for the random stage's sources doing their 3x3 convs on ``in_channels``.

    **Execution.**  The active graph changes every step, so its levels are recomputed every forward (a host
    synchronisation on CUDA).  ``"level"`` runs each level of the active graph together, ``"node"`` runs
    the nodes one by one in index order; both give the same outputs and gradients.

    Args:
        num_nodes: number of hidden nodes ``N``.
        in_channels: channels of the stage input.
        out_channels: channels ``C`` of every node.
        k: number of active edges (at most :math:`N(N-1)/2 + 2N`).
        stride: stride of the stage.  (default: ``2``)
        seed: seed of the initialisation (candidate weights and node convolutions).  (default: ``0``)
        drop_path: DropPath probability (as for :class:`RandWireStage`).  (default: ``0.0``)
        schedule: ``"auto"``, ``"level"`` or ``"node"``.  (default: ``"auto"``)
        wiring: ``"dnw"`` (top-k every step) or ``"complete"`` (every candidate active; ``k`` must then be
            :obj:`None` or the candidate count).  (default: ``"dnw"``)
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, k: Optional[int], stride: int = 2,
                 seed: int = 0, drop_path: float = 0.0, schedule: str = "auto", wiring: str = "dnw") -> None:
        super().__init__()
        n = _check_int("num_nodes", num_nodes, 1)
        in_channels = _check_int("in_channels", in_channels, 1)
        out_channels = _check_int("out_channels", out_channels, 1)
        self.stride = _check_int("stride", stride, 1)
        seed = _check_int("seed", seed, 0)
        self.drop_path = _check_rate("drop_path", drop_path)
        resolve_schedule(schedule)
        self.schedule = schedule
        self.num_nodes, self.in_channels, self.out_channels = n, in_channels, out_channels
        self.candidates = dnw_candidates(n)
        e = self.candidates.num_edges
        if wiring == "dnw":
            if k is None:
                raise ValueError("k: required for wiring='dnw' (the number of active edges)")
            k = _check_int("k", k, 1)
            if k > e:
                raise ValueError(f"k: expected at most the {e} candidate edges of {n} nodes, got {k}")
            self.wiring = TopKWiring(self.candidates, k=k)
        elif wiring == "complete":
            if k is not None and k != e:
                raise ValueError(f"k: wiring='complete' activates all {e} candidates, got k={k}")
            self.wiring = CompleteWiring(self.candidates)
        else:
            raise ValueError(f"wiring: expected 'dnw' or 'complete', got {wiring!r}")
        self.k = self.wiring.num_active
        gen = torch.Generator().manual_seed(seed)
        # Candidate weights scaled like a fan-in init over the expected active in-degree k / N.
        self.weight = nn.Parameter(torch.randn(e, generator=gen) / math.sqrt(max(1.0, self.k / n)))
        if in_channels != out_channels:
            self.proj = nn.Parameter(_init_uniform((out_channels, in_channels, 1, 1), in_channels, gen))
            self.proj_bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        else:
            self.register_parameter("proj", None)
            self.proj_bn = None
        self.ops = _NodeOps(n, [False] * n, out_channels, out_channels, 1, gen)
        self.out_bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        src, dst = self.candidates.edge_index.numpy()
        self._src, self._dst = src, dst
        self._kind = np.where(src == 0, 0, np.where(dst == n + 1, 2, 1))  # 0 input, 1 hidden, 2 output

    @property
    def num_edges(self) -> int:
        """Number of active edges per step (``k``)."""
        return self.k

    def downsample(self, x: Tensor) -> Tensor:
        """The ``input`` node: the stage input downsampled (and projected) once."""
        if self.proj is not None:
            return self.proj_bn(F.conv2d(x, self.proj, stride=self.stride))
        if self.stride > 1:
            return F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)
        return x

    def active_levels(self, mask: np.ndarray) -> np.ndarray:
        """Level of every hidden node (``0..N-1``) in the active hidden subgraph given a candidate mask."""
        hid = mask & (self._kind == 1)
        s, t = self._src[hid] - 1, self._dst[hid] - 1
        return _longest_path_levels(self.num_nodes, s, t, range(self.num_nodes))

    def forward(self, x: Tensor, schedule: Optional[str] = None) -> Tensor:
        """Run the stage on ``x = [B, in_channels, H, W]`` with this step's top-k edges."""
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"x: expected shape [B, {self.in_channels}, H, W], got {list(x.shape)}")
        sched = resolve_schedule(self.schedule if schedule is None else schedule)
        dev = x.device
        active = self.wiring(self.weight)
        eff = active.weight
        mask = active.mask.cpu().numpy()
        x0 = self.downsample(x)
        b, c, h, w = x0.shape
        if (h, w) != (_conv_out(x.size(2), self.stride), _conv_out(x.size(3), self.stride)):
            raise AssertionError("downsampled size differs from the random stage's")
        n = self.num_nodes
        f = b * c * h * w
        dmask = None
        if self.training and self.drop_path > 0:
            dmask = _drop_mask(n, b, self.drop_path, dev, x.dtype)
        level = self.active_levels(mask)
        if sched == "level":
            groups = [np.flatnonzero(level == lv) for lv in range(int(level.max()) + 1)]
        else:
            groups = [np.array([v]) for v in range(n)]
        need_tap = torch.is_grad_enabled() and self.weight.requires_grad
        store: Dict[str, Tensor] = {}
        z: List[Optional[Tensor]] = [None] * n
        x_row = x0.reshape(b, -1)
        for nodes in groups:
            tgt = nodes + 1  # candidate-graph labels
            into = np.isin(self._dst, tgt)
            # input candidates (always computed) and active hidden edges feed the propagate call
            use = into & ((self._kind == 0) | ((self._kind == 1) & mask))
            ids = np.flatnonzero(use)
            srcs = np.unique(self._src[ids])  # 0 = input, else hidden + 1
            local = np.full(n + 2, -1, dtype=np.int64)
            local[tgt] = np.arange(nodes.size)
            s_local = np.searchsorted(srcs, self._src[ids])
            d_local = local[self._dst[ids]]
            perm = _sorted_local_edges(s_local, d_local, srcs.size)
            ei = torch.from_numpy(np.stack([s_local[perm], d_local[perm]])).to(dev)
            xs = torch.stack([x_row if u == 0 else z[u - 1] for u in srcs.tolist()]).view(srcs.size, -1)
            plan = PropagationPlan(ei, nodes.size, srcs.size, backend="dense")
            agg = plan(xs, eff[torch.from_numpy(ids[perm]).to(dev)])
            late = np.flatnonzero(into & (self._kind == 1) & ~mask)
            if need_tap and late.size:
                agg = _InactiveEdgeGrad.apply(
                    agg, self.weight, store, torch.from_numpy(late).to(dev),
                    torch.from_numpy(self._src[late] - 1).to(dev), torch.from_numpy(local[self._dst[late]]).to(dev))
            nodes_t = torch.from_numpy(nodes).to(dev)
            y = self.ops(_to_channels(agg, b, c, h, w), nodes_t, False).view(b, nodes.size, c * h * w)
            if dmask is not None:
                y = y * dmask[nodes_t].t().unsqueeze(-1)
            for i, v in enumerate(nodes.tolist()):
                z[v] = y[:, i]
        zs = torch.stack(z).view(n, f)  # every node has run
        store["z"] = zs.detach()
        out_ids = np.flatnonzero(self._kind == 2)  # sorted by source = hidden order
        ei = torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)]).to(dev)
        out = PropagationPlan(ei, 1, n, backend="dense")(zs, eff[torch.from_numpy(out_ids).to(dev)])
        return self.out_bn(out.view(b, c, h, w))

    def flops(self, input_size: Union[int, Tuple[int, int]]) -> Tuple[int, Tuple[int, int]]:
        """Multiply-adds per sample and output size (as :meth:`RandWireStage.flops`, with the ``k`` active
        edges, all ``N`` nodes and the input downsampling)."""
        hh, ww = (input_size, input_size) if isinstance(input_size, int) else input_size
        h, w = _conv_out(hh, self.stride), _conv_out(ww, self.stride)
        c = self.out_channels
        macs = self.in_channels * c * h * w if self.proj is not None else (
            self.stride ** 2 * c * h * w if self.stride > 1 else 0)
        macs += self.num_nodes * self.ops.node_macs(False, h, w) + self.k * c * h * w
        return macs, (h, w)

    def extra_repr(self) -> str:
        return (f"nodes={self.num_nodes}, k={self.k}/{self.candidates.num_edges}, in_channels={self.in_channels}, "
                f"out_channels={self.out_channels}, stride={self.stride}, schedule={self.schedule!r}")


# ------------------------------------------------------------------------------------------ networks
def stage_edge_count(dag: Union[nx.DiGraph, NeuralGraph]) -> int:
    """Edges of a stage DAG once its input and output nodes are added: ``E + #sources + #sinks``
    (an isolated node counts once as a source and once as a sink), as :attr:`RandWireStage.num_edges`."""
    n, src, dst, _ = _hidden_dag(dag)
    indeg, outdeg = np.bincount(dst, minlength=n), np.bincount(src, minlength=n)
    return int(src.size + (indeg == 0).sum() + (outdeg == 0).sum())


def default_generator_params(kind: str, num_nodes: int) -> Dict[str, Union[int, float]]:
    """Generator parameters used by :func:`digits_network` for ``num_nodes`` nodes.

    ``ws``: ``k = 4, p = 0.75`` (the paper's).  ``er``: ``p = 4 / (N - 1)`` (capped at 1), so the expected
    edge count :math:`p N (N - 1) / 2 = 2N` equals WS(4, .)'s exactly (the paper's ER(0.2) at N = 32 gives
    99 edges).  ``ba``: the ``m`` whose edge count :math:`m (N - m)` is closest to ``2N`` (``m = 2`` for
    N = 16 and 32; the paper's BA(5) is meant for N = 32 and would give 55 edges at N = 16).
    """
    n = _check_int("num_nodes", num_nodes, 3)
    if kind == "ws":
        return {"k": 4, "p": 0.75}
    if kind == "er":
        return {"p": min(1.0, 4.0 / (n - 1))}
    if kind == "ba":
        return {"m": min(range(1, n), key=lambda m: (abs(m * (n - m) - 2 * n), m))}
    raise ValueError(f"kind: expected 'ws', 'er' or 'ba', got {kind!r}")


class _StagedNet(nn.Module):
    """Stem -> stages -> head, with parameter, edge and multiply-add counts."""

    stem: nn.Module
    stages: nn.ModuleList

    def num_parameters(self) -> int:
        """Number of learnable scalars (every candidate weight of a DNW stage included)."""
        return sum(p.numel() for p in self.parameters())

    def num_edges(self) -> int:
        """Edges per step over all stages (a random stage's edges with its input / output edges, or k)."""
        return sum(s.num_edges for s in self.stages)

    def num_active_edges(self) -> int:
        """Same as :meth:`num_edges`: the edges active in one step."""
        return self.num_edges()

    def _conv_macs(self, conv: nn.Conv2d, h: int, w: int) -> Tuple[int, int, int]:
        ho = (h + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        wo = (w + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
        k = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
        return k * conv.out_channels * ho * wo, ho, wo

    def _body_flops(self, h: int, w: int) -> Tuple[int, int, int]:
        """Multiply-adds of the stem and the stages, and the resolution they leave."""
        macs = 0
        for m in self.stem:
            if isinstance(m, nn.Conv2d):
                mm, h, w = self._conv_macs(m, h, w)
                macs += mm
        for stage in self.stages:
            mm, (h, w) = stage.flops((h, w))
            macs += mm
        return macs, h, w


class RandWireNet(_StagedNet):
    r"""RandWire ImageNet network (Xie et al., 2019, Table 1), with random or learned (DNW) stages.

    Small regime (paper: C = 78, N = 32)::

        conv1  3x3 conv C/2, stride 2, BN                      112 x 112
        conv2  ReLU, 3x3 conv C, stride 2, BN                   56 x 56
        conv3  random stage, N nodes, C                         28 x 28
        conv4  random stage, N nodes, 2C                        14 x 14
        conv5  random stage, N nodes, 4C                         7 x 7
        head   ReLU, 1x1 conv 1280, BN, ReLU, global average pool, dropout, fc

    Regular regime (paper: C = 109 or 154, N = 32)::

        conv1  3x3 conv C/2, stride 2, BN                      112 x 112
        conv2  random stage, N/2 nodes, C                       56 x 56
        conv3  random stage, N nodes, 2C                        28 x 28
        conv4  random stage, N nodes, 4C                        14 x 14
        conv5  random stage, N nodes, 8C                         7 x 7
        head   as in the small regime (1x1 conv 1280 on 8C)

    Stage ``i`` draws its graph with ``stage_seeds(seed, num_stages)[i]``.

    Args:
        generator: random graph, e.g. ``"ws(4, 0.75)"``, ``"er(0.2)"``, ``"ba(5)"``.  (default: WS(4, 0.75))
        num_nodes: ``N``.  (default: ``32``)
        channels: ``C``.  (default: ``78``)
        regime: ``"small"`` or ``"regular"``.  (default: ``"small"``)
        num_classes: classifier outputs.  (default: ``1000``)
        in_channels: image channels.  (default: ``3``)
        drop_path: DropPath probability of every stage.  (default: ``0.0``)
        dropout: dropout before the classifier.  (default: ``0.0``)
        seed: base seed (graphs and initialisation).  (default: ``0``)
        wiring: ``"random"`` (RandWire stages) or ``"dnw"`` (:class:`DNWStage` with ``k`` equal to the edge
            count of the random graph the same stage seed draws).  (default: ``"random"``)
        schedule: schedule of every stage.  (default: ``"auto"``)
    """

    def __init__(self, generator: str = "ws(4,0.75)", num_nodes: int = 32, channels: int = 78,
                 regime: str = "small", num_classes: int = 1000, in_channels: int = 3, drop_path: float = 0.0,
                 dropout: float = 0.0, seed: int = 0, wiring: str = "random", schedule: str = "auto") -> None:
        super().__init__()
        kind, params = parse_generator(generator)
        n = _check_int("num_nodes", num_nodes, 2)
        c = _check_int("channels", channels, 2)
        _check_int("num_classes", num_classes, 1)
        _check_int("in_channels", in_channels, 1)
        _check_int("seed", seed, 0)
        _check_rate("dropout", dropout)
        if regime not in ("small", "regular"):
            raise ValueError(f"regime: expected 'small' or 'regular', got {regime!r}")
        if wiring not in ("random", "dnw"):
            raise ValueError(f"wiring: expected 'random' or 'dnw', got {wiring!r}")
        self.regime, self.wiring_kind = regime, wiring
        if regime == "small":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(c // 2),
                nn.ReLU(), nn.Conv2d(c // 2, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c))
            plan = [(n, c, c), (n, c, 2 * c), (n, 2 * c, 4 * c)]
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, c // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(c // 2))
            plan = [(max(2, n // 2), c // 2, c), (n, c, 2 * c), (n, 2 * c, 4 * c), (n, 4 * c, 8 * c)]
        seeds = stage_seeds(seed, len(plan))
        stages = []
        for (nodes, cin, cout), s in zip(plan, seeds):
            dag = random_dag(kind, nodes, s, **params)
            if wiring == "random":
                stages.append(RandWireStage(dag, cin, cout, 2, drop_path, schedule, seed=s))
            else:
                k = stage_edge_count(dag)
                stages.append(DNWStage(nodes, cin, cout, k, 2, s, drop_path, schedule))
        self.stages = nn.ModuleList(stages)
        last = plan[-1][2]
        self.head_conv = nn.Conv2d(last, 1280, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(1280)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of images ``[B, in_channels, H, W]``."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = F.relu(self.head_bn(self.head_conv(F.relu(x))))
        return self.fc(self.dropout(x.mean((2, 3))))

    def flops(self, input_size: int = 224) -> int:
        """Multiply-adds of one image of ``input_size x input_size`` (convs, weighted sums, head, fc)."""
        macs, h, w = self._body_flops(input_size, input_size)
        mm, h, w = self._conv_macs(self.head_conv, h, w)
        return macs + mm + h * w * 1280 + self.fc.in_features * self.fc.out_features


class DigitsRandWire(_StagedNet):
    """The small network of :func:`digits_network` (see there)."""

    def __init__(self, stem: nn.Module, stages: List[nn.Module], channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of images ``[B, 1, 8, 8]``."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(F.relu(x).mean((2, 3)))

    def flops(self, input_size: int = 8) -> int:
        """Multiply-adds of one image of ``input_size x input_size``."""
        macs, h, w = self._body_flops(input_size, input_size)
        return macs + h * w * self.fc.in_features + self.fc.in_features * self.fc.out_features


def digits_network(kind: str, *, num_nodes: int = 16, channels: int = 16, num_stages: int = 2, seed: int = 0,
                   budget: Optional[int] = None, generator_params: Optional[Dict[str, Any]] = None,
                   num_classes: int = 10, drop_path: float = 0.0, schedule: str = "auto") -> nn.Module:
    """A small RandWire-style classifier of scikit-learn's 8x8 digits, ``[B, 1, 8, 8] -> [B, num_classes]``.

    Layout: stem ``3x3 conv 1 -> C/2, BN, ReLU, 3x3 conv C/2 -> C, BN`` at 8x8, then ``num_stages`` stages of
    ``num_nodes`` nodes with ``C`` channels each (``C -> C``); each stage has stride 2 while the resolution is
    above 2x2 (8 -> 4 -> 2), stride 1 after; then ReLU, global average pool and a linear classifier.

    Kinds:

    * ``"ws"`` / ``"er"`` / ``"ba"``: :class:`RandWireStage` on ``random_dag(kind, N, stage_seed)`` with
      :func:`default_generator_params` (overridden by ``generator_params``);
    * ``"dnw"``: :class:`DNWStage` whose ``k`` is the edge count (with input / output edges) of the
      WS(4, 0.75) graph drawn with the same stage seed, or ``budget`` when given -- so ``"ws"`` and ``"dnw"``
      have equal active edges for the same seed;
    * ``"complete"``: :class:`DNWStage` with every candidate active (a fixed complete wiring).

    Stage seeds come from :func:`~neuralgraphs.generators.random_graphs.stage_seeds`.

    Args:
        kind: one of :data:`DIGITS_KINDS`.
        num_nodes: nodes per stage.  (default: ``16``)
        channels: ``C``.  (default: ``16``)
        num_stages: number of stages.  (default: ``2``)
        seed: base seed.  (default: ``0``)
        budget: active edges per DNW stage instead of the WS count.  (default: :obj:`None`)
        generator_params: generator parameters for ws / er / ba.  (default: :obj:`None`)
        num_classes: classes.  (default: ``10``)
        drop_path: DropPath probability.  (default: ``0.0``)
        schedule: stage schedule.  (default: ``"auto"``)

    Returns:
        A module with ``num_active_edges()``, ``num_parameters()`` and ``flops()``.
    """
    if kind not in DIGITS_KINDS:
        raise ValueError(f"kind: expected one of {DIGITS_KINDS}, got {kind!r}")
    n = _check_int("num_nodes", num_nodes, 3)
    c = _check_int("channels", channels, 2)
    num_stages = _check_int("num_stages", num_stages, 1)
    seed = _check_int("seed", seed, 0)
    _check_int("num_classes", num_classes, 1)
    if budget is not None:
        if kind != "dnw":
            raise ValueError(f"budget: only used by kind='dnw', got kind={kind!r}")
        _check_int("budget", budget, 1)
    if generator_params is not None:
        if kind not in ("ws", "er", "ba"):
            raise ValueError(f"generator_params: only used by 'ws', 'er' and 'ba', got kind={kind!r}")
        if not isinstance(generator_params, dict):
            raise TypeError(f"generator_params: expected a dict, got {type(generator_params).__name__}")
    default_ws = (kind == "ws" and "k" not in (generator_params or {})) or (kind == "dnw" and budget is None)
    if default_ws and n < 5:
        way_out = "give budget=" if kind == "dnw" else "give generator_params=dict(k=2)"
        raise ValueError(f"num_nodes: kind={kind!r} draws a WS graph with k=4 neighbours, which needs at least 5 "
                         f"nodes, got {n} (or {way_out})")
    gen = torch.Generator().manual_seed(seed)
    stem = nn.Sequential(nn.Conv2d(1, c // 2, 3, 1, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(),
                         nn.Conv2d(c // 2, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
    with torch.no_grad():
        for m in stem:
            if isinstance(m, nn.Conv2d):
                fan = m.in_channels * 9
                m.weight.copy_(_init_uniform(m.weight.shape, fan, gen))
    stages: List[nn.Module] = []
    size = 8
    for s in stage_seeds(seed, num_stages):
        stride = 2 if size > 2 else 1
        size = _conv_out(size, stride)
        if kind in ("ws", "er", "ba"):
            params = {**default_generator_params(kind, n), **(generator_params or {})}
            dag = random_dag(kind, n, s, **params)
            stages.append(RandWireStage(dag, c, c, stride, drop_path, schedule, seed=s))
        elif kind == "dnw":
            k = budget if budget is not None else stage_edge_count(random_dag("ws", n, s, k=4, p=0.75))
            stages.append(DNWStage(n, c, c, k, stride, s, drop_path, schedule))
        else:
            stages.append(DNWStage(n, c, c, None, stride, s, drop_path, schedule, wiring="complete"))
    model = DigitsRandWire(stem, stages, c, num_classes)
    with torch.no_grad():
        model.fc.weight.copy_(_init_uniform(model.fc.weight.shape, c, gen))
        model.fc.bias.copy_(_init_uniform(model.fc.bias.shape, c, gen))
    return model
