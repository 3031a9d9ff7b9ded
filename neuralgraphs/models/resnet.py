r"""ResNet-50 v1.5, built from plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.Linear`` layers.

`Deep Residual Learning for Image Recognition <https://arxiv.org/abs/1512.03385>`_ with the "v1.5" change:
in a bottleneck that downsamples, the stride sits in the 3x3 convolution rather than in the first 1x1
(the 1x1 with stride 2 of the original paper skips three quarters of its input).  The published figures of
this variant at 1000 classes are 25,557,032 parameters and about 4.1 G multiply-adds for one 224 x 224
image (4.09 G: every convolution and the classifier, the batch norms, ReLUs, pools and additions left out).

Every layer with weights is a plain ``nn.Conv2d`` (``bias=False``, each followed by an ``nn.BatchNorm2d``)
or the final ``nn.Linear``, so a module that rewrites convolutions or linear layers generically (by
``isinstance``) finds all of them, and :func:`neuralgraphs.analysis.count_flops` counts all of them.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence as _SequenceABC
from typing import Optional, Sequence, Tuple

import torch
import torch.fx
from torch import Tensor, nn

from neuralgraphs._checks import check_batch, check_bool, check_choice, check_int
from neuralgraphs.sparse import sparsify

EXPANSION = 4


def _check_images(x: Tensor, channels: int, param: Tensor) -> None:
    """A ``[B, channels, H, W]`` floating-point batch in the dtype and on the device of ``param``."""
    if isinstance(x, torch.fx.Proxy):
        return  # symbolic tracing (torch.fx, as compact's channel search does): there is no batch to check
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a 4-D float tensor [B, {channels}, H, W], got {type(x).__name__}")
    if x.dim() != 4 or x.size(1) != channels:
        raise ValueError(f"x: expected a 4-D float tensor [B, {channels}, H, W] ({channels} channels at dim 1), "
                         f"got shape {list(x.shape)}")
    check_batch(x, channels, param)


def _check_layers(layers: Sequence[int]) -> Tuple[int, int, int, int]:
    """``layers`` as a tuple of 4 positive ints (blocks per stage)."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, _SequenceABC):
        raise TypeError(f"layers: expected a sequence of 4 positive ints (blocks per stage), "
                        f"got {type(layers).__name__} {layers!r}")
    if len(layers) != 4:
        raise ValueError(f"layers: expected 4 positive ints (blocks per stage), got {len(layers)}: {tuple(layers)!r}")
    for i, n in enumerate(layers):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"layers: expected 4 positive ints (blocks per stage), layers[{i}] is "
                            f"{type(n).__name__} {n!r}")
    return tuple(check_int(f"layers[{i}]", n, 1) for i, n in enumerate(layers))  # type: ignore[return-value]


