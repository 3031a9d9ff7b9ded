"""Augmentations of ``[C, H, W]`` float tensors (random crops and flips, resizing, per-channel standardisation).

They need no torchvision, and they are classes rather than closures so that they pickle into DataLoader
workers.
"""

from __future__ import annotations

import numbers
from typing import Callable, List, Sequence, Union

import numpy as np
import torch

from neuralgraphs._checks import check_bool, check_int

__all__ = ["RandomCropFlip", "Normalize", "ResizeCenterCrop", "RandomResizedCropFlip", "Compose", "random_crop_flip",
           "normalize"]

#: What the datasets accept as ``transform``: a callable from one sample tensor to another.
Transform = Callable[[torch.Tensor], torch.Tensor]


def _check_image(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a [C, H, W] tensor, got {shape}")
    return x


class RandomCropFlip:
    """Pad, crop back to the original size at a random offset, then flip left-right with probability 1/2.

    See :func:`random_crop_flip`. A class rather than a closure so that it pickles into loader workers.
    """

    def __init__(self, padding: int = 4, flip: bool = True,
                 generator: Union[torch.Generator, int, None] = None, padding_mode: str = "zeros"):
        self.padding = check_int("padding", padding, minimum=0)
        self.flip = check_bool("flip", flip)
        if padding_mode not in ("zeros", "reflect"):
            raise ValueError(f"padding_mode: expected 'zeros' or 'reflect', got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.generator = _generator(generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x)
        _, h, w = x.shape
        p = self.padding
        if p > 0:
            if self.padding_mode == "reflect":
                if p >= h or p >= w:
                    raise ValueError(f"padding: reflect padding needs padding < height and width, got "
                                     f"padding={p} for an image of {h}x{w}")
                padded = torch.nn.functional.pad(x.unsqueeze(0), (p, p, p, p), mode="reflect").squeeze(0)
            else:
                padded = torch.nn.functional.pad(x, (p, p, p, p), mode="constant", value=0.0)
            offsets = torch.randint(0, 2 * p + 1, (2,), generator=self.generator)
            top, left = int(offsets[0]), int(offsets[1])
            x = padded[:, top:top + h, left:left + w]
        if self.flip:
            if bool(torch.rand((), generator=self.generator) < 0.5):
                x = torch.flip(x, dims=(2,))
        return x.contiguous()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(padding={self.padding}, flip={self.flip}, "
                f"padding_mode={self.padding_mode!r})")


def random_crop_flip(padding: int = 4, flip: bool = True, generator: Union[torch.Generator, int, None] = None,
                     padding_mode: str = "zeros") -> RandomCropFlip:
    """The standard CIFAR augmentation on ``[C, H, W]`` tensors, without torchvision.

    The image is padded by ``padding`` pixels on every side, a window of the original size is cut at an
    offset drawn uniformly from ``{0, ..., 2 * padding}`` in each direction, and the result is mirrored
    left-right with probability 1/2. Zero padding is the recipe of the ResNet and DNW CIFAR papers
    (torchvision's ``RandomCrop(32, padding=4)``); ``padding_mode="reflect"`` mirrors the border instead.

    Random draws come from ``generator`` (an int seeds a fresh one; ``None`` uses torch's global
    generator). Note that a
    DataLoader with ``num_workers > 0`` copies the transform into every worker, so an explicit generator
    then yields the same draw sequence in each worker; keep ``generator=None`` there and rely on the
    per-worker seeding of the DataLoader.

    Args:
        padding (int): pixels added on each side, ``>= 0``; reflect needs it below height and width.
            (default: ``4``)
        flip (bool): apply the random horizontal flip. (default: ``True``)
        generator (torch.Generator or int, optional): source of randomness, or a seed for a new one.
            (default: ``None``)
        padding_mode (str): ``"zeros"`` or ``"reflect"``. (default: ``"zeros"``)

    Returns:
        RandomCropFlip: a callable mapping a ``[C, H, W]`` tensor to a tensor of the same shape.
    """
    return RandomCropFlip(padding=padding, flip=flip, generator=generator, padding_mode=padding_mode)


class Normalize:
    """Per-channel standardisation ``(x - mean[c]) / std[c]`` of a ``[C, H, W]`` tensor; see :func:`normalize`."""

    def __init__(self, mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]]):
        self.mean = self._as_list("mean", mean)
        self.std = self._as_list("std", std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"std: expected as many values as mean ({len(self.mean)}), got {len(self.std)}")
        bad = [s for s in self.std if not s > 0]
        if bad:
            raise ValueError(f"std: expected positive values, got {self.std}")

    @staticmethod
    def _as_list(name: str, value) -> List[float]:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            values = [float(value)]
        elif isinstance(value, (list, tuple, np.ndarray, torch.Tensor)) and len(value) > 0:
            values = [float(v) for v in value]
        else:
            raise TypeError(f"{name}: expected a float or a non-empty sequence of floats, got {value!r}")
        if not all(np.isfinite(values)):
            raise ValueError(f"{name}: expected finite values, got {values}")
        return values

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x)
        if len(self.mean) not in (1, x.shape[0]):
            raise ValueError(f"x: has {x.shape[0]} channels but mean/std give {len(self.mean)} values")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


