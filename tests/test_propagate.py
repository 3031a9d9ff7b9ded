"""Tests of :func:`neuralgraphs.propagate.propagate` and :class:`PropagationPlan`.

References: an explicit per-edge loop (``out[t] += w_e * x[s]``), a dense ``[N_out, N_in]`` matrix product
written here, float64 ``torch.autograd.gradcheck``, and PyG's own ``MessagePassing(aggr="add")``.
"""

import re
import subprocess
import sys
import textwrap

import pytest
import torch

from neuralgraphs._compat import import_pyg
from neuralgraphs.generators import blocked_dag, complete_graph
from neuralgraphs.propagate import (
    DENSE_MIN_ENTRIES,
    GEMM_MIN_CANDIDATE_DENSITY,
    PropagationPlan,
    choose_backend,
    propagate,
)

BACKENDS = ["dense", "csr"]


# ----------------------------------------------------------------------------- references


def loop_reference(x, edge_index, weight, num_out, node_dim=0):
    """``out[t] = sum_e w_e x[s]`` by a Python loop over edges (node dimension ``node_dim``)."""
    xs = x.movedim(node_dim, 0)
    out = xs.new_zeros((num_out,) + tuple(xs.shape[1:]))
    for e, (s, t) in enumerate(edge_index.t().tolist()):
        out[t] = out[t] + weight[e] * xs[s]
    return out.movedim(0, node_dim)


def dense_matrix(edge_index, weight, num_out, num_in):
    m = weight.new_zeros(num_out, num_in)
    return m.index_put((edge_index[1], edge_index[0]), weight, accumulate=True)


