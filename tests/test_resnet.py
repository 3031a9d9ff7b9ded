"""ResNet-50 v1.5 against independent references: the published parameter count, a hand count of its
multiply-adds, a functional re-implementation of the bottleneck, and the v1.5 stride placement."""

import pytest
import torch
import torch.nn.functional as F

from neuralgraphs.analysis.counts import count_flops
from neuralgraphs.models import Bottleneck, ResNet, resnet50

PUBLISHED_PARAMETERS = 25_557_032  # ResNet-50 (v1 and v1.5 alike), 1000 classes
PUBLISHED_MACS = 4.1e9  # about 4.1 G multiply-adds at 224 x 224


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return resnet50()


def _out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _hand_macs(layers=(3, 4, 6, 3), width=64, in_channels=3, num_classes=1000, size=224):
    """Multiply-adds of ResNet v1.5 from its description alone: out_h * out_w * out_c * in_c * k * k per conv,
    in * out for the classifier."""
    total = 0
    h = _out(size, 7, 2, 3)  # stem conv 7x7 / 2
    total += h * h * width * in_channels * 7 * 7
    h = _out(h, 3, 2, 1)  # max-pool 3x3 / 2
    c = width
    for i, blocks in enumerate(layers):
        inner = width * 2 ** i
        for j in range(blocks):
            stride = (1 if i == 0 else 2) if j == 0 else 1
            total += h * h * inner * c  # 1x1 reduce, stride 1
            h_out = _out(h, 3, stride, 1)
            total += h_out * h_out * inner * inner * 9  # 3x3 with the stride (v1.5)
            total += h_out * h_out * 4 * inner * inner  # 1x1 expand
            if stride != 1 or c != 4 * inner:
                total += h_out * h_out * 4 * inner * c  # 1x1 projection shortcut with the stride
            h, c = h_out, 4 * inner
    return total + c * num_classes


def test_parameter_count_is_published(full):
    assert sum(p.numel() for p in full.parameters()) == PUBLISHED_PARAMETERS


def test_multiply_adds_match_hand_count(full):
    expected = _hand_macs()
    assert count_flops(full, (3, 224, 224)) == expected
    assert abs(expected - PUBLISHED_MACS) <= 0.01 * PUBLISHED_MACS


def test_public_layout(full):
    assert isinstance(full.conv1, torch.nn.Conv2d)
    assert (full.conv1.kernel_size, full.conv1.stride, full.conv1.out_channels) == ((7, 7), (2, 2), 64)
    assert [len(getattr(full, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert (full.fc.in_features, full.fc.out_features) == (2048, 1000)
    assert all(m.bias is None for m in full.modules() if isinstance(m, torch.nn.Conv2d))


def test_v15_stride_in_3x3(full):
    block = full.layer2[0]
    assert block.conv1.kernel_size == (1, 1) and block.conv1.stride == (1, 1)
    assert block.conv2.kernel_size == (3, 3) and block.conv2.stride == (2, 2)
    assert block.conv3.stride == (1, 1)
    assert block.downsample[0].kernel_size == (1, 1) and block.downsample[0].stride == (2, 2)
    # the first stage does not downsample, but its first block projects 64 -> 256 channels
    assert full.layer1[0].conv2.stride == (1, 1) and full.layer1[0].downsample[0].stride == (1, 1)
    assert full.layer1[1].downsample is None


def test_small_forward_backward():
    torch.manual_seed(0)
    model = ResNet(width=8, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    y = model(x)
    assert y.shape == (2, 10)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.conv1.weight.grad.abs().sum() > 0


def test_stage_resolutions():
    model = ResNet(width=8, num_classes=10).eval()
    sizes = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda m, i, o, name=name: sizes.__setitem__(name, tuple(o.shape[1:]))) for name in
        ("layer1", "layer2", "layer3", "layer4")]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert sizes == {"layer1": (32, 16, 16), "layer2": (64, 8, 8), "layer3": (128, 4, 4), "layer4": (256, 2, 2)}


def _randomise_bn(module, gen):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen, dtype=m.weight.dtype) + 0.5
            m.bias.data = torch.randn(n, generator=gen, dtype=m.bias.dtype)
            m.running_mean = torch.randn(n, generator=gen, dtype=m.running_mean.dtype)
            m.running_var = torch.rand(n, generator=gen, dtype=m.running_var.dtype) + 0.5


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)


