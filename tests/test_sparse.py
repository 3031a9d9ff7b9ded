"""Sparse layers and sparsify, against references written here: dense masked convolutions, top-k by a full
sort with ties by index, hand counts of weights and multiply-adds, the ERK formula."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuralgraphs.analysis.counts import count_flops, count_parameters
from neuralgraphs.analysis.history import WiringHistory
from neuralgraphs.models import resnet50
from neuralgraphs.sparse import (GlobalTopKWiring, SparseConv2d, SparseLinear, density_report, erk_counts,
                                 layer_graph, sparsify)
from neuralgraphs.sparse import budgets as budgets_module
from neuralgraphs.wiring import FixedWiring, RandomWiring, TopKWiring, freeze_wiring


def _topk_mask(w, k):
    """Top-k of fp32 |w| by a full sort, ties to the lower row-major index."""
    flat = w.detach().reshape(-1).abs().float()
    order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view(w.shape)


class Mixed(nn.Module):
    """Every kind of layer sparsify converts: grouped, strided, dilated convs with and without bias, a
    linear layer on 3-D input, and a shared layer called twice."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=4, bias=False)
        self.shared = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.grouped(h))
        h = self.shared(F.relu(self.shared(h)))
        return self.fc(h.flatten(2).transpose(1, 2)).mean(1)


def _inputs():
    torch.manual_seed(0)
    return torch.randn(3, 4, 9, 9)


def test_density_one_leaves_outputs_and_gradients_unchanged():
    x = _inputs()
    for make in (Mixed, lambda: resnet50(num_classes=7, width=4)):
        torch.manual_seed(1)
        dense = make()
        sparse = sparsify(dense, 1.0, inplace=False)
        assert all(isinstance(m, (SparseConv2d, SparseLinear))
                   for m in sparse.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        xi = x if make is Mixed else torch.randn(2, 3, 32, 32)
        dense.eval(), sparse.eval()
        out_d, out_s = dense(xi), sparse(xi)
        torch.testing.assert_close(out_s, out_d, rtol=0, atol=0)
        out_d.square().sum().backward()
        out_s.square().sum().backward()
        for (name, pd), ps in zip(dense.named_parameters(), sparse.parameters()):
            torch.testing.assert_close(ps.grad, pd.grad, rtol=0, atol=0, msg=name)


def test_sparsify_keeps_parameters_and_state_dict():
    torch.manual_seed(0)
    model = Mixed()
    params = list(model.parameters())
    state = copy.deepcopy(model.state_dict())
    sparsify(model, 0.3)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]  # an optimizer built before works
    assert model.shared is model.shared  # shared layer converted once
    keys = {k for k in model.state_dict() if "wiring" not in k}
    assert keys == set(state)
    dense = Mixed()
    dense.load_state_dict({k: v for k, v in model.state_dict().items() if "wiring" not in k})
    for k, v in state.items():
        torch.testing.assert_close(dense.state_dict()[k], v)
    other = sparsify(Mixed(), 0.3)
    other.load_state_dict(model.state_dict())
    x = _inputs()
    torch.testing.assert_close(other(x), model(x))


def test_forward_is_the_dense_masked_convolution_and_gradients_reach_every_weight():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    layer = SparseConv2d.from_dense(copy.deepcopy(conv), density=0.2)
    k = round(0.2 * conv.weight.numel())
    mask = _topk_mask(conv.weight, k)
    x = torch.randn(2, 8, 7, 7, requires_grad=True)
    xr = x.detach().clone().requires_grad_()
    masked = (conv.weight.detach() * mask).requires_grad_()
    ref = F.conv2d(xr, masked, conv.bias, stride=2, padding=1, groups=2)
    out = layer(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    assert torch.equal(layer.mask(), mask)
    # straight-through: every weight, active or not, gets the gradient of the masked weight
    torch.testing.assert_close(layer.weight.grad, masked.grad)
    assert bool((layer.weight.grad[~mask] != 0).any())
    torch.testing.assert_close(x.grad, xr.grad)


def test_linear_layer_on_3d_input_against_masked_matmul():
    torch.manual_seed(0)
    layer = SparseLinear(6, 4, k=5)
    mask = _topk_mask(layer.weight, 5)
    x = torch.randn(2, 3, 6)
    torch.testing.assert_close(layer(x), x @ (layer.weight * mask).T + layer.bias)


def test_ties_go_to_the_lower_index():
    layer = SparseLinear(4, 2, bias=False, k=3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0, 0.5, 0.5], [0.5, 0.25, -0.5, 0.0]]))
    assert layer.active().index.tolist() == [0, 1, 2]