def random_bipartite(num_out, num_in, num_edges, seed, self_sorted=True):
    """``num_edges`` distinct edges (source < num_in, target < num_out), sorted by (target, source)."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(num_out * num_in, generator=gen)[:num_edges]
    if self_sorted:
        flat = torch.sort(flat).values
    return torch.stack([flat % num_in, flat // num_in])


def active_subset(num_edges, frac, seed):
    gen = torch.Generator().manual_seed(seed)
    idx = (torch.rand(num_edges, generator=gen) < frac).nonzero().view(-1)
    return idx if idx.numel() else torch.tensor([0])


def zero_off(weight, active):
    mask = torch.zeros(weight.numel(), dtype=torch.bool)
    mask[active] = True
    return torch.where(mask, weight, torch.zeros_like(weight))


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("backend", ["dense", "csr"])
@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_active_edges_alone_are_used_whatever_the_other_weights(backend, complete, dtype):
    """``active`` selects the edges: weights outside it do not reach the output on either backend, and the
    gradient still covers every edge (dense reference over the active edges); ``weights_masked=True`` with
    weights that are zero outside ``active`` gives the same."""
    n_out, n_in = 30, 40
    if complete:
        flat = torch.arange(n_out * n_in)
        ei = torch.stack([flat % n_in, flat // n_in])
    else:
        ei = random_bipartite(n_out, n_in, 500, seed=5)
    e = ei.size(1)
    act = active_subset(e, 0.3, seed=6)
    gen = torch.Generator().manual_seed(7)
    x0 = torch.randn(n_in, 6, generator=gen, dtype=dtype)
    w0 = torch.randn(e, generator=gen, dtype=dtype)  # non-zero outside ``act`` too
    g = torch.randn(n_out, 6, generator=gen, dtype=dtype)
    x_ref = x0.double().clone().requires_grad_()
    w_ref = zero_off(w0.double(), act).requires_grad_()
    y_ref = dense_matrix(ei, w_ref, n_out, n_in) @ x_ref
    y_ref.backward(g.double())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for w_in, masked in ((w0, False), (zero_off(w0, act), True)):
        x, w = x0.detach().clone().requires_grad_(), w_in.detach().clone().requires_grad_()
        y = propagate(x, ei, w, n_out, active=act, backend=backend, weights_masked=masked)
        y.backward(g)
        torch.testing.assert_close(y.double(), y_ref.detach(), **tol)
        torch.testing.assert_close(x.grad.double(), x_ref.grad, **tol)
        torch.testing.assert_close(w.grad.double(), w_ref.grad, **tol)


def test_active_indices_are_validated():
    ei = random_bipartite(10, 10, 40, seed=1)
    x, w = torch.randn(10, 3), torch.randn(40)
    for bad in (torch.tensor([0, 40]), torch.tensor([-1, 3]), torch.tensor([3, 2]), torch.tensor([2, 2]),
                torch.tensor([[1, 2]]), torch.tensor([1.0, 2.0])):
        with pytest.raises(ValueError, match="active"):
            propagate(x, ei, w, active=bad)
    with pytest.raises(TypeError, match="weights_masked"):
        propagate(x, ei, w, active=torch.tensor([1, 2]), weights_masked=1)
    assert propagate(x, ei, w, active=torch.tensor([], dtype=torch.long)).abs().max() == 0



@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(7,), (7, 4), (7, 3, 2, 2)])
def test_forward_node_dim0_square(backend, shape):
    n = shape[0]
    ei = random_bipartite(n, n, 20, seed=1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    w = torch.randn(ei.size(1), generator=gen)
    out = propagate(x, ei, w, backend=backend)
    assert out.shape == x.shape
    torch.testing.assert_close(out, loop_reference(x, ei, w, n))
    dense = (dense_matrix(ei, w, n, n) @ x.reshape(n, -1)).view(x.shape)
    torch.testing.assert_close(out, dense)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_out,num_in", [(4, 9), (9, 4), (1, 6), (6, 1)])
@pytest.mark.parametrize("node_dim", [0, 1])
def test_forward_rectangular(backend, num_out, num_in, node_dim):
    ei = random_bipartite(num_out, num_in, max(1, num_out * num_in // 2), seed=num_out)
    gen = torch.Generator().manual_seed(3)
    shape = (num_in, 3, 2) if node_dim == 0 else (2, num_in, 3, 2)
    x = torch.randn(shape, generator=gen)
    w = torch.randn(ei.size(1), generator=gen)
    out = propagate(x, ei, w, num_nodes=num_out, backend=backend, node_dim=node_dim)
    expected_shape = list(shape)
    expected_shape[node_dim] = num_out
    assert list(out.shape) == expected_shape
    torch.testing.assert_close(out, loop_reference(x, ei, w, num_out, node_dim))


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_node_dim1_batch_channels_as_nodes(backend):
    g = blocked_dag([3, 5, 4])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, g.num_nodes, 4, 3, generator=gen)  # [B, N, H, W]
    w = torch.randn(g.num_edges, generator=gen)
    out = propagate(x, g.edge_index, w, backend=backend, node_dim=1)
    m = dense_matrix(g.edge_index, w, g.num_nodes, g.num_nodes)
    torch.testing.assert_close(out, torch.einsum("ts,bshw->bthw", m, x))
    # a non-contiguous input (nodes at dim 1 of a permuted tensor) gives the same answer
    xt = x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    torch.testing.assert_close(propagate(xt, g.edge_index, w, backend=backend, node_dim=1), out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("node_dim", [0, 1])
def test_forward_with_active_subset(backend, node_dim):
    num_out, num_in = 6, 8
    ei = random_bipartite(num_out, num_in, 30, seed=5)
    act = active_subset(30, 0.3, seed=6)
    gen = torch.Generator().manual_seed(7)
    w = zero_off(torch.randn(30, generator=gen), act)
    x = torch.randn((num_in, 5) if node_dim == 0 else (3, num_in, 5), generator=gen)
    out = propagate(x, ei, w, num_nodes=num_out, active=act, backend=backend, node_dim=node_dim)
    torch.testing.assert_close(out, loop_reference(x, ei[:, act], w[act], num_out, node_dim))


def test_default_weight_is_one_and_backends_agree_on_auto():
    ei = random_bipartite(5, 5, 12, seed=0)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    ref = loop_reference(x, ei, torch.ones(12), 5)
    for backend in ("auto", "dense", "csr"):
        torch.testing.assert_close(propagate(x, ei, backend=backend), ref)


def test_auto_backend_large_sparse_graph_uses_csr_and_is_correct():
    n = 200
    assert n * n >= DENSE_MIN_ENTRIES
    ei = random_bipartite(n, n, 600, seed=2)
    act = active_subset(600, 0.5, seed=3)
    assert choose_backend(act.numel(), n, n, torch.device("cpu")) == "csr"
    assert choose_backend(n * n // 2, n, n, torch.device("cpu")) == "dense"
    assert choose_backend(1, 10, 10, torch.device("cpu")) == "dense"
    # a caller's own limit replaces the device's (the graph modules pass one for image states)
    assert choose_backend(n * n // 20, n, n, torch.device("cpu"), csr_max_density=0.02) == "dense"
    assert choose_backend(n * n // 100, n, n, torch.device("cpu"), csr_max_density=0.02) == "csr"
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="csr_max_density"):
            choose_backend(1, n, n, torch.device("cpu"), csr_max_density=bad)
    gen = torch.Generator().manual_seed(4)
    w = zero_off(torch.randn(600, generator=gen), act)
    x = torch.randn(n, 4, generator=gen)
    out = propagate(x, ei, w, active=act)
    torch.testing.assert_close(out, dense_matrix(ei, w, n, n) @ x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plan_reused_across_weights(backend):
    ei = random_bipartite(6, 5, 14, seed=8)
    plan = PropagationPlan(ei, 6, 5, backend=backend)
    assert plan.backend == backend
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(5, 3, generator=gen)
    for _ in range(3):
        w = torch.randn(14, generator=gen)
        torch.testing.assert_close(plan(x, w), dense_matrix(ei, w, 6, 5) @ x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unsorted_edge_index(backend):
    num_out, num_in = 7, 6
    ei_sorted = random_bipartite(num_out, num_in, 25, seed=10)
    gen = torch.Generator().manual_seed(11)
    perm = torch.randperm(25, generator=gen)
    ei = ei_sorted[:, perm]
    act_sorted = active_subset(25, 0.4, seed=12)
    # the same active edges, as positions in the shuffled edge list, in ascending order
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(25)
    act = torch.sort(inv[act_sorted]).values
    w0 = zero_off(torch.randn(25, dtype=torch.float64, generator=gen), act)
    x = torch.randn(num_in, 3, dtype=torch.float64, generator=gen)
    r = torch.randn(num_out, 3, dtype=torch.float64, generator=gen)

    w = w0.clone().requires_grad_()
    out = propagate(x, ei, w, num_nodes=num_out, active=act, backend=backend)
    torch.testing.assert_close(out, loop_reference(x, ei, w0, num_out))
    (out * r).sum().backward()
    # weight gradient in the caller's (shuffled) order: <r_t, x_s> for every edge
    expected = (r[ei[1]] * x[ei[0]]).sum(1)
    torch.testing.assert_close(w.grad, expected)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("node_dim", [0, 1])
@pytest.mark.parametrize("num_edges", [3, 40])  # SDDMM (E < 10% of N_out*N_in) and GEMM weight gradients
def test_gradcheck_x_and_weight(backend, node_dim, num_edges):
    num_out, num_in = 6, 7
    sparse_branch = num_edges < GEMM_MIN_CANDIDATE_DENSITY * num_out * num_in
    assert sparse_branch == (num_edges == 3)
    ei = random_bipartite(num_out, num_in, num_edges, seed=num_edges)
    gen = torch.Generator().manual_seed(0)
    shape = (num_in, 2, 2) if node_dim == 0 else (2, num_in, 3)
    x = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(num_edges, dtype=torch.float64, generator=gen, requires_grad=True)

    def f(x, w):
        return propagate(x, ei, w, num_nodes=num_out, backend=backend, node_dim=node_dim)

    assert torch.autograd.gradcheck(f, (x, w))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weight_grad", ["all", "active"])
@pytest.mark.parametrize("num_edges", [9, 40])
def test_gradcheck_with_active(backend, weight_grad, num_edges):
    num_out, num_in = 7, 6
    ei = random_bipartite(num_out, num_in, num_edges, seed=num_edges + 1)
    act = active_subset(num_edges, 0.5, seed=2)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(num_in, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    w_act = torch.randn(act.numel(), dtype=torch.float64, generator=gen, requires_grad=True)

    def f(x, w_act):
        # the caller's contract: weights off the active set are zero
        w = torch.zeros(num_edges, dtype=torch.float64).index_put((act,), w_act)
        return propagate(x, ei, w, num_nodes=num_out, active=act, backend=backend, weight_grad=weight_grad)

    assert torch.autograd.gradcheck(f, (x, w_act))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_edges", [9, 40])
@pytest.mark.parametrize("node_dim", [0, 1])
def test_weight_grad_all_and_active_on_zero_weight_edges(backend, num_edges, node_dim):
    num_out, num_in = 7, 6
    ei = random_bipartite(num_out, num_in, num_edges, seed=num_edges + 2)
    act = active_subset(num_edges, 0.4, seed=3)
    inactive = torch.ones(num_edges, dtype=torch.bool)
    inactive[act] = False
    assert inactive.any()
    gen = torch.Generator().manual_seed(4)
    w0 = zero_off(torch.randn(num_edges, dtype=torch.float64, generator=gen), act)
    shape = (num_in, 4) if node_dim == 0 else (2, num_in, 2)
    x = torch.randn(shape, dtype=torch.float64, generator=gen)
    out_shape = list(shape)
    out_shape[node_dim] = num_out
    r = torch.randn(out_shape, dtype=torch.float64, generator=gen)

    # <g_t, x_s> for every edge, g = r for the loss sum(out * r)
    rm, xm = r.movedim(node_dim, 0).reshape(num_out, -1), x.movedim(node_dim, 0).reshape(num_in, -1)
    expected_all = (rm[ei[1]] * xm[ei[0]]).sum(1)
    assert bool((expected_all[inactive] != 0).all())

    grads = {}
    for mode in ("all", "active"):
        w = w0.clone().requires_grad_()
        out = propagate(x, ei, w, num_nodes=num_out, active=act, backend=backend, node_dim=node_dim,
                        weight_grad=mode)
        (out * r).sum().backward()
        grads[mode] = w.grad
    torch.testing.assert_close(grads["all"], expected_all)
    torch.testing.assert_close(grads["active"][act], expected_all[act])
    assert bool((grads["active"][inactive] == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_against_dense_autograd_nonlinear_loss(backend):
    g = complete_graph(6, self_loops=False)
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    w0 = torch.randn(g.num_edges, dtype=torch.float64, generator=gen)
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    torch.sin(propagate(x, g.edge_index, w, backend=backend)).pow(2).sum().backward()
    xr, wr = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    torch.sin(dense_matrix(g.edge_index, wr, 6, 6) @ xr).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(w.grad, wr.grad)


# ----------------------------------------------------------------------------- validation


def test_validation_errors():
    ei = torch.tensor([[0, 1], [1, 2]])
    x = torch.randn(3, 2)
    w = torch.randn(2)
    with pytest.raises(ValueError, match="node_dim"):
        propagate(x, ei, w, node_dim=2)
    with pytest.raises(ValueError, match="node_dim"):
        propagate(x, ei, w, node_dim=-1)
    with pytest.raises(ValueError, match="x"):
        propagate(torch.randn(3), ei, torch.randn(2), node_dim=1)
    with pytest.raises(TypeError, match="x"):
        propagate([[1.0]], ei, w)
    with pytest.raises(ValueError, match="edge_weight"):
        propagate(x, ei, torch.randn(3))
    with pytest.raises(ValueError, match="edge_weight"):
        propagate(x, ei, torch.randn(2, 1))
    with pytest.raises(TypeError, match="edge_weight"):
        propagate(x, ei, torch.randn(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="edge_index"):
        propagate(x, torch.tensor([[0, 3], [1, 2]]), w)  # source beyond x's nodes
    with pytest.raises(ValueError, match="edge_index"):
        propagate(x, ei, w, num_nodes=2)  # target 2 beyond num_nodes
    with pytest.raises(ValueError, match="edge_index"):
        propagate(x, torch.tensor([[0, -1], [1, 2]]), w)
    with pytest.raises(ValueError, match="edge_index"):
        propagate(x, ei.float(), w)
    with pytest.raises(ValueError, match="edge_index"):
        propagate(x, torch.tensor([0, 1]), w)
    with pytest.raises(ValueError, match="backend"):
        propagate(x, ei, w, backend="cusparse")
    with pytest.raises(ValueError, match="weight_grad"):
        propagate(x, ei, w, weight_grad="some")
    with pytest.raises(ValueError, match="backend"):
        PropagationPlan(ei, 3, 3, backend="sparse")


@pytest.mark.parametrize("backend", BACKENDS + ["auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["no_samples", "no_features", "no_outputs", "no_inputs"])
def test_empty_operands_give_zeros_on_every_backend(backend, dtype, case):
    # oneDNN's convolution refuses empty operands; the product of nothing is zeros of the output's shape
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    num_nodes, node_dim = None, 1
    if case == "no_samples":
        x = torch.randn(0, 3, 4, 4, dtype=dtype)
    elif case == "no_features":
        x, node_dim = torch.randn(3, 0, dtype=dtype), 0
    elif case == "no_outputs":
        x, ei, num_nodes, node_dim = torch.randn(3, 5, dtype=dtype), torch.zeros(2, 0, dtype=torch.long), 0, 0
    else:
        x, ei, num_nodes, node_dim = torch.randn(0, 4, dtype=dtype), torch.zeros(2, 0, dtype=torch.long), 2, 0
    x.requires_grad_(True)
    w = torch.randn(ei.size(1), dtype=dtype, requires_grad=True)
    out = propagate(x, ei, w, num_nodes, backend=backend, node_dim=node_dim)
    ref = loop_reference(x.detach(), ei, w.detach(), x.size(node_dim) if num_nodes is None else num_nodes,
                         node_dim)
    assert out.shape == ref.shape and torch.equal(out, ref)
    (out.sum() + x.sum() * 0 + w.sum() * 0).backward()
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(w.grad, torch.zeros_like(w))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cpu_runs_dense_where_csr_has_no_kernel(dtype):
    n = 200
    ei = random_bipartite(n, n, 800, seed=3)
    assert choose_backend(800, n, n, torch.device("cpu")) == "csr"  # auto would pick CSR for float32
    x = torch.randn(n, 8).to(dtype).requires_grad_(True)
    w = torch.randn(800).to(dtype).requires_grad_(True)
    active = active_subset(800, 0.5, 0)
    for weight_grad in ("all", "active"):
        out = propagate(x, ei, w, active=active, weight_grad=weight_grad)
        g = torch.randn(out.shape).to(dtype)
        gx, gw = torch.autograd.grad(out, (x, w), g)
        # the float64 reference of the same half-precision numbers
        mask = torch.zeros(800, dtype=torch.bool)
        mask[active] = True
        a = dense_matrix(ei, w.detach().double() * mask, n, n)
        ref = a @ x.detach().double()
        rgx = a.t() @ g.double()
        rgw = ((g.double() @ x.detach().double().t())[ei[1], ei[0]])
        if weight_grad == "active":
            rgw = rgw * mask
        tol = dict(rtol=0.05, atol=0.2)
        torch.testing.assert_close(out.double(), ref, **tol)
        torch.testing.assert_close(gx.double(), rgx, **tol)
        torch.testing.assert_close(gw.double(), rgw, **tol)
    with pytest.raises(TypeError, match=f"^backend: 'csr' has no CPU kernel for {dtype} features"):
        propagate(x, ei, w, backend="csr")


@pytest.mark.parametrize("num_nodes", [3.9, "3", -1, True])
def test_num_nodes_is_checked(num_nodes):
    with pytest.raises(ValueError, match="^num_nodes: expected a non-negative int"):
        propagate(torch.randn(3, 2), torch.tensor([[0, 1], [1, 2]]), torch.randn(2), num_nodes)


def test_csr_paths_emit_no_warning():
    # A fresh interpreter: torch warns only once per process, so an in-process check would depend on order.
    # Every warning is an error, torch's "sparse ... is in beta state" notice included: neuralgraphs silences
    # it for its own sparse tensors.
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        import torch
        from neuralgraphs.propagate import propagate
        ei = torch.tensor([[0, 1], [1, 2]])
        w = torch.randn(2, requires_grad=True)
        x = torch.randn(3, 2, requires_grad=True)
        propagate(x, ei, w, backend="csr").sum().backward()
        w = torch.zeros(2, requires_grad=True)
        propagate(torch.randn(3, 2), ei, w, backend="dense", active=torch.tensor([0]),
                  weight_grad="active").sum().backward()
        print("OK")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-500:]
    assert "OK" in res.stdout


def test_sparse_beta_notice_still_reaches_user_code():
    # the filter is narrow: a sparse tensor the user builds after importing neuralgraphs still warns
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        import torch
        import neuralgraphs.propagate  # noqa: F401
        try:
            torch.sparse_csr_tensor(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1), (1, 1),
                                    check_invariants=True)
        except UserWarning as e:
            print("WARNED", e)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-500:]
    assert "WARNED" in res.stdout and "beta" in res.stdout


# ----------------------------------------------------------------------------- duplicate edges


@pytest.mark.parametrize("backend", [
    "dense",
    "csr",
])
def test_duplicate_edges_are_summed(backend):
    ei = torch.tensor([[0, 0, 1, 2], [1, 1, 0, 1]])
    w = torch.tensor([1.0, 2.0, 3.0, 0.5])
    x = torch.tensor([[1.0], [10.0], [100.0]])
    out = propagate(x, ei, w, backend=backend)
    torch.testing.assert_close(out, loop_reference(x, ei, w, 3))


# ----------------------------------------------------------------------------- PyG interop


def _pyg_convs():
    pyg = import_pyg()
    from torch_geometric.nn import MessagePassing

    class MyConv(MessagePassing):
        """A PyG layer whose aggregation is neuralgraphs' propagate."""

        def __init__(self, backend):
            super().__init__(aggr="add")
            self.backend = backend

        def forward(self, x, edge_index, edge_weight):
            from neuralgraphs.propagate import propagate as ng_propagate

            return ng_propagate(x, edge_index, edge_weight, num_nodes=x.size(0), backend=self.backend)

    from _pyg_reference import WeightedSum

    return pyg, MyConv, WeightedSum


