"""The state of a static graph: every level's outputs written once into one preallocated tensor.

A level's graph product reads the outputs of all earlier levels, the first ``r`` nodes of the state.  Joining
the level outputs anew for every level would copy the state once per level (quadratic in the number of
levels); here each output is copied once into its slot, and the products read the prefix in place.

The state is laid out so that every prefix is a matrix the dense product reads without a copy: nodes
innermost (``[B, *S, N]`` in memory: a row-strided ``[B * S, r]`` matrix, the layout the channels-last node
operations produce) for vector and single-channel image nodes, and batched (``[B, N, *S]``: rows of
``prod(S)`` per node) for nodes that carry several channels.

Autograd sees each level's outputs through a token (:class:`_Slot`) that every later prefix (:class:`_Prefix`)
and selection of nodes (:class:`_Select`) takes as an input.  A prefix's backward adds its gradient into one
gradient of the first nodes, as long as the longest prefix read; a selection's leaves its level the rows at
the selected nodes; a slot's backward, which autograd runs after all of them, hands its level the sum.
Gradients flow as through a concatenation, with one addition per consumer, and a graph whose levels read
gathered nodes never builds a gradient of the whole state (at 32 nodes of 78 x 28 x 28 channels, batch 16,
zeroing one took a sixth of a RandWire stage's training step on CPU).  Writes go through an alias of the
buffer with a version counter of its own: a prefix saved by a product is never written again (each level
writes only its own, later slot), and the alias keeps autograd's in-place check from tripping over writes to
other slots.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from neuralgraphs._compat import eager_in_compile


class _Slot(torch.autograd.Function):
    """Registers one level's outputs ``y`` with the state: an empty token whose consumers are the later
    prefixes and selections.  Autograd runs this backward after all of them, when the state holds every
    gradient they left for this level: their sum is the gradient of ``y``."""

    @staticmethod
    def forward(ctx, y: Tensor, state: "_State", level: int) -> Tensor:
        ctx.state, ctx.level, ctx.shape = state, level, tuple(y.shape)
        return y.new_empty(0)

    @staticmethod
    def backward(ctx, _):
        st = ctx.state
        first = st.start_of(ctx.level)
        out = None
        if st.prefix_grad is not None and st.prefix_grad.size(1) > first:
            part = st.prefix_grad[:, first:st.bounds[ctx.level]]
            out = part.clone()
            part.zero_()  # ready for another backward through the same graph
        for rows, g in st.grads[ctx.level]:
            if out is None:
                out = g.new_zeros(ctx.shape)
            out.index_add_(1, rows, g)
        st.grads[ctx.level] = []
        return out, None, None


class _Prefix(torch.autograd.Function):
    """``prefix`` (the first nodes of the state) as a function of the tokens of the levels it holds; its
    backward adds its gradient into one gradient of the longest prefix read (one addition per level, not one
    per level pair)."""

    @staticmethod
    def forward(ctx, prefix: Tensor, state: "_State", *tokens: Tensor) -> Tensor:
        ctx.state, ctx.r, ctx.k = state, prefix.size(1), len(tokens)
        return prefix.view_as(prefix)

    @staticmethod
    def backward(ctx, grad: Tensor):
        st = ctx.state
        have = 0 if st.prefix_grad is None else st.prefix_grad.size(1)
        if have < ctx.r:  # autograd runs the later (longer) prefixes first: this rarely grows
            grown = st.zeros(ctx.r)
            if have:
                grown[:, :have] += st.prefix_grad
            st.prefix_grad = grown
        st.prefix_grad[:, :ctx.r] += grad
        # nothing for the tokens themselves: autograd still runs each slot's backward once all its consumers
        # have run (an empty gradient, nothing to add up)
        return (None, None) + (None,) * ctx.k


class _Select(torch.autograd.Function):
    """Nodes ``index`` (ascending, all written) of the state, copied (``[B, len(index), *S]``), as a
    function of the tokens of the levels before them; the backward leaves each level the rows of the
    gradient at its nodes (a prefix would leave a gradient of all ``r`` nodes, mostly zeros)."""

    @staticmethod
    def forward(ctx, view: Tensor, state: "_State", index: Tensor, pieces: Sequence[Tuple[int, int, int]],
                *tokens: Tensor) -> Tensor:
        ctx.state, ctx.index, ctx.pieces, ctx.k = state, index, pieces, len(tokens)
        return view.index_select(1, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        st = ctx.state
        for level, p0, p1 in ctx.pieces:
            st.grads[level].append((ctx.index[p0:p1] - st.start_of(level), grad[:, p0:p1]))
        return (None, None, None, None) + (None,) * ctx.k


def level_pieces(index: Tensor, bounds: Sequence[int]) -> List[Tuple[int, int, int]]:
    """``(level, p0, p1)``: positions ``p0 .. p1`` of the ascending host ``index`` fall in ``level``, whose
    nodes end at ``bounds[level]`` (exclusive)."""
    if index.numel() and bool((index[1:] <= index[:-1]).any()):
        raise ValueError("index: expected strictly ascending node ids")
    levels = torch.searchsorted(torch.tensor(list(bounds)), index, right=True)
    ids, counts = torch.unique_consecutive(levels, return_counts=True)
    ends = torch.cumsum(counts, 0)
    return [(int(l), int(e - c), int(e)) for l, c, e in zip(ids, counts, ends)]


class _State:
    """The preallocated ``[B, N, *S]`` state of one forward (see the module docstring).  Under
    ``torch.compile`` the static graph runs its levels eagerly (:func:`run_levels`): aliased storage is not
    something dynamo traces."""

    def __init__(self, x: Tensor, num_nodes: int) -> None:
        b, feat = x.size(0), tuple(x.shape[2:])
        #: nodes laid out batched ([B, N, *S], nodes with several channels) rather than innermost
        self.batched = len(feat) >= 3
        if self.batched:
            buf = x.new_empty((b, num_nodes) + feat)
            self.view = buf
        else:
            buf = x.new_empty((b,) + feat + (num_nodes,))
            self.view = buf.movedim(-1, 1)
        # the alias writes without bumping the version counter of the views products save
        self._alias = torch.empty(0, dtype=buf.dtype, device=buf.device).set_(
            buf.untyped_storage(), buf.storage_offset(), self.view.shape, self.view.stride())
        self.tokens: List[Optional[Tensor]] = []
        self.bounds: List[int] = []
        self.filled = 0
        # the gradient of the first nodes, as long as the longest prefix read, and per level the rows of
        # gradients that selections left: (rows, gradient) pairs
        self.prefix_grad: Optional[Tensor] = None
        self.grads: List[list] = []

    def zeros(self, r: int) -> Tensor:
        """Zeros for the first ``r`` nodes, in the state's layout."""
        v = self.view
        if self.batched:
            return v.new_zeros((v.size(0), r) + tuple(v.shape[2:]))
        return v.new_zeros((v.size(0),) + tuple(v.shape[2:]) + (r,)).movedim(-1, 1)

    def write(self, start: int, y: Tensor) -> None:
        """Copy the outputs ``y`` ``[B, n, *S]`` of nodes ``start .. start + n`` (the next level)."""
        if start != self.filled:
            raise AssertionError("levels must be written in order")
        with torch.no_grad():
            self._alias[:, start:start + y.size(1)].copy_(y)
        self.filled += y.size(1)
        self.bounds.append(self.filled)
        self.grads.append([])
        self.tokens.append(_Slot.apply(y, self, len(self.bounds) - 1) if y.requires_grad else None)

    def prefix(self, r: int) -> Tensor:
        """The outputs of the first ``r`` nodes (whole levels), differentiable with respect to them."""
        levels = self._levels_below(r)
        tokens = [t for t in self.tokens[:levels] if t is not None]
        if not tokens:
            return self.view[:, :r]
        return _Prefix.apply(self.view[:, :r], self, *tokens)

    def select(self, index: Tensor, r: int, pieces: Sequence[Tuple[int, int, int]]) -> Tensor:
        """The outputs of nodes ``index`` (ascending, all below ``r``, a level boundary), copied,
        differentiable with respect to them; ``pieces`` is :func:`level_pieces` of a host copy of
        ``index`` (the levels are host structure: nothing is read from the device)."""
        levels = self._levels_below(r)
        tokens = [t for t in self.tokens[:levels] if t is not None]
        # from the whole state, not its prefix: torch's index_select copies a non-contiguous input whole
        # first, and a batched state is contiguous while its prefixes are not
        if not tokens:
            return self.view.index_select(1, index)
        return _Select.apply(self.view, self, index, pieces, *tokens)

    def start_of(self, level: int) -> int:
        """The first node of ``level``."""
        return self.bounds[level - 1] if level else 0

    def _levels_below(self, r: int) -> int:
        if r not in self.bounds and r != 0:
            raise AssertionError("a prefix ends at a level boundary")
        return self.bounds.index(r) + 1 if r else 0

    def close(self, index: Optional[Tensor] = None, pieces: Sequence[Tuple[int, int, int]] = ()) -> Tensor:
        """The outputs of every node (or of nodes ``index``, see :meth:`select`), and the end of the
        forward: the state lets go of its level tokens, which the autograd graph holds (a state keeping them
        would form a reference cycle through that graph)."""
        out = self.prefix(self.filled) if index is None else self.select(index, self.filled, pieces)
        self.tokens = []
        return out
