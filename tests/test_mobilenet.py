"""MobileNetV1 as a chain of graphs, and the dense MobileNetV1, against counts and references written here."""

import copy

import pytest
import torch
import torch.nn.functional as F

from neuralgraphs.analysis.counts import count_flops, count_parameters
from neuralgraphs.models import MOBILENET_GRAPHS, MobileNetGraph, MobileNetV1Graphs, graph_edge_budget, mobilenet_v1
from neuralgraphs.wiring import FixedWiring, freeze_wiring


def _hand_budget(width, cin, cout, sub_layers):
    # the pointwise convolutions of MobileNetV1 at this width: in -> out, then out -> out (sub_layers - 1) times
    weights = cin * cout + sum(cout * cout for _ in range(sub_layers - 1))
    return round(width * width * weights)


@pytest.mark.parametrize("width", [0.225, 0.3, 0.49])
def test_edge_budgets_per_graph(width):
    model = MobileNetV1Graphs(width=width, num_classes=10)
    for g, (cin, cout, stride, layers) in zip(model.graphs, MOBILENET_GRAPHS):
        assert g.wiring.num_active == _hand_budget(width, cin, cout, layers) == graph_edge_budget(width, cin, cout,
                                                                                                  layers)
        assert g.graph.num_nodes == cin + layers * cout
        # candidates: every block feeds every later block of the same graph
        blocks = [cin] + [cout] * layers
        assert g.graph.num_edges == sum(a * b for i, a in enumerate(blocks) for b in blocks[i + 1:])
    if width == 0.225:
        # 158,941.44 before rounding: per-graph rounding gives 158,942 (the 158,941 rounds the total)
        assert model.num_edges == 158_942


