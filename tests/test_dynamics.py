"""Static, discrete-time and continuous-time graphs against dense references written here."""

import re

import networkx as nx
import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralgraphs.dynamics import ContinuousTimeGraph, DiscreteTimeGraph, StaticGraph
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import (Activation, Identity, NodeAffine, NodeNorm, NodeSequential, image_node_op,
                                maps_zero_to_zero)

WIRINGS = ["dnw", "random", "complete", "no_update"]


# ---------------------------------------------------------------------------------------------- helpers
def random_dag(seed, n=10, p=0.4):
    """A DAG on shuffled node ids; an input with parents, outputs on several levels."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    edges = [(int(perm[i]), int(perm[j])) for i in range(n) for j in range(i + 1, n) if rng.random() < p]
    # a chain through the whole order keeps every level populated and the graph connected
    edges += [(int(perm[i]), int(perm[i + 1])) for i in range(n - 1)]
    edges = sorted(set(edges))
    g = nx.DiGraph(edges)
    level = {}
    for v in nx.topological_sort(g):
        level[v] = 1 + max((level[u] for u in g.predecessors(v)), default=-1)
    topo = list(nx.topological_sort(g))
    inputs = [topo[0], topo[n // 2]]  # the second one has parents: not at level 0
    outputs = [topo[-1], topo[n // 2 + 1], topo[1]]
    assert level[inputs[1]] > 0 and len({level[o] for o in outputs}) >= 2
    return NeuralGraph.from_edge_list(edges, num_nodes=n, inputs=inputs, outputs=outputs)


def random_digraph(seed, n=7, p=0.5):
    rng = np.random.default_rng(seed)
    edges = [(s, t) for s in range(n) for t in range(n) if rng.random() < p] + [(0, n - 1)]
    return NeuralGraph.from_edge_list(sorted(set(edges)), num_nodes=n, inputs=[0, 1], outputs=[n - 2, n - 1])


def make_node_op(kind, n, seed):
    if kind == "vector":
        op = NodeSequential(NodeAffine(n), Activation("tanh"))
    else:
        op = image_node_op(n, order="norm-relu-conv", norm="instance")
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in op.parameters():  # move affine maps away from the identity
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return op.double()


def features(kind, b, n, seed):
    gen = torch.Generator().manual_seed(seed + 2)
    shape = (b, n) if kind == "vector" else (b, n, 4, 4)
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def reference_mask(module, wiring):
    """Active set computed here: top-k of |w| for dnw / no_update (at init), the stored set for random."""
    e = module.weight.numel()
    mask = torch.zeros(e, dtype=torch.bool)
    if wiring == "complete":
        mask[:] = True
    elif wiring == "random":
        mask[module.wiring.active_index] = True
    else:
        mask[torch.topk(module.weight.detach().abs(), module.wiring.num_active).indices] = True
    return mask


def dense_matrix(module, mask, labels=None):
    """Dense ``A[target, source]`` (original node ids when ``labels`` maps module ids to them)."""
    n = module.graph.num_nodes
    a = torch.zeros(n, n, dtype=module.weight.dtype)
    src, dst = module.graph.edge_index
    if labels is not None:
        src, dst = labels[src], labels[dst]
    a[dst, src] = (module.weight.detach() * mask)
    return a


def static_reference(module, graph, a, x):
    """Node by node in a networkx topological order of the original graph; a node that no input reaches
    through active edges (non-zero entries of ``a``) outputs zeros, whatever its operation maps zero to, and
    passes the gradient of its operation back (as if it were fed)."""
    labels = module.graph.node_labels
    new_id = {orig: new for new, orig in enumerate(labels)}
    g = nx.DiGraph()
    g.add_nodes_from(range(graph.num_nodes))
    g.add_edges_from(graph.edge_index.t().tolist())
    inputs = graph.inputs.tolist()
    active = nx.DiGraph([(u, v) for u, v in g.edges if a[v, u] != 0])
    reached = set(inputs).union(*(nx.descendants(active, i) for i in inputs if i in active))
    z = {}
    for v in nx.topological_sort(g):
        inp = torch.zeros_like(x[:, 0])
        for u in g.predecessors(v):
            inp = inp + a[v, u] * z[u]
        if v in inputs:
            inp = inp + x[:, inputs.index(v)]
        out = module.node_op(inp.unsqueeze(1), slice(new_id[v], new_id[v] + 1)).squeeze(1)
        # a silent node: zeros forward, the gradient of the fed node backward
        z[v] = out if v in reached or not silenced_by_mask(module) else out - out.detach()
    return torch.stack([z[o] for o in graph.outputs.tolist()], 1)


def initial_state(graph, x):
    z = x.new_zeros((x.size(0), graph.num_nodes) + tuple(x.shape[2:]))
    z[:, graph.inputs] = x
    return z


def mix(a, h):
    return torch.einsum("ts,bs...->bt...", a, h)


def silenced_by_mask(module):
    """Whether unreached nodes are zeroed by the graph (their operations do not map zeros to zeros); an
    operation that does keeps them at zero itself, with its own gradient (see NodeNorm)."""
    ops = [module.node_op] + ([module.post_op] if hasattr(module, "post_op") else [])
    return not all(maps_zero_to_zero(op) for op in ops)


def discrete_reference(module, a, x, steps, every_step=False):
    """The dense loop; after each step a node that no input has reached yet through the active edges
    (non-zero entries of ``a``) is zero, whatever its operations map zero to."""
    n = module.graph.num_nodes
    z0 = initial_state(module.graph, x)
    z = z0
    inputs = set(module.graph.inputs.tolist())
    reached = set(inputs)
    for _ in range(steps):
        reached = {v for v in range(n) if any(a[v, u] != 0 for u in reached)} | (inputs if every_step else set())
        agg = mix(a, module.node_op(z, slice(0, n)))
        if every_step:
            agg = agg + z0
        keep = torch.tensor([float(v in reached or not silenced_by_mask(module)) for v in range(n)], dtype=z.dtype)
        keep = keep.view((1, n) + (1,) * (agg.dim() - 2))
        z = module.post_op(agg, slice(0, n))
        z = z * keep + (z - z.detach()) * (1 - keep)  # silent nodes: zeros forward, gradient passed back
    return z[:, module.graph.outputs]


def ode_reference(module, a, x, method, h, t_end=1.0):
    """Fixed-step Euler, or RK4 with Kutta's 3/8 rule (torchdiffeq's "rk4")."""
    n = module.graph.num_nodes

    def f(z):
        return module.post_op(mix(a, module.node_op(z, slice(0, n))), slice(0, n))

    z = initial_state(module.graph, x)
    for _ in range(int(round(t_end / h))):
        if method == "euler":
            z = z + h * f(z)
        else:
            k1 = f(z)
            k2 = f(z + h * k1 / 3)
            k3 = f(z + h * (k2 - k1 / 3))
            k4 = f(z + h * (k1 - k2 + k3))
            z = z + h * (k1 + 3 * (k2 + k3) + k4) / 8
    return z[:, module.graph.outputs]


def build(cls, graph, op_kind, wiring, seed, **kw):
    torch.manual_seed(seed)
    n = graph.num_nodes
    node_op = make_node_op(op_kind, n, seed)
    if cls is not StaticGraph:
        kw["post_op"] = (NodeNorm(n, "instance") if op_kind == "image" else Activation("tanh")).double()
    k = None if wiring == "complete" else max(1, graph.num_edges // 2)
    return cls(graph, node_op, wiring=wiring, k=k, seed=seed, **kw).double()


# ---------------------------------------------------------------------------------------------- static
@pytest.mark.parametrize("op_kind", ["vector", "image"])
@pytest.mark.parametrize("wiring", WIRINGS)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_static_matches_node_by_node_reference(op_kind, wiring, seed):
    graph = random_dag(seed)
    m = build(StaticGraph, graph, op_kind, wiring, seed, backend="dense")
    x = features(op_kind, 3, graph.inputs.numel(), seed)
    mask = reference_mask(m, wiring)
    out = m(x)
    labels = torch.tensor(m.graph.node_labels)
    ref = static_reference(m, graph, dense_matrix(m, mask, labels), x)
    assert out.shape == (3, graph.outputs.numel()) + tuple(x.shape[2:])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_static_inputs_off_level_zero_and_outputs_on_many_levels():
    graph = random_dag(3)
    lv = graph.levels()
    assert int(lv[graph.inputs].max()) > 0
    assert lv[graph.outputs].unique().numel() >= 2
    m = build(StaticGraph, graph, "vector", "complete", 3)
    x = features("vector", 2, 2, 3)
    ref = static_reference(m, graph, dense_matrix(m, torch.ones(graph.num_edges, dtype=torch.bool),
                                                  torch.tensor(m.graph.node_labels)), x)
    torch.testing.assert_close(m(x), ref, rtol=1e-10, atol=1e-10)


def test_static_cycle_raises_naming_the_cycle():
    edges = [(0, 1), (1, 2), (2, 3), (3, 1), (0, 4)]
    graph = NeuralGraph.from_edge_list(edges, inputs=[0], outputs=[4])
    with pytest.raises(ValueError) as info:
        StaticGraph(graph, Identity(), wiring="complete")
    found = re.search(r"\d+(?: -> \d+)+", str(info.value))
    assert found, str(info.value)
    cycle = [int(v) for v in found.group(0).split(" -> ")]
    assert cycle[0] == cycle[-1] and len(cycle) >= 3
    assert all((u, v) in edges for u, v in zip(cycle, cycle[1:]))


# ---------------------------------------------------------------------------------------------- discrete
@pytest.mark.parametrize("op_kind", ["vector", "image"])
@pytest.mark.parametrize("wiring,inject", [(w, "initial") for w in WIRINGS] + [("dnw", "every_step")])
def test_discrete_matches_dense_loop(op_kind, wiring, inject):
    seed = 11
    graph = random_digraph(seed)
    m = build(DiscreteTimeGraph, graph, op_kind, wiring, seed, steps=4, inject=inject, backend="dense")
    x = features(op_kind, 3, 2, seed)
    mask = reference_mask(m, wiring)
    out = m(x)
    ref = discrete_reference(m, dense_matrix(m, mask), x, 4, every_step=inject == "every_step")
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------- continuous
@pytest.mark.parametrize("op_kind", ["vector", "image"])
@pytest.mark.parametrize("wiring,method", [(w, "rk4") for w in WIRINGS] + [("dnw", "euler")])
def test_continuous_fixed_step_matches_own_solver(op_kind, wiring, method):
    seed = 5
    graph = random_digraph(seed)
    m = build(ContinuousTimeGraph, graph, op_kind, wiring, seed, method=method, options={"step_size": 0.25},
              backend="dense")
    x = features(op_kind, 2, 2, seed)
    mask = reference_mask(m, wiring)
    out = m(x)
    ref = ode_reference(m, dense_matrix(m, mask), x, method, 0.25)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("op_kind, backend", [("vector", "dense"), ("image", "dense"), ("image", "csr")])
def test_adjoint_gradients_match_backprop_through_the_solver(op_kind, backend):
    """odeint_adjoint solves the adjoint ODE backwards: at tight tolerances its gradients (edge weights, node
    op parameters, input) are those of backpropagation through the solver's steps, for states in either
    memory layout (channels-last for dense, node-major for CSR).  Smooth node ops (tanh) keep both
    well conditioned: ReLU makes the adjoint ODE discontinuous, and instance norm of a nearly constant node
    blows both gradients up."""
    from neuralgraphs.nodes import NodeConv2d

    graph = random_digraph(3)
    n = graph.num_nodes
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(2)  # an initial top-k that connects the inputs to the outputs (seed 3 does not)
        if op_kind == "vector":
            op = NodeSequential(NodeAffine(n), Activation("tanh"))
        else:
            op = NodeSequential(Activation("tanh"), NodeConv2d(n))
        m = ContinuousTimeGraph(graph, op, Activation("tanh"), wiring="dnw", k=graph.num_edges // 2,
                                rtol=1e-10, atol=1e-10, adjoint=adjoint, backend=backend).double()
        x = features(op_kind, 2, 2, 3).requires_grad_(True)
        m(x).pow(2).sum().backward()
        params = [p.grad.clone() for p in m.node_op.parameters()]
        grads.append((m.weight.grad.clone(), x.grad.clone(), params))
        if adjoint:
            assert m.nfe_backward > 0 and m.nfe_forward > 0
        else:
            assert m.nfe_backward == 0
    (w0, x0, p0), (w1, x1, p1) = grads
    assert bool((w0 != 0).any()) and len(p0) > 0
    torch.testing.assert_close(w1, w0, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(x1, x0, rtol=1e-6, atol=1e-9)
    for a, b in zip(p1, p0):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("scenario", ["two_forwards_one_loss", "forward_for_logging_before_backward"])
def test_adjoint_backward_uses_the_forward_it_differentiates(scenario):
    """The adjoint's backward evaluates the ODE function again: it must be the function of its own forward,
    not of a later one (whose weights the adjoint does not differentiate: their gradient came out zero)."""
    graph = random_digraph(5)
    n = graph.num_nodes
    x1, x2 = features("vector", 2, 2, 3), features("vector", 3, 2, 3)
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(5)
        m = ContinuousTimeGraph(graph, NodeSequential(NodeAffine(n), Activation("tanh")), Activation("tanh"),
                                wiring="dnw", k=graph.num_edges // 2, rtol=1e-10, atol=1e-10,
                                adjoint=adjoint).double()
        if scenario == "two_forwards_one_loss":
            loss = m(x1).pow(2).sum() + m(x2).pow(3).sum()
        else:
            loss = m(x1).pow(2).sum()
            with torch.no_grad():
                m(x2)
        loss.backward()
        grads.append((m.weight.grad.clone(), [p.grad.clone() for p in m.node_op.parameters()]))
    (w0, p0), (w1, p1) = grads
    assert bool((w0 != 0).any())
    torch.testing.assert_close(w1, w0, rtol=1e-6, atol=1e-9)
    for a, b in zip(p1, p0):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_linear_continuous_graph_matches_matrix_exponential():
    n = 5
    graph = random_digraph(2, n=n, p=0.6)
    graph = NeuralGraph(n, graph.edge_index, inputs=torch.arange(n), outputs=torch.arange(n))
    torch.manual_seed(0)
    m = ContinuousTimeGraph(graph, Identity(), Identity(), wiring="complete", t_end=1.5, rtol=1e-10,
                            atol=1e-10).double()
    x = torch.randn(2, n, dtype=torch.float64)
    out = m(x)
    a = dense_matrix(m, torch.ones(graph.num_edges, dtype=torch.bool)).numpy()
    ref = (scipy.linalg.expm(a * 1.5) @ x.numpy().T).T
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-7, atol=1e-8)


# ---------------------------------------------------------------------------------------------- backends
@pytest.mark.parametrize("cls", [StaticGraph, DiscreteTimeGraph, ContinuousTimeGraph])
@pytest.mark.parametrize("wiring", ["dnw", "no_update"])
def test_dense_and_csr_backends_agree(cls, wiring):
    seed = 4
    graph = random_dag(seed) if cls is StaticGraph else random_digraph(seed)
    extra = {} if cls is not ContinuousTimeGraph else dict(method="rk4", options={"step_size": 0.5})
    if cls is DiscreteTimeGraph:
        extra = dict(steps=3)
    outs, grads = [], []
    for backend in ("dense", "csr"):
        m = build(cls, graph, "image", wiring, seed, backend=backend, **extra)
        x = features("image", 2, 2, seed)
        out = m(x)
        out.pow(2).sum().backward()
        outs.append(out.detach())
        grads.append(m.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls", [DiscreteTimeGraph, ContinuousTimeGraph, StaticGraph])
@pytest.mark.parametrize("density, kind, expected", [
    (0.05, "image", "dense"),   # images on CPU: dense from 2 % (channels-last state)
    (0.01, "image", "csr"),     # below 2 %: sparse, node-major state
    (0.05, "vector", "csr"),    # vector features follow choose_backend (sparse below 10 % on CPU)
    (0.2, "vector", "dense"),
])
def test_auto_backend_follows_density_and_feature_kind(monkeypatch, cls, density, kind, expected):
    """Every product of a forward uses the backend the documented rule gives, and the result is the one of
    the forced backend."""
    import neuralgraphs.dynamics.continuous as cont
    import neuralgraphs.dynamics.discrete as disc
    import neuralgraphs.dynamics.static as stat
    from neuralgraphs.generators import blocked_dag, complete_graph

    n = 160  # 25600 matrix entries, above DENSE_MIN_ENTRIES
    budget = {}
    if cls is StaticGraph:
        # one level of 128 nodes fed by 32 inputs (4096 entries): too small for CSR, so add a second level;
        # a per-node budget, whose count per level is known without reading the selection (a global top-k
        # takes the dense product, see test_static_global_budget_takes_the_dense_product)
        graph = blocked_dag([32, 128, 160], outputs=torch.arange(300, 320))
        n = graph.num_nodes
        budget = dict(density=density, scope="per_node")
        k = None
    else:
        graph = complete_graph(n, inputs=torch.arange(8), outputs=torch.arange(n - 4, n))
        k = int(density * n * n)
    seen = []
    for mod in (cont, disc, stat):
        real = mod.PropagationPlan

        def spy(*args, _real=real, **kw):
            plan = _real(*args, **kw)
            if plan.num_out * plan.num_in >= 16384:  # small sub-products are always dense
                seen.append(plan.backend)
            return plan
        monkeypatch.setattr(mod, "PropagationPlan", spy)
    torch.manual_seed(0)
    op = make_node_op(kind, n, 0)
    extra = dict(post_op=Activation("tanh")) if cls is not StaticGraph else {}
    if cls is ContinuousTimeGraph:
        extra.update(method="rk4", options={"step_size": 0.5})
    m = cls(graph, op, wiring="dnw", **(budget or dict(k=k)), **extra).double()
    x = features(kind, 2, graph.inputs.numel(), 0)
    out = m(x)
    assert seen and set(seen) == {expected}
    m.backend = "csr" if expected == "dense" else "dense"
    torch.testing.assert_close(m(x), out, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("cls", [StaticGraph, DiscreteTimeGraph, ContinuousTimeGraph])
@pytest.mark.parametrize("wiring", WIRINGS)
def test_weight_gradient_against_dense_model(cls, wiring):
    """DNW: every candidate gets the gradient of a dense model whose matrix holds the selected weights (also
    at inactive candidates); other wirings: that gradient on active edges only."""
    seed = 8
    graph = random_dag(seed) if cls is StaticGraph else random_digraph(seed)
    extra = dict(method="rk4", options={"step_size": 0.5}) if cls is ContinuousTimeGraph else {}
    m = build(cls, graph, "vector", wiring, seed, backend="dense", **extra)
    x = features("vector", 3, 2, seed)
    r = torch.randn(3, graph.outputs.numel(), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    mask = reference_mask(m, wiring)
    (m(x) * r).sum().backward()

    labels = torch.tensor(m.graph.node_labels) if cls is StaticGraph else None
    a = dense_matrix(m, mask, labels).requires_grad_(True)
    if cls is StaticGraph:
        ref = static_reference(m, graph, a, x)
    elif cls is DiscreteTimeGraph:
        ref = discrete_reference(m, a, x, m.steps)
    else:
        ref = ode_reference(m, a, x, "rk4", 0.5)
    (ref * r).sum().backward()
    src, dst = m.graph.edge_index
    if labels is not None:
        src, dst = labels[src], labels[dst]
    dense_grad = a.grad[dst, src]
    expected = dense_grad if wiring == "dnw" else dense_grad * mask
    torch.testing.assert_close(m.weight.grad, expected, rtol=1e-9, atol=1e-12)
    if wiring == "dnw":
        assert bool((m.weight.grad[~mask] != 0).any())  # inactive candidates do learn
    else:
        assert bool((m.weight.grad[~mask] == 0).all())


# ---------------------------------------------------------------------------------------------- selection
class _Counter:
    def __init__(self, wiring):
        self.calls, self.inner = 0, wiring.forward

    def __call__(self, weight):
        self.calls += 1
        return self.inner(weight)


def test_selection_happens_once_per_forward():
    graph = random_digraph(0)
    d = build(DiscreteTimeGraph, graph, "vector", "dnw", 0, steps=5)
    c = build(ContinuousTimeGraph, graph, "vector", "dnw", 0, rtol=1e-8, atol=1e-8)
    for m in (d, c):
        counter = _Counter(m.wiring)
        m.wiring.forward = counter
        m(features("vector", 2, 2, 0)).sum().backward()
        assert counter.calls == 1
    assert c.nfe_forward > 10


# ---------------------------------------------------------------------------------------------- edge swap
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_swap_lowers_minibatch_loss(seed):
    """DNW's claim: with fixed node states, a swap caused by one small step lowers the minibatch loss.

    One linear layer y = A x (inputs -> outputs, identity node ops); the weakest active edge ``a`` is set
    small and the inactive edge ``i`` with the largest straight-through gradient just below it, signed so the
    step grows it; the smallest learning rate on a grid that swaps exactly these two edges is used.
    """
    n_in, n_out = 4, 3
    edges = [(s, n_in + t) for s in range(n_in) for t in range(n_out)]
    graph = NeuralGraph.from_edge_list(edges, inputs=range(n_in), outputs=range(n_in, n_in + n_out))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, n_in, generator=gen, dtype=torch.float64)
    y = torch.randn(16, n_out, generator=gen, dtype=torch.float64)
    m = StaticGraph(graph, Identity(), wiring="dnw", k=5).double()
    e = graph.num_edges
    with torch.no_grad():
        signs = torch.where(torch.rand(e, generator=gen) < 0.5, -1.0, 1.0).double()
        w = signs * torch.linspace(0.3, 1.0, e, dtype=torch.float64)[torch.randperm(e, generator=gen)]
        active = torch.topk(w.abs(), 5).indices
        inactive = torch.tensor([j for j in range(e) if j not in active.tolist()])
        w[inactive] *= 0.01
        a_idx = int(active[w[active].abs().argmin()])
        w[a_idx] = 0.05 * torch.sign(w[a_idx])
        m.weight.copy_(w)

    def loss():
        return (m(x) - y).pow(2).mean()

    m.weight.grad = None
    before = loss()
    before.backward()
    g = m.weight.grad.clone()
    i_idx = int(inactive[g[inactive].abs().argmax()])
    with torch.no_grad():
        m.weight[i_idx] = -torch.sign(g[i_idx]) * (0.05 - 1e-4)
        w0 = m.weight.detach().clone()
    old_set = set(torch.topk(w0.abs(), 5).indices.tolist())
    assert a_idx in old_set and i_idx not in old_set
    for lr in np.geomspace(1e-5, 1.0, 200):
        w1 = w0 - lr * g
        new_set = set(torch.topk(w1.abs(), 5).indices.tolist())
        if new_set != old_set:
            break
    assert new_set == old_set - {a_idx} | {i_idx}
    with torch.no_grad():
        m.weight.copy_(w1)
        after = float(loss())
    assert after < float(before.detach())


# ------------------------------------------------------------------------- discrete: first and last steps
@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("inject", ["initial", "every_step"])
@pytest.mark.parametrize("backend", ["dense", "csr"])
@pytest.mark.parametrize("op_kind", ["image", "vector"])
def test_discrete_sub_products_of_first_and_last_step_are_exact(steps, inject, backend, op_kind):
    """The first step multiplies only the input columns (the node op maps zeros to zeros) and the last only
    the output rows; outputs and every gradient must equal the full dense loop's."""
    seed = 21
    n = 9
    rng = np.random.default_rng(seed)
    edges = sorted({(s, t) for s in range(n) for t in range(n) if rng.random() < 0.5} | {(1, 8), (2, 6)})
    # inputs 1..2 and outputs 6, 8 (node 7 between them is not an output): both are strict sub-ranges
    graph = NeuralGraph.from_edge_list(edges, num_nodes=n, inputs=[2, 1], outputs=[8, 6])
    torch.manual_seed(seed)
    if op_kind == "image":
        node_op, post_op = image_node_op(n, order="relu-conv"), NodeNorm(n, "instance")
    else:
        node_op, post_op = NodeSequential(Activation("tanh")), NodeSequential(NodeAffine(n), Activation("tanh"))
    from neuralgraphs.nodes import maps_zero_to_zero
    assert maps_zero_to_zero(node_op)
    m = DiscreteTimeGraph(graph, node_op, post_op, "dnw", k=len(edges) // 2, steps=steps, inject=inject,
                          backend=backend).double()
    with torch.no_grad():
        for p in list(node_op.parameters()) + list(post_op.parameters()):
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype))
    assert set(m._subsets) == {"first", "last", "single"}
    x = features(op_kind, 3, 2, seed).requires_grad_()
    r = torch.randn((3, 2) + tuple(x.shape[2:]), dtype=torch.float64)
    (m(x) * r).sum().backward()

    mask = reference_mask(m, "dnw")
    a = dense_matrix(m, mask).requires_grad_(True)
    xr = x.detach().clone().requires_grad_()
    params = list(m.node_op.parameters()) + list(m.post_op.parameters())
    ours = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    ref = discrete_reference(m, a, xr, steps, every_step=inject == "every_step")
    (ref * r).sum().backward()
    src, dst = m.graph.edge_index
    torch.testing.assert_close(m.weight.grad, a.grad[dst, src], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-9, atol=1e-12)
    for got, p in zip(ours, params):
        torch.testing.assert_close(got, p.grad, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(m(x), discrete_reference(m, a, x, steps, inject == "every_step"))


def test_discrete_batch_norm_post_op_updates_every_node_as_the_full_loop_does():
    # the output-rows shortcut of the last step would leave the other nodes' running statistics one update
    # short per forward in training, and eval outputs would drift from the model's own definition
    import copy

    n = 8
    edges = [(s, t) for s in range(n) for t in range(n) if (s + 2 * t) % 3]
    graph = NeuralGraph.from_edge_list(edges, num_nodes=n, inputs=[0, 1], outputs=[6, 7])
    torch.manual_seed(4)
    m = DiscreteTimeGraph(graph, image_node_op(n, order="relu-conv"), NodeNorm(n, "batch"), "dnw",
                          k=len(edges) // 2, steps=3).double()
    assert "last" in m._subsets
    ref = copy.deepcopy(m)
    mask = reference_mask(m, "dnw")
    for seed in range(3):
        x = features("image", 4, 2, seed)
        out = m(x)
        with torch.no_grad():
            expected = discrete_reference(ref, dense_matrix(ref, mask), x, 3)
        torch.testing.assert_close(out, expected)
    torch.testing.assert_close(m.post_op.running_mean, ref.post_op.running_mean)
    torch.testing.assert_close(m.post_op.running_var, ref.post_op.running_var)
    m.eval(), ref.eval()
    x = features("image", 4, 2, 9)
    with torch.no_grad():
        torch.testing.assert_close(m(x), discrete_reference(ref, dense_matrix(ref, mask), x, 3))


def test_discrete_first_step_uses_every_node_when_the_op_does_not_map_zero_to_zero():
    # a biased affine node op turns zero nodes into non-zero ones: the first step must use all columns
    n = 6
    edges = [(s, t) for s in range(n) for t in range(n)]
    graph = NeuralGraph.from_edge_list(edges, num_nodes=n, inputs=[0], outputs=[5])
    op = NodeSequential(NodeAffine(n), Activation("tanh"))
    with torch.no_grad():
        op[0].bias.fill_(0.5)
    m = DiscreteTimeGraph(graph, op, None, "complete", steps=2, backend="dense").double()
    x = torch.randn(4, 1, dtype=torch.float64)
    a = dense_matrix(m, torch.ones(n * n, dtype=torch.bool))
    torch.testing.assert_close(m(x), discrete_reference(m, a, x, 2))


# ---------------------------------------------------------------------------------------------- bad input
def graph_edges_half(cls):
    graph = random_dag(0) if cls is StaticGraph else random_digraph(0)
    return max(1, graph.num_edges // 2)


def _module(cls, **kw):
    graph = random_dag(0) if cls is StaticGraph else random_digraph(0)
    n = graph.num_nodes
    extra = {} if cls is StaticGraph else dict(post_op=NodeNorm(n, "instance"))
    return cls(graph, image_node_op(n, order="norm-relu-conv", norm="instance"), **extra, **kw), graph


@pytest.mark.parametrize("cls", [StaticGraph, DiscreteTimeGraph, ContinuousTimeGraph])
def test_forward_rejects_bad_inputs_naming_x(cls):
    m, graph = _module(cls, wiring="dnw", k=graph_edges_half(cls))
    n_in = graph.inputs.numel()
    bad = [
        ("not a tensor", [[1.0]], TypeError, "x: expected a tensor"),
        ("wrong channels", torch.randn(2, n_in + 1, 4, 4), ValueError, "one channel per input node"),
        ("empty batch", torch.randn(0, n_in, 4, 4), ValueError, "non-empty batch"),
        ("integer", torch.ones(2, n_in, 4, 4, dtype=torch.long), TypeError, "floating-point"),
        ("float64 for float32 parameters", torch.randn(2, n_in, 4, 4, dtype=torch.float64), TypeError,
         "differs from the parameters'"),
    ]
    for what, x, err, msg in bad:
        with pytest.raises(err, match=re.escape(msg)):
            m(x)
    assert m(torch.randn(2, n_in, 4, 4)).shape == (2, graph.outputs.numel(), 4, 4)


@pytest.mark.parametrize("cls", [StaticGraph, DiscreteTimeGraph, ContinuousTimeGraph])
def test_constructors_reject_bad_arguments_naming_them(cls):
    graph = random_dag(0) if cls is StaticGraph else random_digraph(0)
    n = graph.num_nodes
    op = image_node_op(n, order="norm-relu-conv", norm="instance")
    with pytest.raises(TypeError, match="graph"):
        cls(nx.DiGraph([(0, 1)]), op)
    with pytest.raises(TypeError, match="node_op"):
        cls(graph, lambda x, nodes: x)
    with pytest.raises(ValueError, match="backend"):
        cls(graph, op, backend="sparse")
    with pytest.raises(ValueError, match="k: budget of .* larger than the .* candidate edges"):
        cls(graph, op, wiring="dnw", k=graph.num_edges + 1)
    if cls is DiscreteTimeGraph:
        for kw, name in ((dict(steps=0), "steps"), (dict(steps=2.5), "steps"), (dict(inject="never"), "inject")):
            with pytest.raises(ValueError, match=name):
                cls(graph, op, **kw)
    if cls is ContinuousTimeGraph:
        for kw, err, name in ((dict(method="magic"), ValueError, "method"), (dict(rtol=0.0), ValueError, "rtol"),
                              (dict(atol=-1.0), ValueError, "atol"), (dict(t_end=0), ValueError, "t_end"),
                              (dict(adjoint=1), TypeError, "adjoint"), (dict(options=[1]), TypeError, "options")):
            with pytest.raises(err, match=name):
                cls(graph, op, **kw)
    if cls is not StaticGraph:
        with pytest.raises(TypeError, match="post_op"):
            cls(graph, op, post_op="norm")


@pytest.mark.parametrize("cls", [StaticGraph, DiscreteTimeGraph, ContinuousTimeGraph])
def test_constructors_reject_a_zero_or_oversized_segment_budget_naming_k(cls):
    graph = random_dag(0) if cls is StaticGraph else random_digraph(0)
    n = graph.num_nodes
    op = image_node_op(n, order="norm-relu-conv", norm="instance")
    for wiring in ("dnw", "random", "no_update"):
        for scope in ("global", "per_node"):
            with pytest.raises(ValueError, match="^k: expected at least 1 active edge, got 0$"):
                cls(graph, op, wiring=wiring, k=0, scope=scope)
    # the smallest candidate in-degree of a node that has candidates, counted by networkx
    ref = nx.DiGraph()
    ref.add_edges_from(graph.edge_index.t().tolist())
    fewest = min(d for _, d in ref.in_degree() if d > 0)
    with pytest.raises(ValueError, match=f"^k: scope='per_node' keeps k={fewest + 1} edges in every node with "
                                         f"candidate edges, but node .* has only {fewest} candidate"):
        cls(graph, op, wiring="dnw", k=fewest + 1, scope="per_node")
    m = cls(graph, op, wiring="dnw", k=fewest, scope="per_node")
    assert m.num_active_edges() == fewest * sum(1 for _, d in ref.in_degree() if d > 0)


def _count_mismatch_message(name, part, declared, n):
    return (f"{name}: {part} is built for num_nodes={declared}, but the graph has {n} nodes; expected "
            f"num_nodes={n} (parts without num_nodes, like activations, fit any graph)")


@pytest.mark.parametrize("cls", [StaticGraph, DiscreteTimeGraph, ContinuousTimeGraph])
def test_node_op_built_for_another_node_count_is_rejected_naming_it(cls):
    graph = random_dag(0) if cls is StaticGraph else random_digraph(0)
    n = graph.num_nodes
    cases = [
        (image_node_op(n + 1, order="norm-relu-conv"), "its part '0' (NodeNorm)", n + 1),
        (NodeAffine(n - 1), "NodeAffine", n - 1),
        # one wrong part inside an otherwise fitting sequence, nested one level down
        (NodeSequential(NodeAffine(n), NodeSequential(Activation("relu"), NodeNorm(2 * n))),
         "its part '1.1' (NodeNorm)", 2 * n),
    ]
    for op, part, declared in cases:
        with pytest.raises(ValueError) as info:
            cls(graph, op, wiring="complete")
        assert str(info.value) == _count_mismatch_message("node_op", part, declared, n)
    if cls is not StaticGraph:
        op = NodeSequential(NodeAffine(n), Activation("tanh"))
        with pytest.raises(ValueError) as info:
            cls(graph, op, post_op=NodeNorm(n + 3, "instance"), wiring="complete")
        assert str(info.value) == _count_mismatch_message("post_op", "NodeNorm", n + 3, n)
        with pytest.raises(ValueError) as info:
            cls(graph, op, post_op=NodeSequential(Activation("relu"), NodeAffine(1)), wiring="complete")
        assert str(info.value) == _count_mismatch_message("post_op", "its part '1' (NodeAffine)", 1, n)


class _Halve(torch.nn.Module):
    """A user node operation with no num_nodes: it fits a graph of any size."""

    def forward(self, x, nodes=None):
        return 0.5 * x


def test_node_ops_without_a_node_count_are_accepted_and_computed():
    graph = random_dag(1)
    x = features("vector", 3, graph.inputs.numel(), 1)
    for op in (Activation("tanh"), _Halve(), NodeSequential(_Halve(), NodeAffine(graph.num_nodes).double())):
        m = StaticGraph(graph, op, wiring="complete").double()
        mask = torch.ones(m.weight.numel(), dtype=torch.bool)
        ref = static_reference(m, graph, dense_matrix(m, mask, torch.tensor(m.graph.node_labels)), x)
        torch.testing.assert_close(m(x), ref, rtol=1e-10, atol=1e-10)
    dgraph = random_digraph(1)
    n = dgraph.num_nodes
    xd = features("vector", 3, dgraph.inputs.numel(), 1)
    m = DiscreteTimeGraph(dgraph, NodeSequential(NodeAffine(n), Activation("tanh")), post_op=_Halve(),
                          wiring="complete", steps=3).double()
    mask = torch.ones(m.weight.numel(), dtype=torch.bool)
    torch.testing.assert_close(m(xd), discrete_reference(m, dense_matrix(m, mask), xd, 3), rtol=1e-10, atol=1e-10)


def test_static_global_budget_takes_the_dense_product(monkeypatch):
    """A global top-k may move edges between levels: counting a level's active edges would read the
    selection on the host, so "auto" runs the dense product over masked weights; an explicit "csr" reads the
    counts once per forward and gives the same result."""
    import neuralgraphs.dynamics.static as stat
    from neuralgraphs.generators import blocked_dag

    graph = blocked_dag([32, 128, 160], outputs=torch.arange(300, 320))
    seen = []
    real = stat.PropagationPlan

    def spy(*args, **kw):
        plan = real(*args, **kw)
        seen.append((plan.backend, plan.active is None))
        return plan
    monkeypatch.setattr(stat, "PropagationPlan", spy)
    torch.manual_seed(0)
    m = StaticGraph(graph, make_node_op("vector", graph.num_nodes, 0), "dnw", k=int(0.01 * graph.num_edges)).double()
    x = features("vector", 2, 32, 0)
    out = m(x)
    assert seen and set(seen) == {("dense", True)}
    seen.clear()
    m.backend = "csr"
    torch.testing.assert_close(m(x), out, rtol=1e-9, atol=1e-10)
    assert set(seen) == {("csr", False)}
