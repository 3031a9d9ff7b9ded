r"""The one message-passing core: :math:`\mathbf{y}_t = \sum_{e = (s \to t)} w_e \, \mathbf{x}_s`.

Every neural graph in this library (static, discrete-time, continuous-time, sparse layers) calls this
operator.  Two backends give identical results:

* ``"dense"``: the weights are scattered into a ``[N_out, N_in]`` matrix and multiplied (one GEMM forward,
  two backward).
* ``"csr"``: a sparse-dense product over the **active** edges only (a torch CSR tensor, edges already in
  target order); the input gradient is a sparse product with the transpose.

Neither materialises an ``E x F`` message tensor, and neither reorders the features to match the product:
node features may arrive node-major (``[N, F]``, PyG's layout, or ``[B, N, *]`` whose transpose is
contiguous), feature-major (``[B, N, *]`` with the nodes innermost in memory: channels-last images, or
``[B, N]``) or batched (a contiguous ``[B, N, *]``, NCHW), and the dense backend multiplies each in place
(on CPU through oneDNN: its matmul for node-major operands, its 1x1 convolution otherwise; both run these
products near peak, where MKL's GEMM reaches about half of it on the AMD CPUs measured).  The sparse
backend reads node-major features; other layouts are converted once per call.  The output comes back in the layout
the product produced (node-major for ``"csr"``, the input's for ``"dense"``), as a view of the right
shape.  The weight gradient is the true gradient
:math:`\partial L / \partial w_e = \langle \mathbf{g}_t, \mathbf{x}_s \rangle` for **every** edge passed in,
including edges of weight zero -- which is exactly what a straight-through wiring needs.  When the
candidates fill a sizeable part of the ``[N_out, N_in]`` matrix it is one dense GEMM
:math:`\mathbf{G}\mathbf{X}^\top` read at the candidate positions; for a sparse candidate set it is a
sampled product (SDDMM) over the candidates only.  With ``weight_grad="active"`` only the active edges'
gradients are computed (the others are zero), for wirings that are not straight-through.
"""

from __future__ import annotations

import numbers
import weakref
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv2d_weight

from neuralgraphs._compat import eager_in_compile, silence_sparse_beta_notices

silence_sparse_beta_notices()

BACKENDS = ("auto", "dense", "csr")

# Sparse beats dense below this fraction of non-zeros (forward + input gradient; the weight gradient costs
# the same on both).  CPU: measured by benchmarks/core.py with torch 2.13 (MKL's CSR product against
# oneDNN's 1x1 convolution).  CUDA: an estimate until measured on a GPU.
CSR_MAX_DENSITY = {"cpu": 0.1, "cuda": 0.02}
# Below this many matrix entries the dense path always wins (kernel launch and CSR build dominate).
DENSE_MIN_ENTRIES = 16384
# Above this fraction of candidates the weight gradient is one dense GEMM; below it, an SDDMM.
GEMM_MIN_CANDIDATE_DENSITY = 0.1

# The three feature layouts a product reads and writes (see the module docstring).
NODE_MAJOR, FEATURE_MAJOR, BATCHED = "node_major", "feature_major", "batched"


def _sparse_kernels_ok(t: Tensor) -> bool:
    # torch's CPU CSR product (MKL) takes float32 and float64 only; the CUDA one (cuSPARSE) half precision too
    return t.device.type != "cpu" or t.dtype in (torch.float32, torch.float64)


def _sampled_kernel_ok(t: Tensor) -> bool:
    # torch's sampled_addmm takes float32 and float64 only, on every device
    return t.dtype in (torch.float32, torch.float64)


def _use_onednn(x: Tensor) -> bool:
    # On CPU, oneDNN's 1x1 convolution computes these products 1.5-2x faster than MKL's GEMM (measured at
    # N = 800 / 3328, F = 2k-16k); elsewhere GEMM is the natural kernel.
    return x.device.type == "cpu" and x.dtype == torch.float32


# Feature-major weight gradients go through oneDNN's matmul from this many input nodes on: below it the
# matmul's copy of the transposed output gradient costs more than it saves (measured at F = 2048: 0.4-0.6x
# of the convolution at 32 and 124 input nodes, 1.1-1.4x at 508-800).
MATMUL_MIN_INPUT_NODES = 256

_MATMUL_UNRESOLVED = object()
_matmul_op = _MATMUL_UNRESOLVED