def normalize(mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]]) -> Normalize:
    """A callable standardising each channel of a ``[C, H, W]`` tensor: ``(x - mean[c]) / std[c]``.

    Args:
        mean (float or sequence of float): one value per channel, or one for all.
        std (float or sequence of float): positive, same length as ``mean``.

    Returns:
        Normalize: the callable.

    Raises:
        ValueError: if ``std`` is not positive or the lengths differ.
    """
    return Normalize(mean, std)


class ResizeCenterCrop:
    """Resize a ``[C, H, W]`` tensor so that its shorter side is ``size`` (bilinear, antialiased), then cut the
    central ``size x size`` square: the usual evaluation transform of ImageNet-style folders, for images of
    different sizes.

    Args:
        size (int): side of the output square, positive.
    """

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size: expected a positive int, got {size!r}")
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x)
        h, w = x.shape[-2:]
        scale = self.size / min(h, w)
        new = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
        x = _resize(x, new)
        top, left = (new[0] - self.size) // 2, (new[1] - self.size) // 2
        return x[:, top:top + self.size, left:left + self.size]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def _generator(generator: Union[torch.Generator, int, None]) -> Union[torch.Generator, None]:
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, an int seed or None, got {type(generator).__name__}")
    return generator


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False,
                                           antialias=True)[0]


class RandomResizedCropFlip:
    r"""The ImageNet training augmentation: cut a random window, resize it to ``size x size``, flip it
    left-right with probability 1/2.

    The window has an area of :math:`s\,HW` and an aspect ratio (width over height) :math:`r`, with
    :math:`s \sim U(\text{scale})` and :math:`\log r \sim U(\log \text{ratio})`, at a uniform position;
    up to 10 draws are tried until one fits in the image, else the largest central window whose ratio is
    clamped into ``ratio`` is used (the rule of the Inception recipe that the DNW and ResNet papers train
    with).  Random draws come from ``generator`` as in :func:`random_crop_flip`.

    Args:
        size (int): side of the output square, positive.
        scale (tuple of float): range of the window's share of the image area, in ``(0, 1]``.
            (default: ``(0.08, 1.0)``)
        ratio (tuple of float): range of the window's aspect ratio, positive. (default: ``(3/4, 4/3)``)
        flip (bool): apply the random horizontal flip. (default: ``True``)
        generator (torch.Generator or int, optional): source of randomness, or a seed for a new one.
            (default: ``None``, torch's global generator)

    Shapes:
        - input: ``[C, H, W]``
        - output: ``[C, size, size]``
    """

    def __init__(self, size: int, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                 flip: bool = True, generator: Union[torch.Generator, int, None] = None):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size: expected a positive int, got {size!r}")
        for name, pair, low in (("scale", scale, 0.0), ("ratio", ratio, 0.0)):
            if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                    or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair)):
                raise TypeError(f"{name}: expected two numbers (low, high), got {pair!r}")
            if not low < pair[0] <= pair[1] or (name == "scale" and pair[1] > 1):
                raise ValueError(f"{name}: expected 0 < low <= high{' <= 1' if name == 'scale' else ''}, "
                                 f"got {tuple(pair)}")
        self.size, self.scale, self.ratio = size, tuple(map(float, scale)), tuple(map(float, ratio))
        self.flip = check_bool("flip", flip)
        self.generator = _generator(generator)

    def window(self, height: int, width: int):
        """``(top, left, window height, window width)`` of one draw for an image of ``height x width``."""
        area = height * width
        log_ratio = (np.log(self.ratio[0]), np.log(self.ratio[1]))
        for _ in range(10):
            u = torch.rand(3, generator=self.generator, dtype=torch.float64)
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * float(u[0]))
            aspect = float(np.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(u[1])))
            w, h = int(round((target * aspect) ** 0.5)), int(round((target / aspect) ** 0.5))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=self.generator))
                left = int(torch.randint(0, width - w + 1, (), generator=self.generator))
                return top, left, h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x)
        top, left, h, w = self.window(*x.shape[-2:])
        x = _resize(x[:, top:top + h, left:left + w], (self.size, self.size))
        if self.flip and bool(torch.rand((), generator=self.generator) < 0.5):
            x = torch.flip(x, dims=(2,))
        return x.contiguous()

    def __repr__(self) -> str:
        ratio = tuple(round(r, 4) for r in self.ratio)
        return f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={ratio}, flip={self.flip})"


class Compose:
    """Apply callables in order (a torchvision-free ``Compose``)."""

    def __init__(self, *transforms):
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.transforms))})"
