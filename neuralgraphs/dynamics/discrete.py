"""Discrete-time dynamic neural graphs: cycles allowed, T synchronous steps."""

from __future__ import annotations

from typing import Optional, Union

from torch import Tensor, nn

from neuralgraphs.dynamics.base import WiredGraph
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import Identity
from neuralgraphs.propagate import PropagationPlan
from neuralgraphs.wiring import Wiring


class DiscreteTimeGraph(WiredGraph):
    r"""A discrete-time dynamic neural graph.

    .. math::
        \mathbf{Z}(0) = \text{input on the input nodes, } 0 \text{ elsewhere}, \qquad
        \mathbf{Z}(t + 1) = g\big(\mathbf{A}\, f(\mathbf{Z}(t))\big), \quad t = 0, \dots, T - 1

    where :math:`\mathbf{A}` holds the active edges (chosen **once per forward** and shared by all steps),
    :math:`f` is ``node_op`` and :math:`g` is ``post_op``.  Cycles and self-loops are allowed.  With
    ``inject="every_step"`` the input is also added to the input nodes' aggregate at every step.
    Output nodes read :math:`\mathbf{Z}(T)`.

    Args:
        graph: any candidate graph.
        node_op: :math:`f`, e.g. :func:`~neuralgraphs.nodes.image_node_op` with ``order="relu-conv"``.
        post_op: :math:`g`, e.g. a :class:`~neuralgraphs.nodes.NodeNorm`.  (default: identity)
        steps: :math:`T`.  (default: ``5``)
        inject: ``"initial"`` or ``"every_step"``.  (default: ``"initial"``)
        wiring, k, density, scope, seed, backend: see :class:`~neuralgraphs.dynamics.base.WiredGraph`.
    """

    def __init__(self, graph: NeuralGraph, node_op: nn.Module, post_op: Optional[nn.Module] = None,
                 wiring: Union[str, Wiring, None] = "dnw", *, steps: int = 5, inject: str = "initial",
                 k: Optional[int] = None, density: Optional[float] = None, scope: str = "global",
                 seed: int = 0, backend: str = "auto") -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive int, got {steps!r}")
        if inject not in ("initial", "every_step"):
            raise ValueError(f"inject: expected 'initial' or 'every_step', got {inject!r}")
        if post_op is not None and not isinstance(post_op, nn.Module):
            raise TypeError(f"post_op: expected an nn.Module or None, got {type(post_op).__name__}")
        super().__init__(graph, node_op, wiring, k=k, density=density, scope=scope, seed=seed, backend=backend)
        self.post_op = post_op if post_op is not None else Identity()
        self.steps, self.inject = steps, inject

    def plan(self, index: Tensor) -> PropagationPlan:
        n = self.graph.num_nodes
        return PropagationPlan(self.edge_index, n, n, active=index, backend=self.backend,
                               weight_grad=self.weight_grad)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        a = self.active()
        plan = self.plan(a.index)
        n = self.graph.num_nodes
        everything = slice(0, n)
        z = self._initial_state(x, node_major=plan.backend == "csr")
        x0 = z if self.inject == "every_step" else None
        for _ in range(self.steps):
            agg = plan(self.node_op(z, everything), a.weight, node_dim=1)
            if x0 is not None:
                agg = agg + x0
            z = self.post_op(agg, everything)
        return z.index_select(1, self.outputs)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", steps={self.steps}, inject={self.inject!r}"
