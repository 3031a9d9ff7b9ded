"""Runge-Kutta stage arithmetic with a lean backward, for torchdiffeq's adaptive solvers.

torchdiffeq (0.2.x) keeps the stages of an explicit Runge-Kutta step in one tensor ``k`` of shape
``[*state, stages]`` and forms every stage input as ``y0 + sum(k[..., :i + 1] * (beta_i * dt), -1)``.  Backprop
through that expression allocates and zero-fills a gradient of the **whole** stage tensor per stage (the
backward of the slice), i.e. ``stages x state`` bytes written ``stages`` times per step.  On the paper's tiny
continuous-time classifier (state ``[32, 800, 8, 8]``, dopri5) that zero-filling alone was about 40 % of a
training step.

:func:`runge_kutta_step` computes the same step (same tableau, same stage times, same function evaluations,
same return values, ``k`` still a ``[*state, stages]`` tensor) with each stage combination one autograd node
whose backward is ``grad * c_j`` per stage.  :func:`lean_stages` installs it in torchdiffeq for the duration
of a solve.  The replacement is a drop-in with the same contract, so a solve that runs in another thread
meanwhile computes the same result either way.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections import OrderedDict
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

try:  # torchdiffeq's private layout; anything unexpected disables the lean path (the stock solver runs)
    from torchdiffeq._impl import rk_common as _rk_common
    from torchdiffeq._impl.misc import Perturb as _Perturb
    from torchdiffeq._impl.odeint import SOLVERS as _SOLVERS

    _STOCK_STEP = _rk_common._runge_kutta_step
    _BASE = _rk_common.RKAdaptiveStepsizeODESolver
    _SUPPORTED = list(inspect.signature(_STOCK_STEP).parameters) == ["func", "y0", "f0", "t0", "dt", "t1",
                                                                      "tableau"]
except (ImportError, AttributeError, TypeError, ValueError):  # pragma: no cover - other torchdiffeq layouts
    _SUPPORTED = False

_lock = threading.Lock()
_users = 0


class _StageSum(torch.autograd.Function):
    """``base + sum_j c[j] * k_j`` as one autograd node: backward is ``grad * c[j]`` per stage (no stage tensor)."""

    @staticmethod
    def forward(ctx, base: Tensor, c: Tensor, *ks: Tensor) -> Tensor:
        out = base.clone()
        for j, k in enumerate(ks):
            out.addcmul_(k, c[j])
        ctx.save_for_backward(c, *(ks if ctx.needs_input_grad[1] else ()))
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        c, *ks = ctx.saved_tensors
        grad_c = None
        if ctx.needs_input_grad[1]:
            # only where the step size carries a gradient (torchdiffeq's initial-step estimate does);
            # conjugates as PyTorch's complex autograd convention asks (no-ops for real tensors)
            grad_c = torch.stack([(grad * k.conj()).sum() for k in ks]).to(c.dtype)
        c = c.conj()
        grad_ks = tuple(grad * c[j] if ctx.needs_input_grad[2 + j] else None for j in range(c.numel()))
        return (grad if ctx.needs_input_grad[0] else None, grad_c) + grad_ks


def _stage_sum(base: Tensor, c: Tensor, ks: Sequence[Tensor]) -> Tensor:
    return _StageSum.apply(base, c, *ks)


_HOST_VIEWS: "OrderedDict[int, tuple]" = OrderedDict()


def _host_view(tableau) -> Tuple[List[float], bool]:
    """The tableau's nodes as Python numbers and whether its last stage is the solution (FSAL), read once
    per tableau: torchdiffeq moves the tableau to the state's device for each solve, and comparing its
    entries there at every step would make a GPU solve wait for the device several times per step."""
    key = id(tableau)
    hit = _HOST_VIEWS.get(key)
    if hit is None or hit[0] is not tableau:
        fsal = bool(tableau.c_sol[-1] == 0) and bool((tableau.c_sol[:-1] == tableau.beta[-1]).all())
        hit = (tableau, tableau.alpha.tolist(), fsal)
        with _lock:
            _HOST_VIEWS[key] = hit
            while len(_HOST_VIEWS) > 16:  # the tableau is kept alive by its entry, so ids cannot be reused
                _HOST_VIEWS.popitem(last=False)
    return hit[1], hit[2]


def runge_kutta_step(func, y0: Tensor, f0: Tensor, t0: Tensor, dt: Tensor, t1: Tensor, tableau):
    """One explicit Runge-Kutta step with its error estimate: torchdiffeq's ``_runge_kutta_step`` contract.

    Returns ``(y1, f1, y1_error, k)`` with ``k`` the stages as a ``[*y0.shape, stages]`` tensor (a view of one
    contiguous ``[stages, *y0.shape]`` block, which is cheap to write and to differentiate).  The error estimate
    only steers the step size, which torchdiffeq computes without gradient, so it is formed without one.
    """
    t_dtype = y0.abs().dtype
    t0, dt, t1 = t0.to(t_dtype), dt.to(t_dtype), t1.to(t_dtype)
    alphas, fsal = _host_view(tableau)
    ks: List[Tensor] = [f0]
    yi: Optional[Tensor] = None
    for alpha_i, beta_i in zip(alphas, tableau.beta):
        if alpha_i == 1.0:  # torchdiffeq evaluates just before the step's end, for discontinuities
            ti, perturb = t1, _Perturb.PREV
        else:
            ti, perturb = t0 + alpha_i * dt, _Perturb.NONE
        yi = _stage_sum(y0, beta_i * dt, ks)
        ks.append(func(ti, yi, perturb=perturb))
    if yi is None or not fsal:
        yi = _stage_sum(y0, dt * tableau.c_sol, ks)  # otherwise the last stage input is the solution (FSAL)
    with torch.no_grad():
        c_error = dt * tableau.c_error
        y1_error = torch.zeros_like(y0)
        for j, k in enumerate(ks):
            y1_error.addcmul_(k, c_error[j])
    k = torch.stack(ks, dim=0).movedim(0, -1)
    return yi, ks[-1], y1_error, k


def supports(method: str) -> bool:
    """Whether :func:`lean_stages` applies to a torchdiffeq method (its adaptive Runge-Kutta solvers)."""
    if not _SUPPORTED or method not in _SOLVERS:
        return False
    cls = _SOLVERS[method]
    return isinstance(cls, type) and issubclass(cls, _BASE) and cls._adaptive_step is _BASE._adaptive_step


@contextlib.contextmanager
def lean_stages(method: str, enabled: bool = True) -> Iterator[bool]:
    """Within the block, torchdiffeq's adaptive Runge-Kutta solvers use :func:`runge_kutta_step`.

    Yields whether the lean step is in use (``False`` when disabled, for other methods, or for a torchdiffeq
    whose internals differ from the expected ones).  Re-entrant and thread-safe: the stock step is restored
    when the last block exits.
    """
    global _users
    if not (enabled and supports(method)):
        yield False
        return
    with _lock:
        if _users == 0:
            _rk_common._runge_kutta_step = runge_kutta_step
        _users += 1
    try:
        yield True
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _rk_common._runge_kutta_step = _STOCK_STEP