def test_layer_graph_against_a_hand_enumeration():
    out, inp, groups, kh, kw = 6, 4, 2, 2, 3
    g = layer_graph((out, inp // groups, kh, kw), groups)
    edges = []
    for o in range(out):
        grp = o // (out // groups)
        for i in range(inp // groups):
            c = grp * (inp // groups) + i
            for dy in range(kh):
                for dx in range(kw):
                    edges.append([(c * kh + dy) * kw + dx, inp * kh * kw + o])
    assert g.edge_index.t().tolist() == edges
    assert g.num_nodes == inp * kh * kw + out
    layer = SparseConv2d(inp, out, (kh, kw), groups=groups, density=0.5)
    assert layer.graph.num_edges == layer.weight.numel()
    # the protocol: candidate i of the graph is weight entry i
    src, dst = layer.graph.edge_index[:, layer.active().index]
    assert torch.equal(layer.graph.edge_index, g.edge_index)
    assert src.numel() == layer.num_kept


def _count_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_uniform_counts_are_exact_per_layer():
    model = sparsify(resnet50(num_classes=10, width=8), 0.1, dense_first=True)
    report = density_report(model)
    layers = _count_layers(model)
    assert not isinstance(model.conv1, SparseConv2d) and report.layers[0]["kept"] == model.conv1.weight.numel()
    for row, m in zip(report.layers[1:], layers[1:]):
        n = m.weight.numel()
        assert row["kept"] == max(1, int(round(0.1 * n))), row["name"]
        assert row["total"] == n
    assert report.kept == sum(r["kept"] for r in report.layers)
    assert report.parameters_total == sum(p.numel() for p in model.parameters())
    assert report.parameters_total - report.parameters_kept == report.total - report.kept
    assert "(weights)" in str(report) and "layer4.2.conv3" in str(report)


def test_global_budget_is_one_top_k_across_layers():
    torch.manual_seed(0)
    model = sparsify(Mixed(), 0.25, budget="global")
    layers = [model.conv1, model.grouped, model.shared, model.fc]
    scores = torch.cat([m.weight.detach().reshape(-1) for m in layers])
    k = int(round(0.25 * scores.numel()))
    ref = _topk_mask(scores, k).split([m.weight.numel() for m in layers])
    for m, r in zip(layers, ref):
        assert isinstance(m.wiring, GlobalTopKWiring)
        assert torch.equal(m.active().mask, r)
    assert density_report(model).kept == k


def test_global_selection_runs_once_per_forward_and_follows_the_weights(monkeypatch):
    torch.manual_seed(0)
    model = sparsify(resnet50(num_classes=10, width=4), 0.2, budget="global")
    calls = []
    real = budgets_module.topk_masks
    monkeypatch.setattr(budgets_module, "topk_masks", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(2, 3, 32, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).sum().backward()
    assert len(calls) == 1  # 54 layers, one selection
    before = model.fc.active().mask.clone()
    opt.step()
    model.fc(torch.randn(2, model.fc.in_features))  # a layer called alone sees the step (version counters)
    assert len(calls) == 2
    with torch.no_grad():
        model.fc.weight.data.mul_(100.0)  # behind the version counter: seen at the next forward of the model
    model(x)
    assert len(calls) == 3
    assert int(model.fc.active().mask.sum()) > int(before.sum())


def _erk_reference(shapes, density):
    """RigL's Erdos-Renyi-Kernel densities, computed directly: raise eps until no layer is over-full."""
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / n for s, n in zip(shapes, sizes)]
    total = round(density * sum(sizes))
    dense = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        eps = (total - sum(sizes[i] for i in dense)) / sum(raw[i] * sizes[i] for i in free)
        over = [i for i in free if eps * raw[i] > 1]
        if not over:
            return total, dense, {i: eps * raw[i] * sizes[i] for i in free}
        dense.update(over)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.2, 0.5])
def test_erk_counts_against_the_formula(density):
    model = resnet50(num_classes=10, width=8)
    shapes = [tuple(m.weight.shape) for m in _count_layers(model)]
    total, dense, share = _erk_reference(shapes, density)
    counts = erk_counts(shapes, density)
    assert sum(counts) == total
    for i, c in enumerate(counts):
        if i in dense:
            assert c == math.prod(shapes[i])
        else:
            assert abs(c - share[i]) < 1.0 + 1e-9 and c >= 1
    sparse = sparsify(model, density, budget="erk")
    assert [r["kept"] for r in density_report(sparse).layers] == counts


def test_erk_gives_small_layers_more_density():
    counts = erk_counts([(10, 3, 3, 3), (256, 256, 3, 3)], 0.1)
    assert counts[0] / 270 > counts[1] / (256 * 256 * 9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3])), min_size=1, max_size=6),
       st.floats(0.01, 1.0))
