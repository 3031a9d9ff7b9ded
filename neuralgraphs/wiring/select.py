"""Exact top-k edge selection, ties broken by index, without a full sort.

All selectors return the indices of the kept candidates in **ascending** order.  Candidates of a
:class:`~neuralgraphs.graph.NeuralGraph` are sorted by ``(target, source)``, so the result is already in CSR
order and needs no further sorting before a sparse-dense product.

Scores are always compared as fp32 so every process of a multi-process run picks the same edges.  A NaN
score ranks above every number, as in :func:`torch.sort` (a diverged weight is kept and shows in the loss);
NaNs tie with one another, so the lower index wins among them too.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from neuralgraphs._compat import eager_in_compile


def _kth_largest(scores: Tensor, k: int) -> Tensor:
    # kthvalue (a selection, O(E)) is ~2x faster than topk on CPU; the CUDA path uses topk instead.
    return torch.kthvalue(scores, scores.numel() - k + 1).values


def _mask_from_threshold(scores: Tensor, threshold: Tensor, k: int, sync_free: bool) -> Tensor:
    """Boolean mask of the k largest scores: all above ``threshold`` plus the lowest-index ties (NaN-free
    scores: a NaN compares false with everything)."""
    above = scores > threshold
    ties = scores == threshold
    need = k - above.sum()
    if sync_free:
        return above | (ties & (ties.cumsum(0) <= need))
    need = int(need)
    if int(ties.sum()) == need:  # the usual case: no tie straddles the threshold
        return above | ties
    return above | (ties & (ties.cumsum(0) <= need))


_INT32_MAX = 2**31 - 1


def _float_keys(scores: Tensor) -> Tensor:
    """int32 keys in the order of the fp32 ``scores`` (-0.0 equal to +0.0); every NaN gets the one key
    ``2**31 - 1``, above ``+inf``.

    A non-negative float's bit pattern, read as an integer, grows with its value; a negative float is its
    magnitude's pattern with the sign bit set, so it is keyed by the negated magnitude pattern."""
    bits = scores.contiguous().view(torch.int32)
    keys = torch.where(bits < 0, (bits & _INT32_MAX).neg_(), bits)
    return keys.masked_fill_(torch.isnan(scores), _INT32_MAX)


@eager_in_compile  # torch.compile runs it eagerly: the result's size and the CPU search are data-dependent
def topk_indices(scores: Tensor, k: int, hint: Optional[float] = None) -> Tuple[Tensor, Optional[float]]:
    """Indices (ascending) of the ``k`` largest entries of a 1-D fp32 ``scores``; ties go to lower indices.

    NaN ranks above every number.

    Args:
        scores: 1-D float32 tensor (typically ``|w|``).
        k: number of entries to keep, ``0 <= k <= scores.numel()``.
        hint: a value believed to be a little below the k-th largest score (from the previous step).
            On CPU, when at least ``k`` scores lie at or above it, only those are searched; the answer is
            exact either way.  Ignored on other devices, which use a synchronisation-free path.

    Returns:
        ``(indices, next_hint)``: the selected indices (int64, ascending, length ``k``) and a hint for the
        next call (a score slightly below this call's threshold), or :obj:`None`.

    Raises:
        TypeError: if ``scores`` is not a float32 tensor, ``k`` not an int or ``hint`` not a number.
        ValueError: if ``scores`` is not 1-D or ``k`` lies outside ``[0, scores.numel()]``.
    """
    _check_scores(scores)
    n = scores.numel()
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    if not 0 <= k <= n:
        raise ValueError(f"k: expected a count in [0, {n}] (the number of scores), got {k}")
    if hint is not None and (isinstance(hint, bool) or not isinstance(hint, (int, float))):
        raise TypeError(f"hint: expected a float or None, got {type(hint).__name__}")
    if k == n:
        return torch.arange(n, device=scores.device), None
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=scores.device), None
    if scores.device.type != "cpu":
        return _topk_indices_sync_free(scores, k), None

    if hint is not None:
        # "not below" rather than ">=": NaN, which ranks above every number, stays in the band
        band = torch.lt(scores, hint).logical_not_().nonzero().view(-1)  # ascending
        m = band.numel()
        if k <= m:
            sub = scores[band]
            if _has_nan(sub):
                return _topk_indices_sync_free(scores, k), None
            threshold = _kth_largest(sub, k)
            keep = _mask_from_threshold(sub, threshold, k, sync_free=False)
            # While the band above the hint keeps between a quarter and four margins of spare scores, the
            # hint serves the next step as well (weights move little per step), and the second selection that
            # a fresh hint costs (a third of the call) is skipped.
            margin = _margin(n, k)
            if margin // 4 <= m - k <= 4 * margin:
                return band[keep], hint
            return band[keep], _next_hint(sub, k, m)
    if _has_nan(scores):
        return _topk_indices_sync_free(scores, k), None
    threshold = _kth_largest(scores, k)
    mask = _mask_from_threshold(scores, threshold, k, sync_free=False)
    return mask.nonzero().view(-1), _next_hint(scores, k, n)


