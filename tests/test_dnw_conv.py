import pytest
import torch

from _pyg_reference import WeightedSum
from neuralgraphs._compat import import_pyg
from neuralgraphs.nn import DNWConv

pyg = import_pyg()


def _dense_reference(x, edge_index, weight, k):
    """Top-k by |w| with ties to the lower index, as a dense masked matmul."""
    order = sorted(range(weight.numel()), key=lambda e: (-abs(float(weight[e])), e))[:k]
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
