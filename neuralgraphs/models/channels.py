r"""One static graph of single-channel nodes wired by DNW, by the RandWire generators or uniformly at random.

The comparison of the DNW paper at channel granularity: every node is one channel, the candidates are every
edge of the complete DAG over the nodes (numbered inputs first, outputs last), and the wirings differ only in
which ``k`` candidates are active:

* ``"ws"``, ``"er"``, ``"ba"``: the edges of a RandWire random graph over the same nodes, turned into a DAG
  by the paper's numbering (:func:`~neuralgraphs.generators.random_graphs.random_dag`), fixed;
* ``"random"``: ``k`` candidates drawn uniformly, fixed;
* ``"dnw"``: the ``k`` candidates of largest :math:`|w|`, re-chosen every step;
* ``"no_update"``: the top ``k`` of the initial weights, fixed;
* ``"complete"``: every candidate.

``k`` is the edge count of the WS graph the same seed draws (so every wiring but the complete one has the
same number of active edges at the same seed), or ``budget`` when given.

With ``num_blocks`` the candidates of ``"random"``, ``"dnw"``, ``"no_update"`` and ``"complete"`` are those of
a blocked DAG instead (inputs, ``num_blocks`` blocks of hidden nodes, outputs; every edge from a block to a
later one): about 87 % of the complete DAG's edges at 32 nodes and 5 blocks, but 7 levels instead of 32,
which makes a DNW step about 4x cheaper (a static graph runs level by level, and a level costs about the
same whatever it holds).  The RandWire graphs are drawn over the nodes as before.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn

from neuralgraphs._checks import check_batch, check_int
from neuralgraphs.dynamics import StaticGraph
from neuralgraphs.generators.candidates import blocked_dag, complete_dag
from neuralgraphs.generators.random_graphs import random_dag
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.models.tiny import center_mean
from neuralgraphs.nodes import image_node_op
from neuralgraphs.wiring import FixedWiring

__all__ = ["ChannelGraphClassifier", "CHANNEL_WIRINGS", "channel_blocks", "generator_edges"]

#: Wirings of :class:`ChannelGraphClassifier`.
CHANNEL_WIRINGS = ("ws", "er", "ba", "random", "dnw", "no_update", "complete")

#: The RandWire generators' parameters used at one edge per node (see :class:`ChannelGraphClassifier`).
SPARSE_GENERATORS: Dict[str, Dict[str, Any]] = {"ws": {"k": 2, "p": 0.75}, "er": {}, "ba": {"m": 1}}


def generator_edges(kind: str, num_nodes: int, seed: int, **params: Any) -> Tensor:
    """Edges ``[2, E]`` (lower to higher node number) of the RandWire random DAG ``kind`` over ``num_nodes``
    nodes.  Missing parameters take the sparse defaults: ``ws(k=2, p=0.75)`` (a ring of ``N`` edges),
    ``er(p=2 / (N - 1))`` (``N`` edges expected), ``ba(m=1)`` (a tree of ``N - 1`` edges)."""
    defaults = dict(SPARSE_GENERATORS[kind])
    if kind == "er":
        defaults["p"] = min(1.0, 2.0 / (num_nodes - 1))
    dag = random_dag(kind, num_nodes, seed, **{**defaults, **params})
    edges = sorted((int(u), int(v)) for u, v in dag.edges)
    return torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)


def channel_blocks(num_nodes: int, num_inputs: int, num_outputs: int, num_blocks: int) -> List[int]:
    """Block sizes of the blocked candidate DAG of :class:`ChannelGraphClassifier`: the inputs, the hidden
    nodes split into ``num_blocks`` blocks of near-equal size (the first ones one larger), the outputs."""
    hidden = num_nodes - num_inputs - num_outputs
    num_blocks = check_int("num_blocks", num_blocks, 1)
    if num_blocks > max(hidden, 1):
        raise ValueError(f"num_blocks: at most the {hidden} hidden nodes of {num_nodes} nodes "
                         f"({num_inputs} inputs, {num_outputs} outputs), got {num_blocks}")
    sizes = [hidden // num_blocks + (b < hidden % num_blocks) for b in range(num_blocks)] if hidden else []
    return [num_inputs] + sizes + [num_outputs]


def _own_edges(full: StaticGraph, candidates: NeuralGraph, node_op: nn.Module) -> StaticGraph:
    """The static graph of a fixed wiring with its active edges as the only candidates, each starting at the
    weight it has in ``full`` (the complete DAG's initialisation, the scale DNW's edges start at).

    The same function as ``full``: the inactive candidates of a fixed wiring carry nothing and learn nothing.
    But ``full`` runs one level per node of the complete DAG (32 at 32 nodes), this one the levels of the
    wiring's own DAG (3-8 for the sparse RandWire graphs), and a level costs the same whatever it holds."""
    with torch.no_grad():
        active = full.active().index
        labels = torch.as_tensor(full.graph.node_labels)
        src, dst = labels[full.graph.edge_index[:, active]]
        weight = full.weight.detach()[active]
    own = NeuralGraph(candidates.num_nodes, torch.stack([src, dst]), inputs=candidates.inputs,
                      outputs=candidates.outputs)
    graph = StaticGraph(own, node_op, "complete")
    with torch.no_grad():
        # both graphs number their nodes level by level: carry each edge's weight over by its end nodes
        n = candidates.num_nodes
        key = {int(k): w for k, w in zip(dst * n + src, weight)}
        mine = torch.as_tensor(graph.graph.node_labels)[graph.graph.edge_index]
        graph.weight.copy_(torch.stack([key[int(k)] for k in mine[1] * n + mine[0]]))
    return graph


