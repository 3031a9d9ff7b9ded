"""Build a wiring from a name, and turn trained wirings into fixed ones (fine-tuning, lottery tickets)."""

from __future__ import annotations

from typing import Dict, Optional, Union

import torch
from torch import nn

from neuralgraphs.graph import NeuralGraph
from neuralgraphs.wiring.wiring import CompleteWiring, FixedWiring, RandomWiring, TopKWiring, Wiring, _check_graph

WIRINGS = ("dnw", "random", "complete", "no_update")


def make_wiring(wiring: Union[str, Wiring, None], graph: Union[NeuralGraph, int], *, k: Optional[int] = None,
                density: Optional[float] = None, scope: str = "global", seed: int = 0) -> Wiring:
    """Return a :class:`Wiring` for ``graph``.

    Args:
        wiring: a :class:`Wiring` (returned as is after a size check), :obj:`None` / ``"complete"`` (every
            candidate), ``"dnw"`` (top-k re-chosen every step, straight-through), ``"random"`` (fixed random
            edges with the same budget) or ``"no_update"`` (top-k of the initial weights, never updated).
        graph: the candidate graph, or the number of candidates (global budgets only).
        k, density, scope: the budget (see :func:`~neuralgraphs.wiring.resolve_budget`).
        seed: seed of the random wiring.

    Raises:
        TypeError, ValueError: on an unknown wiring, a wiring built for another graph, or a budget given
            with the complete wiring (which keeps every candidate and would silently ignore it).
    """
    num_candidates = _check_graph(graph)
    if isinstance(wiring, Wiring):
        if wiring.num_candidates != num_candidates:
            raise ValueError(f"wiring: built for {wiring.num_candidates} candidates but the graph has "
                             f"{num_candidates}")
        return wiring
    if wiring is None or wiring == "complete":
        if k is not None or density is not None:
            raise ValueError(f"k, density: the complete wiring keeps all {num_candidates} candidates and takes "
                             "no budget; pass k=None and density=None, or choose 'dnw', 'random' or 'no_update'")
        return CompleteWiring(graph)
    if not isinstance(wiring, str):
        raise TypeError(f"wiring: expected a Wiring or one of {WIRINGS}, got {type(wiring).__name__}")
    if wiring == "dnw":
        return TopKWiring(graph, k=k, density=density, scope=scope)
    if wiring == "random":
        return RandomWiring(graph, k=k, density=density, scope=scope, seed=seed)
    if wiring == "no_update":
        return FixedWiring(graph, k=k, density=density, scope=scope)
    raise ValueError(f"wiring: expected one of {WIRINGS}, got {wiring!r}")


def freeze_wiring(model: nn.Module, reset_to: Optional[Dict[str, torch.Tensor]] = None) -> nn.Module:
    """Replace every top-k wiring in ``model`` by a :class:`FixedWiring` of its current selection.

    With the trained weights kept this fine-tunes a learned wiring; with ``reset_to`` (a state dict of the
    model saved at initialisation) the weights are then reset to their initial values: a one-shot lottery
    ticket on the learned wiring.  Works on any module whose wired submodules expose ``weight`` (candidate
    weights) and ``wiring`` (a :class:`Wiring`), as all neuralgraphs graph modules do.

    Returns:
        ``model``, modified in place.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    found = False
    for module in list(model.modules()):
        wiring = getattr(module, "wiring", None)
        if isinstance(wiring, TopKWiring):
            fixed = FixedWiring.like(wiring, module.weight)
            module.wiring = fixed.to(module.weight.device)
            found = True
    if not found:
        raise ValueError("model: has no submodule with a top-k (DNW) wiring to freeze")
    if reset_to is not None:
        wiring_keys = ("wiring.active_index", "wiring.frozen")
        keep = {k: v for k, v in model.state_dict().items() if k.endswith(wiring_keys)}
        missing, unexpected = model.load_state_dict({**reset_to, **keep}, strict=False)
        bad = [k for k in missing if not k.endswith(wiring_keys)]
        if bad or unexpected:
            raise ValueError(f"reset_to: does not match the model (missing {bad[:5]}, unexpected {unexpected[:5]})")
    return model

