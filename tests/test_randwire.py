"""RandWire stages, the DNW stage and the networks built from them, against references written here."""

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from neuralgraphs.analysis import count_flops, count_parameters
from neuralgraphs.analysis.history import WiringHistory
from neuralgraphs.dynamics import StaticGraph
from neuralgraphs.generators.random_graphs import random_dag, stage_seeds
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.models import (DIGITS_KINDS, DNWStage, RandWireNet, RandWireStage, digits_network, dnw_candidates,
                                 stage_edge_count)
from neuralgraphs.wiring import FixedWiring, freeze_wiring


def _dag(n, edges):
    # nodes inserted in label order: a stage numbers nodes in graph.nodes order
    dag = nx.DiGraph()
    dag.add_nodes_from(range(n))
    dag.add_edges_from(edges)
    return dag


def _er_with_isolated():
    for seed in range(200):
        dag = random_dag("er", 12, seed, p=0.15)
        if nx.number_of_isolates(dag) and dag.number_of_edges():
            return dag
    raise AssertionError("no ER graph with an isolated node found")


def _bn(h, weight, bias, eps=1e-5):
    """Batch norm in training written here: batch statistics over (B, H, W) per channel."""
    mean = h.mean((0, 2, 3), keepdim=True)
    var = h.var((0, 2, 3), unbiased=False, keepdim=True)
    return (h - mean) / torch.sqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def _sepconv(a, dw, pw, stride):
    # ReLU with slope 1 at exactly 0, as the library's (a silent node's zeros pass the gradient back)
    h = F.conv2d(torch.clamp(a, min=0), dw, stride=stride, padding=1, groups=a.size(1))
    return F.conv2d(h, pw)


def _randomise(stage):
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        stage.weight.copy_(torch.randn(stage.weight.shape, generator=gen))
        stage.input_logit.copy_(torch.randn(stage.input_logit.shape, generator=gen))
        for m in stage.modules():
            if m.__class__.__name__ == "NodeNorm":
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=gen))


def _reference_stage(stage, x, edges, n, drop=None):
    """Node by node in the input graph's numbering with plain torch ops: sigmoid-weighted sums, ReLU -> 3x3
    depthwise -> 1x1 -> batch norm (batch statistics), the mean of the sinks.  Parameters are read where
    the stage keeps them: sources in ``source_op`` (rows in source order), the others in the node operation's
    second range (rows in the stage's level order), edge weights by (source, target) in ``graph``.

    ``drop``: optional ``[N, B]`` per-sample factor multiplying each node's output (DropPath)."""
    new = {orig: i for i, orig in enumerate(stage.graph.node_labels)}
    n_src = stage.inputs.numel()
    preds = {v: [u for u, t in edges if t == v] for v in range(n)}
    succs = {v: [t for u, t in edges if u == v] for v in range(n)}
    cand = {tuple(e): i for i, e in enumerate(stage.graph.edge_index.t().tolist())}
    src_op, inner = stage.source_op, (stage.node_op[0].ops[1] if len(stage.node_op[0].ops) > 1 else None)
    z = {}
    for v in nx.topological_sort(_dag(n, edges)):
        j = new[v]
        if not preds[v]:
            assert j < n_src
            a = torch.sigmoid(stage.input_logit[j]) * x
            h = _sepconv(a, src_op[1].depthwise[j], src_op[1].pointwise[j], stage.stride)
            z[v] = _bn(h, src_op[2].weight[j], src_op[2].bias[j])
        else:
            r = j - n_src
            a = sum(torch.sigmoid(stage.weight[cand[(new[u], j)]]) * z[u] for u in preds[v])
            h = _sepconv(a, inner[1].depthwise[r], inner[1].pointwise[r], 1)
            z[v] = _bn(h, inner[2].weight[r], inner[2].bias[r])
        if drop is not None:
            z[v] = z[v] * drop[v].view(-1, 1, 1, 1)
    sinks = [v for v in range(n) if not succs[v]]
    return sum(z[v] for v in sinks) / len(sinks)


