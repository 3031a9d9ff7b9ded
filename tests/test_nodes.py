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
    assert not maps_zero_to_zero(ops["norm-relu-conv"]) and not maps_zero_to_zero(ops["biased conv"])
    assert not maps_zero_to_zero(ops["custom"])  # unknown callables are never assumed
    assert maps_zero_to_zero(NodeSequential(Activation("relu"), NodeConv2d(3)))
