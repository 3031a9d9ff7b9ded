"""Node operations in every memory layout the graphs hand them, against PyTorch's own functions."""

import pytest
import torch
import torch.nn.functional as F

from neuralgraphs.nodes import (Activation, ChannelsLast, Identity, NodeAffine, NodeConv2d, NodeNorm,
                                NodeSequential, _InstanceNormNodesLast, image_node_op, maps_zero_to_zero)


def nchw(x):
    return x.contiguous()


def channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


def node_major(x):
    return x.transpose(0, 1).contiguous().transpose(0, 1)


@pytest.mark.parametrize("layout", [nchw, channels_last, node_major])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_every_layout_matches_torch(layout, affine):
    gen = torch.Generator().manual_seed(0)
    norm = NodeNorm(6, "instance", affine=affine).double()
    if affine:
        with torch.no_grad():
            norm.weight.copy_(torch.randn(6, generator=gen))
            norm.bias.copy_(torch.randn(6, generator=gen))
    x0 = 3.0 + torch.randn(4, 6, 5, 3, dtype=torch.float64, generator=gen)  # a mean away from zero
    r = torch.randn(4, 3, 5, 3, dtype=torch.float64, generator=gen)
    x = layout(x0.clone()).requires_grad_()
    out = norm(x[:, 2:5], slice(2, 5))
    (out * r).sum().backward()
    grads = [x.grad] + ([norm.weight.grad, norm.bias.grad] if affine else [])
    xr = x0.clone().requires_grad_()
    w = norm.weight.detach().clone().requires_grad_() if affine else None
    b = norm.bias.detach().clone().requires_grad_() if affine else None
    ref = F.instance_norm(xr[:, 2:5], weight=None if w is None else w[2:5], bias=None if b is None else b[2:5],
                          eps=norm.eps)
    (ref * r).sum().backward()
    torch.testing.assert_close(out, ref)
    for got, want in zip(grads, [xr.grad] + ([w.grad, b.grad] if affine else [])):
        torch.testing.assert_close(got, want)


def test_channels_last_instance_norm_gradcheck():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: _InstanceNormNodesLast.apply(x, w, b, 1e-5), (x, w, b))


def test_channels_last_op_and_image_node_op_order():
    x = torch.randn(2, 3, 4, 4)
    y = ChannelsLast()(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, x)
    v = torch.randn(2, 3)
    assert ChannelsLast()(v) is v
    kinds = [type(op) for op in image_node_op(3, "relu-conv")]
    assert kinds == [ChannelsLast, Activation, NodeConv2d]
    kinds = [type(op) for op in image_node_op(3, "norm-relu-conv")]
    assert kinds == [NodeNorm, ChannelsLast, Activation, NodeConv2d]
    with pytest.raises(ValueError, match="order"):
        image_node_op(3, "relu-layout-conv")


def test_maps_zero_to_zero_is_declared_only_where_true():
    ops = {
        "relu-conv": image_node_op(3, "relu-conv"),
        "norm-relu-conv": image_node_op(3, "norm-relu-conv"),
        "affine": NodeAffine(3),
        "tanh": Activation("tanh"),
        "sigmoid": Activation("sigmoid"),
        "custom": Activation(torch.tanh),
        "identity": Identity(),
        "biased conv": NodeConv2d(3, bias=True),
        "batch-norm-relu-conv": image_node_op(3, "norm-relu-conv", norm="batch"),
    }
    for name, op in ops.items():
        with torch.no_grad():
            for p in op.parameters():
                p.add_(0.5)  # biases and shifts away from zero
        x = torch.zeros(2, 3, 4, 4) if name not in ("tanh", "sigmoid", "custom", "identity") else torch.zeros(2, 3)
        zero_out = bool((op(x, slice(0, 3)) == 0).all())
        if maps_zero_to_zero(op):
            assert zero_out, name  # a declaration must never be wrong
    assert maps_zero_to_zero(ops["relu-conv"]) and maps_zero_to_zero(ops["tanh"])
    assert not maps_zero_to_zero(ops["sigmoid"]) and not maps_zero_to_zero(ops["affine"])
    # the instance norm leaves an all-zero map at zero; the batch norm's shift does not
    assert maps_zero_to_zero(ops["norm-relu-conv"])
    assert not maps_zero_to_zero(ops["batch-norm-relu-conv"]) and not maps_zero_to_zero(ops["biased conv"])
    assert not maps_zero_to_zero(ops["custom"])  # unknown callables are never assumed
    assert maps_zero_to_zero(NodeSequential(Activation("relu"), NodeConv2d(3)))