class Bottleneck(nn.Module):
    r"""The ResNet v1.5 bottleneck block: 1x1 reduce, 3x3 with the stride, 1x1 expand, plus a shortcut.

    .. math::
        \mathbf{y} = \mathrm{ReLU}\big(\mathrm{BN}_3(\mathrm{conv}_3(\mathrm{ReLU}(\mathrm{BN}_2(
        \mathrm{conv}_2(\mathrm{ReLU}(\mathrm{BN}_1(\mathrm{conv}_1(\mathbf{x})))))))) + s(\mathbf{x})\big)

    * ``conv1``: 1x1, ``in_channels -> channels``, stride 1; ``bn1``; ``relu1``.
    * ``conv2``: 3x3, ``channels -> channels``, ``stride``, padding 1 (v1.5: the stride is here);
      ``bn2``; ``relu2``.
    * ``conv3``: 1x1, ``channels -> 4 * channels``; ``bn3`` (its gamma is the one ``zero_init_residual``
      sets to zero).
    * Shortcut :math:`s`: the identity when ``stride == 1`` and ``in_channels == 4 * channels``, else
      ``downsample`` = 1x1 conv ``in_channels -> 4 * channels`` with ``stride``, then a batch norm.
    * ``relu3`` after the addition.

    Args:
        in_channels: input channels.
        channels: inner width; the block outputs ``4 * channels`` channels.
        stride: stride of the 3x3 convolution and of the projection shortcut.  (default: ``1``)

    Shapes:
        input ``[B, in_channels, H, W]``; output ``[B, 4 * channels, H', W']`` with
        ``H' = (H - 1) // stride + 1`` and likewise ``W'``.
    """

    expansion = EXPANSION

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels, 1)
        channels = check_int("channels", channels, 1)
        stride = check_int("stride", stride, 1)
        out_channels = channels * EXPANSION
        self.in_channels, self.channels, self.out_channels, self.stride = in_channels, channels, out_channels, stride
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))
        self.relu3 = nn.ReLU()
        self.reset_parameters()

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """Kaiming-normal convolutions (``fan_out``, ReLU gain), batch norms to gamma 1, beta 0 and fresh
        running statistics; with ``zero_init_residual`` the gamma of ``bn3`` is 0, so the block starts as
        ``relu(shortcut(x))``.

        Args:
            zero_init_residual: zero the last batch norm's gamma.  (default: :obj:`False`)
        """
        zero_init_residual = check_bool("zero_init_residual", zero_init_residual)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()  # gamma 1, beta 0, running mean 0, running var 1
        if zero_init_residual:
            nn.init.zeros_(self.bn3.weight)

    def shortcut(self, x: Tensor) -> Tensor:
        """The shortcut branch: ``x`` itself, or ``downsample(x)`` when the shape changes."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x, self.in_channels, self.bn1.weight)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.channels} -> {self.out_channels}, stride={self.stride}"


class ResNet(nn.Module):
    r"""A bottleneck ResNet (v1.5: the stride in each block's 3x3 conv): stem, four stages, pooled classifier.

    * Stem: ``conv1`` 7x7 stride 2 padding 3, ``in_channels -> width``; ``bn1``; ``relu``; ``maxpool``
      3x3 stride 2 padding 1 (224 -> 112 -> 56).
    * ``layer1`` .. ``layer4``: ``layers[i]`` :class:`Bottleneck` blocks of inner width ``width``,
      ``2 * width``, ``4 * width``, ``8 * width`` (outputs 4 times that); the first block of a stage has the
      stage's stride (1, 2, 2, 2) and, where the shape changes, a projection shortcut.  Output strides
      4, 8, 16, 32.
    * Head: ``avgpool`` (adaptive average to 1x1), flatten, ``fc`` = ``Linear(32 * width, num_classes)``.
    * Initialisation (:meth:`reset_parameters`): Kaiming normal (``fan_out``, ReLU gain) for the
      convolutions, gamma 1 and beta 0 for the batch norms, PyTorch's default for ``fc``; with
      ``zero_init_residual`` the last batch norm of each block starts at gamma 0, so each residual branch
      starts as zero and each block as ``relu(shortcut(x))``.

    With the defaults this is ResNet-50 v1.5 (:func:`resnet50`): 25,557,032 parameters, about 4.1 G
    multiply-adds at 224 x 224.

    Args:
        layers: blocks in each of the four stages.  (default: ``(3, 4, 6, 3)``, ResNet-50)
        num_classes: outputs of ``fc``.  (default: ``1000``)
        width: stem channels and inner width of the first stage.  (default: ``64``)
        in_channels: image channels.  (default: ``3``)
        zero_init_residual: start each block's last batch-norm gamma at 0.  (default: :obj:`False`)

    Shapes:
        input ``[B, in_channels, H, W]`` (224 x 224 for ImageNet; any size works, the head pools);
        output ``[B, num_classes]``.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), num_classes: int = 1000, width: int = 64,
                 in_channels: int = 3, zero_init_residual: bool = False) -> None:
        super().__init__()
        layers = _check_layers(layers)
        num_classes = check_int("num_classes", num_classes, 1)
        width = check_int("width", width, 1)
        in_channels = check_int("in_channels", in_channels, 1)
        zero_init_residual = check_bool("zero_init_residual", zero_init_residual)
        self.layers, self.num_classes, self.width, self.in_channels = layers, num_classes, width, in_channels
        self.zero_init_residual = zero_init_residual
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = width
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            inner = width * 2 ** i
            stage = [Bottleneck(channels, inner, stride)]
            channels = inner * EXPANSION
            stage += [Bottleneck(channels, inner) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every layer as described above (``zero_init_residual`` as given at construction);
        the batch norms' running statistics start afresh."""
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1.reset_parameters()
        for m in self.modules():
            if isinstance(m, Bottleneck):
                m.reset_parameters(self.zero_init_residual)
        self.fc.reset_parameters()

    def features(self, x: Tensor) -> Tensor:
        """The ``[B, 32 * width, H / 32, W / 32]`` map of ``layer4`` (input checked as in :meth:`forward`)."""
        _check_images(x, self.in_channels, self.bn1.weight)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.avgpool(self.features(x)).flatten(1))

    def extra_repr(self) -> str:
        return (f"layers={self.layers}, num_classes={self.num_classes}, width={self.width}, "
                f"in_channels={self.in_channels}, zero_init_residual={self.zero_init_residual}")


