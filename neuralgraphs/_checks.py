"""Argument checks shared by the public entry points (each error names the argument)."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor


def check_bool(name: str, value) -> bool:
    """``value`` as a Python bool; a ``TypeError`` naming ``name`` for anything but a (numpy) bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_int(name: str, value: Any, minimum: Optional[int] = None) -> int:
    """``value`` as a Python int, at least ``minimum`` when one is given.

    Any ``numbers.Integral`` (numpy integer scalars included) is accepted, but not a bool:
    ``True`` as a count or a seed is always a mistake.

    Args:
        name (str): the argument's name, the first word of every error message.
        value: the value to check.
        minimum (int, optional): the smallest allowed value. (default: ``None``, no bound)

    Returns:
        int: ``int(value)``.

    Raises:
        TypeError: if ``value`` is not an integer or is a bool.
        ValueError: if ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: Any, allowed) -> str:
    """``value``, one of the strings ``allowed``; a ``ValueError`` naming ``name`` and the choices otherwise."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: expected one of {tuple(allowed)}, got {value!r}")
    return value


def check_seed(name: str, value: Any) -> int:
    """A seed: an int ``>= 0`` (see :func:`check_int` for the errors).

    Non-negative so that one seed is valid for ``random.Random``, ``numpy.random.default_rng``,
    ``numpy.random.SeedSequence`` and ``torch.Generator.manual_seed`` alike.
    """
    return check_int(name, value, minimum=0)


def check_float(name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a finite Python float in the interval from ``low`` to ``high``.

    Any ``numbers.Real`` but a bool is accepted. NaN and infinities are always refused, whatever the
    bounds; with both bounds infinite the message asks for "a finite float".

    Args:
        name (str): the argument's name, the first word of every error message.
        value: the value to check.
        low (float): lower bound. (default: ``-inf``)
        high (float): upper bound. (default: ``inf``)
        open_low (bool): exclude ``low`` itself. (default: ``False``)
        open_high (bool): exclude ``high`` itself (an infinite ``high`` is always open).
            (default: ``False``)

    Returns:
        float: ``float(value)``.

    Raises:
        TypeError: if ``value`` is not a real number or is a bool.
        ValueError: if ``value`` is not finite or lies outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__} {value!r}")
    value = float(value)
    below = value <= low if open_low else value < low
    above = value >= high if open_high else value > high
    if not math.isfinite(value) or below or above:
        if low == -math.inf and high == math.inf:
            raise ValueError(f"{name}: expected a finite float, got {value}")
        interval = (f"{'(' if open_low or low == -math.inf else '['}{low}, "
                    f"{high}{')' if open_high or high == math.inf else ']'}")
        raise ValueError(f"{name}: expected a float in {interval}, got {value}")
    return value


def check_probability(name: str, value: Any) -> float:
    """``value`` as a Python float in ``[0, 1]``; NaN is refused.

    Raises:
        TypeError: if ``value`` is not a real number or is a bool.
        ValueError: if ``value`` lies outside ``[0, 1]`` or is NaN.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float probability in [0, 1], got "
                        f"{type(value).__name__} {value!r}")
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")
    return value


def check_folder(name: str, value: Any) -> str:
    """``value`` as the ``str`` path of an existing folder.

    Raises:
        TypeError: if ``value`` is not a ``str`` or ``os.PathLike``.
        ValueError: if ``value`` exists but is not a folder.
        FileNotFoundError: if nothing exists at ``value``.
    """
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike folder path, got {type(value).__name__}")
    value = os.fspath(value)
    if not os.path.isdir(value):
        if os.path.exists(value):
            raise ValueError(f"{name}: expected a folder, got the non-folder path {value!r}")
        raise FileNotFoundError(f"{name}: folder {value!r} does not exist")
    return value


def check_optional_callable(name: str, value: Any) -> Optional[Callable[..., Any]]:
    """``value`` unchanged if it is callable or ``None``; a ``TypeError`` naming ``name`` otherwise."""
    if value is not None and not callable(value):
        raise TypeError(f"{name}: expected a callable or None, got {type(value).__name__}")
    return value


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