def _has_nan(scores: Tensor) -> bool:
    # max propagates NaN: one read of the scores, no mask allocated; a fraction of a selection's cost
    return bool(torch.isnan(scores.max()))


def _check_scores(scores: Tensor) -> None:
    if not isinstance(scores, Tensor):
        raise TypeError(f"scores: expected a tensor, got {type(scores).__name__}")
    if scores.dtype != torch.float32:
        raise TypeError(f"scores: expected float32 (selection runs on fp32 scores), got {scores.dtype}")
    if scores.dim() != 1:
        raise ValueError(f"scores: expected a 1-D tensor, got shape {list(scores.shape)}")


def _topk_indices_sync_free(scores: Tensor, k: int) -> Tensor:
    """The GPU path of :func:`topk_indices`: no value is read on the host, so the call never waits for the
    device (the threshold stays a tensor; ``nonzero_static`` knows its output size in advance).  It ranks
    integer keys (:func:`_float_keys`), which order NaN too; the CPU path falls back to it when the scores it
    searches hold a NaN."""
    keys = _float_keys(scores)
    threshold = torch.topk(keys, k, sorted=False).values.min()
    mask = _mask_from_threshold(keys, threshold, k, sync_free=True)
    return torch.nonzero_static(mask, size=k).view(-1)