def test_erk_invariants(dims, density):
    shapes = [(o, i, k, k) for o, i, k in dims]
    sizes = [math.prod(s) for s in shapes]
    total = round(density * sum(sizes))
    if total < len(shapes):
        return
    counts = erk_counts(shapes, density)
    assert sum(counts) == total
    assert all(1 <= c <= n for c, n in zip(counts, sizes))


def test_counts_follow_the_active_weights():
    torch.manual_seed(0)
    model = sparsify(Mixed(), 0.3)
    x_shape = (4, 9, 9)
    # hand count: output positions per channel of each layer times its kept weights
    positions = {"conv1": 81, "grouped": 25, "shared": 25, "fc": 25}
    kept = {name: int(getattr(model, name).active().mask.sum()) for name in positions}
    macs = sum(positions[n] * kept[n] for n in positions) + 25 * kept["shared"]  # shared runs twice
    assert count_flops(model, x_shape) == macs
    biases = sum(m.bias.numel() for m in (model.conv1, model.shared, model.fc))
    assert count_parameters(model) == sum(kept.values()) + biases
    assert count_parameters(model, effective=False) == sum(p.numel() for p in model.parameters())


def test_baselines_random_no_update_fine_tune_and_lottery():
    torch.manual_seed(0)
    init = Mixed()
    x = _inputs()
    rand = sparsify(copy.deepcopy(init), 0.3, wiring="random", seed=3)
    for m in (rand.conv1, rand.fc):
        assert isinstance(m.wiring, RandomWiring)
        assert m.num_kept == round(0.3 * m.weight.numel())
        assert not torch.equal(m.mask(), _topk_mask(m.weight, m.num_kept))
    rand(x).sum().backward()
    assert bool((rand.conv1.weight.grad[~rand.conv1.mask()] == 0).all())  # fixed masks: no straight-through
    frozen = sparsify(copy.deepcopy(init), 0.3, wiring="no_update")
    ref = _topk_mask(init.grouped.weight, round(0.3 * init.grouped.weight.numel()))
    opt = torch.optim.SGD(frozen.parameters(), lr=1.0)
    for _ in range(3):
        opt.zero_grad()
        frozen(x).square().sum().backward()
        opt.step()
    assert torch.equal(frozen.grouped.mask(), ref)
    # the random baseline under a global budget keeps each layer's share of the initial global top-k
    glob = sparsify(copy.deepcopy(init), 0.3, budget="global")
    shares = [m.num_kept for m in (glob.conv1, glob.grouped, glob.shared, glob.fc)]
    grand = sparsify(copy.deepcopy(init), 0.3, budget="global", wiring="random")
    assert [m.num_kept for m in (grand.conv1, grand.grouped, grand.shared, grand.fc)] == shares

    # fine-tuning and lottery tickets: freeze the learned masks
    dnw = sparsify(copy.deepcopy(init), 0.3)
    start = copy.deepcopy(dnw.state_dict())
    opt = torch.optim.SGD(dnw.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        dnw(x).square().sum().backward()
        opt.step()
    learned = dnw.conv1.mask().clone()
    ticket = freeze_wiring(copy.deepcopy(dnw), reset_to=start)
    assert isinstance(ticket.conv1.wiring, FixedWiring)
    assert torch.equal(ticket.conv1.mask(), learned)
    torch.testing.assert_close(ticket.conv1.weight, start["conv1.weight"])
    tuned = freeze_wiring(dnw)
    assert torch.equal(tuned.conv1.mask(), learned)
    gfrozen = freeze_wiring(copy.deepcopy(glob))
    assert [m.num_kept for m in (gfrozen.conv1, gfrozen.grouped, gfrozen.shared, gfrozen.fc)] == shares


def test_wiring_history_records_sparse_layers():
    torch.manual_seed(0)
    model = sparsify(Mixed(), 0.2)
    hist = WiringHistory()
    hist.record(model)
    opt = torch.optim.SGD(model.parameters(), lr=2.0)
    x = _inputs()
    for _ in range(3):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()
    hist.record(model)
    before, after = hist.records[0], hist.records[-1]
    assert set(before) == {"conv1", "grouped", "shared", "fc"}
    moved = sum(int((~torch.isin(after[n], before[n])).sum()) for n in before)
    assert hist.swaps()[-1] == moved > 0


def test_momentum_of_an_inactive_weight_is_kept_when_it_swaps_in():
    # y = w0 x0 + w1 x1 with k = 1: w0 active; a loss pulling w1 up swaps it in after a few steps
    layer = SparseLinear(2, 1, bias=False, k=1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.5]]))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    x = torch.tensor([[0.0, 1.0]])
    buf = torch.zeros(2)
    w = torch.tensor([1.0, 0.5])
    for step in range(4):
        opt.zero_grad()
        (-layer(x)).sum().backward()
        # straight-through: d(-y)/dw1 = -x1 whether w1 is active or not, d(-y)/dw0 = -x0 = 0
        grad = torch.tensor([0.0, -1.0])
        torch.testing.assert_close(layer.weight.grad.view(-1), grad)
        buf = grad if step == 0 else 0.9 * buf + grad
        w = w - 0.1 * buf
        opt.step()
        torch.testing.assert_close(opt.state[layer.weight]["momentum_buffer"].view(-1), buf)
        torch.testing.assert_close(layer.weight.detach().view(-1), w)
    assert layer.active().index.tolist() == [1]  # swapped in, carrying the momentum it gathered while inactive