def _onednn_matmul():
    """oneDNN's matmul primitive as ``(a, b) -> a @ b.t()``, or :obj:`None` where this torch has none.

    torch exposes it as ``torch.ops.mkldnn._linear_pointwise`` (the op its inductor CPU backend emits for
    linear layers): 1.1-1.5x faster than the 1x1 convolution on node-major operands (N = 800 and 3328,
    F = 4096-16384), and it reads a transposed ``b`` in place.  It is not public API, so it is used only
    after a probe with small integers (exact in fp32), strided operands included, gives the right answer.
    """
    global _matmul_op
    if _matmul_op is _MATMUL_UNRESOLVED:
        _matmul_op = None
        try:
            op = torch.ops.mkldnn._linear_pointwise
            a = torch.arange(6.0).view(2, 3)
            b = torch.arange(12.0).view(3, 4)
            if torch.backends.mkldnn.is_available() and torch.equal(op(a, b.t(), None, "none", [], ""),
                                                                    torch.mm(a, b)) \
                    and torch.equal(op(b.t(), a, None, "none", [], ""), torch.mm(b.t(), a.t())):
                _matmul_op = op
        except (AttributeError, RuntimeError, TypeError):
            pass
    return _matmul_op


def _matmul_ok(a: Tensor, b: Tensor) -> bool:
    """Whether ``a @ b.t()`` may go through oneDNN's matmul: fp32 on CPU, oneDNN enabled, nonempty, and no
    autograd graph to record (the op has no derivative)."""
    return (_use_onednn(a) and a.numel() > 0 and b.numel() > 0 and torch.backends.mkldnn.enabled
            and not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
            and _onednn_matmul() is not None)


# Rows per block of a transposing copy: torch copies a large transposed matrix at about 5 GB/s, and
# 128-row blocks, whose source stays in cache, twice as fast (6.5 MB: 0.93 ms against 0.47 ms).
TRANSPOSE_ROWS = 128


def _transposed_copy(m: Tensor) -> Tensor:
    """``m.t().contiguous()`` of a 2-D ``m``, copied in blocks of :data:`TRANSPOSE_ROWS` rows."""
    if m.size(0) <= TRANSPOSE_ROWS:
        return m.t().contiguous()
    return torch.cat([m[s:s + TRANSPOSE_ROWS].t() for s in range(0, m.size(0), TRANSPOSE_ROWS)], 1)


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b.t()`` through oneDNN's matmul (check :func:`_matmul_ok` first)."""
    return _matmul_op(a, b, None, "none", [], "")


# ------------------------------------------------------------------------------------------ dense kernels
def _conv_view(m: Tensor, layout: str, nodes: int) -> Tensor:
    """A 4-D view of a canonical feature matrix that oneDNN reads as a 1x1 convolution input (no copy)."""
    if layout == NODE_MAJOR:  # [n, F] -> NCHW [1, n, F, 1]
        return m.view(1, nodes, -1, 1)
    if layout == FEATURE_MAJOR:  # [F, n] -> channels-last [1, n, F, 1]
        return m.view(1, -1, 1, nodes).permute(0, 3, 1, 2)
    return m.view(m.size(0), nodes, -1, 1)  # [B, n, S] -> NCHW [B, n, S, 1]


def _from_conv(y: Tensor, layout: str) -> Tensor:
    if layout == NODE_MAJOR:
        return y.view(y.size(1), -1)
    if layout == FEATURE_MAJOR:
        return y.permute(0, 2, 3, 1).reshape(-1, y.size(1))
    return y.view(y.size(0), y.size(1), -1)


def dense_mm(mat: Tensor, m: Tensor, layout: str = NODE_MAJOR) -> Tensor:
    """``mat @ x`` for ``mat`` ``[O, I]`` and features ``m`` with ``I`` nodes in ``layout``; same layout out."""
    o, i = mat.shape
    if layout == NODE_MAJOR and _matmul_ok(mat, m):
        return _matmul(mat, m.t())
    if _use_onednn(m):
        return _from_conv(F.conv2d(_conv_view(m, layout, i), mat.reshape(o, i, 1, 1)), layout)
    if layout == NODE_MAJOR:
        return mat @ m
    if layout == FEATURE_MAJOR:
        return m @ mat.t()
    return torch.matmul(mat, m)