@pytest.mark.parametrize("make", [
    lambda: random_dag("ws", 16, 3, k=4, p=0.75),
    lambda: random_dag("er", 16, 4, p=0.25),
    lambda: random_dag("ba", 16, 5, m=3),
    _er_with_isolated,
    lambda: nx.empty_graph(3, create_using=nx.DiGraph),  # no edge at all
], ids=["ws", "er", "ba", "er-isolated", "edgeless"])
def test_stage_matches_node_by_node_reference(make):
    dag = make()
    stage = RandWireStage(dag, 3, 4, stride=2, seed=1)
    _randomise(stage)
    assert isinstance(stage, StaticGraph)
    x = torch.randn(3, 3, 9, 9, requires_grad=True)
    y = stage(x)
    assert y.shape == (3, 4, 5, 5)
    edges = [(int(u), int(v)) for u, v in dag.edges]
    xr = x.detach().clone().requires_grad_()
    ref = _reference_stage(stage, xr, edges, dag.number_of_nodes())
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    probe = torch.sin(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)
    grads = torch.autograd.grad((y * probe).sum(), [x] + list(stage.parameters()), allow_unused=True)
    ref_grads = torch.autograd.grad((ref * probe).sum(), [xr] + list(stage.parameters()), allow_unused=True)
    for got, want in zip(grads, ref_grads):
        if want is None:
            assert got is None or bool((got == 0).all())
        else:
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_stage_running_statistics_follow_the_batch():
    # one training forward moves every node's running mean 10 % of the way to its batch mean
    dag = _dag(3, [(0, 2), (1, 2)])
    stage = RandWireStage(dag, 2, 3, seed=0)
    x = torch.randn(5, 2, 6, 6)
    stage.train()
    with torch.no_grad():
        stage(x)
        a = torch.sigmoid(stage.input_logit[0]) * x
        h = _sepconv(a, stage.source_op[1].depthwise[0], stage.source_op[1].pointwise[0], 2)
    torch.testing.assert_close(stage.source_op[2].running_mean[0], 0.1 * h.mean((0, 2, 3)))
    stage.eval()
    with torch.no_grad():
        torch.testing.assert_close(stage(x), stage(x))  # deterministic in eval mode


def test_stage_counts_its_edges_and_names_its_nodes():
    edges = [(0, 2), (1, 2), (1, 3)]  # sources {0, 1}, sinks {2, 3}
    stage = RandWireStage(_dag(4, edges), 2, 3, stride=2, seed=0)
    assert stage.num_edges == 3 + 2 + 2 == stage_edge_count(_dag(4, edges))
    # sources are the input nodes, numbered first; sinks are the outputs
    labels = stage.graph.node_labels
    assert sorted(labels[i] for i in stage.inputs.tolist()) == [0, 1]
    assert sorted(labels[i] for i in stage.outputs.tolist()) == [2, 3]
    assert stage.source_op[1].depthwise.shape == (2, 2, 1, 3, 3) and stage.source_op[1].pointwise.shape == (2, 3, 2, 1, 1)
    assert stage.node_op[0].ops[1][1].depthwise.shape == (2, 3, 1, 3, 3)
    # the complete wiring: every hidden edge active, with the positive weight sigmoid(theta) = 1/2 at start
    a = stage.active()
    assert a.index.tolist() == [0, 1, 2]
    torch.testing.assert_close(a.weight, torch.full((3,), 0.5))


def test_aggregation_weights_are_sigmoid_positive():
    dag = _dag(3, [(0, 2), (1, 2)])
    stage = RandWireStage(dag, 1, 1, seed=0)
    with torch.no_grad():
        stage.weight.copy_(torch.tensor([-8.0, 3.0]))
    assert bool((stage.edge_weights() > 0).all()) and bool((stage.input_weights() > 0).all())
    torch.testing.assert_close(stage.edge_weights(), torch.sigmoid(torch.tensor([-8.0, 3.0])))
    x = torch.randn(2, 1, 6, 6)
    torch.testing.assert_close(stage(x), _reference_stage(stage, x, [(0, 2), (1, 2)], 3), atol=1e-5, rtol=1e-5)