@pytest.mark.parametrize("backend", BACKENDS)
def test_propagate_inside_message_passing_equals_pyg(backend):
    pyg, MyConv, PlainConv = _pyg_convs()
    n = 9
    ei = random_bipartite(n, n, 30, seed=13, self_sorted=False)  # PyG graphs need not be sorted
    gen = torch.Generator().manual_seed(14)
    x0 = torch.randn(n, 5, dtype=torch.float64, generator=gen)
    w0 = torch.randn(30, dtype=torch.float64, generator=gen)
    r = torch.randn(n, 5, dtype=torch.float64, generator=gen)
    results = []
    for conv in (MyConv(backend), PlainConv()):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = conv(x, ei, w)
        (torch.tanh(out) * r).sum().backward()
        results.append((out.detach(), x.grad, w.grad))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pyg_utils_output_fed_to_propagate(backend):
    pyg, _, PlainConv = _pyg_convs()
    utils = pyg.utils
    n = 8
    # a directed graph without self-loops and without reciprocal edges
    ei = torch.tensor([[0, 0, 1, 2, 3, 5, 6, 4], [1, 2, 3, 3, 4, 6, 7, 7]])
    gen = torch.Generator().manual_seed(15)
    w = torch.randn(ei.size(1), generator=gen)
    x = torch.randn(n, 3, generator=gen)

    und, und_w = utils.to_undirected(ei, w, num_nodes=n)
    assert und.size(1) == 2 * ei.size(1)
    keys = und[1] * n + und[0]
    assert bool((keys[1:] < keys[:-1]).any())  # PyG sorts by source: propagate must re-sort
    out = propagate(x, und, und_w, backend=backend)
    torch.testing.assert_close(out, loop_reference(x, und, und_w, n))
    torch.testing.assert_close(out, PlainConv()(x, und, und_w))

    loops, loops_w = utils.add_self_loops(ei, w, fill_value=0.5, num_nodes=n)
    assert loops.size(1) == ei.size(1) + n
    out = propagate(x, loops, loops_w, backend=backend)
    torch.testing.assert_close(out, loop_reference(x, ei, w, n) + 0.5 * x)
    torch.testing.assert_close(out, PlainConv()(x, loops, loops_w))

    # gcn_norm's normalised, self-looped, unsorted edges
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    nei, nw = gcn_norm(und, und_w.abs(), num_nodes=n, add_self_loops=True)
    torch.testing.assert_close(propagate(x, nei, nw, backend=backend), PlainConv()(x, nei, nw))


