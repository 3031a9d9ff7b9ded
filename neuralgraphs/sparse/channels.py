r"""Dead channels across layers: drop what a trained sparse model computes but never uses.

A sparse layer can lose whole channels: an output channel of a convolution ``A`` with no kept weight is a
constant map, and an input channel of the next layer ``B`` with no kept weight is never read.  When ``A``'s
output reaches ``B`` only through batch norms and ReLUs (``A -> [BN] -> [ReLU] -> B``, each step read by the
next one alone, as inside a ResNet bottleneck), channel ``c`` of ``A`` can be removed from ``A``, the batch
norm and ``B`` without changing the output, in eval mode:

* if ``B`` does not read it (:math:`W_B[:, c] = 0`);
* if ``A`` does not compute it (:math:`W_A[c] = 0`): it is then the constant
  :math:`r_c = \operatorname{relu}(\gamma_c (b_c - \mu_c) / \sqrt{\sigma^2_c + \epsilon} + \beta_c)` (the
  bias through the batch norm's running statistics and the ReLU), which ``B`` turns into
  :math:`\sum_{k} W_B[o, c, k] \, r_c` added to its bias, exactly when ``B`` has no zero padding (a linear
  layer, any unpadded convolution); a padded convolution sees the constant only inside the image, so the
  channel goes only where :math:`r_c = 0`.

Grouped and depthwise convolutions, layers called more than once, and channels whose output also feeds a
residual sum or anything else are left alone (a residual sum would need the same channels removed on both
of its sides).  The chains are found by tracing the model with :mod:`torch.fx` (wired modules and sparse
layers are leaves); a module whose forward cannot be traced is searched child by child, so a ResNet whose
top-level forward checks its input is searched block by block.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralgraphs.sparse.layers import SparseLayer
from neuralgraphs.sparse.sparsify import _replace

__all__ = ["drop_dead_channels"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_RELU_FUNCTIONS = (F.relu, torch.relu)


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, SparseLayer) or isinstance(getattr(m, "wiring", None), nn.Module):
            return True
        return super().is_leaf_module(m, qualname)


def _baked(layer: nn.Module) -> Tensor:
    """The weight a layer multiplies with now: a sparse layer's current selection applied."""
    with torch.no_grad():
        if isinstance(layer, SparseLayer):
            return layer.weight.detach() * layer.mask().to(layer.weight.dtype)
        return layer.weight.detach()


def _is_layer(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1
                                        and m.padding_mode == "zeros")


