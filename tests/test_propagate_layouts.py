"""Memory layouts of the features in :func:`neuralgraphs.propagate.propagate`.

The core multiplies node-major, feature-major (channels-last) and batched (NCHW) features in place and
returns the layout it produced.  Every layout and backend is checked in float32 (the oneDNN path on CPU)
against a float64 dense masked product written here, for the output and both gradients, and in float64
with ``gradcheck``.
"""

import pytest
import torch

from neuralgraphs.generators import complete_graph
from neuralgraphs.propagate import PropagationPlan, propagate
from neuralgraphs.propagate.cache import _candidates
from neuralgraphs.propagate.layouts import _canonical


def node_major(b, n, h, w, dtype):
    return torch.randn(n, b, h, w, dtype=dtype).transpose(0, 1)


def channels_last(b, n, h, w, dtype):
    return torch.randn(b, n, h, w, dtype=dtype).contiguous(memory_format=torch.channels_last)


def nchw(b, n, h, w, dtype):
    return torch.randn(b, n, h, w, dtype=dtype)


def strided(b, n, h, w, dtype):  # no layout at all: every other column of a wider tensor
    return torch.randn(b, n, h, 2 * w, dtype=dtype)[..., ::2]


LAYOUTS = [node_major, channels_last, nchw, strided]


