"""The product over one edge set: :class:`PropagationPlan` (index structures of one ``(edges, active subset)``
pair), the autograd function it runs, and :func:`propagate`, which checks its arguments and builds a plan."""

from __future__ import annotations

import numbers
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from neuralgraphs._compat import eager_in_compile
from neuralgraphs.propagate.cache import _candidates, _row_pointers
from neuralgraphs.propagate.kernels import (
    BACKENDS,
    _sampled_kernel_ok,
    _sparse_kernels_ok,
    choose_backend,
    dense_mm,
    dense_mm_t,
    dense_outer,
    sparse_mm,
)
from neuralgraphs.propagate.layouts import NODE_MAJOR, _as_layout, _canonical, _node_major, _shaped

# Above this fraction of candidates the weight gradient is one dense GEMM; below it, an SDDMM.
GEMM_MIN_CANDIDATE_DENSITY = 0.1


class PropagationPlan:
    """Index structure of one ``(edges, active subset)`` pair, built once and reused.

    A discrete-time graph builds one plan per forward and calls it at every time step; an ODE graph
    at every function evaluation.  What depends on the edges alone (matrix positions, row pointers) is
    cached per ``edge_index`` tensor and shared by every plan over it.

    Args:
        edge_index: edges ``[2, E]`` (row 0 source in ``0..num_in-1``, row 1 target in ``0..num_out-1``),
            sorted by ``(target, source)``.
        num_out: number of output nodes.
        num_in: number of input nodes.
        active: ascending indices of the edges the product uses; the others are absent, whatever their
            weight (their gradient is still produced with ``weight_grad="all"``).  (default: all)
        backend: ``"auto"``, ``"dense"`` or ``"csr"``.
        weight_grad: ``"all"`` (every edge's gradient) or ``"active"`` (only active edges; zero elsewhere).
        weights_masked: the caller guarantees that the weights are zero outside ``active`` (as
            :class:`~neuralgraphs.wiring.ActiveEdges` weights are); the dense backend then uses them as they
            are instead of building a matrix of the active ones.  (default: :obj:`False`)
        validated: the caller guarantees that the edges are distinct, in range and sorted, and ``active``
            ascending and in range (the graph modules pass slices of a :class:`~neuralgraphs.graph.NeuralGraph`
            and of a wiring's selection): their checks, which read values on the host, are skipped.
            (default: :obj:`False`)
    """

    @eager_in_compile  # see __call__; its checks read values on the host
    def __init__(self, edge_index: Tensor, num_out: int, num_in: int, active: Optional[Tensor] = None,
                 backend: str = "auto", weight_grad: str = "all", weights_masked: bool = False,
                 validated: bool = False) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        if weight_grad not in ("all", "active"):
            raise ValueError(f"weight_grad: expected 'all' or 'active', got {weight_grad!r}")
        if not isinstance(weights_masked, bool):
            raise TypeError(f"weights_masked: expected a bool, got {type(weights_masked).__name__}")
        for name, v in (("num_out", num_out), ("num_in", num_in)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
        if not isinstance(edge_index, Tensor) or edge_index.dtype != torch.long or edge_index.dim() != 2 \
                or edge_index.size(0) != 2:
            raise ValueError("edge_index: expected an int64 tensor of shape [2, E]")
        self.num_out, self.num_in = int(num_out), int(num_in)
        self.src, self.dst = edge_index[0], edge_index[1]
        self.num_edges = edge_index.size(1)
        self.edge_index = edge_index
        self.cand = _candidates(edge_index, self.num_out, self.num_in)
        # cached per edge_index tensor: a module passing its buffer again pays nothing
        if validated:
            self.cand.trust()
        self.cand.check(edge_index)
        if not self.cand.in_range:
            raise ValueError(f"edge_index: node index out of range (sources < {num_in}, targets < {num_out})")
        if not self.cand.is_sorted:
            raise ValueError("edge_index: expected edges sorted by (target, source), as NeuralGraph stores them "
                             "(propagate() sorts unsorted edges itself)")
        if active is not None and not validated:
            _check_active(active, self.num_edges)
        self.active = active
        num_active = self.num_edges if active is None else active.numel()
        self.backend = (choose_backend(num_active, self.num_out, self.num_in, edge_index.device)
                        if backend == "auto" else backend)
        self._chosen = backend == "auto"
        self.weight_grad = weight_grad
        # ascending unique indices: E of them are all edges
        self._subset = active is not None and active.numel() < self.num_edges
        self._masked = weights_masked
        self._crow = self._col = None
        self._t = None

    @property
    def flat(self) -> Tensor:
        """Position of every edge in the row-major ``[num_out, num_in]`` matrix."""
        return self.cand.flat(self.edge_index)

    @property
    def complete(self) -> bool:
        """Whether the candidates are every entry of the matrix once, in row-major order."""
        return self.cand.complete(self.edge_index)

    def _active_dst_src(self):
        if self.active is None:
            return self.dst, self.src
        if self.num_in > 0 and self.complete:  # an edge's index is its matrix position: no gather
            return torch.div(self.active, self.num_in, rounding_mode="floor"), self.active % self.num_in
        # index_select: half the time of advanced indexing for these 1-D gathers
        return self.dst.index_select(0, self.active), self.src.index_select(0, self.active)

    def csr_index(self):
        """``(crow, col)`` of the active edges."""
        if self._crow is None:
            if self.active is None:
                self._crow, self._col = self.cand.crow(self.edge_index), self.src
            else:
                dst, src = self._active_dst_src()
                self._crow, self._col = _row_pointers(dst, self.num_out), src
        return self._crow, self._col

    def transposed_index(self):
        """``(crow, col, perm)`` of the transposed active matrix: row pointers over sources, targets as
        columns, and the order of the active values in it.  Built once per plan (per forward)."""
        if self._t is None:
            dst, src = self._active_dst_src()
            # edges are sorted by (target, source): a stable sort by source alone gives (source, target)
            # (row pointers by searchsorted: bincount would synchronise with a GPU to size its output)
            perm = torch.argsort(src, stable=True)
            self._t = (_row_pointers(src.index_select(0, perm), self.num_in), dst.index_select(0, perm), perm)
        return self._t

    def _sampled_outer(self, crow: Tensor, col: Tensor, grad_out: Tensor, x: Tensor) -> Tensor:
        """``(grad_out @ x.t())`` read at the CSR pattern ``(crow, col)`` (SDDMM), in pattern order, for
        node-major ``grad_out`` ``[O, F]`` and ``x`` ``[I, F]``."""
        pattern = torch.sparse_csr_tensor(crow, col, grad_out.new_ones(col.numel()),
                                          (self.num_out, self.num_in), check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, grad_out, x.t(), beta=0.0).values()

    def active_values(self, edge_weight: Tensor) -> Tensor:
        return edge_weight if self.active is None else edge_weight.index_select(0, self.active)

    def dense_matrix(self, edge_weight: Tensor) -> Tensor:
        """The ``[num_out, num_in]`` matrix of the active edges' weights."""
        if self.complete and (self._masked or not self._subset):
            return edge_weight.view(self.num_out, self.num_in)
        # a scatter of the active edges alone: correct whatever the other weights, and cheaper than of all
        flat = self.flat
        if self._subset:
            flat, edge_weight = flat.index_select(0, self.active), edge_weight.index_select(0, self.active)
        # accumulate: parallel edges (multigraphs from PyG utilities) add up, as in the CSR backend
        m = edge_weight.new_zeros(self.num_out * self.num_in)
        m.index_put_((flat,), edge_weight, accumulate=True)
        return m.view(self.num_out, self.num_in)

    def csr_matrix(self, edge_weight: Tensor) -> Tensor:
        crow, col = self.csr_index()
        return torch.sparse_csr_tensor(crow, col, self.active_values(edge_weight),
                                       (self.num_out, self.num_in), dtype=edge_weight.dtype,
                                       device=edge_weight.device, check_invariants=False)

    def csr_matrix_t(self, edge_weight: Tensor) -> Tensor:
        crow, col, perm = self.transposed_index()
        return torch.sparse_csr_tensor(crow, col, self.active_values(edge_weight).index_select(0, perm),
                                       (self.num_in, self.num_out), dtype=edge_weight.dtype,
                                       device=edge_weight.device, check_invariants=False)

    # torch.compile runs the product eagerly (a clean graph break): the plan keeps its index structures and
    # checks in Python-side caches, and the CSR path is MKL's; the node operations around it still compile.
    @eager_in_compile
    def __call__(self, x: Tensor, edge_weight: Tensor, node_dim: int = 0) -> Tensor:
        """Apply to features ``x`` with ``num_in`` nodes at ``node_dim``: ``[num_in, *]`` (``node_dim=0``)
        or ``[B, num_in, *]`` (``node_dim=1``, any memory layout); the nodes become ``num_out``.

        An ``"auto"`` plan that chose CSR runs dense for features of a dtype the device's sparse kernels
        lack (float16 and bfloat16 on CPU); an explicit ``backend="csr"`` raises then.

        Raises:
            TypeError: ``x`` is not a tensor, or ``backend="csr"`` has no kernel for its dtype.
            ValueError: ``node_dim`` is not 0 or 1, ``x`` does not have ``num_in`` nodes at ``node_dim``, or
                the operands are on different devices."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a tensor, got {type(x).__name__}")
        if node_dim not in (0, 1):
            raise ValueError(f"node_dim: expected 0 ([N, *]) or 1 ([B, N, *]), got {node_dim}")
        # before any kernel: a wrong node count would otherwise fail deep inside oneDNN or MKL, or, for
        # empty features, return a tensor of the wrong shape without a word
        if x.dim() <= node_dim or x.size(node_dim) != self.num_in:
            raise ValueError(f"x: expected {self.num_in} nodes (the plan's num_in) at node_dim={node_dim}, got "
                             f"shape {list(x.shape)}")
        if not (x.device == edge_weight.device == self.edge_index.device):
            raise ValueError(f"x: is on {x.device}, edge_weight on {edge_weight.device} and edge_index on "
                             f"{self.edge_index.device}; move them to one device")
        if self.backend == "csr" and not self._chosen and not _sparse_kernels_ok(x):
            raise TypeError(f"backend: 'csr' has no {x.device.type.upper()} kernel for {x.dtype} features; use "
                            f"backend='dense' or 'auto', or float32 / float64 features")
        return _Propagate.apply(x, edge_weight, self, node_dim)

    def weight_gradient(self, grad_out: Tensor, x: Tensor, layout: str = NODE_MAJOR,
                        grad_layout: Optional[str] = None) -> Tensor:
        r""":math:`\langle \mathbf{g}_t, \mathbf{x}_s \rangle` for every edge (or every active edge), for
        ``x`` a matrix in ``layout`` and ``grad_out`` one in ``grad_layout`` (default: ``layout``)."""
        grad_layout = layout if grad_layout is None else grad_layout
        e = self.num_edges
        sampled = _sampled_kernel_ok(grad_out)  # otherwise every sampled product is read off the dense one
        if self.weight_grad == "active" and self.active is not None and self.active.numel() < e:
            if sampled:
                vals = self._sampled_outer(*self.csr_index(), _node_major(grad_out, grad_layout),
                                           _node_major(x, layout))
            else:
                vals = dense_outer(grad_out, x, layout, grad_layout).reshape(-1).index_select(
                    0, self.flat.index_select(0, self.active))
            return grad_out.new_zeros(e).index_copy_(0, self.active, vals)
        if self.complete:
            return dense_outer(grad_out, x, layout, grad_layout).reshape(-1)
        if e >= GEMM_MIN_CANDIDATE_DENSITY * self.num_out * self.num_in or not sampled:
            return dense_outer(grad_out, x, layout, grad_layout).reshape(-1).index_select(0, self.flat)
        return self._sampled_outer(self.cand.crow(self.edge_index), self.src, _node_major(grad_out, grad_layout),
                                   _node_major(x, layout))


class _Propagate(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor, edge_weight: Tensor, plan: PropagationPlan, node_dim: int) -> Tensor:
        shape = list(x.shape)
        shape[node_dim] = plan.num_out
        ctx.plan, ctx.node_dim, ctx.in_shape = plan, node_dim, tuple(x.shape)
        ctx.empty = x.numel() == 0 or plan.num_out == 0
        if ctx.empty:  # nothing to multiply (no samples, features, or nodes); every gradient is zero
            return x.new_zeros(shape)
        # The product runs in the features' precision: under autocast they arrive in half precision while
        # the weights stay float32.  The gradients go back in each input's own dtype.
        ctx.dtypes = (x.dtype, edge_weight.dtype)
        if edge_weight.dtype != x.dtype:
            edge_weight = edge_weight.to(x.dtype)
        sparse = ctx.sparse = plan.backend == "csr" and _sparse_kernels_ok(x)
        m, layout = _canonical(x, node_dim)
        if sparse:
            mat = plan.csr_matrix(edge_weight)
            # the sparse product reads node-major features; the weight gradient reads x in its own layout
            out, out_layout = sparse_mm(mat, _node_major(m, layout).contiguous()), NODE_MAJOR
        else:
            mat = plan.dense_matrix(edge_weight)
            out, out_layout = dense_mm(mat, m, layout), layout
        ctx.layout, ctx.out_layout = layout, out_layout
        ctx.mat = mat if not sparse else None
        ctx.save_for_backward(m, edge_weight if sparse else None)
        return _shaped(out, out_layout, tuple(shape), node_dim)

    @staticmethod
    @once_differentiable  # the backward products are not recorded: a second derivative raises, not lies
    def backward(ctx, grad_out: Tensor):
        plan, node_dim = ctx.plan, ctx.node_dim
        if ctx.empty:
            return (grad_out.new_zeros(ctx.in_shape) if ctx.needs_input_grad[0] else None,
                    grad_out.new_zeros(plan.num_edges) if ctx.needs_input_grad[1] else None, None, None)
        m, edge_weight = ctx.saved_tensors
        x_dtype, w_dtype = ctx.dtypes
        g = _as_layout(grad_out.to(x_dtype), node_dim, ctx.out_layout)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            if ctx.sparse:
                gx, gx_layout = sparse_mm(plan.csr_matrix_t(edge_weight), g), NODE_MAJOR
            else:
                gx, gx_layout = dense_mm_t(ctx.mat, g, ctx.out_layout), ctx.out_layout
            grad_x = _shaped(gx, gx_layout, ctx.in_shape, node_dim)
        if ctx.needs_input_grad[1]:
            grad_w = plan.weight_gradient(g, m, ctx.layout, ctx.out_layout).to(w_dtype)
        return grad_x, grad_w, None, None


@eager_in_compile  # see PropagationPlan.__call__
def propagate(x: Tensor, edge_index: Tensor, edge_weight: Optional[Tensor] = None,
              num_nodes: Optional[int] = None, *, active: Optional[Tensor] = None, backend: str = "auto",
              node_dim: int = 0, weight_grad: str = "all", weights_masked: bool = False) -> Tensor:
    r"""Weighted sum over incoming edges: ``out[t] = sum_{e=(s->t)} edge_weight[e] * x[s]``.

    Args:
        x: node features with the node dimension at ``node_dim``: ``[N_in, *]`` (PyG layout, ``node_dim=0``)
            or ``[B, N_in, *]`` (channels as nodes, e.g. ``[B, N, H, W]``, ``node_dim=1``) in any memory
            layout (contiguous, channels-last, or the transpose of a node-major tensor).
        edge_index: ``[2, E]`` int64, row 0 source, row 1 target; sorted by ``(target, source)`` as a
            :class:`~neuralgraphs.graph.NeuralGraph` stores them (unsorted input is sorted here, at a cost).
            Its checks are cached per tensor, so passing the same tensor again costs no O(E) work.
        edge_weight: ``[E]`` weights.  (default: all ones)
        num_nodes: number of output nodes.  (default: the number of input nodes)
        active: ascending indices of the edges the product uses (the others are absent, whatever their
            weight); the gradient still covers every edge unless ``weight_grad="active"``.  (default: all)
        backend: ``"auto"``, ``"dense"`` or ``"csr"``.  (default: ``"auto"``)
        node_dim: ``0`` or ``1``.  (default: ``0``)
        weight_grad: ``"all"`` or ``"active"``.  (default: ``"all"``)
        weights_masked: ``edge_weight`` is already zero outside ``active`` (e.g. the weights of a wiring's
            :class:`~neuralgraphs.wiring.ActiveEdges`), so the dense backend may use it as it is; with
            :obj:`False` it first takes the active weights alone.  (default: :obj:`False`)

    Returns:
        Tensor of the shape of ``x`` with ``N_in`` replaced by ``num_nodes``.

    Shapes:
        ``x``: :math:`(N_{in}, *)` or :math:`(B, N_{in}, *)`; output: :math:`(N_{out}, *)` or
        :math:`(B, N_{out}, *)`.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a tensor, got {type(x).__name__}")
    if node_dim not in (0, 1):
        raise ValueError(f"node_dim: expected 0 ([N, *]) or 1 ([B, N, *]), got {node_dim}")
    if x.dim() < node_dim + 1:
        raise ValueError(f"x: expected at least {node_dim + 1} dimensions for node_dim={node_dim}, "
                         f"got shape {list(x.shape)}")
    if not isinstance(edge_index, Tensor) or edge_index.dtype != torch.long or edge_index.dim() != 2 \
            or edge_index.size(0) != 2:
        raise ValueError("edge_index: expected an int64 tensor of shape [2, E]")
    num_in = x.size(node_dim)
    if num_nodes is not None and (isinstance(num_nodes, bool) or not isinstance(num_nodes, numbers.Integral)
                                  or num_nodes < 0):
        raise ValueError(f"num_nodes: expected a non-negative int (the number of output nodes) or None, got "
                         f"{num_nodes!r}")
    num_out = num_in if num_nodes is None else int(num_nodes)
    e = edge_index.size(1)
    if edge_weight is None:
        edge_weight = x.new_ones(e)
    if not isinstance(edge_weight, Tensor) or edge_weight.dim() != 1 or edge_weight.numel() != e:
        raise ValueError(f"edge_weight: expected a 1-D tensor with one weight per edge ({e}), got "
                         f"{list(edge_weight.shape) if isinstance(edge_weight, Tensor) else type(edge_weight).__name__}")
    if edge_weight.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"edge_weight: dtype {edge_weight.dtype} differs from x's dtype {x.dtype}")
    cand = _candidates(edge_index, num_out, num_in)
    cand.check(edge_index)
    if not cand.in_range:
        raise ValueError(f"edge_index: node index out of range (sources < {num_in}, targets < {num_out})")
    if not cand.is_sorted:
        perm = torch.argsort(cand.flat(edge_index))
        edge_index, edge_weight = edge_index[:, perm], edge_weight[perm]
        if active is not None:
            _check_active(active, e)  # before it is renumbered (the plan checks it otherwise)
            inv = torch.empty_like(perm)
            inv[perm] = torch.arange(e, device=perm.device)
            active = torch.sort(inv[active]).values
    plan = PropagationPlan(edge_index, num_out, num_in, active=active, backend=backend,
                           weight_grad=weight_grad, weights_masked=weights_masked)
    return plan(x, edge_weight, node_dim)


def _check_active(active: Tensor, num_edges: int) -> None:
    """Strictly ascending edge indices in range: a ValueError on CPU; on other devices a device-side
    assertion, so that no call waits for the device."""
    if not isinstance(active, Tensor) or active.dtype != torch.long or active.dim() != 1:
        raise ValueError("active: expected a 1-D int64 tensor of ascending edge indices")
    if active.numel() == 0:
        return
    ok = (active[0] >= 0) & (active[-1] < num_edges)
    if active.numel() > 1:
        ok = ok & (active[1:] > active[:-1]).all()
    msg = f"active: expected strictly ascending edge indices in [0, {num_edges})"
    if active.device.type == "cpu":
        if not bool(ok):
            raise ValueError(msg)
    else:
        torch._assert_async(ok, msg)
