r"""The one message-passing core: :math:`\mathbf{y}_t = \sum_{e = (s \to t)} w_e \, \mathbf{x}_s`.

Every neural graph in this library (static, discrete-time, continuous-time, sparse layers) calls this
operator.  Two backends give identical results:

* ``"dense"``: the weights are scattered into a ``[N_out, N_in]`` matrix and multiplied (one GEMM forward,
  two backward).
* ``"csr"``: a sparse-dense product over the **active** edges only (a torch CSR tensor, edges already in
  target order); the input gradient is a sparse product with the transpose.

Neither materialises an ``E x F`` message tensor.  The weight gradient is the true gradient
:math:`\partial L / \partial w_e = \langle \mathbf{g}_t, \mathbf{x}_s \rangle` for **every** edge passed in,
including edges of weight zero -- which is exactly what a straight-through wiring needs.  When the
candidates fill a sizeable part of the ``[N_out, N_in]`` matrix it is one dense GEMM
:math:`\mathbf{G}\mathbf{X}^\top` read at the candidate positions; for a sparse candidate set it is a
sampled product (SDDMM) over the candidates only.  With ``weight_grad="active"`` only the active edges'
gradients are computed (the others are zero), for wirings that are not straight-through.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.grad import conv2d_input, conv2d_weight

BACKENDS = ("auto", "dense", "csr")

# Sparse beats dense below this fraction of non-zeros.  CPU: measured by benchmarks/core.py with torch 2.13:
# torch's CPU CSR product runs at ~5 GFLOP/s against ~70 GFLOP/s for the oneDNN dense path, so CSR wins
# only below ~3 % (1 %: 1.3-2x faster forward+backward; 5 %: slower).  CUDA: cuSPARSE's crossover is
# also low; the value is an estimate until measured on a GPU.
CSR_MAX_DENSITY = {"cpu": 0.03, "cuda": 0.02}
# Below this many matrix entries the dense path always wins (kernel launch and CSR build dominate).
DENSE_MIN_ENTRIES = 16384
# Above this fraction of candidates the weight gradient is one dense GEMM; below it, an SDDMM.
GEMM_MIN_CANDIDATE_DENSITY = 0.25


def _use_onednn(x: Tensor) -> bool:
    # On CPU, oneDNN's 1x1 convolution computes the same products 10-45% faster than MKL's GEMM for these
    # shapes (measured at N = 800 / 3328, F = 4k-16k); elsewhere GEMM is the natural kernel.
    return x.device.type == "cpu" and x.dtype == torch.float32


def dense_mm(mat: Tensor, x: Tensor) -> Tensor:
    """``mat @ x`` for ``mat`` ``[O, I]`` and ``x`` ``[I, F]``."""
    if _use_onednn(x):
        o, i = mat.shape
        return F.conv2d(x.contiguous().view(1, i, -1, 1), mat.view(o, i, 1, 1)).view(o, -1)
    return mat @ x


def dense_mm_t(mat: Tensor, g: Tensor) -> Tensor:
    """``mat.t() @ g`` for ``mat`` ``[O, I]`` and ``g`` ``[O, F]``."""
    if _use_onednn(g):
        o, i = mat.shape
        f = g.numel() // o
        return conv2d_input((1, i, f, 1), mat.view(o, i, 1, 1), g.contiguous().view(1, o, f, 1)).view(i, f)
    return mat.t() @ g


def dense_outer(g: Tensor, x: Tensor) -> Tensor:
    """``g @ x.t()`` (``[O, I]``) for ``g`` ``[O, F]`` and ``x`` ``[I, F]``: the gradient of every matrix entry."""
    if _use_onednn(x):
        o, i = g.size(0), x.size(0)
        f = x.numel() // i
        return conv2d_weight(x.contiguous().view(1, i, f, 1), (o, i, 1, 1), g.contiguous().view(1, o, f, 1)).view(o, i)
    return g @ x.t()


def choose_backend(num_active: int, num_out: int, num_in: int, device: torch.device) -> str:
    """The backend :func:`propagate` uses for ``backend="auto"``."""
    entries = num_out * num_in
    if entries < DENSE_MIN_ENTRIES:
        return "dense"
    limit = CSR_MAX_DENSITY.get(torch.device(device).type, CSR_MAX_DENSITY["cuda"])
    return "csr" if num_active < limit * entries else "dense"


class PropagationPlan:
    """Index structure of one ``(edges, active subset)`` pair, built once and reused.

    A discrete-time graph builds one plan per forward and calls it at every time step; an ODE graph
    at every function evaluation.

    Args:
        edge_index: edges ``[2, E]`` (row 0 source in ``0..num_in-1``, row 1 target in ``0..num_out-1``),
            sorted by ``(target, source)``.
        num_out: number of output nodes.
        num_in: number of input nodes.
        active: ascending indices of the edges whose weight may be non-zero.  (default: all)
        backend: ``"auto"``, ``"dense"`` or ``"csr"``.
        weight_grad: ``"all"`` (every edge's gradient) or ``"active"`` (only active edges; zero elsewhere).
    """

    def __init__(self, edge_index: Tensor, num_out: int, num_in: int, active: Optional[Tensor] = None,
                 backend: str = "auto", weight_grad: str = "all") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        if weight_grad not in ("all", "active"):
            raise ValueError(f"weight_grad: expected 'all' or 'active', got {weight_grad!r}")
        self.num_out, self.num_in = int(num_out), int(num_in)
        self.src, self.dst = edge_index[0], edge_index[1]
        self.num_edges = edge_index.size(1)
        self.active = active
        num_active = self.num_edges if active is None else active.numel()
        self.backend = (choose_backend(num_active, self.num_out, self.num_in, edge_index.device)
                        if backend == "auto" else backend)
        self.weight_grad = weight_grad
        self._flat = None
        self._crow = self._col = None
        self._cand_crow = None

    @property
    def flat(self) -> Tensor:
        """Position of every edge in the row-major ``[num_out, num_in]`` matrix."""
        if self._flat is None:
            self._flat = self.dst * self.num_in + self.src
        return self._flat

    def _active_dst_src(self):
        if self.active is None:
            return self.dst, self.src
        return self.dst[self.active], self.src[self.active]

    def _row_pointers(self, dst: Tensor) -> Tensor:
        """CSR row pointers of target-sorted edges."""
        return torch.searchsorted(dst, torch.arange(self.num_out + 1, device=dst.device))

    def csr_index(self):
        """``(crow, col)`` of the active edges."""
        if self._crow is None:
            dst, src = self._active_dst_src()
            self._crow, self._col = self._row_pointers(dst), src
        return self._crow, self._col

    def candidate_crow(self) -> Tensor:
        if self._cand_crow is None:
            self._cand_crow = self._row_pointers(self.dst)
        return self._cand_crow

    def _sampled_outer(self, crow: Tensor, col: Tensor, grad_out: Tensor, x: Tensor) -> Tensor:
        """``(grad_out @ x.t())`` read at the CSR pattern ``(crow, col)`` (SDDMM), in pattern order."""
        pattern = torch.sparse_csr_tensor(crow, col, grad_out.new_ones(col.numel()),
                                          (self.num_out, self.num_in), check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, grad_out, x.t(), beta=0.0).values()

    def active_values(self, edge_weight: Tensor) -> Tensor:
        return edge_weight if self.active is None else edge_weight[self.active]

    def dense_matrix(self, edge_weight: Tensor) -> Tensor:
        # accumulate: parallel edges (multigraphs from PyG utilities) add up, as in the CSR backend
        m = edge_weight.new_zeros(self.num_out * self.num_in)
        m.index_put_((self.flat,), edge_weight, accumulate=True)
        return m.view(self.num_out, self.num_in)

    def csr_matrix(self, edge_weight: Tensor) -> Tensor:
        crow, col = self.csr_index()
        return torch.sparse_csr_tensor(crow, col, self.active_values(edge_weight),
                                       (self.num_out, self.num_in), dtype=edge_weight.dtype,
                                       device=edge_weight.device, check_invariants=False)

    def __call__(self, x: Tensor, edge_weight: Tensor) -> Tensor:
        """Apply to node-major features ``x`` of shape ``[num_in, F]``; returns ``[num_out, F]``."""
        return _Propagate.apply(x, edge_weight, self)

    def weight_gradient(self, grad_out: Tensor, x: Tensor) -> Tensor:
        r""":math:`\langle \mathbf{g}_t, \mathbf{x}_s \rangle` for every edge (or every active edge)."""
        e = self.num_edges
        if self.weight_grad == "active" and self.active is not None and self.active.numel() < e:
            vals = self._sampled_outer(*self.csr_index(), grad_out, x)
            return grad_out.new_zeros(e).index_copy_(0, self.active, vals)
        if e >= GEMM_MIN_CANDIDATE_DENSITY * self.num_out * self.num_in:
            return dense_outer(grad_out, x).view(-1)[self.flat]
        return self._sampled_outer(self.candidate_crow(), self.src, grad_out, x)


class _Propagate(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor, edge_weight: Tensor, plan: PropagationPlan) -> Tensor:
        if plan.backend == "dense":
            mat = plan.dense_matrix(edge_weight)
            out = dense_mm(mat, x)
        else:
            mat = plan.csr_matrix(edge_weight)
            out = torch.sparse.mm(mat, x)
        ctx.plan = plan
        ctx.mat = mat
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        plan, mat = ctx.plan, ctx.mat
        grad_out = grad_out.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = dense_mm_t(mat, grad_out) if plan.backend == "dense" else torch.sparse.mm(mat.t(), grad_out)
        if ctx.needs_input_grad[1]:
            grad_w = plan.weight_gradient(grad_out, x)
        return grad_x, grad_w, None


def propagate(x: Tensor, edge_index: Tensor, edge_weight: Optional[Tensor] = None,
              num_nodes: Optional[int] = None, *, active: Optional[Tensor] = None, backend: str = "auto",
              node_dim: int = 0, weight_grad: str = "all") -> Tensor:
    r"""Weighted sum over incoming edges: ``out[t] = sum_{e=(s->t)} edge_weight[e] * x[s]``.

    Args:
        x: node features with the node dimension at ``node_dim``: ``[N_in, *]`` (PyG layout, ``node_dim=0``)
            or ``[B, N_in, *]`` (channels as nodes, e.g. ``[B, N, H, W]``, ``node_dim=1``).
        edge_index: ``[2, E]`` int64, row 0 source, row 1 target; sorted by ``(target, source)`` as a
            :class:`~neuralgraphs.graph.NeuralGraph` stores them (unsorted input is sorted here, at a cost).
        edge_weight: ``[E]`` weights.  (default: all ones)
        num_nodes: number of output nodes.  (default: the number of input nodes)
        active: ascending indices of the edges whose weight may be non-zero; the sparse backend skips the
            others, the gradient still covers every edge unless ``weight_grad="active"``.  (default: all)
        backend: ``"auto"``, ``"dense"`` or ``"csr"``.  (default: ``"auto"``)
        node_dim: ``0`` or ``1``.  (default: ``0``)
        weight_grad: ``"all"`` or ``"active"``.  (default: ``"all"``)

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
    num_out = num_in if num_nodes is None else int(num_nodes)
    e = edge_index.size(1)
    if edge_weight is None:
        edge_weight = x.new_ones(e)
    if not isinstance(edge_weight, Tensor) or edge_weight.dim() != 1 or edge_weight.numel() != e:
        raise ValueError(f"edge_weight: expected a 1-D tensor with one weight per edge ({e}), got "
                         f"{list(edge_weight.shape) if isinstance(edge_weight, Tensor) else type(edge_weight).__name__}")
    if edge_weight.dtype != x.dtype:
        raise TypeError(f"edge_weight: dtype {edge_weight.dtype} differs from x's dtype {x.dtype}")
    if e and (int(edge_index[0].max()) >= num_in or int(edge_index[1].max()) >= num_out
              or int(edge_index.min()) < 0):
        raise ValueError(f"edge_index: node index out of range (sources < {num_in}, targets < {num_out})")
    key = edge_index[1] * num_in + edge_index[0]
    if e > 1 and bool((key[1:] < key[:-1]).any()):
        perm = torch.argsort(key)
        edge_index, edge_weight = edge_index[:, perm], edge_weight[perm]
        if active is not None:
            inv = torch.empty_like(perm)
            inv[perm] = torch.arange(e, device=perm.device)
            active = torch.sort(inv[active]).values
    plan = PropagationPlan(edge_index, num_out, num_in, active=active, backend=backend,
                           weight_grad=weight_grad)
    if node_dim == 0:
        out = plan(x.reshape(num_in, -1), edge_weight)
        return out.view(num_out, *x.shape[1:])
    # [B, N, *]: nodes in the middle; one node-major view per call keeps a single code path.
    b = x.size(0)
    xm = x.reshape(b, num_in, -1).transpose(0, 1).reshape(num_in, -1)
    out = plan(xm, edge_weight).view(num_out, b, -1).transpose(0, 1)
    return out.reshape(b, num_out, *x.shape[2:])