def _reference_bottleneck(block, x, stride, project):
    """The v1.5 bottleneck written out: 1x1 -> BN -> ReLU -> 3x3 (stride) -> BN -> ReLU -> 1x1 -> BN,
    plus the identity or a 1x1 strided projection + BN, ReLU after the sum."""
    out = F.relu(_bn(F.conv2d(x, block.conv1.weight), block.bn1))
    out = F.relu(_bn(F.conv2d(out, block.conv2.weight, stride=stride, padding=1), block.bn2))
    out = _bn(F.conv2d(out, block.conv3.weight), block.bn3)
    if project:
        conv, bn = block.downsample
        shortcut = _bn(F.conv2d(x, conv.weight, stride=stride), bn)
    else:
        shortcut = x
    return F.relu(out + shortcut)


@pytest.mark.parametrize("in_channels,channels,stride,project",
                         [(16, 8, 2, True), (32, 8, 1, False), (16, 8, 1, True)])
def test_bottleneck_matches_functional_reference(in_channels, channels, stride, project):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    block = Bottleneck(in_channels, channels, stride).double().eval()
    assert (block.downsample is not None) == project
    _randomise_bn(block, gen)
    x = torch.randn(2, in_channels, 9, 9, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        got = block(x)
        expected = _reference_bottleneck(block, x, stride, project)
    assert got.shape == (2, 4 * channels, (9 - 1) // stride + 1, (9 - 1) // stride + 1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_zero_init_residual_blocks_start_as_shortcut():
    torch.manual_seed(0)
    model = ResNet(width=8, num_classes=10, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    inputs = {}
    hooks = [b.register_forward_pre_hook(lambda m, a: inputs.__setitem__(id(m), a[0])) for b in blocks]
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for b in blocks:
            assert torch.count_nonzero(b.bn3.weight) == 0
            x = inputs[id(b)]
            shortcut = x if b.downsample is None else b.downsample(x)
            torch.testing.assert_close(b(x), F.relu(shortcut), rtol=0, atol=0)
    # without the flag the last gamma is 1, as every other
    assert torch.equal(ResNet(width=8).layer1[0].bn3.weight, torch.ones(32))


def test_reset_parameters_reinitialises():
    torch.manual_seed(0)
    model = ResNet(width=8, num_classes=10, zero_init_residual=True)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    model.reset_parameters()
    assert torch.count_nonzero(model.layer3[1].bn3.weight) == 0
    assert torch.equal(model.layer3[1].bn2.weight, torch.ones(32))
    assert torch.equal(model.bn1.bias, torch.zeros(8))
    std = model.layer2[0].conv2.weight.std().item()
    assert 0.5 < std / (2.0 / (16 * 9)) ** 0.5 < 1.5  # Kaiming normal, fan_out = 16 * 3 * 3


@pytest.mark.parametrize("kwargs,error,name", [
    (dict(width=0), ValueError, "width"),
    (dict(width=True), TypeError, "width"),
    (dict(width=8.0), TypeError, "width"),
    (dict(num_classes=-1), ValueError, "num_classes"),
    (dict(in_channels=0), ValueError, "in_channels"),
    (dict(zero_init_residual=1), TypeError, "zero_init_residual"),
])
def test_bad_builder_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        resnet50(**kwargs)


@pytest.mark.parametrize("layers,error", [((3, 4, 6), ValueError), ((3, 4, 6, 0), ValueError),
                                          ((3, 4, 6, True), TypeError), ("3463", TypeError), (4, TypeError)])
def test_bad_layers(layers, error):
    with pytest.raises(error, match="layers"):
        ResNet(layers=layers, width=8)


def test_bad_inputs():
    model = ResNet(width=8, num_classes=10)
    with pytest.raises(ValueError, match=r"x: .*\[B, 3, H, W\].*\[3, 32, 32\]"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"x: .*\[B, 3, H, W\].*\[2, 4, 32, 32\]"):
        model(torch.randn(2, 4, 32, 32))
    with pytest.raises(TypeError, match="x"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x: .*\[B, 16, H, W\]"):
        Bottleneck(16, 4)(torch.randn(1, 8, 5, 5))
    with pytest.raises(ValueError, match="stride"):
        Bottleneck(16, 4, stride=0)


def test_sparse_resnet50_configurations():
    from neuralgraphs.models import RESNET50_SPARSE, sparse_resnet50
    from neuralgraphs.sparse import SparseConv2d, density_report

    for name, spec in RESNET50_SPARSE.items():
        model = sparse_resnet50(name, num_classes=10, width=8)
        assert isinstance(model.conv1, SparseConv2d) != spec["dense_first"]
        rows = density_report(model).layers
        first = rows[0]
        assert first["name"] == "conv1" and (first["density"] == 1.0) == spec["dense_first"]
        for row in rows[1:]:
            assert row["kept"] == max(1, round(spec["density"] * row["total"])), (name, row["name"])
    with pytest.raises(ValueError, match="config"):
        sparse_resnet50("dnw-5")