def dense_mm_t(mat: Tensor, m: Tensor, layout: str = NODE_MAJOR) -> Tensor:
    """``mat.t() @ x`` for ``mat`` ``[O, I]`` and features ``m`` with ``O`` nodes in ``layout``; same layout out.

    On CPU a transposed 1x1 convolution reads ``mat`` as it is stored: as fast as a forward convolution with
    a transposed copy of ``mat`` (measured at N = 800 and 3328, F = 512-8192, all three layouts), without
    the ``O x I`` copy."""
    o, i = mat.shape
    if layout == NODE_MAJOR and _matmul_ok(mat, m):
        return _matmul(mat.t(), m.t())
    if _use_onednn(m):
        return _from_conv(F.conv_transpose2d(_conv_view(m, layout, o), mat.reshape(o, i, 1, 1)), layout)
    return dense_mm(mat.t(), m, layout)


def _nodes_of(m: Tensor, layout: str) -> int:
    return m.size(0) if layout == NODE_MAJOR else m.size(1)


def dense_outer(g: Tensor, m: Tensor, layout: str = NODE_MAJOR, g_layout: Optional[str] = None) -> Tensor:
    """``sum_f g[:, f] x[:, f]^T`` (``[O, I]``): the gradient of every matrix entry, for output gradients
    ``g`` (``O`` nodes, in ``g_layout``, default ``layout``) and features ``m`` (``I`` nodes, in ``layout``)."""
    g_layout = layout if g_layout is None else g_layout
    if BATCHED in (layout, g_layout) and layout != g_layout:
        g, m = _node_major(g, g_layout).contiguous(), _node_major(m, layout).contiguous()
        layout = g_layout = NODE_MAJOR
    o, i = _nodes_of(g, g_layout), _nodes_of(m, layout)
    if layout == g_layout == NODE_MAJOR and _matmul_ok(g, m):
        return _matmul(g, m)
    if layout == g_layout == FEATURE_MAJOR and i >= MATMUL_MIN_INPUT_NODES and _matmul_ok(g, m):
        # the matmul wants a contiguous first operand: the transposed gradient, copied in cached blocks
        return _matmul(_transposed_copy(g), m.t())
    if _use_onednn(m):
        # oneDNN's forward 1x1 convolution as a GEMM over the features (the features become the input
        # channels): 1.5-2x faster than its weight-gradient kernel or MKL's GEMM when one operand is
        # node-major (measured at N = 800 and 3328)
        if g_layout == NODE_MAJOR and layout == NODE_MAJOR:
            # node-major g [O, F] read as a channels-last [1, F, O, 1] input, x as the [I, F] weight: the
            # channels-last output [1, I, O, 1] is the row-major [O, I] result, and nothing is copied
            f = g.size(1)
            y = F.conv2d(g.view(1, o, 1, f).permute(0, 3, 1, 2), m.view(i, f, 1, 1))
            return y.permute(0, 2, 3, 1).reshape(o, i)
        if g_layout == NODE_MAJOR:  # feature-major x [F, I] is an NCHW [1, F, I, 1] input
            return F.conv2d(m.view(1, -1, i, 1), g.view(o, -1, 1, 1)).view(o, i)
        if layout == NODE_MAJOR:  # feature-major g
            return F.conv2d(g.view(1, -1, o, 1), m.view(i, -1, 1, 1)).view(i, o).t()
        return conv2d_weight(_conv_view(m, layout, i), (o, i, 1, 1), _conv_view(g, g_layout, o)).view(o, i)
    gm, xm = _node_major(g, g_layout), _node_major(m, layout)
    return gm @ xm.t()


# ------------------------------------------------------------------------------------------------ layouts
# Columns of the dense operand per CSR product call on CPU: a [N, 1024] slice stays in cache while every
# row of the sparse matrix reads it (measured 1.4-2.7x faster than one call at F >= 4096).
SPMM_CHUNK = 1024


def sparse_mm(mat: Tensor, m: Tensor) -> Tensor:
    """``mat @ m`` for a sparse CSR ``mat`` and a dense node-major ``m``."""
    if m.device.type != "cpu":
        return torch.sparse.mm(mat, m)
    # torch.sparse.mm zero-fills a result and copies MKL's product into it; addmm with beta=0 into an
    # uninitialised output skips both (beta=0 ignores the output's old contents, NaN included)
    out = m.new_empty(mat.size(0), m.size(1))
    f = m.size(1)
    if f < 2 * SPMM_CHUNK:
        return torch.addmm(out, mat, m, beta=0.0, out=out)
    for s in range(0, f, SPMM_CHUNK):
        part = out[:, s:s + SPMM_CHUNK]
        torch.addmm(part, mat, m[:, s:s + SPMM_CHUNK], beta=0.0, out=part)
    return out