class ChannelGraphClassifier(nn.Module):
    r"""An image classifier whose body is one static graph of single-channel nodes (see the module
    docstring for the wirings).

    * Stem: ``conv in_channels -> num_inputs 3x3, BN`` at the input resolution, one channel per input node.
    * Graph: :class:`~neuralgraphs.dynamics.StaticGraph` on the complete DAG (or, with ``num_blocks``, the
      blocked DAG) over ``num_nodes`` nodes (inputs ``0 .. num_inputs - 1``, outputs the last
      ``num_outputs``), node operation instance norm -> ReLU -> 3x3 depthwise conv (the DNW static graph's).
      A fixed wiring (``"ws"``, ``"er"``, ``"ba"``, ``"random"``, ``"no_update"``) runs on its own active
      edges as the only candidates, each starting at the weight the candidate DAG's initialisation gave it: the same function (inactive candidates of a fixed wiring carry
      and learn nothing), with the levels of the wiring's DAG instead of one level per node (at 32 nodes
      3-8 levels instead of 32, a 3-4x faster training step).
    * Head: the output nodes averaged over the central ``readout x readout`` region, then a linear layer.

    Args:
        wiring: one of :data:`CHANNEL_WIRINGS`.  (default: ``"dnw"``)
        num_nodes: graph nodes.  (default: ``64``)
        num_inputs: input nodes = stem channels.  (default: ``8``)
        num_outputs: output nodes read by the head.  (default: ``16``)
        budget: active edges of every wiring but ``"complete"`` instead of the WS graph's count.
            (default: :obj:`None`)
        generator_params: parameters of the WS / ER / BA generator (and of the WS graph that sets ``k``), over
            the sparse defaults of :func:`generator_edges`.  (default: :obj:`None`)
        in_channels: image channels.  (default: ``1``)
        num_classes: classes.  (default: ``10``)
        readout: side of the central square read by the head.  (default: ``4``)
        seed: seed of the graphs, the random wiring and the initial weights.  (default: ``0``)
        num_blocks: blocks of hidden nodes of the candidate DAG of the learned, uniform random and complete
            wirings (:func:`channel_blocks`), or :obj:`None` for the complete DAG.  (default: :obj:`None`)

    Shapes:
        input ``[B, in_channels, H, W]``; output ``[B, num_classes]``.
    """

    def __init__(self, wiring: str = "dnw", num_nodes: int = 64, num_inputs: int = 8, num_outputs: int = 16,
                 budget: Optional[int] = None, generator_params: Optional[Dict[str, Any]] = None,
                 in_channels: int = 1, num_classes: int = 10, readout: Optional[int] = 4, seed: int = 0,
                 num_blocks: Optional[int] = None) -> None:
        super().__init__()
        if wiring not in CHANNEL_WIRINGS:
            raise ValueError(f"wiring: expected one of {CHANNEL_WIRINGS}, got {wiring!r}")
        n = check_int("num_nodes", num_nodes, 3)
        n_in = check_int("num_inputs", num_inputs, 1)
        n_out = check_int("num_outputs", num_outputs, 1)
        check_int("in_channels", in_channels, 1)
        check_int("num_classes", num_classes, 1)
        seed = check_int("seed", seed, 0)
        if n_in + n_out > n:
            raise ValueError(f"num_nodes: {n} nodes cannot hold {n_in} inputs and {n_out} separate outputs")
        if readout is not None:
            check_int("readout", readout, 1)
        if generator_params is not None and not isinstance(generator_params, dict):
            raise TypeError(f"generator_params: expected a dict, got {type(generator_params).__name__}")
        if budget is not None and wiring == "complete":
            raise ValueError("budget: the complete wiring keeps every candidate; leave budget out")
        candidates = complete_dag(n, inputs=torch.arange(n_in), outputs=torch.arange(n - n_out, n))
        learned = candidates if num_blocks is None else blocked_dag(channel_blocks(n, n_in, n_out, num_blocks))
        params = dict(generator_params or {})
        ws_params = {key: v for key, v in params.items() if key in ("k", "p")}
        k = budget if budget is not None else generator_edges("ws", n, seed, **ws_params).size(1)
        if budget is not None:
            check_int("budget", budget, 1)
            if budget > learned.num_edges:
                raise ValueError(f"budget: at most the {learned.num_edges} candidates of {n} nodes, got {budget}")
        if wiring in ("random", "dnw", "no_update") and k > learned.num_edges:
            raise ValueError(f"num_blocks: the {learned.num_edges} candidates of {num_blocks} blocks cannot hold "
                             f"the WS graph's {k} edges; use fewer blocks or a budget")
        self.wiring_name, self.readout, self.num_blocks = wiring, readout, num_blocks
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = nn.Sequential(nn.Conv2d(in_channels, n_in, 3, padding=1, bias=False), nn.BatchNorm2d(n_in))
            node_op = image_node_op(n, order="norm-relu-conv", norm="instance")
            if wiring in ("ws", "er", "ba"):
                kind_params = {key: v for key, v in params.items() if key in {"ws": ("k", "p"), "er": ("p",),
                                                                            "ba": ("m",)}[wiring]}
                edges = generator_edges(wiring, n, seed, **kind_params)
                # candidates are the u < v pairs in row-major (target, source) order
                flat = edges[1] * n + edges[0]
                order = candidates.edge_index[1] * n + candidates.edge_index[0]
                index = torch.searchsorted(order, flat.sort().values)
                mask = torch.zeros(candidates.num_edges)
                mask[index] = 1.0
                graph_wiring: Any = FixedWiring(candidates, k=index.numel(), weight=mask)
                full = StaticGraph(candidates, node_op, graph_wiring, seed=seed)
            else:
                full = StaticGraph(learned, node_op, wiring, k=k if wiring != "complete" else None, seed=seed)
            if wiring in ("dnw", "complete"):
                self.graph = full
            else:
                self.graph = _own_edges(full, learned, node_op)
            self.fc = nn.Linear(n_out, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"x: expected images [B, C, H, W], got "
                             f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        check_batch(x, self.stem[0].in_channels, self.graph.weight)
        return self.fc(center_mean(self.graph(self.stem(x)), self.readout))
