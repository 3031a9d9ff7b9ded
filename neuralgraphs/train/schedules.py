"""Learning-rate schedules, label-smoothed cross-entropy, and weight-decay parameter groups.

Each schedule comes in two forms: a multiplier object (``cosine_multiplier``, ``multistep_multiplier``)
mapping a step or epoch count to a factor of the base learning rate, and a function (``cosine``,
``multistep``, ``constant``) wrapping that multiplier in a ``torch.optim.lr_scheduler.LambdaLR``. The
multipliers are small classes holding only numbers, so ``scheduler.state_dict()`` stays loadable with
``torch.load(weights_only=True)`` and they pickle into worker processes.
"""

from __future__ import annotations

import bisect
import math
import re
from typing import Dict, Iterable, List, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from neuralgraphs._checks import check_float, check_int

__all__ = [
    "CosineMultiplier",
    "MultiStepMultiplier",
    "cosine_multiplier",
    "multistep_multiplier",
    "cosine",
    "multistep",
    "constant",
    "label_smoothing_loss",
    "param_groups_no_weight_decay",
]


def _check_optimizer(optimizer) -> torch.optim.Optimizer:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return optimizer


class CosineMultiplier:
    r"""Linear warm-up followed by a half cosine decaying to zero.

    With :math:`W` warm-up steps and :math:`T` total steps, the factor at step :math:`s` is

    .. math::
        m(s) = \begin{cases}
            s / W & 0 \le s < W \\
            \tfrac12\bigl(1 + \cos(\pi\,(s - W) / (T - W))\bigr) & W \le s \le T \\
            0 & s > T
        \end{cases}

    so it rises from 0 to 1 over the warm-up, equals 1 at :math:`s = W` and reaches 0 at :math:`s = T`.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0):
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps: expected fewer than total_steps={self.total_steps}, "
                             f"got {self.warmup_steps}")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        if step >= self.total_steps:
            return 0.0
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(total_steps={self.total_steps}, warmup_steps={self.warmup_steps})"


class MultiStepMultiplier:
    r"""Step decay: :math:`m(e) = \gamma^{k(e)}` with :math:`k(e)` the number of milestones :math:`\le e`."""

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1):
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, (list, tuple, range)):
            raise TypeError(f"milestones: expected a list of ints, got {type(milestones).__name__}")
        values = [check_int("milestones", m, 1) for m in milestones]
        if any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"milestones: expected strictly increasing positive ints, got {values}")
        self.milestones = values
        self.gamma = check_float("gamma", gamma)
        if self.gamma <= 0:
            raise ValueError(f"gamma: expected a positive float, got {self.gamma}")

    def __call__(self, epoch: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, epoch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(milestones={self.milestones}, gamma={self.gamma})"


def cosine_multiplier(total_steps: int, warmup_steps: int = 0) -> CosineMultiplier:
    """The multiplier of :func:`cosine` as a plain callable ``step -> factor``; see :class:`CosineMultiplier`.

    Args:
        total_steps (int): step at which the factor reaches 0, positive.
        warmup_steps (int): linear warm-up length, ``0 <= warmup_steps < total_steps``. (default: ``0``)
    """
    return CosineMultiplier(total_steps, warmup_steps)


def multistep_multiplier(milestones: Sequence[int], gamma: float = 0.1) -> MultiStepMultiplier:
    """The multiplier of :func:`multistep` as a plain callable ``epoch -> factor``.

    Args:
        milestones (list of int): strictly increasing epochs at which the rate is multiplied by ``gamma``.
        gamma (float): the decay factor, positive. (default: ``0.1``)
    """
    return MultiStepMultiplier(milestones, gamma)


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """Per-step linear warm-up then cosine decay to 0 (see :class:`CosineMultiplier`).

    Call ``scheduler.step()`` after every optimizer step; ``total_steps`` is then epochs times batches per
    epoch. With warm-up the very first step runs at learning rate 0.

    Args:
        optimizer (torch.optim.Optimizer): its ``lr`` values are the peak rates.
        total_steps (int): number of scheduler steps until the rate reaches 0, positive.
        warmup_steps (int): linear warm-up steps, ``< total_steps``. (default: ``0``)

    Returns:
        LambdaLR: the scheduler.
    """
    return LambdaLR(_check_optimizer(optimizer), CosineMultiplier(total_steps, warmup_steps))


def multistep(optimizer: torch.optim.Optimizer, milestones: Sequence[int], gamma: float = 0.1) -> LambdaLR:
    """Step decay by ``gamma`` at each milestone; call ``scheduler.step()`` once per epoch.

    The DNW tiny-CIFAR recipe is ``multistep(opt, [80, 120], 0.1)`` over 160 epochs.

    Args:
        optimizer (torch.optim.Optimizer): its ``lr`` values are the initial rates.
        milestones (list of int): strictly increasing positive epochs.
        gamma (float): the decay factor, positive. (default: ``0.1``)

    Returns:
        LambdaLR: the scheduler.
    """
    return LambdaLR(_check_optimizer(optimizer), MultiStepMultiplier(milestones, gamma))


class _One:
    def __call__(self, step: int) -> float:
        return 1.0


def constant(optimizer: torch.optim.Optimizer) -> LambdaLR:
    """A scheduler that keeps the learning rate fixed, so training loops can always call ``step()``.

    Args:
        optimizer (torch.optim.Optimizer): the optimizer.

    Returns:
        LambdaLR: the scheduler.
    """
    return LambdaLR(_check_optimizer(optimizer), _One())


def label_smoothing_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    r"""Mean cross-entropy against smoothed one-hot targets.

    With :math:`C` classes and smoothing :math:`\varepsilon` the target distribution is
    :math:`(1 - \varepsilon)\,\mathrm{onehot}(y) + \varepsilon / C`, so the loss per sample is
    :math:`(1 - \varepsilon)(-\log p_y) + \varepsilon \cdot \frac1C \sum_c (-\log p_c)`. This is the
    definition of ``torch.nn.functional.cross_entropy(..., label_smoothing=...)``, which does the work; the
    function only adds argument checks.

    Args:
        logits (torch.Tensor): ``[N, C]`` unnormalised scores.
        target (torch.Tensor): ``[N]`` int64 class indices in ``0..C-1``.
        smoothing (float): :math:`\varepsilon` in ``[0, 1]``. (default: ``0.0``)

    Returns:
        torch.Tensor: the scalar mean loss.

    Raises:
        ValueError: if ``logits`` or ``target`` is malformed, a target lies outside ``0..C-1`` (checked on
            the host: one synchronisation on a GPU) or ``smoothing`` outside ``[0, 1]``.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits: expected a float [N, C] tensor, got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if not isinstance(target, torch.Tensor) or target.dtype != torch.int64 or target.shape != logits.shape[:1]:
        desc = (f"{target.dtype} tensor of shape {tuple(target.shape)}" if isinstance(target, torch.Tensor)
                else type(target).__name__)
        raise ValueError(f"target: expected an int64 tensor of shape [{logits.shape[0]}], got {desc}")
    smoothing = check_float("smoothing", smoothing)
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing: expected a float in [0, 1], got {smoothing}")
    if target.numel():
        # cross_entropy would skip -100 silently (its ignore_index) and fail deep inside on other values
        low, high = (int(v) for v in torch.aminmax(target))
        if low < 0 or high >= logits.shape[1]:
            bad = low if low < 0 else high
            raise ValueError(f"target: class index {bad} is out of range; allowed are 0..{logits.shape[1] - 1}")
    return torch.nn.functional.cross_entropy(logits, target, label_smoothing=smoothing)


