r"""RandWire stages and their learned-wiring (DNW) counterpart, as static graph modules of C-channel nodes.

A stage is a :class:`~neuralgraphs.dynamics.StaticGraph` whose nodes carry ``C`` channels each: the graph
product aggregates whole ``C``-channel maps (one scalar weight per edge), and the node operation of RandWire,

.. math::
    \mathbf{z}_v = \mathrm{BN}_v\big(\mathrm{PW}_v(\mathrm{DW}_v(\mathrm{ReLU}(\mathbf{a}_v)))\big),

runs on all the nodes of a topological level at once (:class:`~neuralgraphs.nodes.NodeSepConv` and a
per-node-and-channel :class:`~neuralgraphs.nodes.NodeNorm`).  Selection, the straight-through gradient, the
products and the counts are those of every other graph module of the library.

* :class:`RandWireStage` (Xie et al., ICCV 2019): a fixed random DAG, positive aggregation weights
  :math:`\sigma(\theta)`, a unique input node feeding every node without predecessors (those run at the
  stage stride on the stage input) and a unique output node averaging every node without successors.
* :class:`DNWStage` (Wortsman et al., NeurIPS 2019): the same node operation on a candidate DAG over the
  ``N`` nodes plus ``input -> v`` and ``v -> output`` for every node, of which the top ``k`` are active in
  every step.

**DropPath** (``drop_path = p > 0``, training only): per sample, every node's output is dropped with
probability ``p`` -- zeroed on *all* its out-edges, the edge to the output node included -- and kept outputs
are scaled by ``1 / (1 - p)`` (:class:`~neuralgraphs.nodes.NodeDropPath`).  The factors are drawn once per
forward from torch's global generator, ``[N, B]`` with rows in the node order of the stage's input graph,
before any node runs.  In eval mode nothing is dropped.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralgraphs._checks import check_batch, check_float, check_int
from neuralgraphs.dynamics import StaticGraph
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import (Activation, Identity, NodeDropPath, NodeNorm, NodeRanges, NodeSepConv,
                                NodeSequential, node_macs)

__all__ = ["RandWireStage", "DNWStage", "dnw_candidates", "stage_edge_count", "sepconv_bn_op"]


def _cycle_text(cycle: Sequence) -> str:
    return " -> ".join(str(v) for v in list(cycle) + [cycle[0]])


def _hidden_dag(graph: Union[nx.DiGraph, NeuralGraph]) -> Tuple[int, np.ndarray, np.ndarray, list]:
    """``(N, src, dst, labels)`` of a stage DAG given as a networkx DiGraph or a NeuralGraph."""
    if isinstance(graph, NeuralGraph):
        cycle = graph.find_cycle()
        if cycle is not None:
            raise ValueError(f"graph: has a cycle {_cycle_text(cycle)}; expected a directed acyclic graph")
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
    try:
        cycle = [u for u, _ in nx.find_cycle(graph)]
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle is not None:
        raise ValueError(f"graph: has a cycle {_cycle_text(cycle)}; expected a directed acyclic graph")
    labels = list(graph.nodes)
    index = {v: i for i, v in enumerate(labels)}
    edges = np.array([[index[u], index[v]] for u, v in graph.edges], dtype=np.int64).reshape(-1, 2)
    return len(labels), edges[:, 0].copy(), edges[:, 1].copy(), labels


def stage_edge_count(dag: Union[nx.DiGraph, NeuralGraph]) -> int:
    """Edges of a stage DAG once its input and output nodes are added: ``E + #sources + #sinks``
    (an isolated node counts once as a source and once as a sink), as :attr:`RandWireStage.num_edges`."""
    n, src, dst, _ = _hidden_dag(dag)
    indeg, outdeg = np.bincount(dst, minlength=n), np.bincount(src, minlength=n)
    return int(src.size + (indeg == 0).sum() + (outdeg == 0).sum())


def _uniform(shape: Sequence[int], fan_in: int, gen: Optional[torch.Generator]) -> Tensor:
    # nn.Conv2d's default initialisation (kaiming_uniform with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(*shape, generator=gen) * 2 - 1) * bound


def sepconv_bn_op(num_nodes: int, in_channels: int, channels: int, stride: int = 1) -> NodeSequential:
    """RandWire's node transform on ``num_nodes`` nodes: ReLU -> 3x3 depthwise -> 1x1 -> batch norm per node and
    channel (``[B, n, in_channels, H, W] -> [B, n, channels, H / stride, W / stride]``)."""
    return NodeSequential(Activation("relu"), NodeSepConv(num_nodes, in_channels, channels, stride=stride),
                          NodeNorm(num_nodes, "batch", channels=channels))


def _check_images(x: Tensor, channels: int, param: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x: expected shape [B, {channels}, H, W], got {list(x.shape)}")
    check_batch(x, channels, param)


# --------------------------------------------------------------------------------------- RandWire stage
class RandWireStage(StaticGraph):
    r"""One RandWire stage on a fixed DAG of ``N`` nodes with ``out_channels`` channels each.

    .. math::
        \mathbf{a}_v = \sum_{u \to v} \sigma(\theta_{uv})\,\mathbf{z}_u,\quad
        \mathbf{z}_v = \mathrm{BN}(\mathrm{PW}(\mathrm{DW}_{3\times3}(\mathrm{ReLU}(\mathbf{a}_v)))),\quad
        \mathbf{y} = \frac{1}{|\mathcal{S}|}\sum_{v \in \mathcal{S}} \mathbf{z}_v

    where ``u`` ranges over the predecessors of ``v`` -- the stage input ``x`` for a node without predecessors
    (such a *source* uses the stage ``stride`` and maps ``in_channels -> out_channels``) -- and
    :math:`\mathcal{S}` is the set of nodes without successors (*sinks*).  Every edge, ``input -> source``
    included, has its own learnable scalar :math:`\theta`, initialised to 0 (weight 1/2); ``sink -> output``
    edges are unweighted.  Isolated nodes are both sources and sinks.

    The stage is a :class:`~neuralgraphs.dynamics.StaticGraph` over the ``N`` nodes with the complete wiring
    and ``weight_transform="sigmoid"``: :attr:`weight` holds :math:`\theta` of the hidden edges (in the
    candidate order of :attr:`graph`, whose nodes are renumbered level by level, sources first;
    ``graph.node_labels`` names the input graph's nodes by their index in ``graph.nodes``), and the sources
    are its input nodes.  Their inputs, :math:`\sigma(\theta_s)\,\mathbf{x}`, run through their own node
    operation (:attr:`source_op`) before the graph; every other level runs in the graph.

    Args:
        graph: the stage DAG -- a ``networkx.DiGraph`` on the hidden nodes only (e.g. from
            :func:`~neuralgraphs.generators.random_graphs.random_dag`; nodes are numbered in ``graph.nodes``
            order) or a :class:`~neuralgraphs.graph.NeuralGraph` (its ``inputs`` / ``outputs`` are ignored:
            sources and sinks are read from the edges).  A cycle raises, naming it.
        in_channels: channels of the stage input.
        out_channels: channels ``C`` of every node and of the stage output.
        stride: stride of the sources.  (default: ``2``)
        drop_path: DropPath probability (see the module docstring), training only.  (default: ``0.0``)
        seed: seed of the initialisation of the node convolutions; :obj:`None` uses torch's global
            generator.  (default: :obj:`None`)

    Shapes:
        input :math:`(B, C_{in}, H, W)`; output :math:`(B, C, \lceil H / s \rceil, \lceil W / s \rceil)`.
    """

    def __init__(self, graph: Union[nx.DiGraph, NeuralGraph], in_channels: int, out_channels: int,
                 stride: int = 2, drop_path: float = 0.0, seed: Optional[int] = None) -> None:
        n, src, dst, labels = _hidden_dag(graph)
        ci = check_int("in_channels", in_channels, 1)
        c = check_int("out_channels", out_channels, 1)
        stride = check_int("stride", stride, 1)
        p = check_float("drop_path", drop_path, 0.0, 1.0, open_high=True)
        if seed is not None:
            check_int("seed", seed, 0)
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        indeg, outdeg = np.bincount(dst, minlength=n), np.bincount(src, minlength=n)
        sources, sinks = np.flatnonzero(indeg == 0), np.flatnonzero(outdeg == 0)
        dag = NeuralGraph(n, torch.from_numpy(np.stack([src, dst])).long(), inputs=torch.from_numpy(sources),
                          outputs=torch.from_numpy(sinks))
        # StaticGraph numbers the nodes level by level (stable): the sources are the first ones
        perm = torch.argsort(dag.levels(), stable=True)
        n_src, n_inner = int(sources.size), n - int(sources.size)
        # The node convolutions are drawn in the input graph's node order, sources then the others
        inner_old = np.flatnonzero(indeg > 0)
        draws = [_uniform((n_src, ci, 1, 3, 3), 9, gen), _uniform((n_src, c, ci, 1, 1), ci, gen),
                 _uniform((n_inner, c, 1, 3, 3), 9, gen), _uniform((n_inner, c, c, 1, 1), c, gen)]
        rank = np.full(n, -1)
        rank[inner_old] = np.arange(n_inner)
        inner_rows = torch.from_numpy(rank[perm[n_src:].numpy()])
        new_of_old = torch.empty(n, dtype=torch.long)
        new_of_old[perm] = torch.arange(n)
        # with a seed, the default initialisations (overwritten below) leave torch's generator alone
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            ranges: List[Tuple[int, nn.Module]] = [(n_src, Identity())]
            inner = sepconv_bn_op(n_inner, c, c) if n_inner else None
            if inner is not None:
                ranges.append((n_inner, inner))
            node_op = NodeSequential(NodeRanges(ranges), NodeDropPath(n, p, nodes=new_of_old.tolist()))
            super().__init__(dag, node_op, "complete", weight_transform="sigmoid")
            self.source_op = sepconv_bn_op(n_src, ci, c, stride=stride)
        with torch.no_grad():
            self.source_op[1].depthwise.copy_(draws[0])
            self.source_op[1].pointwise.copy_(draws[1])
            if inner is not None:
                inner[1].depthwise.copy_(draws[2][inner_rows])
                inner[1].pointwise.copy_(draws[3][inner_rows])
        self.input_logit = nn.Parameter(torch.zeros(n_src))
        self.in_channels, self.out_channels, self.stride, self.drop_path = ci, c, stride, p
        self.num_nodes, self.node_names = n, labels

    @property
    def drop(self) -> NodeDropPath:
        return self.node_op[1]

    @property
    def num_edges(self) -> int:
        """Edges of the stage graph with its input and output nodes: hidden + input->source + sink->output."""
        return self.graph.num_edges + int(self.inputs.numel()) + int(self.outputs.numel())

    def node_shape(self, input_shape: Sequence[int]) -> Tuple[int, ...]:
        h, w = input_shape[-2:]
        return (self.out_channels, -(-h // self.stride), -(-w // self.stride))

    def extra_macs(self, input_shape: Sequence[int]) -> int:
        """The sources' node operations on the stage input, the ``input -> source`` scalings (one per input
        element and source) and the output average (one per output element and sink)."""
        n_src, n_sinks = int(self.inputs.numel()), int(self.outputs.numel())
        ci, h, w = input_shape[1:]
        per_source, _ = node_macs(self.source_op, n_src, (ci, h, w))
        return int(per_source.sum()) + n_src * ci * h * w + n_sinks * math.prod(self.node_shape(input_shape))

    def input_weights(self) -> Tensor:
        r"""The positive weights :math:`\sigma(\theta)` of the ``input -> source`` edges, sources in order."""
        return torch.sigmoid(self.input_logit)

    def forward(self, x: Tensor) -> Tensor:
        """Run the stage on ``x = [B, in_channels, H, W]``."""
        _check_images(x, self.in_channels, self.input_logit)
        self.drop.resample(x.size(0), x.device, x.dtype)
        relu, conv, norm = self.source_op
        # relu(s x) = s relu(x) for the positive input weights s: the sources share relu(x), and their
        # scales move into their pointwise kernels (NodeSepConv.forward_shared reads x once)
        fed = norm(conv.forward_shared(relu(x), self.input_weights()))
        return super().forward(fed).mean(1)

    def extra_repr(self) -> str:
        return (f"nodes={self.num_nodes}, edges={self.num_edges}, levels={self.num_levels}, "
                f"in_channels={self.in_channels}, out_channels={self.out_channels}, stride={self.stride}, "
                f"drop_path={self.drop_path}")


# ------------------------------------------------------------------------------------------ DNW stage
def dnw_candidates(num_nodes: int, num_blocks: Optional[int] = None) -> NeuralGraph:
    """Candidate graph of a :class:`DNWStage`: node ``0`` is the stage input, ``1..N`` the hidden nodes,
    ``N + 1`` the output; candidates are ``0 -> v`` and ``v -> N + 1`` for every hidden node, and ``u -> v``
    for hidden nodes in blocks ``b(u) < b(v)`` (no ``0 -> N + 1`` shortcut).

    Args:
        num_nodes: hidden nodes ``N``.
        num_blocks: blocks of consecutive hidden nodes, as equal as possible; :obj:`None` puts every node in
            a block of its own: the complete DAG, :math:`N(N-1)/2 + 2N` candidates.  (default: :obj:`None`)
    """
    n = check_int("num_nodes", num_nodes, 1)
    nb = n if num_blocks is None else check_int("num_blocks", num_blocks, 1)
    if nb > n:
        raise ValueError(f"num_blocks: expected at most the {n} hidden nodes, got {nb}")
    block = torch.arange(n) * nb // n  # equal consecutive blocks
    hid = torch.arange(1, n + 1)
    u, v = torch.triu_indices(n, n, offset=1)
    keep = block[u] < block[v]
    ei = torch.cat([torch.stack([torch.zeros(n, dtype=torch.long), hid]),
                    torch.stack([u[keep] + 1, v[keep] + 1]),
                    torch.stack([hid, torch.full((n,), n + 1)])], dim=1)
    blocks = torch.cat([torch.tensor([-1]), block, torch.tensor([nb])]) + 1
    return NeuralGraph(n + 2, ei, inputs=[0], outputs=[n + 1], order=torch.arange(n + 2), blocks=blocks)


class DNWStage(StaticGraph):
    r"""A stage with the RandWire node operation whose wiring is learned (DNW, Wortsman et al. 2019).

    Candidates (:func:`dnw_candidates`) are ``input -> v`` and ``v -> output`` for every hidden node and
    every edge from one block of hidden nodes to a later one (the complete DAG over the ``N`` nodes with
    ``num_blocks=None``), so any node can be reached from the input and can reach the output.  Every step the
    wiring keeps the ``k`` candidates of largest :math:`|w|`; the forward uses their raw weights (any sign),
    and every candidate -- active or not -- receives the straight-through gradient
    :math:`\langle \mathbf{z}_u, \partial L/\partial\mathbf{a}_v \rangle` of the core.  The output node
    is the weighted sum over the active ``v -> output`` edges, normalised by a batch norm (:math:`2C`
    parameters).  A hidden node that no active path from the input reaches outputs zeros.

    The stage is a :class:`~neuralgraphs.dynamics.StaticGraph` over the ``N + 2`` nodes: one graph product
    and one call of the node operation per block.  With the complete DAG every hidden node is a block of its
    own (``N + 2`` levels, node by node); a few blocks run the graph a block at a time, at the price of the
    candidates inside a block.

    **Why the output has a batch norm.**  Every hidden node's input goes through ReLU, conv and BN, so the
    scale of its incoming weights does not matter; without a BN the ``v -> output`` weights would be the only
    ones whose scale reaches the next stage or the logits (in a trace of the digits comparison they grew from
    1.6 to about 100 in 40 steps and training fell back to chance for epochs).  A random stage needs none:
    its output is the mean of its sinks, which are BN outputs, with fixed weights.

    **Why the input and output candidates start larger.**  At RandWire's budgets (about 1.7 active edges per
    node) the top-k of a uniform draw over all candidates often leaves no active path from the input to
    the output (6 of 40 seeds of a 12-node stage at ``k = 20``), and such a stage trains at chance until the
    wiring connects, or for ever: the straight-through gradient of a candidate into a node that reaches no
    output, and of one out of a node that nothing feeds, is exactly zero, so no single swap can connect it.
    :meth:`reset_parameters` therefore draws the ``input -> v`` and ``v -> output`` candidates from twice
    the core's bound and puts one pair of them at the top, so that the first wiring always connects the
    input to the output (a shallow start from which DNW learns depth).  Measured in ``neuralgraphs compare``
    (two stages of 12 nodes, 12 epochs, seeds 0-4): 92.0 +- 2.1 % before, 94.7 +- 0.5 % after, level
    with the WS stages (94.7 +- 1.6 %).

    **Input handling.**  The stage input is downsampled once, before any node: by a ``1 x 1`` conv with the
    stage stride plus BN when ``in_channels != out_channels`` (a projection, no ReLU and no 3x3), otherwise
    by a parameter-free ``stride x stride`` average pool (identity for stride 1).  Its output is the
    ``input`` node and every hidden node runs ``C -> C`` at stride 1, so a node may mix the stage input with
    other nodes' outputs at one resolution, and the spatial stride of the stage is that of the random stage.

    **Why the comparison is fair.**  ``k`` counts ``input -> v`` and ``v -> output`` edges exactly like the
    random graph's ``input -> source`` and ``sink -> output`` edges (``k = E + #sources + #sinks``, i.e.
    :attr:`RandWireStage.num_edges`), both stages have ``N`` nodes running the same ReLU -> 3x3 separable
    conv -> BN at the same output resolution, and the only extra computation is the one shared downsampling
    of the input and the output BN, in exchange for the random stage's sources doing their 3x3 convs on
    ``in_channels``.

    Args:
        num_nodes: number of hidden nodes ``N``.
        in_channels: channels of the stage input.
        out_channels: channels ``C`` of every node.
        k: number of active edges (at most the number of candidates).
        stride: stride of the stage.  (default: ``2``)
        seed: seed of the initialisation (candidate weights and node convolutions).  (default: ``0``)
        drop_path: DropPath probability of the hidden nodes.  (default: ``0.0``)
        wiring: ``"dnw"`` (top-k every step), ``"random"``, ``"no_update"`` (a fixed set of ``k``) or
            ``"complete"`` (every candidate active; ``k`` must then be :obj:`None` or the candidate count).
            (default: ``"dnw"``)
        num_blocks: blocks of hidden nodes of the candidate DAG (see :func:`dnw_candidates`).
            (default: :obj:`None`, the complete DAG)

    Shapes:
        input :math:`(B, C_{in}, H, W)`; output :math:`(B, C, \lceil H / s \rceil, \lceil W / s \rceil)`.
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, k: Optional[int], stride: int = 2,
                 seed: int = 0, drop_path: float = 0.0, wiring: str = "dnw",
                 num_blocks: Optional[int] = None) -> None:
        n = check_int("num_nodes", num_nodes, 1)
        ci = check_int("in_channels", in_channels, 1)
        c = check_int("out_channels", out_channels, 1)
        stride = check_int("stride", stride, 1)
        seed = check_int("seed", seed, 0)
        p = check_float("drop_path", drop_path, 0.0, 1.0, open_high=True)
        if wiring not in ("dnw", "random", "no_update", "complete"):
            raise ValueError(f"wiring: expected 'dnw', 'random', 'no_update' or 'complete', got {wiring!r}")
        candidates = dnw_candidates(n, num_blocks)
        e = candidates.num_edges
        if wiring == "complete":
            if k is not None and k != e:
                raise ValueError(f"k: wiring='complete' activates all {e} candidates, got k={k}")
            k = None
        else:
            if k is None:
                raise ValueError(f"k: required for wiring={wiring!r} (the number of active edges)")
            k = check_int("k", k, 1)
            if k > e:
                raise ValueError(f"k: expected at most the {e} candidate edges of {n} nodes, got {k}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            node_op = NodeSequential(
                NodeRanges([(1, Identity()), (n, sepconv_bn_op(n, c, c)), (1, NodeNorm(1, "batch", channels=c))]),
                NodeDropPath(n + 2, p, nodes=range(1, n + 1)))
            super().__init__(candidates, node_op, wiring, k=k, seed=seed)
            if ci != c:
                self.proj: Optional[nn.Conv2d] = nn.Conv2d(ci, c, 1, stride=stride, bias=False)
                # normalises a silent input (a previous stage without an active path) at unit scale
                self.proj_bn: Optional[NodeNorm] = NodeNorm(1, "batch", channels=c)
            else:
                self.proj = self.proj_bn = None
        self.in_channels, self.out_channels, self.stride, self.drop_path = ci, c, stride, p
        self.num_nodes, self.num_blocks = n, (n if num_blocks is None else num_blocks)

    def reset_parameters(self) -> None:
        r"""The core's initialisation (:math:`U(-b, b)`, :math:`b = 1/\sqrt{f}`), except that the
        ``input -> v`` and ``v -> output`` candidates are drawn from :math:`U(-2b, 2b)` and that the hidden
        node whose weaker one of the two is the strongest gets both at magnitude :math:`2b`: the initial
        wiring then connects the input to the output whenever ``k >= 2`` (see the class docstring)."""
        super().reset_parameters()
        if self.weight_transform is not None:
            return
        src, dst = self.graph.edge_index
        last = self.graph.num_nodes - 1
        into, out = src == 0, dst == last
        top = 2.0 * self.initial_bound()
        with torch.no_grad():
            self.weight[into | out] *= 2.0
            # hidden node v (1..N) -> |w(input -> v)|, |w(v -> output)|
            w_in = self.weight[into].abs().index_select(0, torch.argsort(dst[into]))
            w_out = self.weight[out].abs().index_select(0, torch.argsort(src[out]))
            v = int(torch.minimum(w_in, w_out).argmax()) + 1  # ties: the first such node
            for edge in ((into & (dst == v)) | (out & (src == v))).nonzero().view(-1):
                self.weight[edge] = torch.copysign(torch.tensor(top), self.weight[edge])

    @property
    def k(self) -> int:
        return self.wiring.num_active

    @property
    def num_edges(self) -> int:
        """Number of active edges per step (``k``)."""
        return self.wiring.num_active

    @property
    def drop(self) -> NodeDropPath:
        return self.node_op[1]

    def node_shape(self, input_shape: Sequence[int]) -> Tuple[int, ...]:
        h, w = input_shape[-2:]
        return (self.out_channels, -(-h // self.stride), -(-w // self.stride))

    def downsample(self, x: Tensor) -> Tensor:
        """The ``input`` node: the stage input downsampled (and projected) once."""
        if self.proj is not None:
            return self.proj_bn(self.proj(x).unsqueeze(1))[:, 0]
        if self.stride > 1:
            return F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Run the stage on ``x = [B, in_channels, H, W]`` with this step's active edges."""
        _check_images(x, self.in_channels, self.weight)
        self.drop.resample(x.size(0), x.device, x.dtype)
        return super().forward(self.downsample(x).unsqueeze(1))[:, 0]

    def extra_repr(self) -> str:
        return (f"nodes={self.num_nodes}, blocks={self.num_blocks}, k={self.k}/{self.graph.num_edges}, "
                f"in_channels={self.in_channels}, out_channels={self.out_channels}, stride={self.stride}, "
                f"drop_path={self.drop_path}")
