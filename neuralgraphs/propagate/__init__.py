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

The package holds one idea per file: :mod:`~neuralgraphs.propagate.layouts` (the three feature layouts and
the views between them), :mod:`~neuralgraphs.propagate.kernels` (the dense and sparse products and the
choice of backend), :mod:`~neuralgraphs.propagate.cache` (what an ``edge_index`` costs O(E) work to know,
cached per tensor) and :mod:`~neuralgraphs.propagate.plan` (:class:`PropagationPlan`, its autograd
function and :func:`propagate`).  The tuning constants are re-exported here for reading; each is read
where it is defined, so a change (or a test's monkeypatch) goes to that submodule.
"""

from neuralgraphs._compat import silence_sparse_beta_notices

# before the submodules build any sparse tensor (the filter matches every neuralgraphs module)
silence_sparse_beta_notices()

from neuralgraphs.propagate.kernels import (  # noqa: E402
    BACKENDS,
    CSR_MAX_DENSITY,
    DENSE_MIN_ENTRIES,
    MATMUL_MIN_INPUT_NODES,
    SPMM_CHUNK,
    TRANSPOSE_ROWS,
    choose_backend,
    dense_mm,
    dense_mm_t,
    dense_outer,
    sparse_mm,
)
from neuralgraphs.propagate.layouts import BATCHED, FEATURE_MAJOR, NODE_MAJOR  # noqa: E402
from neuralgraphs.propagate.plan import GEMM_MIN_CANDIDATE_DENSITY, PropagationPlan, propagate  # noqa: E402

__all__ = [
    "propagate",
    "PropagationPlan",
    "choose_backend",
    "BACKENDS",
    "CSR_MAX_DENSITY",
    "DENSE_MIN_ENTRIES",
    "GEMM_MIN_CANDIDATE_DENSITY",
    "MATMUL_MIN_INPUT_NODES",
    "TRANSPOSE_ROWS",
    "SPMM_CHUNK",
    "NODE_MAJOR",
    "FEATURE_MAJOR",
    "BATCHED",
    "dense_mm",
    "dense_mm_t",
    "dense_outer",
    "sparse_mm",
]