def _plain_instance_norm_with_unit_gain_where_silent(x, w, b, eps):
    """Reference written here: the usual instance norm where a (sample, node) map has a non-zero entry; where
    it is all zeros, output zero and the gradient of w * (x - mean(x)) (a unit-variance normalisation)."""
    dims = tuple(range(2, x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = (x - mean).square().mean(dims, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    usual = (x - mean) / torch.sqrt(var + eps) * w.view(shape) + b.view(shape)
    silent = (x == 0).flatten(2).all(-1).view(x.shape[:2] + (1,) * len(dims))
    return torch.where(silent, (x - mean) * w.view(shape), usual)


@pytest.mark.parametrize("layout", [nchw, channels_last, node_major])
def test_instance_norm_of_a_silent_node_is_zero_with_unit_gain(layout):
    gen = torch.Generator().manual_seed(3)
    norm = NodeNorm(5, "instance").double()
    with torch.no_grad():
        norm.weight.copy_(1.0 + torch.rand(5, generator=gen, dtype=torch.float64))
        norm.bias.copy_(0.5 + torch.rand(5, generator=gen, dtype=torch.float64))  # a shift away from zero
    x0 = torch.randn(3, 5, 4, 4, dtype=torch.float64, generator=gen)
    x0[:, 1] = 0.0  # node 1 silent in every sample
    x0[2, 3] = 0.0  # node 3 silent in sample 2 only
    r = torch.randn(3, 5, 4, 4, dtype=torch.float64, generator=gen)
    x = layout(x0.clone()).requires_grad_()
    out = norm(x, slice(0, 5))
    (out * r).sum().backward()
    xr = x0.clone().requires_grad_()
    w = norm.weight.detach().clone().requires_grad_()
    b = norm.bias.detach().clone().requires_grad_()
    ref = _plain_instance_norm_with_unit_gain_where_silent(xr, w, b, norm.eps)
    (ref * r).sum().backward()
    assert bool((out[:, 1] == 0).all()) and bool((out[2, 3] == 0).all())
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(norm.weight.grad, w.grad)
    torch.testing.assert_close(norm.bias.grad, b.grad)
    # the gain on the silent node is the scale, not scale / sqrt(eps) (316 times larger)
    g = r[:, 1] - r[:, 1].mean((1, 2), keepdim=True)
    torch.testing.assert_close(x.grad[:, 1], norm.weight[1].detach() * g)


def test_channels_last_instance_norm_gradcheck_with_a_silent_instance():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 7, 5, dtype=torch.float64, generator=gen)
    x[1, :, 2] = 0.0
    x.requires_grad_()
    w = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    # the silent instance stays silent under gradcheck's perturbations of the other entries only
    def f(xs, w, b):
        full = torch.zeros(3, 7, 5, dtype=torch.float64)
        full = full.index_put((torch.tensor([0, 2]),), xs)
        return _InstanceNormNodesLast.apply(full, w, b, 1e-5)
    xs = x.detach()[[0, 2]].clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (xs, w, b))


def test_batch_norm_of_a_node_constant_over_the_batch_has_unit_gain():
    gen = torch.Generator().manual_seed(4)
    norm = NodeNorm(4, "batch").double().train()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, 2.0, 0.5, 1.0], dtype=torch.float64))
        norm.bias.copy_(torch.tensor([0.1, 0.3, -0.2, 0.0], dtype=torch.float64))
    x0 = torch.randn(6, 4, 3, 3, dtype=torch.float64, generator=gen)
    x0[:, 2] = 0.7  # constant over batch and space
    r = torch.randn(6, 4, 3, 3, dtype=torch.float64, generator=gen)
    x = x0.clone().requires_grad_()
    (norm(x, slice(0, 4)) * r).sum().backward()
    # reference written here: F.batch_norm's gradient on the other nodes, w * (g - mean g) on node 2
    xr = x0.clone().requires_grad_()
    ref = F.batch_norm(xr, None, None, norm.weight.detach(), norm.bias.detach(), True, 0.0, norm.eps)
    (ref * r).sum().backward()
    for v in (0, 1, 3):
        torch.testing.assert_close(x.grad[:, v], xr.grad[:, v])
    g = r[:, 2] - r[:, 2].mean()
    torch.testing.assert_close(x.grad[:, 2], 0.5 * g)
    assert float(xr.grad[:, 2].abs().max()) > 100 * float(x.grad[:, 2].abs().max())  # the usual gain
    # in eval mode (no gradient) it is the usual batch norm with running statistics
    norm.eval()
    with torch.no_grad():
        torch.testing.assert_close(norm(x0, slice(0, 4)), F.batch_norm(
            x0, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps))
