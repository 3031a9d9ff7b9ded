"""Continuous-time dynamic neural graphs solved with torchdiffeq."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from neuralgraphs._compat import eager_in_compile
from neuralgraphs.dynamics import _rk
from neuralgraphs.dynamics.base import WiredGraph
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import Identity, check_num_nodes
from neuralgraphs.propagate import PropagationPlan
from neuralgraphs.wiring import Wiring


class _GraphODE(nn.Module):
    """``dZ/dt = g(A f(Z))`` with the plan and weights of one forward; counts evaluations on its owner.

    A new one is made for every forward: the adjoint's backward evaluates the function again, and it must
    see the wiring and weights of the forward it differentiates, not those of a later forward (two forwards
    summed into one loss, gradient accumulation, a forward for logging before ``backward``)."""

    def __init__(self, owner: "ContinuousTimeGraph", plan: PropagationPlan, edge_weight: Tensor,
                 to_memory: Tuple[int, ...], from_memory: Tuple[int, ...]) -> None:
        super().__init__()
        # Held outside the module tree so parameters are not registered twice.
        self.__dict__["owner"] = owner
        self.plan, self.edge_weight = plan, edge_weight
        self.to_memory, self.from_memory = to_memory, from_memory

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        o = self.owner
        o._nfe_total += 1
        n = o.graph.num_nodes
        everything = slice(0, n)
        z = z.permute(self.from_memory)  # the solver's memory-order state as [B, N, *]
        agg = self.plan(o.node_op(z, everything), self.edge_weight, node_dim=1)
        return o.post_op(agg, everything).permute(self.to_memory).contiguous()


class ContinuousTimeGraph(WiredGraph):
    r"""A continuous-time dynamic neural graph.

    .. math::
        \frac{d\mathbf{Z}}{dt} = g\big(\mathbf{A}\, f(\mathbf{Z}(t))\big), \quad t \in [0, T], \qquad
        \mathbf{Z}(0) = \text{input on the input nodes, } 0 \text{ elsewhere}

    solved with ``torchdiffeq``.  The active edges :math:`\mathbf{A}` are selected **once per forward**, not
    per function evaluation.  Output nodes read :math:`\mathbf{Z}(T)`.  The number of function evaluations
    of the last forward (and, with the adjoint, of the last backward) is in :attr:`nfe_forward` /
    :attr:`nfe_backward`.

    Args:
        graph: any candidate graph.
        node_op: :math:`f`.
        post_op: :math:`g`.  (default: identity)
        t_end: :math:`T`.  (default: ``1.0``)
        method: a torchdiffeq method (``"dopri5"``, ``"rk4"``, ``"euler"``, ...).  (default: ``"dopri5"``)
        rtol, atol: solver tolerances.  (default: ``1e-3``, as in the DNW experiments)
        adjoint: use ``odeint_adjoint`` (memory O(1) in the number of steps).  (default: :obj:`False`)
        options: extra solver options, e.g. ``{"step_size": 0.1}`` for fixed-step methods.
        lean_stages: backpropagate through the Runge-Kutta stages of torchdiffeq's adaptive methods
            (``dopri5``, ``bosh3``, ``dopri8``, ...) with neuralgraphs' own step, which computes the same
            stages, solution and error estimate but whose backward does not build a gradient of the whole stage
            tensor for every stage (torchdiffeq's does; it was about 40 % of a training step of the tiny
            classifier).  ``False`` runs torchdiffeq's step unchanged.  Fixed-grid methods are unaffected.
            (default: :obj:`True`)
        wiring, k, density, scope, seed, backend, weight_transform: see
            :class:`~neuralgraphs.dynamics.base.WiredGraph`.
    """

    def __init__(self, graph: NeuralGraph, node_op: nn.Module, post_op: Optional[nn.Module] = None,
                 wiring: Union[str, Wiring, None] = "dnw", *, t_end: float = 1.0, method: str = "dopri5",
                 rtol: float = 1e-3, atol: float = 1e-3, adjoint: bool = False,
                 options: Optional[Dict[str, Any]] = None, lean_stages: bool = True, k: Optional[int] = None,
                 density: Optional[float] = None, scope: str = "global", seed: int = 0,
                 backend: str = "auto", weight_transform: Optional[str] = None) -> None:
        from torchdiffeq._impl.odeint import SOLVERS

        if not isinstance(method, str):
            raise TypeError(f"method: expected a torchdiffeq method name, got {type(method).__name__}")
        if method not in SOLVERS:
            raise ValueError(f"method: expected one of {sorted(SOLVERS)}, got {method!r}")
        for name, v in (("t_end", t_end), ("rtol", rtol), ("atol", atol)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: expected a positive number, got {v!r}")
        for name, v in (("adjoint", adjoint), ("lean_stages", lean_stages)):
            if not isinstance(v, bool):
                raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options: expected a dict, got {type(options).__name__}")
        if post_op is not None and not isinstance(post_op, nn.Module):
            raise TypeError(f"post_op: expected an nn.Module or None, got {type(post_op).__name__}")
        super().__init__(graph, node_op, wiring, k=k, density=density, scope=scope, seed=seed, backend=backend,
                         weight_transform=weight_transform)
        if post_op is not None:
            check_num_nodes(post_op, graph.num_nodes, "post_op")
        self.post_op = post_op if post_op is not None else Identity()
        self.t_end, self.method, self.rtol, self.atol = float(t_end), method, float(rtol), float(atol)
        self.adjoint, self.options, self.lean_stages = adjoint, dict(options or {}), lean_stages
        self.nfe_forward = 0
        self._nfe_total = 0
        self._nfe_before_backward = 0

    @property
    def evaluations(self) -> int:
        """Function evaluations of the last forward solve."""
        return self.nfe_forward

    @property
    def nfe_backward(self) -> int:
        """Function evaluations since the end of the last forward (the adjoint's backward solves)."""
        return self._nfe_total - self._nfe_before_backward

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        a = self.active()
        n = self.graph.num_nodes
        backend = self._backend_for(a.index.numel(), n, n, x)
        plan = PropagationPlan(self.edge_index, n, n, active=a.index, backend=backend,
                               weight_grad=self.weight_grad, weights_masked=True, validated=True)
        z0 = self._initial_state(x, node_major=plan.backend == "csr")
        # torchdiffeq stores the Runge-Kutta stages as one tensor [*state.shape, stages] in logical order, so
        # with a permuted state (nodes innermost or node-major) every stage write is a transposing copy.  The
        # solver gets the state as the contiguous tensor of its memory order instead, and the right-hand
        # side permutes views in and out (6-20 % of a dopri5 training step of the tiny classifier at batch
        # 8-32).  The error norm is over all entries, so the steps taken are the same.
        to_memory = tuple(sorted(range(z0.dim()), key=lambda d: (-z0.stride(d), d)))
        from_memory = tuple(sorted(range(z0.dim()), key=lambda d: to_memory[d]))
        func = _GraphODE(self, plan, a.weight, to_memory, from_memory)
        z0 = z0.permute(to_memory).contiguous()
        start = self._nfe_total
        zt = self._solve(func, z0, a.weight)
        self.nfe_forward = self._nfe_total - start
        self._nfe_before_backward = self._nfe_total
        return zt[-1].permute(from_memory).index_select(1, self.outputs)

    # torch.compile runs the solve eagerly: torchdiffeq's adaptive step control is data-dependent Python
    @eager_in_compile
    def _solve(self, func: _GraphODE, z0: Tensor, edge_weight: Tensor) -> Tensor:
        import torchdiffeq

        t = torch.tensor([0.0, self.t_end], dtype=z0.dtype, device=z0.device)
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options or None)
        with _rk.lean_stages(self.method, self.lean_stages):
            if self.adjoint:
                params = tuple(p for m in (self.node_op, self.post_op) for p in m.parameters() if p.requires_grad)
                return torchdiffeq.odeint_adjoint(func, z0, t, adjoint_params=params + (edge_weight,), **kwargs)
            return torchdiffeq.odeint(func, z0, t, **kwargs)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", t_end={self.t_end}, method={self.method!r}, rtol={self.rtol}, "
                f"atol={self.atol}, adjoint={self.adjoint}, lean_stages={self.lean_stages}")