def test_trains_with_adam_and_deepcopies_keep_their_own_selection():
    torch.manual_seed(0)
    model = sparsify(Mixed(), 0.3, budget="global")
    twin = copy.deepcopy(model)
    assert twin.conv1.wiring.selection is not model.conv1.wiring.selection
    assert twin.conv1.wiring.selection.layers[0] is twin.conv1
    x, y = _inputs(), torch.randint(0, 5, (3,))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert not torch.equal(twin.conv1.weight, model.conv1.weight)
    torch.testing.assert_close(twin.conv1.mask(), _topk_mask(twin.conv1.weight, twin.conv1.num_kept))


def test_subclasses_and_multihead_attention_stay_dense():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)
            self.proj = nn.Linear(8, 8)

    model = sparsify(Block(), 0.5)
    assert isinstance(model.proj, SparseLinear)
    assert not isinstance(model.attn.out_proj, SparseLinear)  # its weight is read without calling forward
    row = [r for r in density_report(model).layers if r["name"] == "attn.out_proj"][0]
    assert row["density"] == 1.0 and not row["sparse"]


def test_bad_inputs():
    with pytest.raises(TypeError, match="model"):
        sparsify("resnet", 0.1)
    for density in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="density"):
            sparsify(Mixed(), density)
    with pytest.raises(TypeError, match="density"):
        sparsify(Mixed(), "0.1")
    with pytest.raises(ValueError, match="budget"):
        sparsify(Mixed(), 0.1, budget="layerwise")
    with pytest.raises(ValueError, match="wiring"):
        sparsify(Mixed(), 0.1, wiring="complete")
    with pytest.raises(ValueError, match="dense: 'layer9'"):
        sparsify(Mixed(), 0.1, dense="layer9")
    with pytest.raises(TypeError, match="dense"):
        sparsify(Mixed(), 0.1, dense=[1])
    with pytest.raises(TypeError, match="dense_first"):
        sparsify(Mixed(), 0.1, dense_first=1)
    with pytest.raises(ValueError, match="no nn.Conv2d or nn.Linear"):
        sparsify(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), 0.1)
    with pytest.raises(ValueError, match="all are kept dense"):
        sparsify(nn.Sequential(nn.Linear(3, 3)), 0.1, dense_first=True)
    with pytest.raises(ValueError, match="already holds sparse layers"):
        sparsify(sparsify(Mixed(), 0.5), 0.5)
    for budget in ("global", "erk"):
        with pytest.raises(ValueError, match="smaller than the 4 layers"):
            sparsify(Mixed(), 1e-4, budget=budget)
    with pytest.raises(ValueError, match="budget"):
        SparseConv2d(3, 4, 3)  # dnw needs a budget
    with pytest.raises(ValueError, match="k"):
        SparseLinear(3, 4, k=13)
    with pytest.raises(TypeError, match="layer: expected a torch.nn.Conv2d"):
        SparseConv2d.from_dense(nn.Linear(2, 2), density=0.5)
    with pytest.raises(ValueError, match="weight"):
        SparseLinear(3, 4, k=2).wiring(torch.randn(5))


