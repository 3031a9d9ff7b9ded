"""Argument checks shared by the public entry points (each error names the argument)."""

from __future__ import annotations

import numpy as np


def check_bool(name: str, value) -> bool:
    """``value`` as a Python bool; a ``TypeError`` naming ``name`` for anything but a (numpy) bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)
