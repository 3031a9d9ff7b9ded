import pytest
import torch
from torch import nn

from _pyg_reference import WeightedSum
from neuralgraphs._compat import import_pyg
from neuralgraphs.analysis.history import WiringHistory
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nn import DNWConv
from neuralgraphs.wiring import FixedWiring, TopKWiring, freeze_wiring

pyg = import_pyg()


def _ref_topk(weight, k):
    """Ascending indices of the k largest |w| (fp32), ties to the lower index, by a Python sort."""
    scores = weight.detach().abs().float().tolist()
    return sorted(sorted(range(len(scores)), key=lambda e: (-scores[e], e))[:k])


def _dense_reference(x, edge_index, weight, k=None, index=None):
    """Top-k by |w| with ties to the lower index (or the given ``index``), as a dense masked matmul."""
    order = _ref_topk(weight, k) if index is None else index
    mask = torch.zeros(weight.numel(), dtype=weight.dtype)
    mask[order] = 1.0
    n = x.size(0)
    dense = torch.zeros(n, n, dtype=x.dtype).index_put((edge_index[1], edge_index[0]), weight * mask,
                                                       accumulate=True)
    return dense @ x, mask


def test_forward_and_straight_through_gradient_match_dense_reference():
    torch.manual_seed(0)
    n, f = 12, 5
    edge_index = pyg.utils.to_undirected(torch.randint(0, n, (2, 40)), num_nodes=n)
    edge_index, _ = pyg.utils.remove_self_loops(edge_index)
    e = edge_index.size(1)
    x = torch.randn(n, f, dtype=torch.float64)
    w = torch.randn(e, dtype=torch.float64, requires_grad=True)
    conv = DNWConv(k=e // 3)
    out = conv(x, edge_index, w)
    ref, mask = _dense_reference(x, edge_index, w.detach(), e // 3)
    assert torch.allclose(out, ref)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, w, g)
    # straight-through: every edge gets <g[target], x[source]>, active or not
    expected = (g[edge_index[1]] * x[edge_index[0]]).sum(1)
    assert torch.allclose(grad, expected)
    assert bool((grad[mask == 0] != 0).any())


def test_matches_pyg_message_passing_when_all_edges_kept():
    torch.manual_seed(1)
    n = 9
    edge_index, _ = pyg.utils.add_self_loops(torch.randint(0, n, (2, 20)), num_nodes=n)
    edge_index = pyg.utils.coalesce(edge_index, num_nodes=n)
    w = torch.randn(edge_index.size(1))
    x = torch.randn(n, 3)
    assert torch.allclose(DNWConv(density=1.0)(x, edge_index, w), WeightedSum()(x, edge_index, w), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [({}, "exactly one"), ({"k": 1, "density": 0.5}, "exactly one"),
                                           ({"density": 1.5}, "density"), ({"k": -1}, "k:"),
                                           ({"k": 0}, "^k: expected at least 1 active edge, got 0$"),
                                           ({"k": 1, "backend": "gpu"}, "backend")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DNWConv(**kwargs)


def test_budget_larger_than_edges():
    conv = DNWConv(k=10)
    with pytest.raises(ValueError, match="larger than"):
        conv(torch.randn(3, 2), torch.tensor([[0, 1], [1, 2]]), torch.randn(2))


def test_forward_names_bad_tensors_and_density_on_no_edges():
    conv = DNWConv(density=0.5)
    with pytest.raises(TypeError, match="^edge_index: expected an int64 tensor"):
        conv(torch.randn(3, 2), [[0, 1], [1, 2]], torch.randn(2))
    with pytest.raises(TypeError, match="^x: expected a tensor"):
        conv([[1.0, 2.0]], torch.tensor([[0], [0]]), torch.randn(1))
    out = conv(torch.randn(3, 2), torch.zeros(2, 0, dtype=torch.long), torch.randn(0))
    assert torch.equal(out, torch.zeros(3, 2))  # no edges: nothing to keep, nothing arrives


def test_repr():
    assert repr(DNWConv(density=0.1)) == "DNWConv(density=0.1, backend='auto')"


def _sorted_graph(n=15, e=70, seed=0):
    """Distinct random edges sorted by (target, source), the candidate order of a NeuralGraph."""
    gen = torch.Generator().manual_seed(seed)
    drawn = [(int(t), int(s)) for s, t in torch.randint(0, n, (2, 3 * e), generator=gen).t()]
    pairs = sorted(list(dict.fromkeys(drawn))[:e])
    return torch.tensor([[s for t, s in pairs], [t for t, s in pairs]])


def test_selects_through_a_topk_wiring_reused_while_the_edge_count_stays(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    conv = DNWConv(density=0.25)
    assert conv.wiring is None and conv.weight is None and conv.graph is None
    ei = torch.randint(0, 30, (2, 400), generator=gen)
    x = torch.randn(30, 4, generator=gen)
    w = torch.randn(400, generator=gen)
    out = conv(x, ei, w)
    wiring = conv.wiring
    assert type(wiring) is TopKWiring and (wiring.num_candidates, wiring.num_active) == (400, 100)
    assert torch.allclose(out, _dense_reference(x, ei, w, 100)[0], atol=1e-6)
    hint = wiring._hint
    assert hint is not None  # the CPU search left a threshold for the next call
    seen = []
    select = TopKWiring.select

    def spy(self, weight):
        seen.append(self._hint)
        return select(self, weight)

    w2 = w + 0.01 * torch.randn(400, generator=gen)
    monkeypatch.setattr(TopKWiring, "select", spy)
    out2 = conv(x, ei, w2)
    monkeypatch.undo()
    assert conv.wiring is wiring and seen == [hint]  # same wiring, the previous call's hint
    assert torch.allclose(out2, _dense_reference(x, ei, w2, 100)[0], atol=1e-6)
    ei3, w3 = ei[:, :200], torch.randn(200, generator=gen)
    conv(x, ei3, w3)
    assert conv.wiring is not wiring and (conv.wiring.num_candidates, conv.wiring.num_active) == (200, 50)
    assert conv.active().index.tolist() == _ref_topk(w3, 50)


def test_protocol_describes_the_last_call_without_side_effects():
    ei = _sorted_graph()
    e = ei.size(1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(15, 3, dtype=torch.float64, generator=gen)
    w = torch.randn(e, dtype=torch.float64, generator=gen, requires_grad=True)
    conv = DNWConv(k=20)
    with pytest.raises(ValueError, match="^active: this DNWConv has not been called yet"):
        conv.active()
    conv(x, ei, w)
    assert isinstance(conv.graph, NeuralGraph)
    assert conv.graph.num_nodes == 15 and torch.equal(conv.graph.edge_index, ei)
    assert torch.equal(conv.weight, w.detach()) and not conv.weight.requires_grad
    hint = conv.wiring._hint
    a = conv.active()
    assert a.index.tolist() == _ref_topk(w, 20)
    assert torch.equal(a.mask, _dense_reference(x, ei, w.detach(), 20)[1].bool())
    assert torch.equal(a.weight, w.detach() * a.mask) and not a.weight.requires_grad
    assert conv.wiring._hint == hint and w.grad is None


def test_graph_of_edges_out_of_candidate_order_is_refused_not_misaligned():
    ei = _sorted_graph()
    conv = DNWConv(k=5)
    flipped = ei.flip(1)  # same edges, reversed order: graph.edge_index[:, i] would not be weight[i]'s edge
    conv(torch.randn(15, 2), flipped, torch.randn(ei.size(1)))
    with pytest.raises(ValueError, match=r"^graph: the last call's edge_index is not sorted by target, then source"):
        conv.graph
    assert conv.active().index.numel() == 5  # the selection itself does not need the graph


class _Net(nn.Module):
    """A model holding a DNWConv whose edge weights are its own parameter."""

    def __init__(self, edge_index, k):
        super().__init__()
        self.conv = DNWConv(k=k)
        self.register_buffer("edge_index", edge_index)
        self.edge_weight = nn.Parameter(torch.randn(edge_index.size(1), generator=torch.Generator().manual_seed(7)))

    def forward(self, x):
        return self.conv(x, self.edge_index, self.edge_weight)


def test_freeze_wiring_fixes_the_selection_of_a_dnw_conv():
    ei = _sorted_graph(seed=2)
    model = _Net(ei, k=12)
    x = torch.randn(15, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="no submodule with a top-k"):
        freeze_wiring(model)  # before the first call there are no weights to select from
    model(x)
    frozen = _ref_topk(model.edge_weight, 12)
    freeze_wiring(model)
    assert isinstance(model.conv.wiring, FixedWiring)
    assert model.conv.wiring.active_index.tolist() == frozen
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        with torch.no_grad():
            model.edge_weight.copy_(torch.randn(ei.size(1), generator=gen))
        assert _ref_topk(model.edge_weight, 12) != frozen  # DNW would now choose other edges
        out = model(x)
        ref, _ = _dense_reference(x, ei, model.edge_weight.detach(), index=frozen)
        assert torch.allclose(out, ref, atol=1e-6)
        assert model.conv.active().index.tolist() == frozen
    with pytest.raises(ValueError, match=r"^edge_weight: this DNWConv's wiring is a FixedWiring fixed to 70 edges"):
        model.conv(x, ei[:, :10], torch.randn(10))


def test_wiring_history_records_the_swaps_of_a_dnw_conv():
    ei = _sorted_graph(seed=4)
    model = _Net(ei, k=10)
    x = torch.randn(15, 2)
    model(x)
    hist = WiringHistory()
    sets = [set(_ref_topk(model.edge_weight, 10))]
    hist.record(model, step=0)
    gen = torch.Generator().manual_seed(9)
    for step in (1, 2):
        with torch.no_grad():
            model.edge_weight.add_(0.5 * torch.randn(ei.size(1), generator=gen))
        model(x)
        sets.append(set(_ref_topk(model.edge_weight, 10)))
        hist.record(model, step=step)
    assert hist.records[-1]["conv"].tolist() == sorted(sets[-1])
    swaps = [len(b - a) for a, b in zip(sets, sets[1:])]
    assert all(swaps) and hist.swaps() == swaps
    assert hist.final_overlap() == [len(s & sets[-1]) / 10 for s in sets]