@pytest.mark.parametrize("numpy_check", [True, False])
def test_plan_validates_its_edges_and_arguments(monkeypatch, numpy_check):
    """A plan is public: unsorted or out-of-range edges would silently give a wrong CSR product.  Both
    checks run: numpy for small CPU edge sets, chunked torch operations otherwise."""
    import neuralgraphs.propagate.cache as cache

    monkeypatch.setattr(cache, "_SMALL_CHECK", 1 << 16 if numpy_check else -1)
    numpy_passes = []
    real_small = cache._Candidates._check_small
    monkeypatch.setattr(cache._Candidates, "_check_small",
                        lambda self, ei: numpy_passes.append(1) or real_small(self, ei))
    x, w = torch.randn(3, 4), torch.randn(3)
    with pytest.raises(ValueError, match="sorted by"):
        PropagationPlan(torch.tensor([[1, 2, 0], [1, 1, 0]]), 3, 3, backend="csr")
    with pytest.raises(ValueError, match="out of range"):
        PropagationPlan(torch.tensor([[5], [0]]), 3, 3, backend="csr")
    with pytest.raises(ValueError, match="num_in"):
        PropagationPlan(torch.tensor([[0], [0]]), 3, -1)
    with pytest.raises(ValueError, match="edge_index"):
        PropagationPlan(torch.tensor([[0.0], [0.0]]), 3, 3)
    with pytest.raises(ValueError, match="active"):
        PropagationPlan(torch.tensor([[0, 1], [0, 0]]), 3, 3, active=torch.tensor([1, 0]))
    with pytest.raises(TypeError, match="weights_masked"):
        PropagationPlan(torch.tensor([[0], [0]]), 3, 3, weights_masked="yes")
    ei = torch.tensor([[1, 0, 2], [0, 1, 1]])
    ref = dense_matrix(ei, w, 3, 3) @ x
    for backend in ("dense", "csr"):
        torch.testing.assert_close(PropagationPlan(ei, 3, 3, backend=backend)(x, w), ref)
    # the patched threshold is the one the check reads: the numpy pass ran exactly when it allows it
    assert bool(numpy_passes) == numpy_check



