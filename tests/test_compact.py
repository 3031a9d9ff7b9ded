"""compact(): inference models against the trained models they come from and against dense masked references
written here."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralgraphs.analysis.counts import count_flops, count_parameters, effective_edges
from neuralgraphs.models import DigitsGraphClassifier, MobileNetV1Graphs, RandWireNet, TinyClassifier, resnet50
from neuralgraphs.sparse import (CompactConv2d, CompactLinear, SparseConv2d, SparseLinear, compact, drop_dead_channels,
                                 sparsify)
from neuralgraphs.wiring import FixedWiring, TopKWiring
from neuralgraphs.wiring import wiring as wiring_module


def _trained(model, x, steps=3, lr=0.01):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert all(bool(p.isfinite().all()) for p in model.parameters())
    return model.eval()


def _masked_reference(layer):
    w = layer.weight.detach().clone()
    w[~layer.mask()] = 0
    return w


@pytest.mark.parametrize("form", ["dense", "channels", "csr"])
@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_forms_equal_the_masked_convolution(form, stride):
    torch.manual_seed(0)
    layer = SparseConv2d(12, 10, 1, stride=stride, density=0.15)
    with torch.no_grad():  # dead output channel 3 and input channel 5: the channel form drops them
        layer.weight[3] = 0
        layer.weight[:, 5] = 0
        layer.bias[3] = 0.7
    w = _masked_reference(layer)
    x = torch.randn(3, 12, 7, 7)
    ref = F.conv2d(x, w, layer.bias, stride=stride)
    c = CompactConv2d(layer, form)
    out = c(x)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(c(x[:1]), ref[:1])
    assert c.kept == int((w != 0).sum())
    if form == "channels":
        rows = sum(bool(w[o].any()) for o in range(10))
        cols = sum(bool(w[:, i].any()) for i in range(12))
        assert c.weight.shape == (rows, cols, 1, 1) and rows <= 9 and cols <= 11
        torch.testing.assert_close(out[:, 3], torch.full_like(out[:, 3], 0.7))


@pytest.mark.parametrize("form", ["dense", "channels"])
def test_kxk_and_grouped_forms(form):
    torch.manual_seed(0)
    layer = SparseConv2d(8, 6, 3, stride=2, padding=2, dilation=2, density=0.2, bias=False)
    x = torch.randn(2, 8, 9, 9)
    ref = F.conv2d(x, _masked_reference(layer), None, stride=2, padding=2, dilation=2)
    torch.testing.assert_close(CompactConv2d(layer, form)(x), ref)
    grouped = SparseConv2d(8, 8, 3, padding=1, groups=4, density=0.3)
    ref = F.conv2d(x, _masked_reference(grouped), grouped.bias, padding=1, groups=4)
    torch.testing.assert_close(CompactConv2d(grouped, "dense")(x), ref)
    with pytest.raises(ValueError, match="form"):
        CompactConv2d(grouped, "csr")
    with pytest.raises(ValueError, match="form"):
        CompactConv2d(layer, "csr")  # a 3x3 kernel


@pytest.mark.parametrize("form", ["dense", "channels", "csr"])
def test_linear_forms(form):
    torch.manual_seed(0)
    layer = SparseLinear(9, 5, density=0.3)
    with torch.no_grad():
        layer.weight[:, 2] = 0
    x = torch.randn(4, 3, 9)
    ref = x @ _masked_reference(layer).T + layer.bias
    torch.testing.assert_close(CompactLinear(layer, form)(x), ref)


def test_compact_resnet_equals_the_sparse_model_and_runs_no_selection(monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = _trained(sparsify(resnet50(num_classes=10, width=8), 0.1, dense_first=True), x)
    with torch.no_grad():
        ref = model(x)
    for example in (None, x):
        small = compact(model, example)
        assert not any(isinstance(m, (SparseConv2d, SparseLinear)) for m in small.modules())
        assert isinstance(small.conv1, nn.Conv2d)  # the dense first layer stays as it is
        monkeypatch.setattr(wiring_module, "topk_indices", None)  # any selection would fail now
        with torch.no_grad():
            torch.testing.assert_close(small(x), ref, rtol=1e-5, atol=1e-6)
        monkeypatch.undo()
        # channels no layer reads are gone (fewer multiply-adds); with them kept, the counts are the sparse
        # model's: the kept weights, once per output position
        assert count_flops(small, (3, 32, 32)) < count_flops(model, (3, 32, 32))
        kept = compact(model, example, drop_channels=False)
        assert count_flops(kept, (3, 32, 32)) == count_flops(model, (3, 32, 32))
        assert count_parameters(kept) == count_parameters(model)
    rule = compact(model)
    forms = {m.form for m in rule.modules() if isinstance(m, (CompactConv2d, CompactLinear))}
    assert "csr" not in forms and forms <= {"dense", "channels"}  # 10 % is above csr_density: no CSR by the rule
    assert "csr" in {m.form for m in compact(model, csr_density=0.2).modules()
                     if isinstance(m, (CompactConv2d, CompactLinear))}
    assert isinstance(model.layer1[0].conv1, SparseConv2d)  # the original is untouched


def test_exportable_compact_model_exports():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = _trained(sparsify(resnet50(num_classes=10, width=4), 0.05), x)
    small = compact(model, exportable=True)
    assert all(m.form != "csr" for m in small.modules() if isinstance(m, (CompactConv2d, CompactLinear)))
    exported = torch.export.export(small, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-5, atol=1e-6)


def test_compact_graph_modules_freeze_their_wiring():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    tiny = DigitsGraphClassifier("static")
    _trained(tiny, x)
    small = compact(tiny, drop_nodes=False)
    wired = [m for m in small.modules() if isinstance(getattr(m, "wiring", None), FixedWiring)]
    assert wired and all(torch.equal(m.active().index, o.active().index)
                         for m, o in zip(wired, [m for m in tiny.modules() if hasattr(m, "wiring")]))
    with torch.no_grad():
        torch.testing.assert_close(small(x), tiny(x))
    net = RandWireNet(num_nodes=8, channels=8, num_classes=10, wiring="dnw", num_blocks=3).eval()
    xi = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compact(net)(xi), net(xi))


def _live_reference(g):
    """Nodes to keep by hand: inputs, outputs, and nodes on an input-to-output path of active edges."""
    import networkx as nx

    src, dst = g.graph.edge_index[:, g.active().mask].tolist()
    dag = nx.DiGraph()
    dag.add_nodes_from(range(g.graph.num_nodes))
    dag.add_edges_from(zip(src, dst))
    inputs, outputs = g.graph.inputs.tolist(), g.graph.outputs.tolist()
    fed = set(inputs).union(*(nx.descendants(dag, i) for i in inputs))
    useful = set(outputs).union(*(nx.ancestors(dag, o) for o in outputs))
    keep = (fed & useful) | set(inputs) | set(outputs)
    edges = sum(1 for u, v in zip(src, dst) if u in fed and v in useful)
    return sorted(keep), edges


@pytest.mark.parametrize("make, shape", [
    (lambda: TinyClassifier("static", num_nodes=96, num_inputs=8, num_outputs=16, density=0.1,
                            blocks=(8, 40, 48)), (4, 3, 32, 32)),
    (lambda: MobileNetV1Graphs(width=0.1, num_classes=10), (2, 3, 32, 32)),
])
def test_compact_drops_dead_nodes_and_keeps_outputs_and_counts(make, shape):
    from neuralgraphs.sparse import CompactGraph

    torch.manual_seed(0)
    x = torch.randn(shape)
    model = _trained(make(), x, steps=4, lr=0.05)
    graphs = [m for m in model.modules() if isinstance(getattr(m, "wiring", None), TopKWiring)]
    small = compact(model)
    compacted = [m for m in small.modules() if isinstance(m, CompactGraph)]
    assert len(compacted) == len(graphs)
    dropped = 0
    for g, c in zip(graphs, compacted):
        keep, edges = _live_reference(g)
        assert c.kept_nodes.tolist() == keep
        assert c.wiring.num_active == edges
        dropped += g.graph.num_nodes - c.graph.num_nodes
    assert dropped > 0
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert count_flops(small, shape[1:]) == count_flops(model, shape[1:])
    # the same live nodes; of the edges only the effective ones stay (count_parameters counts active edges)
    ineffective = sum(int(g.wiring.num_active) - effective_edges(g) for g in graphs)
    assert count_parameters(small) == count_parameters(model) - ineffective
    # fewer nodes to compute, fewer stored parameters
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_compact_bad_inputs():
    with pytest.raises(TypeError, match="model"):
        compact("model")
    with pytest.raises(ValueError, match="no sparse layer"):
        compact(nn.Linear(2, 2))
    model = sparsify(nn.Sequential(nn.Linear(4, 4)), 0.5)
    with pytest.raises(TypeError, match="exportable"):
        compact(model, exportable="yes")
    with pytest.raises(ValueError, match="csr_density"):
        compact(model, csr_density=1.5)
    with pytest.raises(ValueError, match="form"):
        CompactLinear(model[0], "bsr")
    with pytest.raises(TypeError, match="conv"):
        CompactConv2d(model[0])
    copy.deepcopy(compact(model))  # inference models copy like any module


def _norms_with_statistics(*norms):
    for bn in norms:
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)


def test_dead_channels_across_layers_against_a_hand_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                          nn.Conv2d(6, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 10))
    with torch.no_grad():
        _norms_with_statistics(model[1], model[4])
    sparsify(model, 1.0)  # every weight kept: the zeros below are the only ones
    with torch.no_grad():
        model[0].weight[[2, 5]] = 0      # computed from nothing, read by a 1x1 conv: its bias takes them
        model[3].weight[:, 7] = 0        # not read
        model[3].weight[1] = 0           # constant relu(bn(b)) > 0, read by a padded 3x3 conv: stays
        model[3].bias[1], model[4].running_mean[1] = 0.0, -1.0
        model[3].weight[4] = 0           # constant relu(bn(b)) = 0: nothing to fold, goes
        model[3].bias[4], model[4].running_mean[4], model[4].bias[4] = 0.0, 1.0, 0.0
        model[6].weight[:, 3] = 0        # not read
    model.eval()
    x = torch.randn(4, 3, 5, 5)
    with torch.no_grad():
        ref = model(x)
        small = compact(model)
        torch.testing.assert_close(small(x), ref, rtol=1e-5, atol=1e-6)
    # 8 - {2, 5, 7} = 5 channels between the first two layers, 6 - {3, 4} = 4 between the next two
    assert [small[i].out_channels for i in (0, 3, 6)] == [5, 4, 4]
    assert small[1].num_features == 5 and small[4].num_features == 4
    kept = compact(model, drop_channels=False)
    assert [kept[i].out_channels for i in (0, 3, 6)] == [8, 6, 4] and kept[4].num_features == 6
    assert count_flops(small, (3, 5, 5)) < count_flops(kept, (3, 5, 5))


def test_dead_channels_of_linear_layers_and_none_across_a_residual_sum():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        _norms_with_statistics(mlp[1])
        mlp[0].weight[[0, 4]] = 0
    mlp.eval()
    x = torch.randn(7, 5)
    ref = mlp(x)
    removed = drop_dead_channels(mlp)
    assert removed == {"0": 2} and mlp[0].out_features == 4 and mlp[3].in_features == 4
    torch.testing.assert_close(mlp(x), ref, rtol=1e-5, atol=1e-6)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn, self.b = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return x + self.b(torch.relu(self.bn(self.a(x))))

    block = Residual().eval()
    with torch.no_grad():
        block.a.weight[1] = 0  # inside the residual branch: goes
        block.b.weight[2] = 0  # an output of the sum: stays
    x = torch.randn(2, 4, 3, 3)
    ref = block(x)
    assert drop_dead_channels(block) == {"a": 1}
    assert block.b.out_channels == 4
    torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-6)


def test_dead_channels_leave_shared_and_untraceable_layers_alone():
    shared = nn.Conv2d(4, 4, 1)
    model = nn.Sequential(nn.Conv2d(4, 4, 1), shared, nn.ReLU(), shared).eval()
    with torch.no_grad():
        model[0].weight[0] = 0
        shared.weight[1] = 0
    assert drop_dead_channels(model) == {}

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent: torch.fx cannot trace it, and it has no child to search
                return self.b(self.a(x))
            return self.b(self.a(-x))

    branchy = Branchy().eval()
    with torch.no_grad():
        branchy.a.weight[0] = 0
    assert drop_dead_channels(branchy) == {}


def test_dead_channels_under_a_global_budget_keep_the_outputs():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = _trained(sparsify(resnet50(num_classes=10, width=8), 0.03, budget="global"), x)
    with torch.no_grad():
        ref = model(x)
        small = compact(model)
        torch.testing.assert_close(small(x), ref, rtol=1e-5, atol=1e-6)
    convs = lambda m: sum(c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d))  # noqa: E731
    assert convs(small) < convs(model)