def resnet50(num_classes: int = 1000, width: int = 64, in_channels: int = 3,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-50 v1.5: :class:`ResNet` with ``layers=(3, 4, 6, 3)``.

    At the defaults: 25,557,032 parameters, about 4.1 G multiply-adds for one 224 x 224 image.

    Args:
        num_classes: outputs of the classifier.  (default: ``1000``)
        width: stem channels and inner width of the first stage (64 is the published model).
            (default: ``64``)
        in_channels: image channels.  (default: ``3``)
        zero_init_residual: start each block's last batch-norm gamma at 0.  (default: :obj:`False`)

    Returns:
        ResNet: the model, in training mode.

    Shapes:
        input ``[B, in_channels, H, W]``; output ``[B, num_classes]``.
    """
    return ResNet((3, 4, 6, 3), num_classes=num_classes, width=width, in_channels=in_channels,
                  zero_init_residual=zero_init_residual)


# The DNW paper's sparse ResNet-50 runs (PAPER_FACTS: ImageNet top-1 of each configuration, DNW's own rows).
RESNET50_SPARSE = {
    "dnw-10-first-dense": {"density": 0.1, "dense_first": True, "top1": 75.0},
    "dnw-20-first-dense": {"density": 0.2, "dense_first": True, "top1": 76.6},
    "dnw-10": {"density": 0.1, "dense_first": False, "top1": 74.0},
    "dnw-20": {"density": 0.2, "dense_first": False, "top1": 76.2},
}


def sparse_resnet50(config: str = "dnw-10-first-dense", *, num_classes: int = 1000, width: int = 64,
                    in_channels: int = 3, wiring: str = "dnw", budget: str = "uniform", seed: int = 0) -> ResNet:
    """ResNet-50 v1.5 with DNW's sparse layers, in one of the paper's configurations.

    Every convolution and the classifier keep the same fraction of their weights (the top-k by magnitude,
    re-chosen every step, straight-through gradient; batch norms dense), the first convolution optionally
    dense.  ``RESNET50_SPARSE`` lists the configurations with the published ImageNet top-1 (dense: 77.5).

    Args:
        config: ``"dnw-10-first-dense"``, ``"dnw-20-first-dense"``, ``"dnw-10"`` or ``"dnw-20"``.
            (default: ``"dnw-10-first-dense"``)
        num_classes, width, in_channels: as for :func:`resnet50`.
        wiring: ``"dnw"``, or a baseline at the same per-layer counts (``"random"``, ``"no_update"``).
            (default: ``"dnw"``)
        budget: ``"uniform"`` as in the paper, or ``"global"`` / ``"erk"`` for comparison.
            (default: ``"uniform"``)
        seed: seed of the random masks.  (default: ``0``)
    """
    check_choice("config", config, tuple(RESNET50_SPARSE))
    spec = RESNET50_SPARSE[config]
    model = resnet50(num_classes=num_classes, width=width, in_channels=in_channels)
    return sparsify(model, spec["density"], budget=budget, wiring=wiring, dense_first=spec["dense_first"], seed=seed)
