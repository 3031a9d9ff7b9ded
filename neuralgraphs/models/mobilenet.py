r"""MobileNetV1 as a chain of static neural graphs (DNW's ImageNet experiment), and the dense MobileNetV1.

In MobileNetV1 every layer is a 3x3 depthwise convolution followed by a 1x1 (pointwise) convolution.  Read as
graphs whose nodes are channels, the pointwise convolutions are the edges and the depthwise convolutions the
node operations, and the network is a chain of five graphs, one per resolution (PAPER_FACTS):

======  ======  =====  =========  =====================================
graph   in      out    stride     sub-layers (blocks of ``out`` nodes)
======  ======  =====  =========  =====================================
1       32      64     1          1
2       64      128    2          2
3       128     256    2          2
4       256     512    2          6
5       512     1024   2          2
======  ======  =====  =========  =====================================

Graph ``g`` has ``in`` input nodes (the previous graph's outputs, or the stem's 32 channels) and ``sub_layers``
blocks of ``out`` nodes; a block may feed every later block of its graph (skip edges inside a graph, never
across graphs, where the resolution changes).  A node computes BN -> ReLU -> 3x3 depthwise on the sum of its
active in-edges; the input nodes do it with the graph's stride (their operation runs before the graph, the
``input_op``), the last block's nodes not at all (the next graph's input operation, or the classifier's BN ->
ReLU, does it).

**Width is an edge budget.**  ``width=d`` does not shrink the channels: each graph keeps
``round(d**2 * (in * out + (sub_layers - 1) * out**2))`` active edges, the pointwise weights of MobileNetV1 of
width ``d``, so the wiring decides where the edges go (158,942 edges in all at ``d = 0.225``: 158,941.44
before each graph rounds its own).

**Costs count live nodes only** (:func:`~neuralgraphs.analysis.counts.count_flops`,
:func:`~neuralgraphs.analysis.counts.count_parameters`): a node without an effective outgoing edge costs
nothing at inference, as in the paper.  The paper's rows and this module's counts are in the README.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from neuralgraphs._checks import check_batch, check_bool, check_choice, check_float, check_int, check_seed
from neuralgraphs.dynamics import StaticGraph
from neuralgraphs.generators.candidates import blocked_dag
from neuralgraphs.nodes import Activation, Identity, NodeConv2d, NodeNorm, NodeRanges, NodeSequential, node_macs
from neuralgraphs.sparse import SparseLinear

__all__ = ["MOBILENET_GRAPHS", "MOBILENET_WIRINGS", "MOBILENET_IMAGENET_RECIPE", "MobileNetGraph",
           "MobileNetV1Graphs", "graph_edge_budget",
           "mobilenet_v1", "MobileNetV1"]

#: (in, out, stride, sub-layers) of the five graphs
MOBILENET_GRAPHS: Tuple[Tuple[int, int, int, int], ...] = (
    (32, 64, 1, 1), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 2, 6), (512, 1024, 2, 2))
MOBILENET_WIRINGS = ("dnw", "random", "complete", "no_update")
STEM_CHANNELS = 32

#: The paper's ImageNet recipe as keyword arguments of :func:`neuralgraphs.train.fit` (with a batch of 512
#: and 224 x 224 crops; ``examples/mobilenet_chain.py --imagenet DIR`` runs it on an image folder).
MOBILENET_IMAGENET_RECIPE = {"epochs": 250, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-5,
                             "schedule": "cosine", "batch_size": 512}


def graph_edge_budget(width: float, in_channels: int, out_channels: int, sub_layers: int) -> int:
    """Active edges of one graph: ``round(width**2 * (in * out + (sub_layers - 1) * out**2))``, the pointwise
    weights of MobileNetV1 at ``width`` (at least 1)."""
    width = check_float("width", width, 0.0, 1.0, open_low=True)
    return max(1, int(round(width ** 2 * (in_channels * out_channels + (sub_layers - 1) * out_channels ** 2))))


def _bn_relu_dw(num_nodes: int, stride: int = 1) -> NodeSequential:
    return NodeSequential(NodeNorm(num_nodes, kind="batch"), Activation("relu"), NodeConv2d(num_nodes, stride=stride))


class MobileNetGraph(StaticGraph):
    r"""One graph of the MobileNetV1 chain: ``in_channels`` input nodes and ``sub_layers`` blocks of
    ``out_channels`` nodes, every block feeding every later one.

    .. math::
        \mathbf{z}_v = \mathrm{DW}_{3\times3}(\mathrm{ReLU}(\mathrm{BN}(\textstyle\sum_{u \to v} w_{uv}\mathbf{z}_u)))

    for the nodes of the inner blocks; the input nodes compute the same on the graph's input with the
    graph's ``stride`` (:attr:`input_op`, before the graph product), and the output nodes (the last block)
    return the sums of their active in-edges.

    Args:
        in_channels: input nodes.
        out_channels: nodes per block.
        stride: stride of the input nodes' depthwise convolution.
        sub_layers: blocks of ``out_channels`` nodes.
        wiring: ``"dnw"``, ``"random"``, ``"complete"`` or ``"no_update"``.  (default: ``"dnw"``)
        k: active edges (not with ``"complete"``).  (default: :obj:`None`)
        seed: seed of the random wiring.  (default: ``0``)

    Shapes:
        input :math:`(B, C_{in}, H, W)`; output :math:`(B, C_{out}, \lceil H/s \rceil, \lceil W/s \rceil)`.
    """

    #: compact() may rebuild it as a CompactGraph: beyond a StaticGraph it has only ``input_op`` and ``stride``
    compactable = True

    def __init__(self, in_channels: int, out_channels: int, stride: int, sub_layers: int, wiring: str = "dnw",
                 k: Optional[int] = None, seed: int = 0) -> None:
        ci = check_int("in_channels", in_channels, 1)
        co = check_int("out_channels", out_channels, 1)
        stride = check_int("stride", stride, 1)
        layers = check_int("sub_layers", sub_layers, 1)
        check_choice("wiring", wiring, MOBILENET_WIRINGS)
        graph = blocked_dag([ci] + [co] * layers)
        hidden = co * (layers - 1)
        ranges: List[Tuple[int, nn.Module]] = [(ci, Identity())]
        if hidden:
            ranges.append((hidden, _bn_relu_dw(hidden)))
        ranges.append((co, Identity()))
        super().__init__(graph, NodeRanges(ranges), wiring, k=k, seed=seed)
        self.input_op = _bn_relu_dw(ci, stride)
        self.in_channels, self.out_channels, self.stride, self.sub_layers = ci, co, stride, layers

    def node_shape(self, input_shape: Sequence[int]) -> Tuple[int, ...]:
        h, w = input_shape[-2:]
        return (-(-h // self.stride), -(-w // self.stride))

    def forward(self, x: Tensor) -> Tensor:
        """Run the graph on ``x = [B, in_channels, H, W]``."""
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"x: expected a tensor [B, {self.in_channels}, H, W], got "
                             f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        check_batch(x, self.in_channels, self.weight)
        return super().forward(self.input_op(x))

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, stride={self.stride}, "
                f"sub_layers={self.sub_layers}, " + super().extra_repr())


class MobileNetV1Graphs(nn.Module):
    r"""MobileNetV1 as a chain of five static neural graphs whose wiring is learned (DNW) or fixed.

    Stem ``Conv2d(in_channels, 32, 3, stride=2)``, the five :class:`MobileNetGraph` of
    :data:`MOBILENET_GRAPHS`, BN -> ReLU on the 1024 output nodes, global average pooling and a linear
    classifier (sparse at density ``width**2`` with ``small=True``, on the library's sparse layers).  Each
    graph selects its wiring once per forward.  See the module docstring for the budget.

    Args:
        width: the edge budget ``d`` in ``(0, 1]``.  (default: ``0.225``)
        wiring: ``"dnw"``, ``"random"`` (fixed random edges with each graph's budget), ``"complete"`` (every
            candidate) or ``"no_update"``; fine-tuning and lottery tickets by
            :func:`~neuralgraphs.wiring.freeze_wiring` of a trained DNW model.  (default: ``"dnw"``)
        num_classes: classifier outputs.  (default: ``1000``)
        small: make the classifier sparse too (DNW's "small" rows).  (default: :obj:`False`)
        in_channels: image channels.  (default: ``3``)
        stem_stride: stride of the stem (``1`` for small images such as the 8 x 8 digits).  (default: ``2``)
        seed: seed of the random wirings (graph ``g`` uses ``seed + g``).  (default: ``0``)

    Shapes:
        input :math:`(B, C_{in}, H, W)`; output :math:`(B, \text{num\_classes})`.
    """

    def __init__(self, width: float = 0.225, wiring: str = "dnw", num_classes: int = 1000, small: bool = False,
                 in_channels: int = 3, stem_stride: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.width = check_float("width", width, 0.0, 1.0, open_low=True)
        self.wiring_name = check_choice("wiring", wiring, MOBILENET_WIRINGS)
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.small = check_bool("small", small)
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.stem_stride = check_int("stem_stride", stem_stride, 1)
        seed = check_seed("seed", seed)
        if wiring == "complete" and small:
            raise ValueError("small: the complete wiring keeps every edge; a sparse classifier would not match it")
        self.stem = nn.Conv2d(self.in_channels, STEM_CHANNELS, 3, stride=self.stem_stride, padding=1, bias=False)
        self.graphs = nn.ModuleList(
            MobileNetGraph(ci, co, s, n, wiring, None if wiring == "complete" else graph_edge_budget(width, ci, co, n),
                           seed=seed + g)
            for g, (ci, co, s, n) in enumerate(MOBILENET_GRAPHS))
        last = MOBILENET_GRAPHS[-1][1]
        self.norm = nn.BatchNorm2d(last)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        if small:
            # the classifier weights of MobileNetV1 at this width (1024 * d inputs): density d
            fc_wiring = wiring if wiring in ("dnw", "random") else "no_update"
            self.fc = SparseLinear(last, self.num_classes, density=self.width, wiring=fc_wiring, seed=seed)
        else:
            self.fc = nn.Linear(last, self.num_classes)

    @property
    def num_edges(self) -> int:
        """Active edges of the five graphs."""
        return sum(int(g.wiring.num_active) for g in self.graphs)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"x: expected a tensor [B, {self.in_channels}, H, W], got "
                             f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        check_batch(x, self.in_channels, self.stem.weight)
        h = self.stem(x)
        for g in self.graphs:
            h = g(h)
        return self.fc(self.pool(self.relu(self.norm(h))).flatten(1))

    def extra_repr(self) -> str:
        return (f"width={self.width}, wiring={self.wiring_name!r}, num_classes={self.num_classes}, "
                f"small={self.small}, edges={self.num_edges}")


# ------------------------------------------------------------------------------------- dense MobileNetV1
#: (out channels at width 1, stride) of the 13 depthwise-separable layers
_MOBILENET_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
                     (512, 1), (512, 1), (1024, 2), (1024, 1))


class MobileNetV1(nn.Module):
    """The dense MobileNetV1 (Howard et al. 2017) with a width multiplier: every channel count times
    ``width_multiplier``; conv -> BN -> ReLU everywhere, global pooling, linear classifier.

    Args:
        width_multiplier: in ``(0, 1]``.  (default: ``1.0``)
        num_classes: classifier outputs.  (default: ``1000``)
        in_channels: image channels.  (default: ``3``)
        stem_stride: stride of the stem.  (default: ``2``)

    Shapes:
        input :math:`(B, C_{in}, H, W)`; output :math:`(B, \\text{num\\_classes})`.
    """

    def __init__(self, width_multiplier: float = 1.0, num_classes: int = 1000, in_channels: int = 3,
                 stem_stride: int = 2) -> None:
        super().__init__()
        self.width_multiplier = check_float("width_multiplier", width_multiplier, 0.0, 1.0, open_low=True)
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.in_channels = check_int("in_channels", in_channels, 1)
        stem_stride = check_int("stem_stride", stem_stride, 1)

        def ch(c: int) -> int:
            return max(1, int(c * self.width_multiplier))

        c = ch(STEM_CHANNELS)
        layers: List[nn.Module] = [nn.Conv2d(self.in_channels, c, 3, stride=stem_stride, padding=1, bias=False),
                                   nn.BatchNorm2d(c), nn.ReLU()]
        for out, stride in _MOBILENET_LAYERS:
            o = ch(out)
            layers += [nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
            c = o
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, self.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"x: expected a tensor [B, {self.in_channels}, H, W], got "
                             f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        return self.fc(self.pool(self.features(x)).flatten(1))

    def extra_repr(self) -> str:
        return f"width_multiplier={self.width_multiplier}, num_classes={self.num_classes}"


def mobilenet_v1(width_multiplier: float = 1.0, num_classes: int = 1000, in_channels: int = 3,
                 stem_stride: int = 2) -> MobileNetV1:
    """The dense MobileNetV1 baseline; ``mobilenet_v1(0.25)`` is the paper's 50.6 % row (41M multiply-adds
    and 0.47M parameters at 224 x 224, 1000 classes)."""
    return MobileNetV1(width_multiplier, num_classes, in_channels, stem_stride)