def test_isolated_node_is_source_and_sink():
    dag = _dag(3, [(0, 1)])
    stage = RandWireStage(dag, 2, 2, seed=0)
    labels = stage.graph.node_labels
    assert sorted(labels[i] for i in stage.inputs.tolist()) == [0, 2]
    assert sorted(labels[i] for i in stage.outputs.tolist()) == [1, 2]
    assert stage.num_edges == stage_edge_count(dag) == 1 + 2 + 2
    assert stage(torch.randn(2, 2, 4, 4)).shape == (2, 2, 2, 2)


def test_same_seed_same_stage_and_no_global_generator_use():
    dag = random_dag("ws", 12, 0, k=4, p=0.75)
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    a = RandWireStage(dag, 3, 4, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = RandWireStage(dag, 3, 4, seed=5)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)


def _reference_drop(num_nodes, batch, p, seed):
    """The DropPath factors the module docstring specifies, drawn as it says: one ``[N, B]`` uniform draw
    from torch's global generator; a node-sample pair is dropped (0) with probability p, else kept and
    scaled by 1 / (1 - p)."""
    torch.manual_seed(seed)
    keep = torch.rand(num_nodes, batch) >= p
    return keep, torch.where(keep, torch.full((num_nodes, batch), 1.0 / (1.0 - p)), torch.zeros(()))


def test_drop_path_training_only():
    dag = random_dag("ws", 12, 0, k=4, p=0.75)
    stage = RandWireStage(dag, 2, 3, drop_path=0.5, seed=0)
    x = torch.randn(4, 2, 8, 8)
    stage.eval()
    y1, y2 = stage(x), stage(x)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    plain = RandWireStage(dag, 2, 3, drop_path=0.0, seed=0).eval()
    torch.testing.assert_close(y1, plain(x), rtol=0, atol=0)
    stage.train()
    torch.manual_seed(0)
    t1 = stage(x)
    torch.manual_seed(1)
    t2 = stage(x)
    assert not torch.allclose(t1, t2)


def test_drop_path_matches_reference_mask():
    # sources {0, 1}, inner {2, 3, 4}, sinks {3, 4}: a dropped source also silences its paths through 2 to 4
    edges = [(0, 2), (1, 2), (1, 3), (2, 4)]
    n, b, p, seed = 5, 8, 0.4, 12
    stage = RandWireStage(_dag(n, edges), 2, 3, stride=2, drop_path=p, seed=0)
    _randomise(stage)
    x = torch.randn(b, 2, 8, 8)
    keep, drop = _reference_drop(n, b, p, seed)
    # the seed drops source 0 of a sample whose nodes 2, 3, 4 are kept: the drop must reach the output via 2 -> 4
    assert bool((~keep[0] & keep[2] & keep[3] & keep[4]).any())
    ref = _reference_stage(stage, x, edges, n, drop=drop)
    stage.train()
    torch.manual_seed(seed)
    torch.testing.assert_close(stage(x), ref, atol=1e-5, rtol=1e-5)
    # without DropPath the same stage gives the undropped reference
    plain = RandWireStage(_dag(n, edges), 2, 3, stride=2, drop_path=0.0, seed=0)
    plain.load_state_dict(stage.state_dict())
    torch.testing.assert_close(plain(x), _reference_stage(plain, x, edges, n), atol=1e-5, rtol=1e-5)


