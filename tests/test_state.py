"""Static graphs of nodes with several channels (the batched state): gathered level inputs, outputs read in
any order, the shared-input separable convolution and the ReLU's derivative at zero, each against a
reference written here with plain torch ops."""

import pytest
import torch
import torch.nn.functional as F

from neuralgraphs import NeuralGraph, StaticGraph
from neuralgraphs.dynamics._state import level_pieces
from neuralgraphs.nodes import Activation, NodeSepConv

C, H = 3, 5


def _chain_with_shortcuts() -> NeuralGraph:
    """Inputs 0, 1; a chain 2 -> 3 -> ... -> 9 fed by the inputs, and node 9 also fed by node 2: the late
    levels read one or two of the many nodes before them (so their inputs are gathered).  Outputs 9, 4, 7,
    in that (unsorted) order."""
    edges = [(0, 2), (1, 2)] + [(v, v + 1) for v in range(2, 9)] + [(2, 9), (0, 6)]
    return NeuralGraph(10, torch.tensor(edges).t(), inputs=[0, 1], outputs=[9, 4, 7])


def _reference(model: StaticGraph, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Node by node in the renumbered graph's order: ``a_v = x_v [v input] + sum w_uv z_u`` over the active
    edges (forward ``w * mask``, straight-through backward), ``z_v`` its own depthwise 3x3 and 1x1 conv."""
    g = model.graph
    w = model.weight + (model.weight * mask - model.weight).detach()
    conv = model.node_op
    inputs = g.inputs.tolist()
    z = []
    for v in range(g.num_nodes):
        a = torch.zeros(x.size(0), C, H, H)
        if v in inputs:
            a = a + x[:, inputs.index(v)]
        for e in range(g.num_edges):
            if int(g.edge_index[1, e]) == v:
                a = a + w[e] * z[int(g.edge_index[0, e])]
        h = F.conv2d(a, conv.depthwise[v], padding=1, groups=C)
        z.append(F.conv2d(h, conv.pointwise[v]))
    return torch.stack([z[int(o)] for o in g.outputs], 1)


@pytest.mark.parametrize("wiring, k", [("complete", None), ("dnw", 6)])
def test_gathered_levels_match_a_node_by_node_reference(wiring, k):
    torch.manual_seed(0)
    model = StaticGraph(_chain_with_shortcuts(), NodeSepConv(10, C, C), wiring, k=k)
    assert any(gather is not None for gather in model._gather), "no level reads a gathered input"
    x = torch.randn(4, 2, C, H, H, requires_grad=True)
    y = model(x)
    a = model.active()
    xr = x.detach().clone().requires_grad_()
    ref = _reference(model, xr, a.mask.float())
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    probe = torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)
    params = [model.weight, model.node_op.depthwise, model.node_op.pointwise]
    got = torch.autograd.grad((y * probe).sum(), [x] + params)
    want = torch.autograd.grad((ref * probe).sum(), [xr] + params)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_a_second_backward_through_the_same_graph_gives_the_same_gradients():
    torch.manual_seed(1)
    model = StaticGraph(_chain_with_shortcuts(), NodeSepConv(10, C, C), "complete")
    x = torch.randn(2, 2, C, H, H, requires_grad=True)
    loss = model(x).square().sum()
    first = torch.autograd.grad(loss, [x, model.weight], retain_graph=True)
    second = torch.autograd.grad(loss, [x, model.weight])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_level_pieces_hand_count():
    # levels end at nodes 3, 5, 8 and 10: nodes 0, 2 in level 0; 3, 4 in level 1; none in 2; 9 in level 3
    assert level_pieces(torch.tensor([0, 2, 3, 4, 9]), [3, 5, 8, 10]) == [(0, 0, 2), (1, 2, 4), (3, 4, 5)]
    assert level_pieces(torch.tensor([], dtype=torch.long), [3]) == []
    with pytest.raises(ValueError, match="ascending"):
        level_pieces(torch.tensor([2, 1]), [3])


def test_shared_input_separable_conv_matches_each_node_on_its_scaled_input():
    torch.manual_seed(2)
    op = NodeSepConv(3, 4, 5, stride=2)
    x = torch.randn(2, 4, 9, 9)
    scale = torch.tensor([0.5, 2.0, -1.0])
    y = op.forward_shared(x, scale)
    for v in range(3):
        h = F.conv2d(scale[v] * x, op.depthwise[v], stride=2, padding=1, groups=4)
        torch.testing.assert_close(y[:, v], F.conv2d(h, op.pointwise[v]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(op.forward_shared(x), op(x.unsqueeze(1).expand(2, 3, 4, 9, 9).contiguous()),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="x: expected"):
        op.forward_shared(torch.randn(2, 3, 9, 9))
    with pytest.raises(ValueError, match="scale: expected one factor per node"):
        op.forward_shared(x, torch.ones(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_relu_is_relu_forward_with_derivative_one_at_zero(dtype):
    x = torch.tensor([-2.0, -1e-3, 0.0, 1e-3, 3.0], dtype=dtype, requires_grad=True)
    y = Activation("relu")(x)
    assert torch.equal(y, torch.relu(x.detach()))
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
