"""RandWire stages, the DNW stage and the networks built from them, against references written here."""

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from neuralgraphs.generators.random_graphs import random_dag, stage_seeds
from neuralgraphs.models.randwire import (
    DIGITS_KINDS,
    DNWStage,
    RandWireNet,
    RandWireStage,
    dnw_candidates,
    digits_network,
    stage_edge_count,
)


def _run(stage, x, schedule):
    stage.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    y = stage(x, schedule=schedule)
    probe = torch.sin(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)
    (y * probe).sum().backward()
    grads = {name: p.grad.clone() for name, p in stage.named_parameters() if p.grad is not None}
    return y.detach(), x.grad.clone(), grads


def _assert_same(a, b, atol=1e-4, rtol=1e-4):
    ya, xa, ga = a
    yb, xb, gb = b
    torch.testing.assert_close(ya, yb, atol=atol, rtol=rtol)
    torch.testing.assert_close(xa, xb, atol=atol, rtol=rtol)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=atol, rtol=rtol, msg=name)


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


@pytest.mark.parametrize("make", [
    lambda: random_dag("ws", 16, 3, k=4, p=0.75),
    lambda: random_dag("er", 16, 4, p=0.25),
    lambda: random_dag("ba", 16, 5, m=3),
    _er_with_isolated,
    lambda: nx.empty_graph(3, create_using=nx.DiGraph),  # no edge at all
], ids=["ws", "er", "ba", "er-isolated", "edgeless"])
def test_level_schedule_equals_node_schedule(make):
    dag = make()
    torch.manual_seed(0)
    stage = RandWireStage(dag, 3, 4, stride=2, seed=1)
    with torch.no_grad():
        stage.edge_logit.normal_()
        stage.input_logit.normal_()
    x = torch.randn(3, 3, 9, 9)
    lvl = _run(stage, x, "level")
    node = _run(stage, x, "node")
    _assert_same(lvl, node)
    assert lvl[0].shape == (3, 4, 5, 5)
    # running statistics are updated identically
    stage.train()
    rm = stage.ops.running_mean.clone()
    stage(x, schedule="level")
    after_level = stage.ops.running_mean.clone()
    stage.ops.running_mean.copy_(rm)
    stage(x, schedule="node")
    torch.testing.assert_close(after_level, stage.ops.running_mean)


def _reference_stage(stage, x, edges, n, drop=None):
    """Node by node with plain torch ops: sigmoid-weighted sums, ReLU -> 3x3 dw -> 1x1 -> BN (batch stats).

    ``drop``: optional ``[N, B]`` per-sample factor multiplying each node's output (DropPath)."""
    ops = stage.ops
    preds = {v: [u for u, t in edges if t == v] for v in range(n)}
    succs = {v: [t for u, t in edges if u == v] for v in range(n)}
    hidden_w = torch.sigmoid(stage.edge_logit)
    input_w = torch.sigmoid(stage.input_logit)
    src, dst = stage.edge_index.tolist()
    eid = {(u, t): i for i, (u, t) in enumerate(zip(src, dst))}
    sources = [v for v in range(n) if not preds[v]]
    z = {}
    for v in range(n):  # the hand-built DAG is numbered topologically
        row = int(ops.row[v])
        if not preds[v]:
            a = input_w[sources.index(v)] * x
            h = F.conv2d(F.relu(a), ops.dw_fed[row], stride=2, padding=1, groups=x.size(1))
            h = F.conv2d(h, ops.pw_fed[row])
        else:
            a = sum(hidden_w[eid[(u, v)]] * z[u] for u in preds[v])
            h = F.conv2d(F.relu(a), ops.dw[row], stride=1, padding=1, groups=a.size(1))
            h = F.conv2d(h, ops.pw[row])
        mean = h.mean((0, 2, 3), keepdim=True)
        var = h.var((0, 2, 3), unbiased=False, keepdim=True)
        z[v] = (h - mean) / torch.sqrt(var + 1e-5) * ops.bn_weight[v].view(1, -1, 1, 1) \
            + ops.bn_bias[v].view(1, -1, 1, 1)
        if drop is not None:
            z[v] = z[v] * drop[v].view(-1, 1, 1, 1)
    sinks = [v for v in range(n) if not succs[v]]
    return sum(z[v] for v in sinks) / len(sinks)


