r"""Randomly wired networks (RandWire, Xie et al., ICCV 2019) and their learned-wiring (DNW) counterpart.

The stages are graph modules of C-channel nodes (:mod:`neuralgraphs.models.stages`); this module assembles
them into networks: :class:`RandWireNet` (the paper's ImageNet regimes) and :func:`digits_network` (a small
classifier of the bundled 8x8 digits).  Parameters and multiply-adds are counted by
:func:`neuralgraphs.analysis.count_parameters` and :func:`neuralgraphs.analysis.count_flops`, as for every
model of the library.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralgraphs._checks import check_float, check_int
from neuralgraphs.generators.random_graphs import parse_generator, random_dag, stage_seeds
from neuralgraphs.models.stages import DNWStage, RandWireStage, _uniform, stage_edge_count

__all__ = ["RandWireNet", "DigitsRandWire", "digits_network", "DIGITS_KINDS", "default_generator_params"]

#: Kinds accepted by :func:`digits_network`.
DIGITS_KINDS = ("ws", "er", "ba", "dnw", "complete")


def _relu(x: Tensor) -> Tensor:
    # slope 1 at exactly 0: a stage with no active path from its input to its output outputs zeros, and its
    # candidate edges still learn which of them would carry a signal (see neuralgraphs.nodes.NodeNorm)
    return torch.clamp(x, min=0)


def _conv_out(size: int, stride: int) -> int:
    # 3x3 conv with padding 1
    return (size - 1) // stride + 1


def default_generator_params(kind: str, num_nodes: int) -> Dict[str, Union[int, float]]:
    """Generator parameters used by :func:`digits_network` for ``num_nodes`` nodes.

    ``ws``: ``k = 4, p = 0.75`` (the paper's).  ``er``: ``p = 4 / (N - 1)`` (capped at 1), so the expected
    edge count :math:`p N (N - 1) / 2 = 2N` equals WS(4, .)'s exactly (the paper's ER(0.2) at N = 32 gives
    99 edges).  ``ba``: the ``m`` whose edge count :math:`m (N - m)` is closest to ``2N`` (``m = 2`` for
    N = 16 and 32; the paper's BA(5) is meant for N = 32 and would give 55 edges at N = 16).
    """
    n = check_int("num_nodes", num_nodes, 3)
    if kind == "ws":
        return {"k": 4, "p": 0.75}
    if kind == "er":
        return {"p": min(1.0, 4.0 / (n - 1))}
    if kind == "ba":
        return {"m": min(range(1, n), key=lambda m: (abs(m * (n - m) - 2 * n), m))}
    raise ValueError(f"kind: expected 'ws', 'er' or 'ba', got {kind!r}")


class _StagedNet(nn.Module):
    """Stem -> stages -> head."""

    stem: nn.Module
    stages: nn.ModuleList

    def num_edges(self) -> int:
        """Edges per step over all stages (a random stage's edges with its input / output edges, or k)."""
        return sum(s.num_edges for s in self.stages)

    def num_active_edges(self) -> int:
        """Same as :meth:`num_edges`: the edges active in one step."""
        return self.num_edges()


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
        wiring: ``"random"`` (RandWire stages) or ``"dnw"`` (:class:`~neuralgraphs.models.DNWStage` with ``k``
            equal to the edge count of the random graph the same stage seed draws).  (default: ``"random"``)
        num_blocks: blocks of the DNW stages' candidate DAG (see :class:`~neuralgraphs.models.DNWStage`).
            (default: :obj:`None`, the complete DAG)
    """

    def __init__(self, generator: str = "ws(4,0.75)", num_nodes: int = 32, channels: int = 78,
                 regime: str = "small", num_classes: int = 1000, in_channels: int = 3, drop_path: float = 0.0,
                 dropout: float = 0.0, seed: int = 0, wiring: str = "random",
                 num_blocks: Optional[int] = None) -> None:
        super().__init__()
        kind, params = parse_generator(generator)
        n = check_int("num_nodes", num_nodes, 2)
        c = check_int("channels", channels, 2)
        check_int("num_classes", num_classes, 1)
        check_int("in_channels", in_channels, 1)
        check_int("seed", seed, 0)
        check_float("dropout", dropout, 0.0, 1.0, open_high=True)
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
        stages = []
        for (nodes, cin, cout), s in zip(plan, stage_seeds(seed, len(plan))):
            dag = random_dag(kind, nodes, s, **params)
            if wiring == "random":
                stages.append(RandWireStage(dag, cin, cout, 2, drop_path, seed=s))
            else:
                stages.append(DNWStage(nodes, cin, cout, stage_edge_count(dag), 2, s, drop_path,
                                       num_blocks=num_blocks))
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
        x = F.relu(self.head_bn(self.head_conv(_relu(x))))
        return self.fc(self.dropout(x.mean((2, 3))))


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
        return self.fc(_relu(x).mean((2, 3)))


def digits_network(kind: str, *, num_nodes: int = 16, channels: int = 16, num_stages: int = 2, seed: int = 0,
                   budget: Optional[int] = None, generator_params: Optional[Dict[str, Any]] = None,
                   num_classes: int = 10, drop_path: float = 0.0, num_blocks: Optional[int] = None) -> nn.Module:
    """A small RandWire-style classifier of scikit-learn's 8x8 digits, ``[B, 1, 8, 8] -> [B, num_classes]``.

    Layout: stem ``3x3 conv 1 -> C/2, BN, ReLU, 3x3 conv C/2 -> C, BN`` at 8x8, then ``num_stages`` stages of
    ``num_nodes`` nodes with ``C`` channels each (``C -> C``); each stage has stride 2 while the resolution is
    above 2x2 (8 -> 4 -> 2), stride 1 after; then ReLU, global average pool and a linear classifier.

    Kinds:

    * ``"ws"`` / ``"er"`` / ``"ba"``: :class:`~neuralgraphs.models.RandWireStage` on
      ``random_dag(kind, N, stage_seed)`` with :func:`default_generator_params` (overridden by
      ``generator_params``);
    * ``"dnw"``: :class:`~neuralgraphs.models.DNWStage` whose ``k`` is the edge count (with input / output
      edges) of the WS graph (``generator_params``, default ``k=4, p=0.75``) drawn with the same stage seed,
      or ``budget`` when given -- so ``"ws"`` and ``"dnw"`` have equal active edges for the same seed and
      generator parameters;
    * ``"complete"``: :class:`~neuralgraphs.models.DNWStage` with every candidate active.

    Stage seeds come from :func:`~neuralgraphs.generators.random_graphs.stage_seeds`.

    Args:
        kind: one of :data:`DIGITS_KINDS`.
        num_nodes: nodes per stage.  (default: ``16``)
        channels: ``C``.  (default: ``16``)
        num_stages: number of stages.  (default: ``2``)
        seed: base seed.  (default: ``0``)
        budget: active edges per DNW stage instead of the WS count.  (default: :obj:`None`)
        generator_params: generator parameters for ws / er / ba, and of the WS graph that sets dnw's budget.
            (default: :obj:`None`)
        num_classes: classes.  (default: ``10``)
        drop_path: DropPath probability.  (default: ``0.0``)
        num_blocks: blocks of the DNW / complete stages' candidate DAG.  (default: :obj:`None`, complete)

    Returns:
        A :class:`DigitsRandWire`.
    """
    if kind not in DIGITS_KINDS:
        raise ValueError(f"kind: expected one of {DIGITS_KINDS}, got {kind!r}")
    n = check_int("num_nodes", num_nodes, 3)
    c = check_int("channels", channels, 2)
    num_stages = check_int("num_stages", num_stages, 1)
    seed = check_int("seed", seed, 0)
    check_int("num_classes", num_classes, 1)
    if budget is not None:
        if kind != "dnw":
            raise ValueError(f"budget: only used by kind='dnw', got kind={kind!r}")
        check_int("budget", budget, 1)
    if generator_params is not None:
        if kind == "complete" or (kind == "dnw" and budget is not None):
            raise ValueError(f"generator_params: used by 'ws', 'er', 'ba' and by 'dnw' without a budget (the WS "
                             f"graph that sets it), got kind={kind!r}" + (" with a budget" if kind == "dnw" else ""))
        if not isinstance(generator_params, dict):
            raise TypeError(f"generator_params: expected a dict, got {type(generator_params).__name__}")
    if num_blocks is not None and kind not in ("dnw", "complete"):
        raise ValueError(f"num_blocks: only used by kind='dnw' and 'complete', got kind={kind!r}")
    default_ws = kind in ("ws", "dnw") and budget is None and "k" not in (generator_params or {})
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
                m.weight.copy_(_uniform(m.weight.shape, m.in_channels * 9, gen))
    stages: List[nn.Module] = []
    size = 8
    for s in stage_seeds(seed, num_stages):
        stride = 2 if size > 2 else 1
        size = _conv_out(size, stride)
        if kind in ("ws", "er", "ba"):
            params = {**default_generator_params(kind, n), **(generator_params or {})}
            stages.append(RandWireStage(random_dag(kind, n, s, **params), c, c, stride, drop_path, seed=s))
        elif kind == "dnw":
            ws = {"k": 4, "p": 0.75, **(generator_params or {})}
            k = budget if budget is not None else stage_edge_count(random_dag("ws", n, s, **ws))
            stages.append(DNWStage(n, c, c, k, stride, s, drop_path, num_blocks=num_blocks))
        else:
            stages.append(DNWStage(n, c, c, None, stride, s, drop_path, wiring="complete", num_blocks=num_blocks))
    model = DigitsRandWire(stem, stages, c, num_classes)
    with torch.no_grad():
        model.fc.weight.copy_(_uniform(model.fc.weight.shape, c, gen))
        model.fc.bias.copy_(_uniform(model.fc.bias.shape, c, gen))
    return model