def _canonical(x: Tensor, node_dim: int) -> Tuple[Tensor, str]:
    """A copy-free matrix view of ``x`` in the layout its memory already has (a copy only when ``x`` has
    none of the three layouts)."""
    n = x.size(node_dim)
    if node_dim == 0:
        return x.reshape(n, -1).contiguous(), NODE_MAJOR
    b = x.size(0)
    if b == 1 and x.is_contiguous():
        return x.view(n, -1), NODE_MAJOR
    if x.transpose(0, 1).is_contiguous():
        return x.transpose(0, 1).reshape(n, -1), NODE_MAJOR
    last = x.movedim(1, -1)
    if last.is_contiguous():
        return last.reshape(-1, n), FEATURE_MAJOR
    if x.is_contiguous():
        return x.view(b, n, -1), BATCHED
    return last.reshape(-1, n).contiguous(), FEATURE_MAJOR


def _as_layout(g: Tensor, node_dim: int, layout: str) -> Tensor:
    """``g`` (the shape of an output) as a contiguous matrix in ``layout``."""
    n = g.size(node_dim)
    if layout == NODE_MAJOR:
        return g.movedim(node_dim, 0).reshape(n, -1).contiguous()
    if layout == FEATURE_MAJOR:
        return g.movedim(1, -1).reshape(-1, n).contiguous()
    return g.reshape(g.size(0), n, -1).contiguous()


def _shaped(m: Tensor, layout: str, shape: Tuple[int, ...], node_dim: int) -> Tensor:
    """The matrix ``m`` (in ``layout``) viewed with the caller's ``shape``."""
    if node_dim == 0 or layout == BATCHED:
        return m.view(shape)
    n, b, rest = shape[1], shape[0], shape[2:]
    if layout == NODE_MAJOR:
        return m.view((n, b) + rest).transpose(0, 1)
    return m.view((b,) + rest + (n,)).movedim(-1, 1)


# ----------------------------------------------------------------------- per-edge_index cache (O(E) work)
class _Candidates:
    """What depends only on an ``edge_index`` tensor and the matrix shape: built once, shared by plans.
    It holds no reference to the tensor itself (the cache entry must not keep it alive)."""

    __slots__ = ("version", "num_out", "num_in", "checked", "in_range", "is_sorted", "strictly_sorted", "_flat",
                 "_crow")

    def __init__(self, num_out: int, num_in: int, version: Optional[int]) -> None:
        self.version, self.num_out, self.num_in = version, num_out, num_in
        self.checked = False
        self.in_range = self.is_sorted = self.strictly_sorted = False
        self._flat = self._crow = None

    def check(self, edge_index: Tensor) -> None:
        """Range and order of the edges, in chunks, so that no temporary of E int64 is made."""
        if self.checked:
            return
        e = edge_index.size(1)
        if edge_index.device.type == "cpu" and e <= _SMALL_CHECK:
            # graphs built per forward (e.g. one level of a DNW stage) pay a few microseconds here, not the
            # ~30 us of a dozen tiny torch operations
            self._check_small(edge_index.numpy())
            return
        src, dst = edge_index[0], edge_index[1]
        self.in_range = e == 0 or (int(src.min()) >= 0 and int(dst.min()) >= 0 and int(src.max()) < self.num_in
                                   and int(dst.max()) < self.num_out)
        sorted_, strict = True, True
        step = 1 << 20
        for s in range(0, e - 1, step):
            d0, d1 = dst[s:s + step], dst[s + 1:s + step + 1]
            s0, s1 = src[s:s + step], src[s + 1:s + step + 1]
            n = d1.numel()
            d0, s0 = d0[:n], s0[:n]
            up, same = d1 > d0, d1 == d0
            sorted_ = sorted_ and bool((up | (same & (s1 >= s0))).all())
            strict = strict and sorted_ and bool((up | (same & (s1 > s0))).all())
            if not sorted_:
                break
        self.is_sorted, self.strictly_sorted = sorted_, strict and sorted_
        self.checked = True

    def _check_small(self, ei: np.ndarray) -> None:
        src, dst = ei[0], ei[1]
        self.in_range = src.size == 0 or bool(src.min() >= 0 and dst.min() >= 0 and src.max() < self.num_in
                                              and dst.max() < self.num_out)
        up, same = dst[1:] > dst[:-1], dst[1:] == dst[:-1]
        self.is_sorted = bool((up | (same & (src[1:] >= src[:-1]))).all())
        self.strictly_sorted = self.is_sorted and bool((up | (same & (src[1:] > src[:-1]))).all())
        self.checked = True

    def flat(self, edge_index: Tensor) -> Tensor:
        """Position of every edge in the row-major ``[num_out, num_in]`` matrix."""
        if self._flat is None:
            self._flat = edge_index[1] * self.num_in + edge_index[0]
        return self._flat

    def complete(self, edge_index: Tensor) -> bool:
        """Whether the edges are every matrix entry once, in row-major order (the matrix is a view):
        ``num_out * num_in`` distinct in-range edges, strictly sorted, can only be that."""
        if edge_index.size(1) != self.num_out * self.num_in:
            return False
        self.check(edge_index)
        return self.in_range and self.strictly_sorted

    def crow(self, edge_index: Tensor) -> Tensor:
        if self._crow is None:
            self._crow = _row_pointers(edge_index[1], self.num_out)
        return self._crow


