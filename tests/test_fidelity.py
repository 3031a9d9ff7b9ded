"""DNW against random wiring at equal edges: the mechanisms behind the static-graph loss, and the result.

Measured before the fix (``benchmarks/fidelity.py``, ``benchmarks/README.md``): with the old initialisation the
static DNW graph swapped no edge in its first epoch, and with the old normalisation the discrete-time DNW
graph's weights grew 700-7,700 fold in one epoch.  These tests fail on that code.
"""

import statistics

import pytest
import torch
import torch.nn.functional as F

from neuralgraphs.models import DigitsGraphClassifier
from neuralgraphs.train import digits_loaders, fit
from neuralgraphs.train.schedules import param_groups_no_weight_decay


def _one_epoch(model):
    train, _ = digits_loaders(64, seed=0)
    opt = torch.optim.SGD(param_groups_no_weight_decay(model, 5e-5), lr=0.1, momentum=0.9)
    for x, y in train:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("seed", [0, 1])
def test_static_dnw_rewires_from_the_first_epoch(seed):
    # 100 nodes, 80 active edges (under one per node): the straight-through gradient must be able to swap
    # edges from the start, or DNW is the "no update" baseline (the old fan-in init swapped none)
    torch.manual_seed(seed)
    model = DigitsGraphClassifier("static", "dnw", num_nodes=100, density=0.008, seed=seed)
    g = model.graph
    with torch.no_grad():
        first = g.active().index.clone()
    _one_epoch(model)
    with torch.no_grad():
        swapped = int((~torch.isin(g.active().index, first)).sum())
    assert swapped >= first.numel() // 4, swapped


@pytest.mark.parametrize("kind", ["static", "discrete"])
def test_dnw_weights_do_not_explode_into_silent_nodes(kind):
    # nodes without an active in-edge normalise an all-zero input; with the 1/sqrt(eps) gain the candidates
    # into them grew 700-7,700 fold in one epoch (discrete) and took over the top-k
    torch.manual_seed(0)
    model = DigitsGraphClassifier(kind, "dnw", num_nodes=100, density=0.008, seed=0)
    bound = float(model.graph.weight.detach().abs().max())
    _one_epoch(model)
    grown = float(model.graph.weight.detach().abs().max()) / bound
    assert grown < 100, grown


@pytest.mark.slow
def test_static_dnw_is_not_below_random_at_equal_edges():
    # the case: a static image graph of about 100 nodes at under one active edge per node, five
    # seeds; before the fix DNW lost by several points (88.0 +- 6.7 against 90.6 +- 4.7 with this loop)
    train, test = digits_loaders(64, seed=0)
    accs = {"dnw": [], "random": []}
    for wiring in accs:
        for seed in range(5):
            model = DigitsGraphClassifier("static", wiring, num_nodes=100, density=0.008, seed=seed)
            history = fit(model, train, test, epochs=15, lr=0.1, weight_decay=5e-5, progress=False, seed=seed)
            accs[wiring].append(history["test_acc"][-1])
    assert statistics.fmean(accs["dnw"]) >= statistics.fmean(accs["random"]), accs


def test_a_candidate_into_a_silent_node_gets_the_gradient_of_a_unit_scale_normalisation():
    # static node op: instance norm -> ReLU -> 3x3 conv.  Node 2 (an output) has no active in-edge: its norm
    # sees zeros.  The straight-through gradient of the inactive candidate 1 -> 2 is <z_1, dL/da_2> with the
    # norm at unit scale (gain gamma, not gamma / sqrt(eps)) and ReLU passing the gradient at exactly 0
    # (clamp's subgradient), written out here with plain torch ops: without it DNW could never feed node 2.
    from neuralgraphs import NeuralGraph, StaticGraph, image_node_op

    graph = NeuralGraph.from_edge_list([(0, 1), (1, 2), (0, 2)], inputs=[0], outputs=[1, 2])
    torch.manual_seed(0)
    m = StaticGraph(graph, image_node_op(3), "dnw", k=1).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.7, 0.01, -0.02], dtype=torch.float64))  # only 0 -> 1 is active
        m.node_op[0].weight.copy_(torch.tensor([1.3, 0.8, 1.7], dtype=torch.float64))
    cand = {tuple(e): i for i, e in enumerate(m.graph.edge_index.t().tolist())}
    assert m.active().index.tolist() == [cand[(0, 1)]]
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    r = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    (m(x) * r).sum().backward()
    # the reference: node 2's output is conv(relu(norm(a))) with a = 0; d/da at 0 = gamma * (h - mean h),
    # h = conv^T(r_2) (relu's slope 1 at 0)
    conv = m.node_op[3].weight[2:3].detach()
    h = F.conv_transpose2d(r[:, 1:2], conv, padding=1)
    grad_a = m.node_op[0].weight[2].detach() * (h - h.mean((2, 3), keepdim=True))
    with torch.no_grad():
        z0 = m.node_op(x, slice(0, 1))
        a1 = 0.7 * z0
        z1 = m.node_op(a1, slice(1, 2))
    expected = (z1 * grad_a).sum()
    assert abs(float(expected)) > 1e-3
    torch.testing.assert_close(m.weight.grad[cand[(1, 2)]], expected)