def test_drop_path_statistics():
    # over many samples: drop frequency p, and a kept output scaled by exactly 1 / (1 - p)
    p, b = 0.3, 4000
    stage = RandWireStage(_dag(1, []), 1, 1, stride=1, drop_path=p, seed=0)  # input -> node 0 -> output
    x = torch.randn(b, 1, 1, 1)
    torch.manual_seed(0)
    y = stage.train()(x).view(-1)
    plain = _reference_stage(stage, x, [], 1).view(-1)  # BN over the batch: every sample kept
    dropped = y == 0
    assert abs(dropped.float().mean().item() - p) < 4 * (p * (1 - p) / b) ** 0.5
    kept = ~dropped & (plain.abs() > 1e-3)
    torch.testing.assert_close(y[kept] / plain[kept], torch.full((int(kept.sum()),), 1.0 / (1.0 - p)),
                               atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- DNW stage
def _dnw_reference(stage, x, drop=None):
    """Node by node over *all* candidates, weights w * mask as a leaf: its gradient is the straight-through
    gradient.  A hidden node that no active path from the input reaches outputs zeros (and passes the gradient
    of its operation back, as if it were fed).

    ``drop``: optional ``[N, B]`` per-sample factor multiplying each hidden node's output (DropPath)."""
    act = stage.wiring(stage.weight)
    w = (stage.weight.detach() * act.mask).requires_grad_(True)
    src, dst = stage.graph.edge_index.tolist()
    n = stage.num_nodes
    inner, out_norm = stage.node_op[0].ops[1], stage.node_op[0].ops[2]
    z = {0: stage.downsample(x)}
    reached = {0}
    for v in range(1, n + 1):
        into = [e for e in range(len(src)) if dst[e] == v]
        a = sum(w[e] * z[src[e]] for e in into)
        # a batch norm of an input constant over the batch (a silent node's zeros) at unit scale
        h = _sepconv(a, inner[1].depthwise[v - 1], inner[1].pointwise[v - 1], 1)
        flat = (h.amax((0, 2, 3)) == h.amin((0, 2, 3))).view(1, -1, 1, 1)
        out = torch.where(flat, (h - h.mean((0, 2, 3), keepdim=True)) * inner[2].weight[v - 1].view(1, -1, 1, 1)
                          + inner[2].bias[v - 1].view(1, -1, 1, 1), _bn(h, inner[2].weight[v - 1], inner[2].bias[v - 1]))
        if any(act.mask[e] and src[e] in reached for e in into):
            reached.add(v)
            z[v] = out
        else:  # silent: zeros forward, the gradient of a fed node backward
            z[v] = out - out.detach()
        if drop is not None:
            z[v] = z[v] * drop[v - 1].view(-1, 1, 1, 1)
    out = sum(w[e] * z[src[e]] for e in range(len(src)) if dst[e] == n + 1)
    return _bn(out, out_norm.weight[0], out_norm.bias[0]), w, act


@pytest.mark.parametrize("num_blocks", [None, 3])
def test_dnw_stage_topk_and_straight_through_gradient(num_blocks):
    n, k = 8, 16
    stage = DNWStage(n, 3, 4, k, stride=2, seed=0, num_blocks=num_blocks)
    cand = dnw_candidates(n, num_blocks)
    assert stage.graph.edge_index.tolist() == cand.edge_index.tolist()
    if num_blocks is None:
        assert cand.num_edges == n * (n - 1) // 2 + 2 * n
    src, dst = cand.edge_index
    assert bool((src < dst).all()) and not bool(((src == 0) & (dst == n + 1)).any())
    assert stage.num_levels == (n if num_blocks is None else num_blocks) + 2
    x = torch.randn(3, 3, 8, 8)
    opt = torch.optim.SGD(stage.parameters(), lr=0.5)
    probe = None
    for step in range(2):
        act = stage.wiring(stage.weight)
        assert int(act.mask.sum()) == k and act.index.numel() == k
        chosen = set(torch.topk(stage.weight.detach().abs(), k).indices.tolist())
        assert set(act.index.tolist()) == chosen
        ref, w, _ = _dnw_reference(stage, x)
        if probe is None:
            probe = torch.sin(torch.arange(ref.numel(), dtype=ref.dtype)).view_as(ref)
        (ref * probe).sum().backward()
        stage.zero_grad()
        y = stage(x)
        torch.testing.assert_close(y, ref.detach(), atol=1e-5, rtol=1e-5)
        (y * probe).sum().backward()
        torch.testing.assert_close(stage.weight.grad, w.grad, atol=1e-4, rtol=1e-4)
        if step == 0:
            assert bool((stage.weight.grad[~act.mask] != 0).any())  # gradients reach inactive candidates
        opt.step()


@pytest.mark.parametrize("seed", range(40))
def test_dnw_stage_starts_with_a_path_from_the_input_to_the_output(seed):
    # a stage whose first active set has no such path trains at chance until the wiring happens to connect,
    # or for ever: a candidate into a node that reaches no output, or out of a node that nothing feeds, has a
    # straight-through gradient of exactly zero
    n, k = 12, 20
    stage = DNWStage(n, 8, 8, k, seed=seed, num_blocks=4)
    src, dst = stage.graph.edge_index
    w = stage.weight.detach().abs()
    active = torch.topk(w, k).indices
    g = nx.DiGraph()
    g.add_nodes_from(range(n + 2))
    g.add_edges_from(zip(src[active].tolist(), dst[active].tolist()))
    assert nx.has_path(g, 0, n + 1)
    io = (src == 0) | (dst == n + 1)
    bound = 1 / (stage.graph.num_edges / (n + 1)) ** 0.5  # U(-b, b), b = 1 / sqrt(mean candidate in-degree)
    assert float(w[~io].max()) <= bound and float(w[io].max()) <= 2 * bound + 1e-7
    assert int((w == w.max()).sum()) == 2  # the one pair input -> v -> output at the top


def test_dnw_drop_path_matches_reference_mask():
    n, b, p, seed = 5, 6, 0.5, 2
    stage = DNWStage(n, 3, 4, 9, stride=2, seed=0, drop_path=p)
    x = torch.randn(b, 3, 8, 8)
    keep, drop = _reference_drop(n, b, p, seed)
    assert bool(keep.any()) and not bool(keep.all())
    ref, _, _ = _dnw_reference(stage, x, drop=drop)
    stage.train()
    torch.manual_seed(seed)
    torch.testing.assert_close(stage(x), ref.detach(), atol=1e-5, rtol=1e-5)


def test_dnw_stage_same_channels_uses_pool_and_complete_wiring():
    stage = DNWStage(5, 4, 4, None, stride=2, seed=1, wiring="complete")
    assert stage.proj is None and stage.num_edges == stage.graph.num_edges == 10 + 10
    x = torch.randn(2, 4, 6, 6)
    ref, _, _ = _dnw_reference(stage, x)
    torch.testing.assert_close(stage(x), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="k:"):
        DNWStage(5, 4, 4, 1000)


def test_dnw_stage_speaks_the_wiring_protocol():
    # freeze_wiring and the wiring history work on a stage as on any graph module
    stage = DNWStage(6, 2, 3, 10, seed=0)
    hist = WiringHistory()
    hist.record(stage)
    chosen = torch.topk(stage.weight.detach().abs(), 10).indices.sort().values
    freeze_wiring(stage)
    assert isinstance(stage.wiring, FixedWiring)
    with torch.no_grad():
        stage.weight.mul_(torch.rand(stage.weight.shape))
    assert torch.equal(stage.active().index, chosen)
    hist.record(stage)
    assert hist.swaps() == [0]


def test_stages_reject_bad_input_naming_it():
    dag = random_dag("ws", 8, 0, k=4, p=0.5)
    for stage in (RandWireStage(dag, 2, 2, seed=0), DNWStage(4, 2, 2, 5)):
        with pytest.raises(ValueError, match="^x: "):
            stage(torch.randn(0, 2, 4, 4))  # an empty batch
        with pytest.raises(ValueError, match="^x: "):
            stage(torch.randn(2, 3, 4, 4))
        with pytest.raises(ValueError, match="^x: "):
            stage(torch.randn(2, 2, 4))
    cyclic = nx.DiGraph([(0, 1), (1, 2), (2, 0)])
    with pytest.raises(ValueError, match=r"graph: has a cycle (\d -> ){3}\d"):
        RandWireStage(cyclic, 2, 2)
    with pytest.raises(ValueError, match="graph: has a cycle"):
        RandWireStage(NeuralGraph.from_edge_list([(0, 1), (1, 0)], inputs=[0], outputs=[1]), 2, 2)


# ---------------------------------------------------------------------------------------------- networks
def test_randwire_net_small_regime_counts():
    net = RandWireNet("ws(4,0.75)", num_nodes=32, channels=78, regime="small", seed=0)
    # paper: about 5.6M parameters and 583M FLOPs at 224 x 224
    assert 5.5e6 < count_parameters(net) < 5.7e6
    assert 575e6 < count_flops(net, (3, 224, 224)) < 590e6
    expected = [stage_edge_count(random_dag("ws", 32, s, k=4, p=0.75)) for s in stage_seeds(0, 3)]
    assert [s.num_edges for s in net.stages] == expected and net.num_edges() == sum(expected)
    net.eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 1000) and bool(torch.isfinite(y).all())


