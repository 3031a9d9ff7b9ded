r"""Sparse convolution and linear layers whose active weights are chosen by a wiring (DNW's sparse networks).

Every entry of the weight tensor is a candidate edge.  Each forward pass multiplies with

.. math::
    \tilde W = W \odot m, \qquad m = \operatorname{top}_k(|W|)

(for DNW, re-chosen at every call; ties to the lower row-major index, fp32 scores), and the backward pass is
straight-through: :math:`\partial L / \partial W = \partial L / \partial \tilde W` for **every** weight, so an
inactive weight is updated as if it were active and can grow into the top-k.  The other wirings of the
library apply unchanged: a fixed random mask (gradients reach the active weights only), no update (the top-k
of the initial weights, fixed) and, through :func:`~neuralgraphs.wiring.freeze_wiring`, fine-tuning and
one-shot lottery tickets.

The layers keep the parameters of the originals (``weight`` in its usual shape, ``bias`` dense), so a dense
``state_dict`` loads into them and theirs into a dense layer.  They expose the wired-module protocol:
``weight`` (one entry per candidate, in row-major order), ``wiring``, ``active()`` and ``graph``, the layer's
implicit bipartite graph (built on first access).

Optimizer state of inactive weights: the straight-through rule gives every weight its gradient at every step,
so momentum and Adam moments of inactive weights are updated as for active ones (and weight decay shrinks
them).  When a weight swaps into the top-k it arrives with that state: no reset happens, which is what DNW
prescribes (the weight moved into the top-k *because* of those updates).  Under a fixed mask (``"random"``,
``"no_update"``, a frozen wiring) inactive weights get no gradient; optimizers that skip ``None`` gradients
leave their state as it was, but weight decay inside the optimizer still needs a gradient to act.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from neuralgraphs.graph import NeuralGraph
from neuralgraphs.wiring import ActiveEdges, TopKWiring, Wiring, make_wiring

__all__ = ["SparseConv2d", "SparseLinear", "SparseLayer", "layer_graph"]


def layer_graph(weight_shape, groups: int = 1) -> NeuralGraph:
    """The implicit bipartite graph of a layer whose weight has ``weight_shape``.

    Nodes ``0 .. T-1`` are the input *taps* (input channel ``c`` and kernel offset ``(dy, dx)`` at node
    ``(c * kh + dy) * kw + dx``; a linear layer's input features), nodes ``T .. T + out - 1`` the output
    channels.  Weight ``W[o, i, dy, dx]`` of a grouped convolution is the edge from the tap of input channel
    ``g * (in / groups) + i`` (``g = o // (out / groups)``) to output ``o``; edges are in the weight's
    row-major order, which is the candidate order of a :class:`NeuralGraph` (by target, then source).

    Args:
        weight_shape: ``(out, in / groups)`` or ``(out, in / groups, kh, kw)``.
        groups: the layer's groups.  (default: ``1``)
    """
    shape = tuple(int(s) for s in weight_shape)
    out, per_group = shape[0], shape[1]
    taps_per_channel = 1
    for s in shape[2:]:
        taps_per_channel *= s
    in_channels = per_group * groups
    num_taps = in_channels * taps_per_channel
    o = torch.arange(out).view(-1, 1, 1)
    g = o // (out // groups)
    i = torch.arange(per_group).view(1, -1, 1)
    t = torch.arange(taps_per_channel).view(1, 1, -1)
    src = ((g * per_group + i) * taps_per_channel + t).expand(out, per_group, taps_per_channel).reshape(-1)
    dst = (num_taps + o).expand(out, per_group, taps_per_channel).reshape(-1)
    return NeuralGraph(num_taps + out, torch.stack([src, dst]), inputs=torch.arange(num_taps),
                       outputs=torch.arange(num_taps, num_taps + out), acyclic=True)


class SparseLayer:
    """The wired-module protocol of a layer whose candidates are the entries of its ``weight``."""

    weight: Tensor
    wiring: Wiring

    def _init_wiring(self, wiring: Union[str, Wiring], k: Optional[int], density: Optional[float],
                     seed: int) -> None:
        self.wiring = make_wiring(wiring, self.weight.numel(), k=k, density=density, seed=seed)
        self._graph: Optional[NeuralGraph] = None

    def effective_weight(self) -> Tensor:
        """This step's weight ``W * m`` (straight-through for DNW): what the forward pass multiplies with."""
        return self.wiring.masked(self.weight)

    def active(self) -> ActiveEdges:
        """The :class:`~neuralgraphs.wiring.ActiveEdges` of the current weights (indices into the flattened
        weight), without a gradient and leaving the selection hint as it was."""
        hint = getattr(self.wiring, "_hint", None)
        with torch.no_grad():
            edges = self.wiring(self.weight.detach())
        if isinstance(self.wiring, TopKWiring):
            self.wiring._hint = hint
        return edges

    def mask(self) -> Tensor:
        """Boolean mask of the active weights, shaped like ``weight``."""
        return self.active().mask.view(self.weight.shape)

    @property
    def num_kept(self) -> int:
        """Number of active weights."""
        return int(self.wiring.num_active)

    @property
    def density(self) -> float:
        """Fraction of the weights kept, ``num_kept / weight.numel()``."""
        return self.num_kept / self.weight.numel()

    @property
    def graph(self) -> NeuralGraph:
        """The layer's implicit bipartite graph (:func:`layer_graph`), built on first access."""
        if self._graph is None:
            self._graph = layer_graph(self.weight.shape, getattr(self, "groups", 1))
        return self._graph

    def _clear_hint(self) -> None:
        wiring = getattr(self, "wiring", None)
        if isinstance(wiring, TopKWiring):
            wiring._hint = None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._clear_hint()

    #: the dense layer type and the settings a sparse layer takes over from it
    _dense_type: type = nn.Module
    _settings: tuple = ()

    @classmethod
    def from_dense(cls, layer: nn.Module, *, k: Optional[int] = None, density: Optional[float] = None,
                   wiring: Union[str, Wiring] = "dnw", seed: int = 0):
        """A sparse layer that takes over ``layer``'s parameters (the same tensors, so optimizers built on
        ``layer`` keep working), settings and training mode."""
        if not isinstance(layer, cls._dense_type):
            raise TypeError(f"layer: expected a torch.nn.{cls._dense_type.__name__}, got {type(layer).__name__}")
        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        for name in cls._settings:
            setattr(obj, name, getattr(layer, name))
        obj.weight, obj.bias = layer.weight, layer.bias
        obj.train(layer.training)
        obj._init_wiring(wiring, k, density, seed)
        return obj


class SparseConv2d(SparseLayer, nn.Conv2d):
    r"""A 2-D convolution whose active weights are chosen by a wiring at every call.

    .. math::
        \mathbf{y} = (W \odot m) \star \mathbf{x} + \mathbf{b}, \qquad m = \operatorname{top}_k(|W|)

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode: as for
            :class:`torch.nn.Conv2d`.
        k: number of weights kept.  (give ``k`` or ``density``, or neither with ``wiring="complete"``)
        density: fraction of the weights kept, in ``(0, 1]``.
        wiring: ``"dnw"`` (default), ``"random"``, ``"no_update"``, ``"complete"`` or a
            :class:`~neuralgraphs.wiring.Wiring` over ``weight.numel()`` candidates.
        seed: seed of the random wiring.  (default: ``0``)

    Shapes:
        - **input:** :math:`(B, C_{in}, H, W)`
        - **output:** :math:`(B, C_{out}, H', W')`
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, k: Optional[int] = None,
                 density: Optional[float] = None, wiring: Union[str, Wiring] = "dnw", seed: int = 0,
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self._init_wiring(wiring, k, density, seed)

    _dense_type = nn.Conv2d
    _settings = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
                 "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice")

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class SparseLinear(SparseLayer, nn.Linear):
    r"""A linear layer whose active weights are chosen by a wiring at every call.

    .. math::
        \mathbf{y} = \mathbf{x} (W \odot m)^\top + \mathbf{b}, \qquad m = \operatorname{top}_k(|W|)

    Args:
        in_features, out_features, bias: as for :class:`torch.nn.Linear`.
        k, density, wiring, seed: the budget and wiring, as for :class:`SparseConv2d`.

    Shapes:
        - **input:** :math:`(*, F_{in})`
        - **output:** :math:`(*, F_{out})`
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, k: Optional[int] = None,
                 density: Optional[float] = None, wiring: Union[str, Wiring] = "dnw", seed: int = 0,
                 device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_wiring(wiring, k, density, seed)

    _dense_type = nn.Linear
    _settings = ("in_features", "out_features")

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.effective_weight(), self.bias)
