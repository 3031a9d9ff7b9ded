"""Discrete-time dynamic neural graphs: cycles allowed, T synchronous steps."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from neuralgraphs.dynamics.base import WiredGraph
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import Identity, check_num_nodes, maps_zero_to_zero
from neuralgraphs.propagate import PropagationPlan
from neuralgraphs.wiring import Wiring, straight_through_mask as silence


def _keeps_running_stats(module: nn.Module) -> bool:
    return any(getattr(m, "running_mean", None) is not None for m in module.modules())


class DiscreteTimeGraph(WiredGraph):
    r"""A discrete-time dynamic neural graph.

    .. math::
        \mathbf{Z}(0) = \text{input on the input nodes, } 0 \text{ elsewhere}, \qquad
        \mathbf{Z}(t + 1) = g\big(\mathbf{A}\, f(\mathbf{Z}(t))\big), \quad t = 0, \dots, T - 1

    where :math:`\mathbf{A}` holds the active edges (chosen **once per forward** and shared by all steps),
    :math:`f` is ``node_op`` and :math:`g` is ``post_op``.  Cycles and self-loops are allowed.  With
    ``inject="every_step"`` the input is also added to the input nodes' aggregate at every step.
    Output nodes read :math:`\mathbf{Z}(T)`.

    Only the output nodes of :math:`\mathbf{Z}(T)` are read, so the last step multiplies only the output
    rows of :math:`\mathbf{A}` and applies ``post_op`` to the output range; and when ``node_op`` maps zero
    inputs to zeros (``maps_zero_to_zero``), the first step multiplies only the input columns.  Results
    and gradients are those of the full products (node ops act on each node independently).  A ``post_op``
    with running statistics (batch norm) gets the full last step in training, so that every node's
    statistics are updated as often as in the full computation.

    Args:
        graph: any candidate graph.
        node_op: :math:`f`, e.g. :func:`~neuralgraphs.nodes.image_node_op` with ``order="relu-conv"``.
        post_op: :math:`g`, e.g. a :class:`~neuralgraphs.nodes.NodeNorm`.  (default: identity)
        steps: :math:`T`.  (default: ``5``)
        inject: ``"initial"`` or ``"every_step"``.  (default: ``"initial"``)
        wiring, k, density, scope, seed, backend, weight_transform: see
            :class:`~neuralgraphs.dynamics.base.WiredGraph`.
    """

    def __init__(self, graph: NeuralGraph, node_op: nn.Module, post_op: Optional[nn.Module] = None,
                 wiring: Union[str, Wiring, None] = "dnw", *, steps: int = 5, inject: str = "initial",
                 k: Optional[int] = None, density: Optional[float] = None, scope: str = "global",
                 seed: int = 0, backend: str = "auto",
                 weight_transform: Optional[str] = None) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive int, got {steps!r}")
        if inject not in ("initial", "every_step"):
            raise ValueError(f"inject: expected 'initial' or 'every_step', got {inject!r}")
        if post_op is not None and not isinstance(post_op, nn.Module):
            raise TypeError(f"post_op: expected an nn.Module or None, got {type(post_op).__name__}")
        super().__init__(graph, node_op, wiring, k=k, density=density, scope=scope, seed=seed, backend=backend,
                         weight_transform=weight_transform)
        if post_op is not None:
            check_num_nodes(post_op, graph.num_nodes, "post_op")
        self.post_op = post_op if post_op is not None else Identity()
        self.steps, self.inject = steps, inject
        # A node that no input has reached yet through active edges stays at zero.  Operations that map
        # zeros to zeros guarantee it; for the others each step's state is masked.
        self._mask_silent = not (maps_zero_to_zero(node_op) and maps_zero_to_zero(self.post_op))
        is_input = torch.zeros(graph.num_nodes)
        is_input[graph.inputs] = 1.0
        self.register_buffer("_is_input", is_input, persistent=False)
        # The loss reads only the output nodes after the last step, and before the first step only the input
        # nodes are non-zero: those two steps multiply a sub-matrix (output rows; input columns when the node
        # op maps zeros to zeros).  The results and all gradients are those of the full product.
        n = graph.num_nodes
        self._out_range = (int(graph.outputs.min()), int(graph.outputs.max()) + 1)
        self._in_range = (int(graph.inputs.min()), int(graph.inputs.max()) + 1)
        self.register_buffer("_out_local", graph.outputs - self._out_range[0], persistent=False)
        rows = self._out_range if self._out_range[1] - self._out_range[0] < n else None
        cols = self._in_range if self._in_range[1] - self._in_range[0] < n else None
        self._subsets = []
        for name, r, c in (("last", rows, None), ("first", None, cols), ("single", rows, cols)):
            if (r is None and name != "first") or (c is None and name != "last"):
                continue
            ids, local = self._edge_subset(graph.edge_index, r, c)
            self.register_buffer(f"_{name}_ids", ids, persistent=False)
            self.register_buffer(f"_{name}_edges", local, persistent=False)
            self._subsets.append(name)

    @staticmethod
    def _edge_subset(edge_index: Tensor, rows, cols):
        """Candidates with target in ``rows`` and source in ``cols`` (``(start, end)`` or None for all): their
        ids (ascending, so still in CSR order) and their edges renumbered from the ranges' starts."""
        keep = torch.ones(edge_index.size(1), dtype=torch.bool)
        local = edge_index.clone()
        for row, rng in ((1, rows), (0, cols)):
            if rng is not None:
                keep &= (edge_index[row] >= rng[0]) & (edge_index[row] < rng[1])
                local[row] -= rng[0]
        ids = keep.nonzero().view(-1)
        return ids, local[:, ids].contiguous()

    def _sub_plan(self, name: str, a, num_out: int, num_in: int):
        """The dense plan and weights of one candidate subset for this forward's active edges (its active
        edges are the subset's non-zero weights: listing them would read the selection on the host)."""
        ids, edges = getattr(self, f"_{name}_ids"), getattr(self, f"_{name}_edges")
        plan = PropagationPlan(edges, num_out, num_in, backend="dense", weight_grad=self.weight_grad,
                               weights_masked=True, validated=True)
        return plan, a.weight[ids]

    def plan(self, index: Tensor, x: Optional[Tensor] = None) -> PropagationPlan:
        """The plan of the full product for active edges ``index``; ``x``, an input of the module, lets
        ``backend="auto"`` take the layout of the features into account."""
        n = self.graph.num_nodes
        backend = self.backend if x is None else self._backend_for(index.numel(), n, n, x)
        return PropagationPlan(self.edge_index, n, n, active=index, backend=backend, weight_grad=self.weight_grad,
                               weights_masked=True, validated=True)

    @property
    def silences_unreached(self) -> bool:
        return True

    @property
    def evaluations(self) -> int:
        return self.steps

    def _signals(self, index: Tensor) -> Tensor:
        """``[T, N]``: 1 where a node's state after step ``t + 1`` has been reached from an input through the
        active edges ``index``, else 0."""
        with torch.no_grad():
            src, dst = self.edge_index[0, index], self.edge_index[1, index]
            signal, out = self._is_input.float(), []
            for _ in range(self.steps):
                heard = torch.zeros_like(signal).index_add_(0, dst, signal[src]) > 0
                if self.inject == "every_step":
                    heard |= self._is_input > 0
                signal = heard.float()
                out.append(signal)
        return torch.stack(out)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        a = self.active()
        plan = self.plan(a.index, x)
        n = self.graph.num_nodes
        everything = slice(0, n)
        (o0, o1), (i0, i1) = self._out_range, self._in_range
        # the sub-products are dense: with a sparse full product every step uses the full one
        dense = plan.backend != "csr"
        skip_first = dense and "first" in self._subsets and maps_zero_to_zero(self.node_op)
        rows_only = dense and "last" in self._subsets and not (self.training and _keeps_running_stats(self.post_op))
        z = self._initial_state(x, node_major=plan.backend == "csr")
        x0 = z if self.inject == "every_step" else None
        signals = self._signals(a.index) if self._mask_silent else None
        for t in range(self.steps):
            first, last = t == 0 and skip_first, t == self.steps - 1 and rows_only
            rows = slice(o0, o1) if last else everything
            if first:
                h = self.node_op(z[:, i0:i1], slice(i0, i1))
                step_plan, w = self._sub_plan("single" if last else "first", a, rows.stop - rows.start, i1 - i0)
            else:
                h = self.node_op(z, everything)
                step_plan, w = self._sub_plan("last", a, o1 - o0, n) if last else (plan, a.weight)
            agg = step_plan(h, w, node_dim=1)
            if x0 is not None:
                agg = agg + x0[:, rows]
            z = self.post_op(agg, rows)
            if signals is not None:
                # zeros forward, the gradient of a fed node backward (see StaticGraph)
                z = silence(z, signals[t, rows].to(z.dtype).view((1, -1) + (1,) * (z.dim() - 2)))
        return z.index_select(1, self._out_local if rows_only else self.outputs)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", steps={self.steps}, inject={self.inject!r}"