_CACHE: Dict[int, Tuple["weakref.ref", _Candidates]] = {}
# Up to this many edges a CPU edge_index is checked with numpy in one pass.
_SMALL_CHECK = 1 << 16


def _version(t: Tensor) -> Optional[int]:
    try:
        return t._version
    except RuntimeError:  # inference tensors keep no version counter: never trust a cached answer
        return None


def _candidates(edge_index: Tensor, num_out: int, num_in: int) -> _Candidates:
    """The cached :class:`_Candidates` of ``edge_index`` (rebuilt when the tensor was modified in place)."""
    key, version = id(edge_index), _version(edge_index)
    hit = _CACHE.get(key)
    if hit is not None:
        ref, info = hit
        if ref() is edge_index and version is not None and info.version == version \
                and info.num_out == num_out and info.num_in == num_in:
            return info
    info = _Candidates(num_out, num_in, version)
    if version is not None:
        _CACHE[key] = (weakref.ref(edge_index, lambda _, k=key, cache=_CACHE: cache.pop(k, None)), info)
    return info


def _row_pointers(dst: Tensor, rows: int) -> Tensor:
    """CSR row pointers of target-sorted edges."""
    return torch.searchsorted(dst, torch.arange(rows + 1, device=dst.device))


def choose_backend(num_active: int, num_out: int, num_in: int, device: torch.device,
                   csr_max_density: Optional[float] = None) -> str:
    """The backend :func:`propagate` uses for ``backend="auto"``: CSR below ``csr_max_density`` active
    entries (default: ``CSR_MAX_DENSITY`` of the device), dense above it and for small matrices."""
    if csr_max_density is not None and (isinstance(csr_max_density, bool)
                                        or not isinstance(csr_max_density, (int, float))
                                        or not 0.0 <= csr_max_density <= 1.0):
        raise ValueError(f"csr_max_density: expected a number in [0, 1] or None, got {csr_max_density!r}")
    entries = num_out * num_in
    if entries < DENSE_MIN_ENTRIES:
        return "dense"
    limit = csr_max_density
    if limit is None:
        limit = CSR_MAX_DENSITY.get(torch.device(device).type, CSR_MAX_DENSITY["cuda"])
    return "csr" if num_active < limit * entries else "dense"


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
    """

    @eager_in_compile  # see __call__; its checks read values on the host
    def __init__(self, edge_index: Tensor, num_out: int, num_in: int, active: Optional[Tensor] = None,
                 backend: str = "auto", weight_grad: str = "all", weights_masked: bool = False) -> None:
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
        self.cand.check(edge_index)
        if not self.cand.in_range:
            raise ValueError(f"edge_index: node index out of range (sources < {num_in}, targets < {num_out})")
        if not self.cand.is_sorted:
            raise ValueError("edge_index: expected edges sorted by (target, source), as NeuralGraph stores them "
                             "(propagate() sorts unsorted edges itself)")
        if active is not None:
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
        lack (float16 and bfloat16 on CPU); an explicit ``backend="csr"`` raises then."""
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


def _node_major(m: Tensor, layout: str) -> Tensor:
    """A node-major ``[n, F]`` matrix (a transposed view for feature-major input, a copy for batched)."""
    if layout == NODE_MAJOR:
        return m
    if layout == FEATURE_MAJOR:
        return m.t()
    return m.transpose(0, 1).reshape(m.size(1), -1)


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