def test_operands_on_different_devices_are_named():
    # the meta device stands in for a GPU: a CPU edge_index must not be copied silently at every call
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="^x: is on meta, edge_weight on meta and edge_index on cpu"):
        propagate(torch.randn(3, 2, device="meta"), ei, torch.randn(2, device="meta"))
    with pytest.raises(ValueError, match="^x: is on cpu, edge_weight on meta and edge_index on cpu"):
        PropagationPlan(ei, 3, 3)(torch.randn(3, 2), torch.randn(2, device="meta"))


# features with the node dimension at 1, in the three memory layouts a plan reads in place
_NODE_DIM_1_LAYOUTS = {
    "contiguous": lambda b, n, f: torch.randn(b, n, f),
    "node_major": lambda b, n, f: torch.randn(n, b, f).transpose(0, 1),
    "feature_major": lambda b, n, f: torch.randn(b, f, n).transpose(1, 2),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("node_dim,layout", [(0, "node_major")] + [(1, name) for name in _NODE_DIM_1_LAYOUTS])
@pytest.mark.parametrize("given", [2, 5])  # fewer and more nodes than the plan's num_in (4)
def test_plan_rejects_features_with_another_node_count(monkeypatch, backend, node_dim, layout, given):
    """A plan built for ``num_in`` nodes called with features of another node count raised from inside
    oneDNN or MKL (or, for empty features, returned a tensor of the wrong shape); it must name ``x``, the
    expected count and the shape, before any product runs."""
    import neuralgraphs.propagate.plan as plan_module

    ei = torch.tensor([[0, 3, 1, 2], [0, 0, 1, 2]])  # sources < 4, targets < 3, sorted by (target, source)
    w = torch.randn(4)
    plan = PropagationPlan(ei, 3, 4, backend=backend)

    def make(n, f=6):
        return torch.randn(n, f) if node_dim == 0 else _NODE_DIM_1_LAYOUTS[layout](2, n, f)

    # the right node count: every layout against a dense product written here
    x = make(4)
    ref = torch.einsum("oi,i...->o...", dense_matrix(ei, w, 3, 4), x.movedim(node_dim, 0)).movedim(0, node_dim)
    torch.testing.assert_close(plan(x, w, node_dim), ref)

    def no_product(*args):
        raise AssertionError("a product ran before the features were checked")

    for name in ("dense_mm", "sparse_mm", "dense_outer"):
        monkeypatch.setattr(plan_module, name, no_product)
    for bad in (make(given), make(given, 0)):  # empty features too: nothing to multiply, still wrong
        shape = re.escape(str(list(bad.shape)))
        msg = rf"^x: expected 4 nodes \(the plan's num_in\) at node_dim={node_dim}, got shape {shape}$"
        with pytest.raises(ValueError, match=msg):
            plan(bad, w, node_dim)
        with pytest.raises(ValueError, match=msg):
            plan(bad.requires_grad_(), w.requires_grad_(), node_dim)
    # the patched products are the ones a plan calls: with the right node count they are reached
    with pytest.raises(AssertionError, match="before the features were checked"):
        plan(make(4), w, node_dim)


def test_plan_checks_node_dim_and_the_type_of_x():
    plan = PropagationPlan(torch.tensor([[0, 1], [1, 2]]), 3, 3)
    w = torch.randn(2)
    with pytest.raises(ValueError, match=r"^node_dim: expected 0 \(\[N, \*\]\) or 1 \(\[B, N, \*\]\), got 2"):
        plan(torch.randn(2, 4, 3), w, node_dim=2)
    no_dim_1 = r"^x: expected 3 nodes \(the plan's num_in\) at node_dim=1, got shape \[3\]$"
    with pytest.raises(ValueError, match=no_dim_1):
        plan(torch.randn(3), w, node_dim=1)
    with pytest.raises(TypeError, match="^x: expected a tensor, got list"):
        plan([[1.0]] * 3, w)


@pytest.mark.parametrize("backend", ["dense", "auto"])
def test_float32_weights_with_half_precision_features_under_autocast(backend):
    ei = random_bipartite(200, 200, 800, seed=5)
    x = torch.randn(200, 8).bfloat16().requires_grad_(True)
    w = torch.randn(800, requires_grad=True)
    with pytest.raises(TypeError, match="edge_weight: dtype torch.float32 differs"):
        propagate(x, ei, w, backend=backend)  # outside autocast a mix is a mistake
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = propagate(x, ei, w, backend=backend)
    assert out.dtype == torch.bfloat16
    g = torch.randn(out.shape).bfloat16()
    gx, gw = torch.autograd.grad(out, (x, w), g)
    assert gx.dtype == torch.bfloat16 and gw.dtype == torch.float32
    # the product of the bfloat16-rounded weights, in float64
    a = dense_matrix(ei, w.detach().bfloat16().double(), 200, 200)
    torch.testing.assert_close(out.double(), a @ x.detach().double(), rtol=0.05, atol=0.1)
    rgw = (g.double() @ x.detach().double().t())[ei[1], ei[0]]
    torch.testing.assert_close(gw.double(), rgw, rtol=0.05, atol=0.1)
