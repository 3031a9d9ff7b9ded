"""What an ``edge_index`` tensor costs O(E) work to know (range and order checks, matrix positions, row
pointers), cached per tensor and version so that passing the same tensor again costs nothing."""

from __future__ import annotations

import weakref
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor


class _Candidates:
    """What depends only on an ``edge_index`` tensor and the matrix shape: built once, shared by plans.
    It holds no reference to the tensor itself (the cache entry must not keep it alive)."""

    __slots__ = ("version", "num_out", "num_in", "checked", "in_range", "is_sorted", "strictly_sorted", "_flat",
                 "_crow")

    def __init__(self, num_out: int, num_in: int, version: Optional[int]) -> None:
        self.version, self.num_out, self.num_in = version, num_out, num_in
        self.checked = False
        self.in_range = self.is_sorted = self.strictly_sorted = False
        self._flat = self._crow = None

    def check(self, edge_index: Tensor) -> None:
        """Range and order of the edges, in chunks, so that no temporary of E int64 is made."""
        if self.checked:
            return
        e = edge_index.size(1)
        if edge_index.device.type == "cpu" and e <= _SMALL_CHECK:
            # graphs built per forward (e.g. one level of a DNW stage) pay a few microseconds here, not the
            # ~30 us of a dozen tiny torch operations
            self._check_small(edge_index.numpy())
            return
        src, dst = edge_index[0], edge_index[1]
        self.in_range = e == 0 or (int(src.min()) >= 0 and int(dst.min()) >= 0 and int(src.max()) < self.num_in
                                   and int(dst.max()) < self.num_out)
        sorted_, strict = True, True
        step = 1 << 20
        for s in range(0, e - 1, step):
            d0, d1 = dst[s:s + step], dst[s + 1:s + step + 1]
            s0, s1 = src[s:s + step], src[s + 1:s + step + 1]
            n = d1.numel()
            d0, s0 = d0[:n], s0[:n]
            up, same = d1 > d0, d1 == d0
            sorted_ = sorted_ and bool((up | (same & (s1 >= s0))).all())
            strict = strict and sorted_ and bool((up | (same & (s1 > s0))).all())
            if not sorted_:
                break
        self.is_sorted, self.strictly_sorted = sorted_, strict and sorted_
        self.checked = True

    def trust(self) -> None:
        """Take the edges as checked: in range and strictly sorted (distinct), as a :class:`NeuralGraph`
        stores them, without reading them (a read would make a GPU step wait for the device)."""
        if not self.checked:
            self.in_range = self.is_sorted = self.strictly_sorted = self.checked = True

    def _check_small(self, ei: np.ndarray) -> None:
        src, dst = ei[0], ei[1]
        self.in_range = src.size == 0 or bool(src.min() >= 0 and dst.min() >= 0 and src.max() < self.num_in
                                              and dst.max() < self.num_out)
        up, same = dst[1:] > dst[:-1], dst[1:] == dst[:-1]
        self.is_sorted = bool((up | (same & (src[1:] >= src[:-1]))).all())
        self.strictly_sorted = self.is_sorted and bool((up | (same & (src[1:] > src[:-1]))).all())
        self.checked = True

    def flat(self, edge_index: Tensor) -> Tensor:
        """Position of every edge in the row-major ``[num_out, num_in]`` matrix."""
        if self._flat is None:
            self._flat = edge_index[1] * self.num_in + edge_index[0]
        return self._flat

    def complete(self, edge_index: Tensor) -> bool:
        """Whether the edges are every matrix entry once, in row-major order (the matrix is a view):
        ``num_out * num_in`` distinct in-range edges, strictly sorted, can only be that."""
        if edge_index.size(1) != self.num_out * self.num_in:
            return False
        self.check(edge_index)
        return self.in_range and self.strictly_sorted

    def crow(self, edge_index: Tensor) -> Tensor:
        if self._crow is None:
            self._crow = _row_pointers(edge_index[1], self.num_out)
        return self._crow


_CACHE: Dict[int, Tuple["weakref.ref", _Candidates]] = {}
# Up to this many edges a CPU edge_index is checked with numpy in one pass.
_SMALL_CHECK = 1 << 16


def _version(t: Tensor) -> Optional[int]:
    try:
        return t._version
    except RuntimeError:  # inference tensors keep no version counter: never trust a cached answer
        return None


def _candidates(edge_index: Tensor, num_out: int, num_in: int) -> _Candidates:
    """The cached :class:`_Candidates` of ``edge_index`` (rebuilt when the tensor was modified in place)."""
    key, version = id(edge_index), _version(edge_index)
    hit = _CACHE.get(key)
    if hit is not None:
        ref, info = hit
        if ref() is edge_index and version is not None and info.version == version \
                and info.num_out == num_out and info.num_in == num_in:
            return info
    info = _Candidates(num_out, num_in, version)
    if version is not None:
        _CACHE[key] = (weakref.ref(edge_index, lambda _, k=key, cache=_CACHE: cache.pop(k, None)), info)
    return info


def _row_pointers(dst: Tensor, rows: int) -> Tensor:
    """CSR row pointers of target-sorted edges."""
    return torch.searchsorted(dst, torch.arange(rows + 1, device=dst.device))
