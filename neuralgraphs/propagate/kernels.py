"""The products themselves: dense (oneDNN matmul or 1x1 convolution, MKL's GEMM elsewhere) and sparse CSR, the
probe that admits oneDNN's matmul, the blocked transposed copy, and the choice of backend."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.grad import conv2d_weight

from neuralgraphs.propagate.layouts import BATCHED, FEATURE_MAJOR, NODE_MAJOR, _node_major, _nodes_of

# ------------------------------------------------------------------------- backends and their thresholds
BACKENDS = ("auto", "dense", "csr")

# Sparse beats dense below this fraction of non-zeros (forward + input gradient; the weight gradient costs
# the same on both).  CPU: measured by benchmarks/core.py with torch 2.13 (MKL's CSR product against
# oneDNN's 1x1 convolution).  CUDA: an estimate until measured on a GPU.
CSR_MAX_DENSITY = {"cpu": 0.1, "cuda": 0.02}
# Below this many matrix entries the dense path always wins (kernel launch and CSR build dominate).
DENSE_MIN_ENTRIES = 16384


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


# ----------------------------------------------------------------------------------------- oneDNN matmul
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
    """A 4-D view of a node- or feature-major matrix that oneDNN reads as a 1x1 convolution input (no copy;
    batched features never go through the convolution, see below)."""
    if layout == NODE_MAJOR:  # [n, F] -> NCHW [1, n, F, 1]
        return m.view(1, nodes, -1, 1)
    return m.view(1, -1, 1, nodes).permute(0, 3, 1, 2)  # feature-major [F, n] -> channels-last [1, n, F, 1]


def _from_conv(y: Tensor, layout: str) -> Tensor:
    if layout == NODE_MAJOR:
        return y.view(y.size(1), -1)
    return y.permute(0, 2, 3, 1).reshape(-1, y.size(1))


# Batched features ([B, n, S], nodes with several channels) always go through MKL's batched GEMM: oneDNN's
# 1x1 convolution pads the channel (node) dimension to its block size and reorders the operand, 10-60x
# slower at 1-8 nodes of 61k features (B = 16) and 1-2x slower at 32-800 nodes (measured on CPU with torch
# 2.13, forward, transposed and weight-gradient products alike).


def dense_mm(mat: Tensor, m: Tensor, layout: str = NODE_MAJOR) -> Tensor:
    """``mat @ x`` for ``mat`` ``[O, I]`` and features ``m`` with ``I`` nodes in ``layout``; same layout out."""
    o, i = mat.shape
    if layout == NODE_MAJOR and _matmul_ok(mat, m):
        return _matmul(mat, m.t())
    if not m.is_contiguous():
        # the first nodes of a state (row- or batch-strided): MKL's GEMM reads the operand in place (against
        # oneDNN's matmul on the row-strided operand: 1.4-3.6x faster at 100 nodes, F = 4096; 15 % slower at
        # 800 nodes, F = 16384)
        if layout == FEATURE_MAJOR:
            return m @ mat.t()
        return torch.matmul(mat, m)
    if _use_onednn(m) and layout != BATCHED:
        return _from_conv(F.conv2d(_conv_view(m, layout, i), mat.reshape(o, i, 1, 1)), layout)
    if layout == NODE_MAJOR:
        return mat @ m
    if layout == FEATURE_MAJOR:
        return m @ mat.t()
    return torch.matmul(mat, m)


def dense_mm_t(mat: Tensor, m: Tensor, layout: str = NODE_MAJOR) -> Tensor:
    """``mat.t() @ x`` for ``mat`` ``[O, I]`` and features ``m`` with ``O`` nodes in ``layout``; same layout out.

    On CPU a transposed 1x1 convolution reads ``mat`` as it is stored: as fast as a forward convolution with
    a transposed copy of ``mat`` (measured at N = 800 and 3328, F = 512-8192, node- and feature-major),
    without the ``O x I`` copy; batched features take MKL's batched GEMM (see above)."""
    o, i = mat.shape
    if layout == NODE_MAJOR and _matmul_ok(mat, m):
        return _matmul(mat.t(), m.t())
    if layout == FEATURE_MAJOR and o < MATMUL_MIN_INPUT_NODES and _matmul_ok(m, mat):
        # few output nodes: oneDNN's transposed convolution falls back to a slow reference kernel there
        return _matmul(m, mat.t())
    if layout == BATCHED:
        return torch.matmul(mat.t(), m)
    if _use_onednn(m):
        return _from_conv(F.conv_transpose2d(_conv_view(m, layout, o), mat.reshape(o, i, 1, 1)), layout)
    return dense_mm(mat.t(), m, layout)


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
    if layout == g_layout == BATCHED or (not m.is_contiguous() and layout == g_layout):
        # batched features (see above), or a strided state prefix: MKL's GEMM over the features reads it in
        # place.  Not oneDNN's matmul: with the row-strided transpose as its second operand it falls back to
        # a reference kernel, 500x slower
        # (measured at 100 nodes, F = 4096: 256 ms against 0.5 ms; 83 s against 68 ms at 800 nodes)
        if layout == FEATURE_MAJOR:
            return g.t() @ m
        return torch.matmul(g, m.transpose(1, 2)).sum(0)
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


# ----------------------------------------------------------------------------------------- sparse kernel
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


# ---------------------------------------------------------------------------------------- backend choice
def choose_backend(num_active: int, num_out: int, num_in: int, device: torch.device,
                   csr_max_density: Optional[float] = None) -> str:
    """The backend :func:`~neuralgraphs.propagate.propagate` uses for ``backend="auto"``: CSR below
    ``csr_max_density`` active entries (default: ``CSR_MAX_DENSITY`` of the device), dense above it and for
    small matrices."""
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