_NORM_TYPES: tuple = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)
if hasattr(torch.nn, "RMSNorm"):
    _NORM_TYPES = _NORM_TYPES + (torch.nn.RMSNorm,)


_NORM_NAME = re.compile(r"Norm(\d+d)?$")


def _is_norm(module: torch.nn.Module) -> bool:
    # The class-name test also catches normalisation layers of other libraries (PyG's LayerNorm, GraphNorm).
    return isinstance(module, _NORM_TYPES) or _NORM_NAME.search(type(module).__name__) is not None


def param_groups_no_weight_decay(model: torch.nn.Module, weight_decay: float,
                                 no_decay_names: Iterable[str] = ()) -> List[Dict]:
    """Split trainable parameters into a decayed group and a group without weight decay.

    Following the ResNet-50 ImageNet recipe, weight decay is not applied to the parameters of
    normalisation layers (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm, and any module whose
    class name ends in ``Norm`` or ``NormNd``, such as PyG's ``GraphNorm``) nor to any bias; everything
    else is decayed. A module that keeps normalisation parameters of its own under other names lists them
    in a ``no_weight_decay`` attribute (a tuple of parameter names, as neuralgraphs' RandWire node
    operations do for their batched BN). Each parameter appears once even when shared; frozen parameters
    (``requires_grad=False``) are left out; empty groups are dropped.

    Args:
        model (torch.nn.Module): the model.
        weight_decay (float): decay of the first group, ``>= 0``.
        no_decay_names (iterable of str): extra substrings; a parameter whose qualified name contains one
            is not decayed either. (default: ``()``)

    Returns:
        list of dict: ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...],
        "weight_decay": 0.0}]``, ready for any ``torch.optim`` optimizer.

    Raises:
        ValueError: if ``weight_decay`` is negative or the model has no trainable parameters.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    weight_decay = check_float("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ValueError(f"weight_decay: expected a float >= 0, got {weight_decay}")
    if isinstance(no_decay_names, str):
        raise TypeError("no_decay_names: expected an iterable of str, got a single str; wrap it in a list")
    extra = list(no_decay_names)
    if not all(isinstance(n, str) for n in extra):
        raise TypeError(f"no_decay_names: expected an iterable of str, got {extra!r}")
    decay, no_decay, seen = [], [], set()
    for module_name, module in model.named_modules():
        norm = _is_norm(module)
        own_norm = tuple(getattr(module, "no_weight_decay", ()))
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            qualified = f"{module_name}.{param_name}" if module_name else param_name
            if norm or param_name == "bias" or param_name in own_norm or any(n in qualified for n in extra):
                no_decay.append(param)
            else:
                decay.append(param)
    if not decay and not no_decay:
        raise ValueError("model: has no trainable parameters")
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
