"""Turn the convolution and linear layers of any model into sparse layers, and report what they keep."""

from __future__ import annotations

import copy
import fnmatch
from typing import Dict, List, NamedTuple, Sequence, Tuple, Union

from torch import nn

from neuralgraphs._checks import check_bool, check_choice, check_seed
from neuralgraphs.sparse.budgets import BUDGETS, GlobalSelection, GlobalTopKWiring, erk_counts, global_count
from neuralgraphs.sparse.layers import SparseConv2d, SparseLayer, SparseLinear
from neuralgraphs.wiring import FixedWiring, RandomWiring
from neuralgraphs.wiring.wiring import _check_budget

__all__ = ["sparsify", "density_report", "DensityReport", "SPARSE_WIRINGS", "sparsifiable_layers"]

SPARSE_WIRINGS = ("dnw", "random", "no_update")
_DENSE_TYPES = (nn.Conv2d, nn.Linear)


def sparsifiable_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, layer)`` of every layer :func:`sparsify` converts: modules whose type is exactly
    :class:`torch.nn.Conv2d` or :class:`torch.nn.Linear`, in registration order, each shared module once.

    Subclasses are left alone: they may compute something else in ``forward`` or, like the output projection
    of :class:`torch.nn.MultiheadAttention`, have their weight read without calling ``forward`` at all, where
    a mask applied in ``forward`` would be silently ignored."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if type(m) in _DENSE_TYPES]


def _check_dense(dense: Union[str, Sequence[str]]) -> List[str]:
    patterns = [dense] if isinstance(dense, str) else dense
    try:
        patterns = list(patterns)
    except TypeError:
        raise TypeError(f"dense: expected a layer name or a sequence of names (glob patterns allowed), "
                        f"got {type(dense).__name__}") from None
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"dense: expected layer names (str), got an entry of type {type(p).__name__}")
    return patterns


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _sparse_of(layer: nn.Module, **budget) -> nn.Module:
    cls = SparseConv2d if isinstance(layer, nn.Conv2d) else SparseLinear
    return cls.from_dense(layer, **budget)