def graph(num_out, num_in, frac, seed):
    gen = torch.Generator().manual_seed(seed)
    flat = torch.sort(torch.randperm(num_out * num_in, generator=gen)[:int(frac * num_out * num_in)]).values
    return torch.stack([flat % num_in, flat // num_in])


def reference(x, ei, w, num_out, num_in):
    """Dense masked product ``einsum('oi,bihw->bohw')`` in float64, with autograd for both gradients."""
    xr = x.detach().double().requires_grad_()
    wr = w.detach().double().requires_grad_()
    mat = wr.new_zeros(num_out, num_in).index_put((ei[1], ei[0]), wr, accumulate=True)
    return xr, wr, torch.einsum("oi,bihw->bohw", mat, xr)


@pytest.mark.parametrize("make", LAYOUTS)
@pytest.mark.parametrize("backend", ["dense", "csr"])
@pytest.mark.parametrize("frac", [0.05, 0.5, 1.0])  # SDDMM, GEMM-gathered and complete weight gradients
def test_layouts_match_dense_reference_float32(make, backend, frac):
    num_out, num_in, b, h, w = 9, 7, 3, 4, 5
    ei = graph(num_out, num_in, frac, seed=int(frac * 100))
    gen = torch.Generator().manual_seed(1)
    x = make(b, num_in, h, w, torch.float32).requires_grad_()
    wt = torch.randn(ei.size(1), generator=gen, requires_grad=True)
    r = torch.randn(b, num_out, h, w, dtype=torch.float64, generator=gen)
    out = propagate(x, ei, wt, num_nodes=num_out, backend=backend, node_dim=1)
    xr, wr, ref = reference(x, ei, wt, num_out, num_in)
    assert out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    (out.double() * r).sum().backward()
    (ref * r).sum().backward()
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wt.grad.double(), wr.grad, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("make", LAYOUTS)
@pytest.mark.parametrize("backend", ["dense", "csr"])
def test_layouts_gradcheck_float64(make, backend):
    ei = graph(5, 4, 0.6, seed=3)
    x = make(2, 4, 2, 3, torch.float64).requires_grad_()
    w = torch.randn(ei.size(1), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: propagate(x, ei, w, num_nodes=5, backend=backend, node_dim=1), (x, w))


@pytest.mark.parametrize("backend", ["dense", "csr"])
def test_vector_features_batch_major_and_column_major(backend):
    # [B, N] as PyTorch lays out a batch of vectors (nodes innermost) and its column-major transpose
    ei = graph(6, 6, 0.5, seed=4)
    w = torch.randn(ei.size(1))
    mat = torch.zeros(6, 6).index_put((ei[1], ei[0]), w)
    for x in (torch.randn(5, 6), torch.randn(6, 5).t()):
        torch.testing.assert_close(propagate(x, ei, w, backend=backend, node_dim=1), x @ mat.t())


def test_dense_output_keeps_the_input_layout():
    ei = complete_graph(8).edge_index
    w = torch.randn(ei.size(1))
    x = channels_last(2, 8, 3, 3, torch.float32)
    assert propagate(x, ei, w, backend="dense", node_dim=1).is_contiguous(memory_format=torch.channels_last)
    xn = node_major(2, 8, 3, 3, torch.float32)
    assert propagate(xn, ei, w, backend="dense", node_dim=1).transpose(0, 1).is_contiguous()
    # the sparse backend writes node-major
    assert propagate(x, ei, w, backend="csr", node_dim=1).transpose(0, 1).is_contiguous()


def test_complete_candidates_use_the_weights_as_the_matrix():
    g = complete_graph(5)
    plan = PropagationPlan(g.edge_index, 5, 5, backend="dense")
    assert plan.complete
    w = torch.randn(25)
    assert plan.dense_matrix(w).data_ptr() == w.data_ptr()  # a view, no scatter
    # a candidate set with one edge missing is not complete, and scatters
    ei = g.edge_index[:, 1:]
    assert not PropagationPlan(ei, 5, 5).complete


def test_edge_index_cache_follows_in_place_changes():
    ei = torch.tensor([[0, 1], [1, 2]])
    x = torch.randn(3, 2)
    w = torch.ones(2)
    torch.testing.assert_close(propagate(x, ei, w), torch.stack([torch.zeros(2), x[0], x[1]]))
    assert _candidates(ei, 3, 3).checked
    ei[0, 1] = 5  # out of range now: the cached check must not hide it
    with pytest.raises(ValueError, match="edge_index"):
        propagate(x, ei, w)
    ei[0, 1] = 0
    ei[1, 1] = 0  # unsorted now: the result must still be right
    torch.testing.assert_close(propagate(x, ei, w), torch.stack([x[0], x[0], torch.zeros(2)]))


def test_reused_plan_follows_new_and_modified_weights():
    # the plan caches the transposed matrix for the input gradient; new or modified weights must not
    # see a stale copy
    g = complete_graph(6)
    plan = PropagationPlan(g.edge_index, 6, 6, backend="dense")
    x = torch.randn(4, 6, 3, 3).contiguous(memory_format=torch.channels_last)
    w = torch.randn(36)
    for step in range(4):
        if step == 2:
            w.mul_(-2.0)  # in place: same memory, new version
        elif step == 3:
            w = torch.randn(36)
        xr = x.clone().requires_grad_()
        plan(xr, w, node_dim=1).pow(2).sum().backward()
        xd = x.clone().requires_grad_()
        torch.einsum("oi,bihw->bohw", w.view(6, 6), xd).pow(2).sum().backward()
        torch.testing.assert_close(xr.grad, xd.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [node_major, channels_last])
def test_sparse_product_in_feature_chunks(monkeypatch, make):
    # the CPU sparse product runs over slices of the features; a small chunk exercises the loop
    import neuralgraphs.propagate.kernels as kernels

    monkeypatch.setattr(kernels, "SPMM_CHUNK", 4)
    products = []
    real_addmm = torch.addmm
    monkeypatch.setattr(torch, "addmm", lambda *a, **k: products.append(1) or real_addmm(*a, **k))
    ei = graph(9, 7, 0.3, seed=5)
    x = make(3, 7, 3, 5, torch.float32).requires_grad_()  # F = 45: 12 chunks, the last one partial
    w = torch.randn(ei.size(1), requires_grad=True)
    r = torch.randn(3, 9, 3, 5, dtype=torch.float64)
    out = propagate(x, ei, w, num_nodes=9, backend="csr", node_dim=1)
    assert len(products) == 12  # the patched chunk is the one the product reads
    monkeypatch.setattr(torch, "addmm", real_addmm)
    xr, wr, ref = reference(x, ei, w, 9, 7)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    (out.double() * r).sum().backward()
    (ref * r).sum().backward()
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad.double(), wr.grad, rtol=1e-5, atol=1e-4)


def test_order_check_sees_a_swap_across_its_chunks():
    # the order check runs over chunks of 2**20 edges; a swap straddling two chunks must be seen
    n = 1100
    flat = torch.arange(n * n)[: (1 << 20) + 10]
    ei = torch.stack([flat % n, flat // n])
    info = _candidates(ei, n, n)
    info.check(ei)
    assert info.is_sorted and info.strictly_sorted and info.in_range
    swapped = ei.clone()
    k = (1 << 20) - 1  # the last edge of the first chunk and the first of the second
    swapped[:, [k, k + 1]] = swapped[:, [k + 1, k]]
    info = _candidates(swapped, n, n)
    info.check(swapped)
    assert not info.is_sorted
    dup = ei.clone()
    dup[:, k + 1] = dup[:, k]  # a duplicate edge: sorted, not strictly
    info = _candidates(dup, n, n)
    info.check(dup)
    assert info.is_sorted and not info.strictly_sorted


# ------------------------------------------------------------------------ oneDNN matmul and its fallback
import neuralgraphs.propagate as P  # noqa: E402
import neuralgraphs.propagate.kernels as K  # noqa: E402  (the module that reads the oneDNN op)


@pytest.fixture(params=["onednn_matmul", "convolution"])
def dense_kernel(request, monkeypatch):
    """Run a test once with oneDNN's matmul (where this torch has it) and once with it unavailable."""
    if request.param == "convolution":
        monkeypatch.setattr(K, "_matmul_op", None)
        # the patch reaches the kernels: an fp32 CPU product no longer qualifies for the matmul
        assert not K._matmul_ok(torch.ones(2, 2), torch.ones(2, 2))
    elif K._onednn_matmul() is None:
        pytest.skip("this torch has no oneDNN matmul")
    else:
        assert K._matmul_ok(torch.ones(2, 2), torch.ones(2, 2))
    return request.param


@pytest.mark.parametrize("layout", [P.NODE_MAJOR, P.FEATURE_MAJOR, P.BATCHED])
@pytest.mark.parametrize("num_out,num_in", [(9, 300), (300, 9), (5, 7)])  # across MATMUL_MIN_INPUT_NODES
@pytest.mark.parametrize("size", [6, 100])  # 12 or 200 feature rows: one block or several of TRANSPOSE_ROWS
def test_dense_kernels_every_layout_against_float64(dense_kernel, layout, num_out, num_in, size):
    gen = torch.Generator().manual_seed(num_out * num_in)
    mat = torch.randn(num_out, num_in, generator=gen)
    x64 = torch.randn(num_in, 2, size, dtype=torch.float64, generator=gen)  # node-major [I, B, S]
    g64 = torch.randn(num_out, 2, size, dtype=torch.float64, generator=gen)

    def as_layout(t):  # [n, B, S] float64 -> the float32 matrix of that layout
        t = t.float()
        if layout == P.NODE_MAJOR:
            return t.reshape(t.size(0), -1).contiguous()
        if layout == P.FEATURE_MAJOR:
            return t.reshape(t.size(0), -1).t().contiguous()
        return t.transpose(0, 1).contiguous()

    def node_major(m):
        if layout == P.NODE_MAJOR:
            return m.double()
        if layout == P.FEATURE_MAJOR:
            return m.t().double()
        return m.transpose(0, 1).reshape(m.size(1), -1).double()

    x, g = as_layout(x64), as_layout(g64)
    xm, gm, mat64 = x64.reshape(num_in, -1), g64.reshape(num_out, -1), mat.double()
    tol = dict(rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(node_major(P.dense_mm(mat, x, layout)), mat64 @ xm, **tol)
    torch.testing.assert_close(node_major(P.dense_mm_t(mat, g, layout)), mat64.t() @ gm, **tol)
    torch.testing.assert_close(P.dense_outer(g, x, layout).double(), gm @ xm.t(), **tol)


@pytest.mark.parametrize("shape", [(0, 4), (1, 5), (128, 3), (129, 7), (300, 1), (1000, 37)])
def test_transposed_copy_in_blocks(shape):
    m = torch.randn(shape)
    t = K._transposed_copy(m)
    assert t.is_contiguous() and torch.equal(t, m.t())


def test_onednn_matmul_is_used_for_node_major_products(monkeypatch):
    if K._onednn_matmul() is None:
        pytest.skip("this torch has no oneDNN matmul")
    calls = []
    real = K._matmul_op
    monkeypatch.setattr(K, "_matmul_op", lambda *a: calls.append(a[:2]) or real(*a))
    ei = complete_graph(6).edge_index
    x = torch.randn(6, 10, requires_grad=True)
    w = torch.randn(36, requires_grad=True)
    propagate(x, ei, w, backend="dense").sum().backward()
    assert len(calls) == 3  # forward, input gradient, weight gradient
    calls.clear()
    with torch.no_grad():
        propagate(x.double(), ei, w.double(), backend="dense")  # fp64 is not oneDNN's
    assert calls == []


@pytest.mark.parametrize("behaviour", ["wrong", "raises", "missing"])
def test_onednn_matmul_probe_rejects_a_bad_op(monkeypatch, behaviour):
    class FakeNamespace:
        def __getattr__(self, name):
            if behaviour == "missing":
                raise AttributeError(name)

            def op(a, b, *rest):
                if behaviour == "raises":
                    raise RuntimeError("no oneDNN here")
                return a @ b.t() + 1  # off by one
            return op

    monkeypatch.setattr(torch.ops, "mkldnn", FakeNamespace(), raising=False)
    monkeypatch.setattr(K, "_matmul_op", K._MATMUL_UNRESOLVED)
    assert K._onednn_matmul() is None
    ei = complete_graph(4).edge_index
    x, w = torch.randn(4, 3), torch.randn(16)
    torch.testing.assert_close(propagate(x, ei, w, backend="dense"), w.view(4, 4) @ x)


def test_second_derivative_raises_instead_of_being_wrong():
    ei = complete_graph(3).edge_index
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(propagate(x, ei, w).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|twice"):
        gx.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("feat", [(), (3, 4), (2, 3, 3)], ids=["vector", "image", "channels"])
def test_the_first_nodes_of_a_state_are_read_in_place_and_nothing_after_them(dtype, feat):
    # a static graph's state: nodes innermost (vector, image) or batched (C-channel nodes), NaN after the
    # prefix; the product over the prefix must read exactly the prefix, in every precision
    b, n, r, o = 3, 10, 6, 4
    if len(feat) >= 3:
        buf = torch.full((b, n) + feat, float("nan"), dtype=dtype)
        state = buf
    else:
        buf = torch.full((b,) + feat + (n,), float("nan"), dtype=dtype)
        state = buf.movedim(-1, 1)
    gen = torch.Generator().manual_seed(0)
    state[:, :r] = torch.randn((b, r) + feat, generator=gen).to(dtype)
    prefix = state[:, :r]
    m, _ = _canonical(prefix, 1)
    if dtype in (torch.float32, torch.float64):
        assert m.data_ptr() == prefix.data_ptr()  # no copy
    w = torch.randn(o * r, generator=gen, dtype=dtype)
    edges = torch.stack([torch.arange(r).repeat(o), torch.arange(o).repeat_interleave(r)])
    out = propagate(prefix, edges, w, num_nodes=o, node_dim=1, backend="dense")
    ref = torch.einsum("ts,bs...->bt...", w.view(o, r).double(), prefix.double())
    assert not bool(torch.isnan(out).any())
    tol = 1e-6 if dtype in (torch.float32, torch.float64) else 5e-2
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