def _margin(n: int, k: int) -> int:
    # ~1% of k (at least 256 scores) below the threshold: from one training step to the next only a few
    # edges cross it, so the next call searches about k * 1.01 scores instead of all n.
    return min(n - k, max(256, k // 100))


def _next_hint(scores: Tensor, k: int, n: int) -> Optional[float]:
    margin = _margin(n, k)
    if margin <= 0:
        return None
    return float(_kth_largest(scores, k + margin))


def _ordered_keys(scores: Tensor, position: Tensor) -> Tensor:
    """Unique int64 keys ordering by score (:func:`_float_keys`), then by lower position."""
    return (_float_keys(scores).to(torch.long) << 32) | (_INT32_MAX - position)


_PAD_KEY = -(2**63)  # below every key of :func:`_ordered_keys`


class SegmentLayout:
    """Precomputed padded layout for per-segment top-k (per target node, per block, per layer).

    Segment ``s`` holds the candidates with ``segment[e] == s``; they are laid out in row ``s`` of a padded
    ``[S, L]`` table so one batched ``topk`` along the rows selects every segment at once.

    Args:
        segment: segment id per candidate (int64, ``[E]``, values ``0..S-1``).
        k_per_segment: number of candidates to keep in each segment (``[S]``).
    """

    def __init__(self, segment: Tensor, k_per_segment: Tensor) -> None:
        for name, t in (("segment", segment), ("k_per_segment", k_per_segment)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name}: expected an integer tensor, got {type(t).__name__}")
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"{name}: expected an integer tensor, got dtype {t.dtype}")
            if t.dim() != 1:
                raise ValueError(f"{name}: expected a 1-D tensor, got shape {list(t.shape)}")
        segment = segment.long().cpu()
        k_per_segment = k_per_segment.long().cpu()
        num_seg = k_per_segment.numel()
        if segment.numel() and (int(segment.min()) < 0 or int(segment.max()) >= num_seg):
            raise ValueError(f"segment: expected ids in [0, {num_seg}) (one per entry of k_per_segment), "
                             f"got values in [{int(segment.min())}, {int(segment.max())}]")
        if num_seg and int(k_per_segment.min()) < 0:
            raise ValueError(f"k_per_segment: expected non-negative counts, got {int(k_per_segment.min())}")
        counts = torch.bincount(segment, minlength=num_seg)
        if bool((k_per_segment > counts).any()):
            s = int((k_per_segment > counts).nonzero()[0])
            raise ValueError(
                f"budget: segment {s} keeps {int(k_per_segment[s])} edges but has only {int(counts[s])} candidates")
        order = torch.argsort(segment, stable=True)
        starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
        pos = torch.empty_like(order)
        pos[order] = torch.arange(order.numel()) - starts[segment[order]]
        self.num_segments = num_seg
        self.width = int(counts.max()) if counts.numel() else 0
        self.k_max = int(k_per_segment.max()) if num_seg else 0
        self.total = int(k_per_segment.sum())
        self.num_candidates = segment.numel()
        self.row = segment
        self.col = pos
        self.k_per_segment = k_per_segment
        table = torch.full((num_seg, max(self.width, 1)), -1, dtype=torch.long)
        table[segment, pos] = torch.arange(segment.numel())
        self.table = table

    def to(self, device: torch.device) -> "SegmentLayout":
        for name in ("row", "col", "k_per_segment", "table"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def select(self, scores: Tensor) -> Tensor:
        """Indices (ascending) of the kept candidates, ``k_per_segment[s]`` of largest score per segment.

        ``scores`` is 1-D float32 with one entry per candidate; ties go to the lower index, NaN ranks above
        every number."""
        _check_scores(scores)
        if scores.numel() != self.num_candidates:
            raise ValueError(f"scores: expected {self.num_candidates} entries (one per candidate), "
                             f"got {scores.numel()}")
        if self.row.device != scores.device:
            self.to(scores.device)
        keys = torch.full((self.num_segments, max(self.width, 1)), _PAD_KEY, dtype=torch.long,
                          device=scores.device)
        keys[self.row, self.col] = _ordered_keys(scores, self.col)
        top = torch.topk(keys, self.k_max, dim=1, sorted=True).indices
        keep = torch.arange(self.k_max, device=scores.device).view(1, -1) < self.k_per_segment.view(-1, 1)
        # Slots beyond a segment's budget point at a spare last entry instead of being dropped by a boolean
        # index, whose unknown size would make a GPU step wait for the device.
        chosen = torch.where(keep, self.table.gather(1, top), self.num_candidates)
        mask = torch.zeros(self.num_candidates + 1, dtype=torch.bool, device=scores.device)
        mask[chosen.view(-1)] = True
        return torch.nonzero_static(mask[:-1], size=self.total).view(-1)


Bounds = Tuple[float, float]


@eager_in_compile  # data-dependent sizes on CPU, as topk_indices
def topk_masks(scores: Sequence[Tensor], k: int, bounds: Optional[Bounds] = None
               ) -> Tuple[List[Tensor], Optional[Bounds]]:
    """Boolean masks of the ``k`` largest entries of several 1-D fp32 tensors read as one (concatenated in
    the order given), ties to the lower index; NaN ranks above every number.

    What a layer needs when it multiplies with ``w * mask`` and never reads the indices: no index list of
    the ``k`` kept entries is built, and the tensors are not concatenated (a global budget over the layers
    of a model selects across their weights where they are).

    Args:
        scores: 1-D float32 tensors on one device (typically ``|w|`` of each layer).
        k: entries kept in all of them together, ``0 <= k <= total``.
        bounds: ``(low, high)`` from the previous call.  On CPU, when at most ``k`` scores lie at or above
            ``high`` and at least ``k`` at or above ``low``, only the scores in ``[low, high)`` are searched
            (about 2 % of ``k``); the answer is exact either way.  Ignored on other devices, which use
            :func:`topk_indices`'s synchronisation-free path.

    Returns:
        ``(masks, next_bounds)``: one boolean mask per tensor, and bounds for the next call (or :obj:`None`).
    """
    scores = list(scores)
    if not scores:
        raise ValueError("scores: expected at least one tensor")
    for s in scores:
        _check_scores(s)
    sizes = [s.numel() for s in scores]
    n = sum(sizes)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    if not 0 <= k <= n:
        raise ValueError(f"k: expected a count in [0, {n}] (the number of scores), got {k}")
    device = scores[0].device
    if k == n or k == 0:
        return [torch.full((m,), k == n, dtype=torch.bool, device=device) for m in sizes], None
    if device.type != "cpu" or any(_has_nan(s) for s in scores):
        flat = scores[0] if len(scores) == 1 else torch.cat(scores)
        mask = torch.zeros(n, dtype=torch.bool, device=device)
        mask[_topk_indices_sync_free(flat, k)] = True
        return list(mask.split(sizes)), None
    margin = _margin(n, k)
    if bounds is not None:
        low, high = bounds
        above = [s >= high for s in scores]
        need = k - sum(int(torch.count_nonzero(a)) for a in above)
        if need >= 0:
            band = torch.cat([s[(s >= low) & ~a] for s, a in zip(scores, above)])
            m = band.numel()
            if need <= m:
                threshold = high if need == 0 else float(_kth_largest(band, need))
                masks = _masks_at(scores, threshold, k)
                # The same bounds serve the next steps while the threshold stays well inside them; else new
                # ones are read from the band (a full selection costs 5-10 calls of this path).
                if margin // 4 <= min(need, m - need) and m <= 8 * margin:
                    return masks, bounds
                return masks, _recentred(band, need, threshold, low, high, margin)
    flat = scores[0] if len(scores) == 1 else torch.cat(scores)
    masks = _masks_at(scores, float(_kth_largest(flat, k)), k)
    return masks, _bounds(scores, k, margin)


def _masks_at(scores: List[Tensor], threshold: float, k: int) -> List[Tensor]:
    """Masks of the ``k`` scores that are at least ``threshold`` (the k-th largest), lowest-index ties first."""
    masks = [s >= threshold for s in scores]
    if sum(int(torch.count_nonzero(m)) for m in masks) == k:  # the usual case: no tie straddles the threshold
        return masks
    need = k - sum(int(torch.count_nonzero(s > threshold)) for s in scores)
    out, offset = [], 0
    for s in scores:
        ties = s == threshold
        out.append((s > threshold) | (ties & (ties.cumsum(0) + offset <= need)))
        offset += int(torch.count_nonzero(ties))
    return out


def _recentred(band: Tensor, need: int, threshold: float, low: float, high: float, margin: int) -> Bounds:
    """Bounds ``margin`` ranks either side of the threshold, read from the band ``[low, high)`` of this call
    (``need``: the threshold's rank in it, from the top).  Where the band is too thin on a side, that side
    moves by the band's width: a guess, which the next call checks like any bounds."""
    m = band.numel()
    width = max(high - low, abs(threshold) * 1e-6, 1e-30)
    new_high = float(_kth_largest(band, need - margin)) if need - margin >= 1 else threshold + width
    new_low = float(_kth_largest(band, need + margin)) if need + margin <= m else threshold - width
    return min(new_low, threshold), max(new_high, threshold)


def _bounds(scores: List[Tensor], k: int, margin: int) -> Optional[Bounds]:
    """Scores ``margin`` ranks above and below the k-th largest (read from a full selection; rare)."""
    if margin <= 0:
        return None
    flat = scores[0] if len(scores) == 1 else torch.cat(scores)
    n = flat.numel()
    high = float(_kth_largest(flat, max(k - margin, 1)))
    low = float(_kth_largest(flat, min(k + margin, n)))
    return low, high