def _dense_macs_and_params(width):
    """MobileNetV1 by hand: stem 3x3 s2, 13 depthwise-separable layers, fc, at 224 x 224, 1000 classes."""
    layers = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    c, size = int(32 * width), 112
    macs, params = size * size * c * 27, c * 27
    for out, stride in layers:
        o = int(out * width)
        size = -(-size // stride)
        macs += size * size * c * 9 + size * size * c * o
        params += c * 9 + c * o
        c = o
    macs += c * 1000
    params += c * 1000 + 1000
    return macs, params


def test_dense_mobilenet_counts_match_the_published_figures():
    model = mobilenet_v1(0.25)
    macs, weights = _dense_macs_and_params(0.25)
    assert count_flops(model, (3, 224, 224)) == macs
    assert abs(macs - 41e6) / 41e6 < 0.03  # the paper: 41M
    conv_fc = sum(p.numel() for n, p in model.named_parameters() if p.dim() > 1 or n == "fc.bias")
    assert conv_fc == weights
    assert abs(weights - 0.47e6) / 0.47e6 < 0.02  # the paper: 0.47M
    full_macs, full_params = _dense_macs_and_params(1.0)
    assert abs(full_macs - 569e6) / 569e6 < 0.01 and abs(full_params - 4.2e6) / 4.2e6 < 0.01


def _small_chain_hand_macs(model, size):
    """Multiply-adds of a chain by hand from its active edges (reachability by networkx): stem, each graph's
    live input nodes' strided depthwise 3x3, its live inner nodes' depthwise 3x3, one per effective edge and
    output position, fc."""
    import networkx as nx

    h = -(-size // 2)
    total = h * h * 32 * 3 * 9
    for g in model.graphs:
        h = -(-h // g.stride)
        n = g.graph.num_nodes
        src, dst = g.graph.edge_index[:, g.active().mask].tolist()
        dag = nx.DiGraph()
        dag.add_nodes_from(range(n))
        dag.add_edges_from(zip(src, dst))
        inputs, outputs = set(g.graph.inputs.tolist()), set(g.graph.outputs.tolist())
        fed = set().union(*(nx.descendants(dag, i) | {i} for i in inputs))
        useful = set().union(*(nx.ancestors(dag, o) | {o} for o in outputs))
        effective = [(u, v) for u, v in zip(src, dst) if u in fed and v in useful]
        live = {u for u, _ in effective} | (outputs & fed)
        inner = set(range(g.in_channels, n - g.out_channels))
        total += len(live & inputs) * 9 * h * h + len(live & inner) * 9 * h * h + len(effective) * h * h
    return total + 1024 * model.num_classes


def test_chain_macs_against_a_hand_count():
    torch.manual_seed(0)
    model = MobileNetV1Graphs(width=0.1, num_classes=10, wiring="random")
    assert count_flops(model, (3, 32, 32)) == _small_chain_hand_macs(model, 32)


def test_random_x0225_lands_near_the_papers_counts():
    model = MobileNetV1Graphs(width=0.225, wiring="random")
    macs = count_flops(model, (3, 224, 224))
    params = count_parameters(model)
    # the paper: random graph x0.225, 55.7M MACs and 1.2M parameters
    assert 45e6 < macs < 65e6, macs
    assert 1.0e6 < params < 1.4e6, params


def _reference_chain(model, x):
    """The chain written out densely: each graph as masked 1x1 convolutions between its blocks."""
    h = F.conv2d(x, model.stem.weight, stride=model.stem.stride, padding=1)
    for g in model.graphs:
        n = g.graph.num_nodes
        W = torch.zeros(n, n)
        src, dst = g.graph.edge_index
        W[dst, src] = g.weight.detach() * g.active().mask
        op = g.input_op
        z = F.conv2d(F.relu(op[0](h, slice(0, g.in_channels))), op[2].weight, stride=g.stride, padding=1,
                     groups=g.in_channels)
        state = [z]  # the input block, then each block in order
        sizes = [g.in_channels] + [g.out_channels] * g.sub_layers
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        reached = torch.zeros(n, dtype=torch.bool)
        reached[:g.in_channels] = True
        for b in range(1, len(sizes)):
            prev = torch.cat(state, 1)
            rows = slice(starts[b], starts[b] + sizes[b])
            agg = F.conv2d(prev, W[rows, :starts[b]][:, :, None, None])
            # a node that no input reaches through active edges outputs zeros (the library's rule)
            reached[rows] = (W[rows, :starts[b]] != 0)[:, reached[:starts[b]]].any(1)
            if b < len(sizes) - 1:
                inner = g.node_op.ops[1]
                local = slice(starts[b] - g.in_channels, starts[b] - g.in_channels + sizes[b])
                agg = F.conv2d(F.relu(inner[0](agg, local)), inner[2].weight[local], padding=1, groups=sizes[b])
            state.append(agg * reached[rows].view(1, -1, 1, 1))
        h = state[-1]
    h = F.relu(model.norm(h))
    return model.fc(h.mean((2, 3)))


@pytest.mark.parametrize("wiring", ["dnw", "random", "complete"])
def test_chain_equals_a_dense_masked_reference(wiring):
    torch.manual_seed(0)
    model = MobileNetV1Graphs(width=0.1, wiring=wiring, num_classes=10).eval()
    with torch.no_grad():  # give the batch norms non-trivial statistics
        for m in model.modules():
            if hasattr(m, "running_var") and m.running_var is not None:
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-0.2, 0.2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_chain(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("wiring", ["dnw", "random", "complete", "no_update"])
def test_every_wiring_trains_on_digits(wiring):
    from neuralgraphs.train.data import load_digits_dataset

    torch.manual_seed(0)
    x, y = load_digits_dataset("train").tensors
    x, y = x[:32], y[:32]
    model = MobileNetV1Graphs(width=0.2, wiring=wiring, num_classes=10, in_channels=1, stem_stride=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_small_variant_and_fine_tuning_and_lottery():
    from neuralgraphs.sparse import SparseLinear

    torch.manual_seed(0)
    model = MobileNetV1Graphs(width=0.2, num_classes=10, small=True)
    assert isinstance(model.fc, SparseLinear) and model.fc.num_kept == round(0.2 * 10240)
    init = copy.deepcopy(model.state_dict())
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    learned = [g.active().index.clone() for g in model.graphs]
    ticket = freeze_wiring(copy.deepcopy(model), reset_to=init)
    assert all(isinstance(g.wiring, FixedWiring) for g in ticket.graphs)
    assert all(torch.equal(g.active().index, i) for g, i in zip(ticket.graphs, learned))
    torch.testing.assert_close(ticket.graphs[0].weight, init["graphs.0.weight"])


def test_bad_inputs():
    for width in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="width"):
            MobileNetV1Graphs(width=width)
    with pytest.raises(ValueError, match="wiring"):
        MobileNetV1Graphs(wiring="erdos")
    model = MobileNetV1Graphs(width=0.1, num_classes=10)
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="width_multiplier"):
        mobilenet_v1(0.0)
    with pytest.raises(ValueError, match="sub_layers"):
        MobileNetGraph(4, 4, 1, 0)
