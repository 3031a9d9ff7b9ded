"""Argument checks shared by the public entry points (each error names the argument)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def check_bool(name: str, value) -> bool:
    """``value`` as a Python bool; a ``TypeError`` naming ``name`` for anything but a (numpy) bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_batch(x: Tensor, channels: int, param: Tensor) -> None:
    """A non-empty floating-point batch ``x`` with ``channels`` at dim 1, in the dtype and on the device of
    ``param`` (any dtype under autocast, where the operations choose their own precision)."""
    if x.size(0) == 0 or x.size(1) != channels:
        raise ValueError(f"x: expected a non-empty batch [B, {channels}, *] ({channels} channels at dim 1), "
                         f"got {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got {x.dtype}")
    if x.device != param.device:
        raise ValueError(f"x: is on {x.device} but the parameters are on {param.device}; move one with .to()")
    if x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"x: dtype {x.dtype} differs from the parameters' ({param.dtype}); convert one with .to()")