def test_randwire_net_stage_graphs_differ():
    net = RandWireNet(num_nodes=16, channels=8, num_classes=5, seed=3)
    edge_sets = [frozenset(map(tuple, s.graph.edge_index.t().tolist())) for s in net.stages]
    assert len(set(edge_sets)) == 3
    dnw = RandWireNet(num_nodes=16, channels=8, num_classes=5, seed=3, wiring="dnw")
    assert dnw.num_edges() == net.num_edges()


@pytest.mark.parametrize("kind", DIGITS_KINDS)
def test_digits_network(kind):
    torch.manual_seed(0)
    model = digits_network(kind, seed=2)
    x = torch.randn(16, 1, 8, 8)
    y = model(x)
    assert y.shape == (16, 10)
    assert count_flops(model, (1, 8, 8)) > 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(y, torch.arange(16) % 10)
    loss.backward()
    opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert model(x).shape == (16, 10)


def test_digits_ws_and_dnw_have_equal_active_edges():
    for seed in (0, 1):
        ws = digits_network("ws", seed=seed)
        dnw = digits_network("dnw", seed=seed)
        assert ws.num_active_edges() == dnw.num_active_edges()
        assert [s.num_edges for s in ws.stages] == [s.num_edges for s in dnw.stages]
    assert digits_network("dnw", budget=30).num_active_edges() == 60
    complete = digits_network("complete")
    assert complete.num_active_edges() == 2 * (16 * 15 // 2 + 32)


def test_argument_validation():
    dag = random_dag("ws", 8, 0, k=4, p=0.5)
    with pytest.raises(ValueError, match="drop_path"):
        RandWireStage(dag, 2, 2, drop_path=1.0)
    with pytest.raises(TypeError, match="graph"):
        RandWireStage(nx.Graph([(0, 1)]), 2, 2)
    with pytest.raises(ValueError, match="kind"):
        digits_network("sw")
    with pytest.raises(ValueError, match="regime"):
        RandWireNet(regime="large")
    with pytest.raises(ValueError, match="num_blocks"):
        dnw_candidates(4, 5)
    with pytest.raises(ValueError, match="num_blocks"):
        digits_network("ws", num_blocks=2)


@pytest.mark.parametrize("kind", ["ws", "dnw"])
def test_digits_network_names_num_nodes_when_too_small_for_the_ws_graph(kind):
    with pytest.raises(ValueError, match=f"^num_nodes: kind='{kind}' draws a WS graph with k=4 neighbours"):
        digits_network(kind, num_nodes=4)