def test_count_based_wirings():
    w = TopKWiring(12, k=4)
    weight = torch.randn(3, 4, requires_grad=True)
    edges = w(weight)
    assert edges.weight.shape == (3, 4) and edges.mask.shape == (12,)
    torch.testing.assert_close(edges.weight, weight.detach() * _topk_mask(weight, 4))
    edges.weight.sum().backward()
    torch.testing.assert_close(weight.grad, torch.ones(3, 4))  # straight-through
    with pytest.raises(ValueError, match="scope"):
        TopKWiring(12, k=2, scope="per_node")
    with pytest.raises(ValueError, match="graph"):
        RandomWiring(-1, k=1)
    fixed = FixedWiring(12, k=5, weight=weight)
    assert torch.equal(fixed(weight).mask.view(3, 4), _topk_mask(weight, 5))


def _reference_masks(parts, k):
    flat = torch.cat(parts)
    # NaN ranks above every number, ties to the lower index: a full sort of (rank key, index)
    keyed = sorted(range(flat.numel()), key=lambda i: (0 if torch.isnan(flat[i]) else 1, -float(flat[i]), i))
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[keyed[:k]] = True
    return list(mask.split([p.numel() for p in parts]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=4), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0),
       st.booleans(), st.booleans())
def test_topk_masks_against_a_full_sort_over_steps(sizes, seed, fraction, coarse, nan):
    from neuralgraphs.wiring.select import topk_masks

    gen = torch.Generator().manual_seed(seed)
    parts = [torch.rand(n, generator=gen) for n in sizes]
    if coarse:  # many exact ties, also across the parts
        parts = [(p * 8).floor() / 8 for p in parts]
    if nan:
        parts[0][0] = float("nan")
    n = sum(sizes)
    k = int(round(fraction * n))
    bounds = None
    for _ in range(4):  # later calls search the band of the earlier bounds
        masks, bounds = topk_masks(parts, k, bounds)
        for m, r in zip(masks, _reference_masks(parts, k)):
            assert torch.equal(m, r)
        parts = [(p + 0.01 * torch.randn(p.shape, generator=gen)).abs() for p in parts]
        if coarse:
            parts = [(p * 8).floor() / 8 for p in parts]


def test_topk_masks_bad_inputs():
    from neuralgraphs.wiring.select import topk_masks

    with pytest.raises(ValueError, match="scores"):
        topk_masks([], 1)
    with pytest.raises(TypeError, match="scores"):
        topk_masks([torch.ones(3, dtype=torch.float64)], 1)
    with pytest.raises(ValueError, match="k"):
        topk_masks([torch.ones(3)], 4)
    with pytest.raises(TypeError, match="k"):
        topk_masks([torch.ones(3)], 1.0)


def test_masked_weight_matches_the_indexed_selection_over_training():
    # the layers' mask-only path and the graph modules' indexed path pick the same weights at every step
    torch.manual_seed(0)
    layer = SparseConv2d(16, 32, 3, density=0.1)
    ref = TopKWiring(layer.weight.numel(), k=layer.num_kept)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5, momentum=0.9)
    x = torch.randn(2, 16, 6, 6)
    for _ in range(6):
        eff = layer.effective_weight()
        assert torch.equal((eff != 0).view(-1), ref(layer.weight.detach().view(-1)).mask)
        opt.zero_grad()
        layer(x).square().sum().backward()
        opt.step()
