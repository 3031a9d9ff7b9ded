r"""How a model's weight budget is split across its sparse layers.

* ``"uniform"``: every layer keeps the same fraction, :math:`k_l = \operatorname{round}(d \, n_l)` (at least
  one weight), as in the DNW paper's ResNet-50 experiments;
* ``"global"``: one top-k of :math:`|w|` across the weights of all layers, :math:`k = \operatorname{round}(d
  \sum_l n_l)`, re-chosen at every forward pass (:class:`GlobalSelection`), so the layers' shares move with
  training; a layer can end up with few or no active weights;
* ``"erk"`` (Erdos-Renyi-Kernel, Evci et al. 2020, "RigL"): layer :math:`l` with weight shape
  :math:`(n^{out}, n^{in}, h, w)` keeps a fraction proportional to
  :math:`\epsilon \, (n^{out} + n^{in} + h + w) / (n^{out} n^{in} h w)`; :math:`\epsilon` is chosen so that
  the total is :math:`\operatorname{round}(d \sum_l n_l)` exactly, and a layer whose fraction would exceed 1
  is dense and leaves the rest to the others (:func:`erk_counts`).

:math:`n_l` counts the weights of the layers being sparsified; layers kept dense are not part of the budget.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from neuralgraphs.wiring import TopKWiring
from neuralgraphs.wiring.select import topk_masks
from neuralgraphs.wiring.wiring import ActiveEdges, straight_through_mask

__all__ = ["BUDGETS", "erk_counts", "global_count", "GlobalSelection", "GlobalTopKWiring"]

BUDGETS = ("uniform", "global", "erk")


def global_count(sizes: Sequence[int], density: float) -> int:
    """Weights kept by a global budget: ``round(density * sum(sizes))``."""
    return int(round(float(density) * sum(int(n) for n in sizes)))


def erk_counts(shapes: Sequence[Sequence[int]], density: float) -> List[int]:
    """Weights kept per layer under the Erdos-Renyi-Kernel budget.

    Args:
        shapes: the weight shape of each layer (``(out, in / groups, kh, kw)`` or ``(out, in)``).
        density: fraction of all their weights kept, in ``(0, 1]``.

    Returns:
        list: counts, each in ``[1, n_l]``, summing to ``round(density * sum(n_l))`` exactly (when that is at
        least the number of layers).
    """
    sizes = [math.prod(int(s) for s in shape) for shape in shapes]
    raw = [sum(int(s) for s in shape) / n for shape, n in zip(shapes, sizes)]
    target = global_count(sizes, density)
    dense: set = set()
    while True:
        rest = [i for i in range(len(sizes)) if i not in dense]
        budget = target - sum(sizes[i] for i in dense)
        eps = budget / sum(raw[i] * sizes[i] for i in rest) if rest else 0.0
        grown = {i for i in rest if eps * raw[i] > 1.0}
        if not grown:
            break
        dense |= grown
    share = {i: eps * raw[i] * sizes[i] for i in rest}
    counts = [sizes[i] if i in dense else int(math.floor(share[i])) for i in range(len(sizes))]
    # Largest remainders take the weights the floors left over, so the total is exact.
    left = target - sum(counts)
    by_remainder = sorted(rest, key=lambda i: (-(share[i] - math.floor(share[i])), i))
    for i in by_remainder[:max(left, 0)]:
        counts[i] += 1
    for i in range(len(counts)):  # every sparse layer keeps at least one weight, paid by the largest
        if counts[i] == 0:
            j = max(rest, key=lambda j: (counts[j], -j))
            counts[j] -= 1
            counts[i] = 1
    return counts


class GlobalSelection:
    """One top-k of :math:`|w|` over the weights of several layers, chosen once per change of the weights.

    The selection is recomputed when any layer's weight has changed since the last one (an optimizer step,
    ``load_state_dict``; tracked by the tensors' version counters) or when :meth:`invalidate` was called
    (:func:`~neuralgraphs.sparse.sparsify` calls it before every forward pass of the model, so weights
    changed through ``.data`` are seen too).  Scores are fp32 ``|w|``, ties go to the lower index in the
    order of the layers, then row-major; on a GPU no value is read on the host.

    Args:
        layers: the sparse layers, in model order.
        k: weights kept in all of them together.
    """

    def __init__(self, layers: Sequence[nn.Module], k: int) -> None:
        self.layers = list(layers)
        self.k = int(k)
        self.sizes = [layer.weight.numel() for layer in self.layers]
        self._key: Optional[tuple] = None
        self._masks: List[Tensor] = []
        self._bounds = None

    def invalidate(self, *_) -> None:
        """Forget the current selection (the signature of a forward pre-hook)."""
        self._key = None

    def masks(self) -> List[Tensor]:
        """Boolean masks (flattened, on each layer's device) of the active weights of every layer."""
        weights = [layer.weight for layer in self.layers]
        key = tuple((id(w), w._version, w.device) for w in weights)
        if key != self._key:
            with torch.no_grad():
                device = weights[0].device
                scores = [w.detach().reshape(-1).abs().float().to(device) for w in weights]
                masks, self._bounds = topk_masks(scores, self.k, self._bounds)
                self._masks = [m.to(w.device) for m, w in zip(masks, weights)]
            self._key = key
        return self._masks


class GlobalTopKWiring(TopKWiring):
    """The wiring of one layer under a global budget: its part of a :class:`GlobalSelection`.

    ``num_active`` is the layer's current share (read on the host: for analysis, not for a training step).

    Args:
        selection: the shared selection.
        position: this layer's place in ``selection.layers``.
    """

    def __init__(self, selection: GlobalSelection, position: int) -> None:
        nn.Module.__init__(self)
        self.selection, self.position = selection, int(position)
        self.num_candidates = selection.sizes[self.position]
        self.scope, self._layout, self._hint, self.graph_based = "global", None, None, False

    @property
    def num_active(self) -> int:
        return int(self.selection.masks()[self.position].sum())

    def select(self, weight: Tensor) -> Tensor:
        return self.selection.masks()[self.position].nonzero().view(-1)

    def masked(self, weight: Tensor) -> Tensor:
        # the mask as is: its indices would need their count on the host
        self._check_weight(weight)
        return straight_through_mask(weight, self.selection.masks()[self.position].view(weight.shape))

    def forward(self, weight: Tensor) -> ActiveEdges:
        self._check_weight(weight)
        mask = self.selection.masks()[self.position]
        return ActiveEdges(straight_through_mask(weight, mask.view(weight.shape)), mask.nonzero().view(-1), mask,
                           True)

    def extra_repr(self) -> str:
        return (f"layer {self.position} of a global top-{self.selection.k} over {len(self.selection.layers)} "
                f"layers, candidates={self.num_candidates}")