def test_stage_matches_independent_reference():
    edges = [(0, 2), (1, 2), (1, 3)]  # sources {0, 1}, sinks {2, 3}
    dag = _dag(4, edges)
    torch.manual_seed(0)
    stage = RandWireStage(dag, 2, 3, stride=2, seed=0)
    with torch.no_grad():
        stage.edge_logit.copy_(torch.tensor([-1.0, 0.5, 2.0]))
        stage.input_logit.copy_(torch.tensor([0.3, -0.7]))
        stage.ops.bn_weight.normal_()
        stage.ops.bn_bias.normal_()
    assert stage.sources.tolist() == [0, 1] and stage.sinks.tolist() == [2, 3]
    assert stage.num_edges == 3 + 2 + 2
    # stride 2 and in_channels only on the nodes fed by the input: two fed nodes, two inner ones
    assert stage.ops.dw_fed.shape == (2, 2, 1, 3, 3) and stage.ops.pw_fed.shape == (2, 3, 2, 1, 1)
    assert stage.ops.dw.shape == (2, 3, 1, 3, 3) and stage.ops.pw.shape == (2, 3, 3, 1, 1)
    x = torch.randn(4, 2, 8, 8)
    ref = _reference_stage(stage, x, edges, 4)
    for schedule in ("level", "node"):
        torch.testing.assert_close(stage(x, schedule=schedule), ref, atol=1e-5, rtol=1e-5)


def test_aggregation_weights_are_sigmoid_positive():
    # two parents feeding one node: scaling with very negative logits keeps positive weights
    dag = _dag(3, [(0, 2), (1, 2)])
    stage = RandWireStage(dag, 1, 1, seed=0)
    with torch.no_grad():
        stage.edge_logit.copy_(torch.tensor([-8.0, 3.0]))
    hidden, inp = stage.edge_weights()
    assert bool((hidden > 0).all()) and bool((inp > 0).all())
    torch.testing.assert_close(hidden, torch.sigmoid(torch.tensor([-8.0, 3.0])))
    ref = _reference_stage(stage, torch.randn(2, 1, 6, 6), [(0, 2), (1, 2)], 3)
    torch.manual_seed(1)
    x = torch.randn(2, 1, 6, 6)
    torch.testing.assert_close(stage(x), _reference_stage(stage, x, [(0, 2), (1, 2)], 3), atol=1e-5, rtol=1e-5)
    assert ref.shape == (2, 1, 3, 3)


def test_isolated_node_is_source_and_sink():
    dag = _dag(3, [(0, 1)])
    stage = RandWireStage(dag, 2, 2, seed=0)
    assert stage.sources.tolist() == [0, 2] and stage.sinks.tolist() == [1, 2]
    assert stage.num_edges == stage_edge_count(dag) == 1 + 2 + 2
    assert stage(torch.randn(2, 2, 4, 4)).shape == (2, 2, 2, 2)


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
    # the same mask for both schedules
    torch.manual_seed(5)
    a = stage(x, schedule="level")
    torch.manual_seed(5)
    b = stage(x, schedule="node")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _reference_drop(num_nodes, batch, p, seed):
    """The DropPath factors the module docstring specifies, drawn as it says: one ``[N, B]`` uniform draw
    from torch's global generator; a node-sample pair is dropped (0) with probability p, else kept and
    scaled by 1 / (1 - p)."""
    torch.manual_seed(seed)
    keep = torch.rand(num_nodes, batch) >= p
    return keep, torch.where(keep, torch.full((num_nodes, batch), 1.0 / (1.0 - p)), torch.zeros(()))