def _is_relu(node: torch.fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS and len(node.args) == 1 and not node.kwargs.get("inplace", False)
    return node.op == "call_method" and node.target == "relu" and len(node.args) == 1


def _chains(model: nn.Module, prefix: str = "") -> List[Tuple[str, List[Tuple[str, str]], str]]:
    """``(A, [(kind, name)...], B)`` for every ``A -> BN / ReLU ... -> B`` chain of single readers; kind is
    ``"norm"`` (a module name) or ``"relu"``.  A module whose forward :mod:`torch.fx` cannot trace (input
    checks, data-dependent branches) is searched child by child."""
    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 -- torch.fx refuses data-dependent control flow in many forms
        return [c for name, child in model.named_children() for c in _chains(child, f"{prefix}{name}.")]
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")

    def once(target: str) -> bool:
        return calls[target] == 1

    chains = []
    for node in graph.nodes:
        if node.op != "call_module" or not _is_layer(modules[node.target]) or not once(node.target):
            continue
        steps: List[Tuple[str, str]] = []
        current = node
        while len(current.users) == 1:
            (user,) = current.users
            if user.args[:1] != (current,):
                break
            if user.op == "call_module" and isinstance(modules[user.target], _NORMS) and once(user.target):
                norm = modules[user.target]
                if not (norm.affine and norm.track_running_stats):
                    break
                steps.append(("norm", prefix + user.target))
            elif _is_relu(user, modules):
                steps.append(("relu", ""))
            elif user.op == "call_module" and _is_layer(modules[user.target]) and once(user.target):
                chains.append((prefix + node.target, steps, prefix + user.target))
                break
            else:
                break
            current = user
    return chains


def _shared(model: nn.Module) -> set:
    """Names of modules reachable under more than one name (used in several places)."""
    names: Dict[int, List[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        names.setdefault(id(m), []).append(name)
    return {n for group in names.values() if len(group) > 1 for n in group}


def _constants(a: nn.Module, steps, modules, channels: int) -> Tensor:
    """What each output channel of ``a`` becomes after the chain's norms and ReLUs if its weights are 0."""
    value = torch.zeros(channels, dtype=torch.float64) if a.bias is None else a.bias.detach().double().clone()
    for kind, name in steps:
        if kind == "relu":
            value = value.clamp(min=0)
        else:
            n = modules[name]
            value = ((value - n.running_mean.double()) / torch.sqrt(n.running_var.double() + n.eps)
                     * n.weight.detach().double() + n.bias.detach().double())
    return value


def _new_layer(old: nn.Module, weight: Tensor, bias: Optional[Tensor]) -> nn.Module:
    if isinstance(old, nn.Linear):
        new = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None)
    else:
        new = nn.Conv2d(weight.size(1), weight.size(0), old.kernel_size, old.stride, old.padding, old.dilation,
                        bias=bias is not None)
    new = new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new.train(old.training)


def _new_norm(old: nn.Module, keep: Tensor) -> nn.Module:
    new = type(old)(int(keep.sum()), eps=old.eps, momentum=old.momentum).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        for name in ("weight", "bias"):
            getattr(new, name).copy_(getattr(old, name)[keep])
        for name in ("running_mean", "running_var"):
            getattr(new, name).copy_(getattr(old, name)[keep])
        new.num_batches_tracked.copy_(old.num_batches_tracked)
    return new.train(old.training)


def drop_dead_channels(model: nn.Module) -> Dict[str, int]:
    """Remove, in place, the channels that no layer computes or no layer reads (see the module docstring),
    with every weight's current selection baked in: a sparse layer of such a chain becomes a dense
    ``nn.Conv2d`` / ``nn.Linear`` of the kept channels.  Removing the outputs of one layer can leave inputs of
    the one before unread, so the chains are swept until nothing more goes.

    Args:
        model: a model in eval mode (the constants of dead channels use the batch norms' running statistics).

    Returns:
        ``{A: channels removed}`` for every layer ``A`` that lost output channels; empty when there is nothing
        to remove (or no chain in what :mod:`torch.fx` can trace).
    """
    return _drop(model)[0]


def _drop(model: nn.Module) -> Tuple[Dict[str, int], List[str]]:
    """:func:`drop_dead_channels`, and the names of every layer it replaced."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    shared = _shared(model)
    chains = [(a, steps, b) for a, steps, b in _chains(model)
              if not ({a, b} | {name for kind, name in steps if kind == "norm"}) & shared]
    removed: Dict[str, int] = {}
    replaced: List[str] = []
    while True:
        swept = False
        for a_name, steps, b_name in chains:
            n = _drop_chain(model, a_name, steps, b_name)
            if n:
                removed[a_name] = removed.get(a_name, 0) + n
                replaced += [name for name in (a_name, b_name) if name not in replaced]
                swept = True
        if not swept:
            return removed, replaced


def _drop_chain(model: nn.Module, a_name: str, steps, b_name: str) -> int:
    modules = dict(model.named_modules())
    a, b = modules[a_name], modules[b_name]
    w_a, w_b = _baked(a), _baked(b)
    channels = w_a.size(0)
    if w_b.size(1) != channels:  # a reshape between them (a flatten of a feature map) would show here
        return 0
    dead = (w_a.reshape(channels, -1) == 0).all(1)
    unread = (w_b.transpose(0, 1).reshape(channels, -1) == 0).all(1)
    value = _constants(a, steps, modules, channels)
    fold = dead & ~unread & (value != 0)
    if isinstance(b, nn.Conv2d) and any(p != 0 for p in b.padding):
        fold = torch.zeros_like(fold)  # the constant is cut off at the borders: it stays a channel
    drop = unread | (dead & (value == 0)) | fold
    if bool(drop.all()):
        drop[0] = fold[0] = False  # a layer keeps one channel: zero-sized convolutions are not allowed
    if not bool(drop.any()):
        return 0
    keep = ~drop
    bias_b = None if b.bias is None else b.bias.detach().clone()
    if bool(fold.any()):
        per_channel = w_b.double().reshape(w_b.size(0), channels, -1).sum(2)  # [out, in]: a constant's gain
        extra = (per_channel[:, fold] * value[fold]).sum(1).to(w_b.dtype)
        bias_b = extra if bias_b is None else bias_b + extra
    _replace(model, a_name, _new_layer(a, w_a[keep], None if a.bias is None else a.bias.detach()[keep]))
    for kind, name in steps:
        if kind == "norm":
            _replace(model, name, _new_norm(modules[name], keep))
    _replace(model, b_name, _new_layer(b, w_b[:, keep], bias_b))
    return int(drop.sum())