def sparsify(model: nn.Module, density: float, *, budget: str = "uniform", wiring: str = "dnw",
             dense: Union[str, Sequence[str]] = (), dense_first: bool = False, inplace: bool = True,
             seed: int = 0) -> nn.Module:
    r"""Replace every ``nn.Conv2d`` and ``nn.Linear`` of ``model`` by a sparse layer that keeps a fraction of
    its weights (DNW's sparse networks: every weight is a candidate edge, the top-k by :math:`|w|` are used
    forward and every weight gets the straight-through gradient).

    Biases, norms and every other parameter stay dense.  The sparse layers take over the layers' parameter
    tensors, so an optimizer built on the dense model keeps working, and ``state_dict`` keys and shapes do
    not change.  A model whose layer is called more than once (a shared module) gets one sparse layer for it.

    Args:
        model: any module.
        density: fraction of the weights kept, in ``(0, 1]`` (of the sparsified layers' weights; layers kept
            dense are outside the budget).
        budget: ``"uniform"`` (the same density in every layer, as in the paper), ``"global"`` (one top-k
            across all layers, re-chosen every forward pass) or ``"erk"`` (Erdos-Renyi-Kernel, as in RigL;
            see :mod:`neuralgraphs.sparse.budgets`).  (default: ``"uniform"``)
        wiring: ``"dnw"`` (top-k re-chosen every step, straight-through), ``"random"`` (fixed random masks with
            the same per-layer counts) or ``"no_update"`` (the top-k of the initial weights, fixed).  Under a
            global budget the fixed wirings take each layer's count from the global top-k of the initial
            weights.  Fine-tuning and one-shot lottery tickets follow from a trained DNW model with
            :func:`~neuralgraphs.wiring.freeze_wiring`.  (default: ``"dnw"``)
        dense: names of layers to keep dense (as in ``model.named_modules()``; glob patterns such as
            ``"layer1.*"`` allowed; each must match a layer).  (default: none)
        dense_first: keep the first convolution (in registration order; the first linear layer if there is no
            convolution) dense, as in the paper's "first layer dense" runs.  (default: :obj:`False`)
        inplace: modify ``model``; else sparsify a deep copy.  (default: :obj:`True`)
        seed: seed of the random masks (layer ``i`` uses ``seed + i``).  (default: ``0``)

    Returns:
        the sparse model (``model`` itself when ``inplace``).

    Raises:
        TypeError, ValueError: on a density outside ``(0, 1]``, an unknown budget or wiring, a ``dense`` name
            that matches no layer, a model without layers to sparsify (or already sparse), or a global / ERK
            budget smaller than the number of layers (some layer would keep nothing).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    _check_budget(None, density)
    check_choice("budget", budget, BUDGETS)
    check_choice("wiring", wiring, SPARSE_WIRINGS)
    patterns = _check_dense(dense)
    check_bool("dense_first", dense_first)
    check_bool("inplace", inplace)
    seed = check_seed("seed", seed)
    already = [name for name, m in model.named_modules() if isinstance(m, SparseLayer)]
    if already:
        raise ValueError(f"model: already holds sparse layers ({', '.join(already[:3])}); sparsify a dense model")
    if not inplace:
        model = copy.deepcopy(model)

    layers = sparsifiable_layers(model)
    names = [name for name, _ in layers]
    keep_dense = set()
    for p in patterns:
        hit = fnmatch.filter(names, p)
        if not hit:
            raise ValueError(f"dense: {p!r} matches no nn.Conv2d / nn.Linear layer of the model; its layers are "
                             f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")
        keep_dense.update(hit)
    if dense_first and layers:
        convs = [name for name, m in layers if isinstance(m, nn.Conv2d)]
        keep_dense.add(convs[0] if convs else names[0])
    layers = [(name, m) for name, m in layers if name not in keep_dense]
    if not layers:
        raise ValueError("model: has no nn.Conv2d or nn.Linear layer to sparsify"
                         + (" (all are kept dense)" if names else ""))

    sizes = [m.weight.numel() for _, m in layers]
    if budget in ("global", "erk") and global_count(sizes, density) < len(layers):
        raise ValueError(f"density: a {budget} budget of {global_count(sizes, density)} weights is smaller than the "
                         f"{len(layers)} layers to sparsify (each needs at least one); expected density >= "
                         f"{len(layers) / sum(sizes):.3g}")

    if budget == "uniform":
        sparse = [_sparse_of(m, density=density, wiring=wiring, seed=seed + i) for i, (_, m) in enumerate(layers)]
    elif budget == "erk":
        counts = erk_counts([tuple(m.weight.shape) for _, m in layers], density)
        sparse = [_sparse_of(m, k=c, wiring=wiring, seed=seed + i) for i, ((_, m), c) in enumerate(zip(layers, counts))]
    else:
        sparse = [_sparse_of(m, wiring="complete") for _, m in layers]
        selection = GlobalSelection(sparse, global_count(sizes, density))
        for i, layer in enumerate(sparse):
            layer.wiring = GlobalTopKWiring(selection, i)
        if wiring != "dnw":
            # the fixed wirings keep each layer's share of the initial global top-k
            for i, layer in enumerate(sparse):
                share = FixedWiring.like(layer.wiring, layer.weight)
                if wiring == "random" and share.num_active > 0:
                    share = RandomWiring(layer.weight.numel(), k=share.num_active, seed=seed + i)
                layer.wiring = share.to(layer.weight.device)
        else:
            # one selection per forward pass of the model, also when weights change behind the version counters
            model.register_forward_pre_hook(selection.invalidate)
    for (name, _), layer in zip(layers, sparse):
        layer.wiring.to(layer.weight.device)
        _replace(model, name, layer)
    return model


class DensityReport(NamedTuple):
    """What the weight layers of a model keep (:func:`density_report`).

    Attributes:
        layers: one dict per ``nn.Conv2d`` / ``nn.Linear`` (sparse or not): ``name``, ``type``, ``kept``,
            ``total``, ``density``, ``sparse`` (whether a wiring selects its weights).
        kept, total: weights of those layers kept and stored.
        parameters_kept, parameters_total: every parameter of the model, sparse weights counted as kept.
    """

    layers: List[Dict[str, object]]
    kept: int
    total: int
    parameters_kept: int
    parameters_total: int

    @property
    def density(self) -> float:
        """Fraction of the layers' weights kept."""
        return self.kept / self.total if self.total else 1.0

    def __str__(self) -> str:
        width = max([len(r["name"]) for r in self.layers] + [5])
        lines = [f"{'layer':<{width}}  {'type':<12} {'kept':>10} {'total':>10} {'density':>8}"]
        for r in self.layers:
            lines.append(f"{r['name']:<{width}}  {r['type']:<12} {r['kept']:>10,} {r['total']:>10,} "
                         f"{r['density']:>8.4f}")
        lines.append(f"{'(weights)':<{width}}  {'':<12} {self.kept:>10,} {self.total:>10,} {self.density:>8.4f}")
        lines.append(f"{'(parameters)':<{width}}  {'':<12} {self.parameters_kept:>10,} {self.parameters_total:>10,} "
                     f"{self.parameters_kept / max(self.parameters_total, 1):>8.4f}")
        return "\n".join(lines)


def density_report(model: nn.Module) -> DensityReport:
    """Per layer and for the whole model: weights kept out of those stored.

    Reads the current selection of every sparse layer (on the host: for analysis, not inside a training
    step).

    Args:
        model: any module.

    Returns:
        DensityReport: printable as a table.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    rows, seen = [], {}
    for name, m in model.named_modules():
        if not isinstance(m, _DENSE_TYPES):
            continue
        total = m.weight.numel()
        is_sparse = isinstance(m, SparseLayer)
        kept = int(m.active().mask.sum()) if is_sparse else total
        seen[id(m.weight)] = kept
        rows.append({"name": name, "type": type(m).__name__, "kept": kept, "total": total,
                     "density": kept / total if total else 1.0, "sparse": is_sparse})
    params = list(model.parameters())
    parameters_kept = sum(seen.get(id(p), p.numel()) for p in params)
    return DensityReport(rows, sum(r["kept"] for r in rows), sum(r["total"] for r in rows), parameters_kept,
                         sum(p.numel() for p in params))