def test_drop_path_matches_reference_mask():
    # sources {0, 1}, inner {2, 3, 4}, sinks {3, 4}: a dropped source also silences its paths through 2 to 4
    edges = [(0, 2), (1, 2), (1, 3), (2, 4)]
    n, b, p, seed = 5, 8, 0.4, 12
    stage = RandWireStage(_dag(n, edges), 2, 3, stride=2, drop_path=p, seed=0)
    with torch.no_grad():
        stage.edge_logit.normal_()
        stage.input_logit.normal_()
        stage.ops.bn_weight.normal_()
        stage.ops.bn_bias.normal_()
    x = torch.randn(b, 2, 8, 8)
    keep, drop = _reference_drop(n, b, p, seed)
    # the seed drops source 0 of a sample whose nodes 2, 3, 4 are kept: the drop must reach the output via 2 -> 4
    assert bool((~keep[0] & keep[2] & keep[3] & keep[4]).any())
    ref = _reference_stage(stage, x, edges, n, drop=drop)
    stage.train()
    for schedule in ("level", "node"):
        torch.manual_seed(seed)
        y = stage(x, schedule=schedule)
        torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5, msg=schedule)
    # without DropPath the same stage gives the undropped reference
    stage.drop_path = 0.0
    torch.testing.assert_close(stage(x), _reference_stage(stage, x, edges, n), atol=1e-5, rtol=1e-5)


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


def test_dnw_drop_path_matches_reference_mask():
    n, b, p, seed = 5, 6, 0.5, 2
    stage = DNWStage(n, 3, 4, 9, stride=2, seed=0, drop_path=p)
    x = torch.randn(b, 3, 8, 8)
    keep, drop = _reference_drop(n, b, p, seed)
    assert bool(keep.any()) and not bool(keep.all())
    ref, _, _ = _dnw_reference(stage, x, drop=drop)
    stage.train()
    for schedule in ("level", "node"):
        torch.manual_seed(seed)
        y = stage(x, schedule=schedule)
        torch.testing.assert_close(y, ref.detach(), atol=1e-5, rtol=1e-5, msg=schedule)


def _dnw_reference(stage, x, drop=None):
    """Node by node over *all* candidates, weights w * mask as a leaf: its gradient is the STE gradient.

    ``drop``: optional ``[N, B]`` per-sample factor multiplying each hidden node's output (DropPath)."""
    act = stage.wiring(stage.weight)
    w = (stage.weight.detach() * act.mask).requires_grad_(True)
    src, dst = stage.candidates.edge_index.tolist()
    n = stage.num_nodes
    x0 = stage.downsample(x)
    z = {0: x0}
    ops = stage.ops
    for v in range(1, n + 1):
        a = sum(w[e] * z[src[e]] for e in range(len(src)) if dst[e] == v)
        h = F.conv2d(F.relu(a), ops.dw[v - 1], padding=1, groups=a.size(1))
        h = F.conv2d(h, ops.pw[v - 1])
        mean = h.mean((0, 2, 3), keepdim=True)
        var = h.var((0, 2, 3), unbiased=False, keepdim=True)
        z[v] = (h - mean) / torch.sqrt(var + 1e-5) * ops.bn_weight[v - 1].view(1, -1, 1, 1) \
            + ops.bn_bias[v - 1].view(1, -1, 1, 1)
        if drop is not None:
            z[v] = z[v] * drop[v - 1].view(-1, 1, 1, 1)
    out = sum(w[e] * z[src[e]] for e in range(len(src)) if dst[e] == n + 1)
    # the output BN, in training mode: batch statistics over (B, H, W)
    bn = stage.out_bn
    mean = out.mean((0, 2, 3), keepdim=True)
    var = out.var((0, 2, 3), unbiased=False, keepdim=True)
    out = (out - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    return out, w, act


def test_dnw_stage_topk_and_straight_through_gradient():
    n, k = 8, 20
    stage = DNWStage(n, 3, 4, k, stride=2, seed=0)
    cand = dnw_candidates(n)
    assert cand.num_edges == n * (n - 1) // 2 + 2 * n
    src, dst = cand.edge_index
    assert bool((src < dst).all()) and not bool(((src == 0) & (dst == n + 1)).any())
    x = torch.randn(3, 3, 8, 8)
    opt = torch.optim.SGD(stage.parameters(), lr=0.5)
    probe = None
    for _ in range(2):
        act = stage.wiring(stage.weight)
        assert int(act.mask.sum()) == k and act.index.numel() == k
        chosen = set(torch.topk(stage.weight.detach().abs(), k).indices.tolist())
        assert set(act.index.tolist()) == chosen
        ref, w, _ = _dnw_reference(stage, x)
        if probe is None:
            probe = torch.sin(torch.arange(ref.numel(), dtype=ref.dtype)).view_as(ref)
        (ref * probe).sum().backward()
        for schedule in ("level", "node"):
            stage.zero_grad()
            y = stage(x, schedule=schedule)
            torch.testing.assert_close(y, ref.detach(), atol=1e-5, rtol=1e-5)
            (y * probe).sum().backward()
            torch.testing.assert_close(stage.weight.grad, w.grad, atol=1e-4, rtol=1e-4)
        inactive = ~act.mask
        assert bool((stage.weight.grad[inactive] != 0).any())  # gradients reach inactive candidates
        opt.step()


def test_dnw_stage_same_channels_uses_pool_and_complete_wiring():
    stage = DNWStage(5, 4, 4, None, stride=2, seed=1, wiring="complete")
    assert stage.proj is None and stage.num_edges == stage.candidates.num_edges == 10 + 10
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(stage(x, schedule="level"), stage(x, schedule="node"), atol=1e-5, rtol=1e-5)
    ref, _, _ = _dnw_reference(stage, x)
    torch.testing.assert_close(stage(x), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="k:"):
        DNWStage(5, 4, 4, 1000)


def test_randwire_net_small_regime():
    net = RandWireNet("ws(4,0.75)", num_nodes=32, channels=78, regime="small", seed=0)
    # paper: about 5.6M parameters and 583M FLOPs at 224 x 224
    assert 5.3e6 < net.num_parameters() < 5.9e6
    assert 550e6 < net.flops(224) < 620e6
    expected = [stage_edge_count(random_dag("ws", 32, s, k=4, p=0.75)) for s in stage_seeds(0, 3)]
    assert [s.num_edges for s in net.stages] == expected and net.num_edges() == sum(expected)
    net.eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 1000) and bool(torch.isfinite(y).all())


def test_randwire_net_stage_graphs_differ():
    net = RandWireNet(num_nodes=16, channels=8, num_classes=5, seed=3)
    edge_sets = [frozenset(map(tuple, s.edge_index.t().tolist())) for s in net.stages]
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
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    assert model.flops() > 0
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
    with pytest.raises(ValueError, match="schedule"):
        RandWireStage(dag, 2, 2, schedule="fast")
    with pytest.raises(ValueError, match="drop_path"):
        RandWireStage(dag, 2, 2, drop_path=1.0)
    with pytest.raises(TypeError, match="graph"):
        RandWireStage(nx.Graph([(0, 1)]), 2, 2)
    with pytest.raises(ValueError, match="kind"):
        digits_network("sw")
    with pytest.raises(ValueError, match="regime"):
        RandWireNet(regime="large")


def test_auto_schedule_choice():
    from neuralgraphs.models.randwire import AUTO_SCHEDULE, resolve_schedule
    assert resolve_schedule("auto") == AUTO_SCHEDULE == "level"
    assert resolve_schedule("node") == "node"
    assert resolve_schedule("level") == "level"
    with pytest.raises(ValueError, match="schedule"):
        resolve_schedule("fast")


@pytest.mark.parametrize("kind", ["ws", "dnw"])
def test_digits_network_names_num_nodes_when_too_small_for_the_ws_graph(kind):
    with pytest.raises(ValueError, match=f"^num_nodes: kind='{kind}' draws a WS graph with k=4 neighbours"):
        digits_network(kind, num_nodes=4)
