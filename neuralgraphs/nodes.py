r"""Node operations: the per-node transformation :math:`f_v`, applied to many nodes at once.

A node operation is an :class:`torch.nn.Module` called as ``op(x, nodes)``: ``x`` holds the inputs of a
contiguous range of nodes in the usual PyTorch layout with nodes as channels, ``[B, n, *]`` (``[B, n, H, W]``
for images, ``[B, n]`` for scalar node features), and ``nodes`` is the :class:`slice` of node ids it covers,
so per-node parameters are read as ``param[nodes]``.  The dynamics modules call it once per topological level
(static graphs) or once per step / function evaluation (dynamic graphs), never node by node.

A node operation acts on each node independently (the graphs apply it to sub-ranges of the nodes).  One
that maps a node whose input is all zeros to zeros may say so with a ``maps_zero_to_zero = True`` attribute
(all the building blocks below that do, say it): a discrete-time graph then skips the nodes that start at
zero in its first step.

Any module with that signature is a valid node operation; :class:`NodeOp` subclasses below are the paper's
building blocks, and :func:`image_node_op` / :func:`vector_node_op` assemble the usual orders.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def _all(nodes: Optional[slice], n: int) -> slice:
    return slice(0, n) if nodes is None else nodes


class NodeOp(nn.Module):
    """Base class: a per-node operation over ``num_nodes`` nodes called as ``forward(x, nodes)``."""

    def __init__(self, num_nodes: int) -> None:
        super().__init__()
        self.num_nodes = _check_positive_int(num_nodes, "num_nodes")

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}"


class NodeConv2d(NodeOp):
    r"""A single-channel :math:`k \times k` convolution per node (a depthwise convolution over nodes).

    .. math:: \mathbf{z}_v = \mathbf{K}_v \star \mathbf{x}_v

    Args:
        num_nodes: number of nodes.
        kernel_size: kernel size :math:`k`.  (default: ``3``)
        stride: stride.  (default: ``1``)
        bias: add a learnable bias per node.  (default: :obj:`False`)

    Shapes:
        input ``[B, n, H, W]``; output ``[B, n, H', W']``.
    """

    def __init__(self, num_nodes: int, kernel_size: int = 3, stride: int = 1, bias: bool = False) -> None:
        super().__init__(num_nodes)
        self.kernel_size = _check_positive_int(kernel_size, "kernel_size")
        self.stride = _check_positive_int(stride, "stride")
        self.weight = nn.Parameter(torch.empty(num_nodes, 1, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(num_nodes)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        nodes = _all(nodes, self.num_nodes)
        w = self.weight[nodes]
        if x.dim() != 4 or x.size(1) != w.size(0):
            raise ValueError(f"x: expected [B, {w.size(0)}, H, W] for nodes {nodes}, got {list(x.shape)}")
        # channels-last runs the depthwise kernel ~5x faster on CPU (measured at 192 nodes, 8x8).
        x = x.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, w, None if self.bias is None else self.bias[nodes], stride=self.stride,
                        padding=self.kernel_size // 2, groups=w.size(0))

    @property
    def maps_zero_to_zero(self) -> bool:
        return self.bias is None

    def macs(self, shape: Tuple[int, ...]) -> Tuple[int, Tuple[int, ...]]:
        """Per node: ``k * k`` multiply-adds per output position; output ``ceil(size / stride)``."""
        out = tuple(-(-d // self.stride) for d in shape)
        return self.kernel_size ** 2 * math.prod(out), out

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, kernel_size={self.kernel_size}, stride={self.stride}"


class _InstanceNormNodesLast(torch.autograd.Function):
    r"""Instance norm of ``x`` ``[B, S, C]`` (nodes innermost: channels-last images) over ``S``, per sample and
    node, with a per-node scale and shift, computed in that layout.  ``F.instance_norm`` would copy to NCHW
    and back; ``torch.var_mean`` over the middle dimension is slow on CPU, so the statistics are plain sums.

    Backward: with :math:`a = w\,\sigma^{-1}` and :math:`\hat x = (x - \mu)\,\sigma^{-1}`,
    :math:`\partial x = a\,(g - \overline{g} - \hat x\,\overline{g \hat x})` (means over ``S``).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        mean = x.mean(1, keepdim=True)
        xc = x - mean
        var = torch.linalg.vecdot(xc, xc, dim=1).unsqueeze(1) / x.size(1)
        heard = (var != 0) | (mean != 0)
        rstd = torch.where(heard, torch.rsqrt(var + eps), 1.0)
        heard = heard.to(x.dtype)
        ctx.save_for_backward(xc, rstd, weight, heard)
        return torch.addcmul(bias * heard, xc, rstd * weight)

    @staticmethod
    def backward(ctx, g: Tensor):
        xc, rstd, weight, heard = ctx.saved_tensors
        # under autocast the gradient may arrive in another precision than the forward ran in
        g = g.to(xc.dtype).contiguous()
        size = xc.size(1)
        sg = g.sum(1, keepdim=True)
        sg_xhat = rstd * torch.linalg.vecdot(g, xc, dim=1).unsqueeze(1)
        a = rstd * weight
        grad_x = torch.addcmul(a * sg / -size, g, a).addcmul_(xc, a * rstd * sg_xhat / -size)
        grad_w = sg_xhat.sum((0, 1)) if ctx.needs_input_grad[1] else None
        grad_b = (sg * heard).sum((0, 1)) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


class _BatchNormUnitGain(torch.autograd.Function):
    r"""Batch norm in training (batch statistics, running statistics updated) whose backward normalises a
    channel that is constant over the batch with unit scale: its gradient is :math:`\gamma (g - \bar g)`
    instead of :math:`\gamma (g - \bar g) / \sqrt{\epsilon}` (see :class:`NodeNorm`).  Only the forward
    pays for it: two reductions find the constant channels."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        dims = [0] + list(range(2, x.dim()))
        flat = x.amax(dims) == x.amin(dims)
        invstd = torch.where(flat, torch.ones_like(invstd), invstd)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, mean, invstd = ctx.saved_tensors
        need = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1],
                weight is not None and ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            g.contiguous(memory_format=_memory_format(x)), x, weight, None, None, mean, invstd, True, ctx.eps, need)
        return gx, gw, gb, None, None, None, None


def _memory_format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _heard(x: Tensor) -> Tensor:
    """``[B, n, 1, ...]``: 1 where a (sample, node) instance of ``x`` is not all zeros, else 0."""
    return (x != 0).flatten(2).any(-1).to(x.dtype).view(x.shape[:2] + (1,) * (x.dim() - 2))


def _unit_gain_if_silent(y: Tensor, x: Tensor, heard: Tensor, weight: Optional[Tensor]) -> Tensor:
    r"""``y`` (the instance norm of ``x``) where an instance is heard; zeros elsewhere, with the gradient of a
    unit-variance normalisation, :math:`\gamma\,(x - \bar x)`."""
    centred = x - x.flatten(2).mean(-1).view(heard.shape)
    if weight is not None:
        centred = centred * weight.view((1, -1) + (1,) * (x.dim() - 2))
    # under autocast the norm may have run in another precision than x
    return torch.lerp(centred.to(y.dtype), y, heard.to(y.dtype))


class NodeNorm(NodeOp):
    r"""Normalisation with a learnable scale and shift per node.

    ``kind="batch"`` normalises each node over the batch (and space), with running statistics;
    ``kind="instance"`` normalises each node of each sample over space (images only).

    **Inputs without variance.**  The usual formula multiplies the gradient of an input whose variance is
    zero by :math:`\gamma / \sqrt{\epsilon}` (316 :math:`\gamma` at :math:`\epsilon = 10^{-5}`).  Under DNW's
    straight-through rule every candidate edge into such a node then receives a gradient a hundred times
    larger than any other: in the digits graphs of ``benchmarks/fidelity.py`` such edges reached weights of
    10-300 within a few steps, all swapped in together, and held their places in the top-k for the rest of
    training (the node's output does not depend on the scale of its inputs, so nothing shrinks them), so
    the learned wiring collapsed onto a few nodes.  Here an input without variance is normalised with unit
    scale instead: the same output, a gradient of gain :math:`\gamma`.  Two cases:

    * ``kind="instance"``: a (sample, node) map that is all zeros -- what a node without an active in-edge,
      or fed only by such nodes, receives -- maps to zeros, shift included, so the norm maps zero to zero
      (``maps_zero_to_zero``) and such a node stays silent in every step of a dynamic graph.  Its gradient
      :math:`\gamma\,(g - \bar g)` still tells DNW which candidate edges would feed it (the ReLU of
      :class:`Activation` passes the gradient at exactly 0, so this also holds after a ReLU: without both,
      the static DNW graphs could only ever take edges away from silent nodes, never give them one, and fed
      7 of their 16 output nodes against 13 after the fix).
    * ``kind="batch"``, in training: a node whose input is constant over the batch (and space).

    Nodes that carry several channels (``channels=C``: features ``[B, n, C, *]``) are normalised per node and
    channel, with a scale and shift per node and channel.

    Args:
        num_nodes: number of nodes.
        kind: ``"batch"`` or ``"instance"``.  (default: ``"batch"``)
        affine: learn a scale and shift per node (and channel).  (default: :obj:`True`)
        momentum: running-statistics momentum for batch norm.  (default: ``0.1``)
        eps: added to the variance.  (default: ``1e-5``)
        channels: channels per node, :obj:`None` for single-channel nodes (features ``[B, n, *]``).
            (default: :obj:`None`)
    """

    def __init__(self, num_nodes: int, kind: str = "batch", affine: bool = True, momentum: float = 0.1,
                 eps: float = 1e-5, channels: Optional[int] = None) -> None:
        super().__init__(num_nodes)
        if kind not in ("batch", "instance"):
            raise ValueError(f"kind: expected 'batch' or 'instance', got {kind!r}")
        self.kind, self.momentum, self.eps = kind, momentum, eps
        self.channels = None if channels is None else _check_positive_int(channels, "channels")
        shape = (num_nodes,) if channels is None else (num_nodes, channels)
        self.weight = nn.Parameter(torch.ones(shape)) if affine else None
        self.bias = nn.Parameter(torch.zeros(shape)) if affine else None
        if kind == "batch":
            self.register_buffer("running_mean", torch.zeros(shape))
            self.register_buffer("running_var", torch.ones(shape))
        else:
            self.running_mean = self.running_var = None

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)
        if self.running_mean is not None:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        nodes = _all(nodes, self.num_nodes)
        if self.channels is not None:
            # node-channel pairs as the normalised units: [B, n, C, *] -> [B, n * C, *]
            c = self.channels
            if x.dim() < 3 or x.size(2) != c:
                raise ValueError(f"x: expected [B, n, {c}, ...] ({c} channels per node), got {list(x.shape)}")
            flat = x.reshape((x.size(0), x.size(1) * c) + tuple(x.shape[3:]))
            return self._normalise(flat, slice(nodes.start * c, nodes.stop * c)).view(x.shape)
        return self._normalise(x, nodes)

    def _flat(self, t: Optional[Tensor]) -> Optional[Tensor]:
        return None if t is None else t.view(-1)

    def _normalise(self, x: Tensor, nodes: slice) -> Tensor:
        w, b = self._flat(self.weight), self._flat(self.bias)
        w = None if w is None else w[nodes]
        b = None if b is None else b[nodes]
        if self.kind == "instance":
            if x.dim() < 3:
                raise ValueError(f"x: instance norm needs spatial dimensions [B, n, ...], got {list(x.shape)}")
            batch, n = x.size(0), x.size(1)
            last = x.movedim(1, -1)
            if last.is_contiguous() and x.device.type == "cpu":
                # nodes innermost (channels-last, what the node convolution and the dense product write)
                ones = x.new_ones(n) if w is None else w
                zeros = x.new_zeros(n) if b is None else b
                y = _InstanceNormNodesLast.apply(last.reshape(batch, -1, n), ones, zeros, self.eps)
                return y.view(last.shape).movedim(-1, 1)
            heard = _heard(x)
            if batch > 1 and x.transpose(0, 1).is_contiguous():
                # Node-major memory [n, B, *] (what the sparse graph product writes): every (node, sample)
                # is one contiguous row, so batch norm over a [1, n * B, S] view computes the instance
                # statistics with no copy (instance_norm would first copy to NCHW).
                rows = x.transpose(0, 1).reshape(1, n * batch, -1)
                y = F.batch_norm(rows, None, None, None if w is None else w.repeat_interleave(batch),
                                 None if b is None else b.repeat_interleave(batch), True, 0.0, self.eps)
                y = y.view((n, batch) + tuple(x.shape[2:])).transpose(0, 1)
            else:
                y = F.instance_norm(x, weight=w, bias=b, eps=self.eps)
            return _unit_gain_if_silent(y, x, heard, w)
        # Slices of the running buffers are views, so batch norm updates the right nodes in place.
        rm, rv = self.running_mean.view(-1)[nodes], self.running_var.view(-1)[nodes]
        if self.training and torch.is_grad_enabled() and x.requires_grad:
            return _BatchNormUnitGain.apply(x, w, b, rm, rv, self.momentum, self.eps)
        return F.batch_norm(x, rm, rv, w, b, self.training, self.momentum, self.eps)

    @property
    def maps_zero_to_zero(self) -> bool:
        return self.kind == "instance"

    def extra_repr(self) -> str:
        extra = "" if self.channels is None else f", channels={self.channels}"
        return f"num_nodes={self.num_nodes}, kind={self.kind!r}{extra}"


class NodeAffine(NodeOp):
    r"""A per-node affine map :math:`z_v = a_v x_v + b_v` for scalar (vector-feature) nodes.

    Args:
        num_nodes: number of nodes.
    """

    def __init__(self, num_nodes: int) -> None:
        super().__init__(num_nodes)
        self.weight = nn.Parameter(torch.ones(num_nodes))
        self.bias = nn.Parameter(torch.zeros(num_nodes))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        nodes = _all(nodes, self.num_nodes)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight[nodes].view(shape) + self.bias[nodes].view(shape)

    def macs(self, shape: Tuple[int, ...]) -> Tuple[int, Tuple[int, ...]]:
        """Per node: one multiply-add per element."""
        return math.prod(shape), tuple(shape)


class NodeSepConv(NodeOp):
    r"""A separable convolution per node for nodes that carry several channels (RandWire's node transform):
    a :math:`k \times k` depthwise convolution over each node's ``in_channels``, then a 1x1 convolution to its
    ``out_channels``, every node with its own kernels.

    .. math:: \mathbf{z}_v = \mathbf{P}_v \star (\mathbf{D}_v \star_{\text{depthwise}} \mathbf{x}_v)

    All the nodes of a call run as one grouped depthwise and one grouped pointwise convolution.

    Args:
        num_nodes: number of nodes.
        in_channels: channels of each node's input.
        out_channels: channels of each node's output.
        kernel_size: depthwise kernel size :math:`k` (padding ``k // 2``).  (default: ``3``)
        stride: stride of the depthwise convolution.  (default: ``1``)

    Shapes:
        input ``[B, n, in_channels, H, W]``; output ``[B, n, out_channels, H', W']``.
    """

    maps_zero_to_zero = True

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1) -> None:
        super().__init__(num_nodes)
        self.in_channels = _check_positive_int(in_channels, "in_channels")
        self.out_channels = _check_positive_int(out_channels, "out_channels")
        self.kernel_size = _check_positive_int(kernel_size, "kernel_size")
        self.stride = _check_positive_int(stride, "stride")
        self.depthwise = nn.Parameter(torch.empty(num_nodes, in_channels, 1, kernel_size, kernel_size))
        self.pointwise = nn.Parameter(torch.empty(num_nodes, out_channels, in_channels, 1, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the depthwise and pointwise kernels
        for p, fan_in in ((self.depthwise, self.kernel_size ** 2), (self.pointwise, self.in_channels)):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        nodes = _all(nodes, self.num_nodes)
        dw, pw = self.depthwise[nodes], self.pointwise[nodes]
        n, ci, co = dw.size(0), self.in_channels, self.out_channels
        if x.dim() != 5 or x.size(1) != n or x.size(2) != ci:
            raise ValueError(f"x: expected [B, {n}, {ci}, H, W] for nodes {nodes}, got {list(x.shape)}")
        b, h, w = x.size(0), x.size(3), x.size(4)
        y = F.conv2d(x.reshape(b, n * ci, h, w), dw.reshape(n * ci, 1, *dw.shape[-2:]), stride=self.stride,
                     padding=self.kernel_size // 2, groups=n * ci)
        y = F.conv2d(y, pw.reshape(n * co, ci, 1, 1), groups=n)
        return y.view(b, n, co, y.size(-2), y.size(-1))

    def forward_shared(self, x: Tensor, scale: Optional[Tensor] = None, nodes: Optional[slice] = None) -> Tensor:
        r"""Every node of ``nodes`` on one shared input ``x`` ``[B, in_channels, H, W]``, node ``v``'s output
        times ``scale[v]``: ``[B, n, out_channels, H', W']``.

        The same as :meth:`forward` on ``scale[v] * x`` for every node (both convolutions are linear), but
        ``x`` is read once: one depthwise convolution with ``n`` kernels per input channel, and the scales
        folded into the pointwise kernels.  For RandWire's sources, which all read the stage input, that is
        5x faster forward + backward than repeating the input (3 sources of 78 channels at 56 x 56,
        batch 16, CPU) and never builds the repeated input or its gradient.
        """
        nodes = _all(nodes, self.num_nodes)
        dw, pw = self.depthwise[nodes], self.pointwise[nodes]
        n, ci, co, k = dw.size(0), self.in_channels, self.out_channels, self.kernel_size
        if x.dim() != 4 or x.size(1) != ci:
            raise ValueError(f"x: expected [B, {ci}, H, W] (one input shared by the nodes), got {list(x.shape)}")
        if scale is not None and (scale.dim() != 1 or scale.numel() != n):
            raise ValueError(f"scale: expected one factor per node ({n}), got shape {list(scale.shape)}")
        b = x.size(0)
        # groups = in_channels with n kernels each: output channel c * n + v is node v's channel c
        h = F.conv2d(x, dw.transpose(0, 1).reshape(ci * n, 1, k, k), stride=self.stride, padding=k // 2,
                     groups=ci)
        ho, wo = h.shape[-2:]
        h = h.view(b, ci, n, ho * wo).transpose(1, 2).reshape(b, n * ci, ho, wo)
        w = pw if scale is None else pw * scale.view(n, 1, 1, 1, 1)
        return F.conv2d(h, w.reshape(n * co, ci, 1, 1), groups=n).view(b, n, co, ho, wo)

    def macs(self, shape: Tuple[int, ...]) -> Tuple[int, Tuple[int, ...]]:
        """Per node and output position: ``k * k * in_channels`` (depthwise) + ``in_channels * out_channels``
        (pointwise); ``shape`` is ``(in_channels, H, W)``."""
        out = tuple(-(-d // self.stride) for d in shape[1:])
        per_position = self.kernel_size ** 2 * self.in_channels + self.in_channels * self.out_channels
        return per_position * math.prod(out), (self.out_channels,) + out

    def extra_repr(self) -> str:
        return (f"num_nodes={self.num_nodes}, in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}")


class NodeRanges(nn.Module):
    """Different node operations on consecutive ranges of nodes: the first ``sizes[0]`` nodes run ``ops[0]``,
    the next ``sizes[1]`` ``ops[1]``, and so on.  Each operation sees its own node ids (from 0), so its
    per-node parameters cover its range only; a call spanning several ranges runs each part and concatenates
    the results along the node dimension (their shapes must then agree).

    Args:
        ranges: ``(size, op)`` pairs in node order; ``op`` is any node operation.
    """

    def __init__(self, ranges: Sequence[Tuple[int, nn.Module]]) -> None:
        super().__init__()
        if not ranges:
            raise ValueError("ranges: expected at least one (size, op) pair")
        sizes = []
        for i, pair in enumerate(ranges):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"ranges[{i}]: expected a (size, op) pair, got {pair!r}")
            size, op = pair
            sizes.append(_check_positive_int(size, f"ranges[{i}] size"))
            if not isinstance(op, nn.Module):
                raise TypeError(f"ranges[{i}]: expected an nn.Module as the op, got {type(op).__name__}")
        self.sizes = sizes
        self.ops = nn.ModuleList(op for _, op in ranges)
        self.starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.num_nodes = sum(sizes)

    @property
    def maps_zero_to_zero(self) -> bool:
        return all(maps_zero_to_zero(op) for op in self.ops)

    def parts(self, nodes: slice):
        """``(op index, local slice, offset in the call)`` of every range a call on ``nodes`` touches."""
        out = []
        for i, (start, size) in enumerate(zip(self.starts, self.sizes)):
            lo, hi = max(nodes.start, start), min(nodes.stop, start + size)
            if lo < hi:
                out.append((i, slice(lo - start, hi - start), lo - nodes.start))
        return out

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        nodes = _all(nodes, self.num_nodes)
        outs = [self.ops[i](x[:, off:off + (part.stop - part.start)], part) for i, part, off in self.parts(nodes)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}"


class NodeDropPath(NodeOp):
    r"""DropPath over nodes, in training only: per sample, each node's output is zeroed with probability ``p``
    and kept outputs are scaled by :math:`1 / (1 - p)`, so every path through a dropped node is dropped for
    that sample.  The factors are drawn by :meth:`resample` once per forward, before any node runs, by the
    module that owns the graph; in eval mode nothing is dropped.

    Args:
        num_nodes: number of nodes.
        p: drop probability in ``[0, 1)``.
        nodes: the nodes that may be dropped, in the order of the rows of the draw (a stage's input and
            output nodes are left out).  (default: every node, in id order)
    """

    maps_zero_to_zero = True

    def __init__(self, num_nodes: int, p: float, nodes: Optional[Sequence[int]] = None) -> None:
        super().__init__(num_nodes)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p: expected a drop probability in [0, 1), got {p!r}")
        self.p = float(p)
        rows = torch.arange(num_nodes) if nodes is None else torch.as_tensor(list(nodes), dtype=torch.long)
        if rows.unique().numel() != rows.numel() or (rows.numel() and not 0 <= int(rows.min()) <= int(rows.max()) < num_nodes):
            raise ValueError(f"nodes: expected distinct node ids in [0, {num_nodes}), got {rows.tolist()}")
        self.register_buffer("rows", rows, persistent=False)
        self.factors: Optional[Tensor] = None

    def resample(self, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        """Draw this forward's factors from torch's global generator: one uniform ``[len(nodes), B]`` draw,
        row ``i`` for node ``nodes[i]`` (nothing is drawn in eval mode or at ``p = 0``)."""
        if not (self.training and self.p > 0):
            self.factors = None
            return
        keep = torch.rand(self.rows.numel(), batch, device=device) >= self.p
        factors = torch.ones(self.num_nodes, batch, dtype=dtype, device=device)
        self.factors = factors.index_copy(0, self.rows, keep.to(dtype) / (1.0 - self.p))

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if self.factors is None or self.factors.size(1) != x.size(0):
            raise RuntimeError("NodeDropPath: resample(batch, ...) must run before each training forward")
        nodes = _all(nodes, self.num_nodes)
        f = self.factors[nodes].t()
        return x * f.view(f.shape + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, p={self.p}"


def _relu(x: Tensor) -> Tensor:
    # A derivative of 1 at exactly 0 (a subgradient as valid as relu's 0): a silent node, whose normalised
    # input is exactly 0, still passes gradient back to the candidate edges that would feed it.  In single
    # and double precision a threshold just below zero gives it in one fused kernel each way (clamp's
    # backward takes a comparison and a select: 1.5x the time); only subnormal negatives, smaller than the
    # smallest normal number, pass unclipped.
    if x.dtype in (torch.float32, torch.float64):
        return F.threshold(x, -torch.finfo(x.dtype).tiny, 0.0)
    return torch.clamp(x, min=0)


class Activation(nn.Module):
    """A parameter-free activation used as a node operation (``relu``, ``gelu``, ``tanh``, ``sigmoid``,
    ``identity`` or any callable).  ``relu``'s derivative at exactly 0 is 1 (see :class:`NodeNorm`)."""

    _FUNCS = {"relu": _relu, "gelu": F.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
              "identity": lambda x: x}

    def __init__(self, fn="relu") -> None:
        super().__init__()
        if isinstance(fn, str):
            if fn not in self._FUNCS:
                raise ValueError(f"fn: expected one of {sorted(self._FUNCS)} or a callable, got {fn!r}")
            self.name, self.fn = fn, self._FUNCS[fn]
            self.maps_zero_to_zero = fn != "sigmoid"
        elif callable(fn):
            self.name, self.fn = getattr(fn, "__name__", "custom"), fn
            self.maps_zero_to_zero = False  # unknown: never assumed
        else:
            raise TypeError(f"fn: expected a name or a callable, got {type(fn).__name__}")

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class NodeSequential(nn.Sequential):
    """Node operations applied in order, each called as ``op(x, nodes)``."""

    @property
    def maps_zero_to_zero(self) -> bool:
        return all(maps_zero_to_zero(op) for op in self)

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        for op in self:
            x = op(x, nodes)
        return x


class ChannelsLast(nn.Module):
    """Lays 4-D node features out channels-last (a no-op when they already are).

    :func:`image_node_op` puts it in front of the element-wise steps that lead to a :class:`NodeConv2d`,
    so that they and their backward run in the layout the depthwise convolution reads; converting inside
    the convolution instead would leave those steps with gradients in a different layout from their
    inputs, which element-wise backward kernels handle several times slower.
    """

    maps_zero_to_zero = True

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class Identity(nn.Module):
    """The identity node operation."""

    maps_zero_to_zero = True

    def forward(self, x: Tensor, nodes: Optional[slice] = None) -> Tensor:
        return x


def maps_zero_to_zero(op: nn.Module) -> bool:
    """Whether the node operation says it maps all-zero node inputs to zeros (``maps_zero_to_zero``)."""
    return bool(getattr(op, "maps_zero_to_zero", False))


def check_num_nodes(op: nn.Module, num_nodes: int, name: str) -> None:
    """Check that every part of ``op`` that declares a ``num_nodes`` (the :class:`NodeOp` building blocks,
    also inside a :class:`NodeSequential`) was built for a graph of ``num_nodes`` nodes.

    Parts without ``num_nodes`` (activations, user operations) fit any graph and are not checked.

    Args:
        op: the node operation.
        num_nodes: the graph's number of nodes.
        name: the argument ``op`` was given as (``"node_op"``, ``"post_op"``), named in the error.

    Raises:
        ValueError: naming ``name``, the part, its node count and the graph's.
    """
    def parts(m: nn.Module, prefix: str, n: int):
        yield prefix, m, n
        if isinstance(m, NodeSequential):
            for key, child in m.named_children():
                yield from parts(child, f"{prefix}.{key}" if prefix else key, n)
        elif isinstance(m, NodeRanges):  # each range's operation covers that range only
            for i, (size, child) in enumerate(zip(m.sizes, m.ops)):
                yield from parts(child, f"{prefix}.ops.{i}" if prefix else f"ops.{i}", size)

    for sub, m, n in parts(op, "", num_nodes):
        declared = getattr(m, "num_nodes", None)
        if isinstance(declared, bool) or not isinstance(declared, int) or declared == n:
            continue
        part = f"its part {sub!r} ({type(m).__name__})" if sub else type(m).__name__
        whole = f"the graph has {num_nodes} nodes" if n == num_nodes else f"its range has {n} nodes"
        raise ValueError(f"{name}: {part} is built for num_nodes={declared}, but {whole}; expected "
                         f"num_nodes={n} (parts without num_nodes, like activations, fit any graph)")


def image_node_op(num_nodes: int, order: str = "norm-relu-conv", norm: str = "instance",
                  kernel_size: int = 3) -> NodeSequential:
    """The DNW image node operation on single-channel nodes.

    Args:
        num_nodes: number of nodes.
        order: a dash-separated sequence of ``norm``, ``relu`` and ``conv``: ``"norm-relu-conv"`` is the
            static model's order (before the outgoing edges); ``"relu-conv"`` the dynamic models' (with
            ``norm`` applied after aggregation, see the ``post_op`` of the dynamic graphs).
        norm: ``"instance"`` or ``"batch"``.  (default: ``"instance"``)
        kernel_size: conv kernel size.  (default: ``3``)
    """
    if not isinstance(order, str):
        raise TypeError(f"order: expected a string like 'norm-relu-conv', got {type(order).__name__}")
    parts = order.split("-")
    for p in parts:
        if p not in ("norm", "relu", "conv"):
            raise ValueError(f"order: unknown step {p!r} in {order!r}; allowed steps are norm, relu, conv")
    ops: list = []
    if "conv" in parts:
        # after the last norm before the conv (norms read any layout), before the element-wise steps
        before = parts[:parts.index("conv")]
        at = len(before) - before[::-1].index("norm") if "norm" in before else 0
        parts = parts[:at] + ["layout"] + parts[at:]
    for p in parts:
        if p == "norm":
            ops.append(NodeNorm(num_nodes, kind=norm))
        elif p == "relu":
            ops.append(Activation("relu"))
        elif p == "conv":
            ops.append(NodeConv2d(num_nodes, kernel_size=kernel_size))
        elif p == "layout":
            ops.append(ChannelsLast())
        else:
            raise ValueError(f"order: unknown step {p!r} in {order!r}; allowed steps are norm, relu, conv")
    return NodeSequential(*ops)


def vector_node_op(num_nodes: int, activation="relu", norm: Optional[str] = None) -> NodeSequential:
    """A node operation for scalar node features: optional batch norm, per-node affine map, activation."""
    ops: list = []
    if norm is not None:
        if norm != "batch":
            raise ValueError(f"norm: vector nodes support only 'batch' or None, got {norm!r}")
        ops.append(NodeNorm(num_nodes, kind="batch"))
    ops += [NodeAffine(num_nodes), Activation(activation)]
    return NodeSequential(*ops)


def node_parameters(op: nn.Module, num_nodes: int) -> Tuple[Tensor, int]:
    """Parameters of a node operation: ``(per_node, shared)``, ``per_node`` an int64 ``[num_nodes]`` count of
    the parameters that belong to each node and ``shared`` the count of those that belong to all of them.

    A parameter whose leading dimension is the node count of the operation holding it is per node (one row
    per node); the parts of a :class:`NodeRanges` count for their own ranges; everything else is shared.
    """
    if isinstance(op, NodeRanges):
        per, shared = [], 0
        for size, sub in zip(op.sizes, op.ops):
            p, s = node_parameters(sub, size)
            per.append(p)
            shared += s
        return torch.cat(per), shared
    per, shared = torch.zeros(num_nodes, dtype=torch.long), 0
    if isinstance(op, NodeSequential):
        for sub in op:
            p, s = node_parameters(sub, num_nodes)
            per, shared = per + p, shared + s
        return per, shared
    own = getattr(op, "num_nodes", num_nodes)
    for prm in op.parameters():
        if prm.dim() >= 1 and prm.size(0) == own == num_nodes:
            per += prm.numel() // num_nodes
        else:
            shared += prm.numel()
    return per, shared


def node_macs(op: nn.Module, num_nodes: int, shape: Sequence[int]) -> Tuple[Tensor, Tuple[int, ...]]:
    """Multiply-adds of one call of a node operation: ``(per_node, out_shape)``, ``per_node`` an int64
    ``[num_nodes]`` count for a node input of ``shape`` (the features of one node: ``(H, W)``, ``(C, H, W)``
    or ``()``) and ``out_shape`` the shape of a node's output.

    Operations declare their cost with a ``macs(shape) -> (per node, out_shape)`` method
    (:class:`NodeConv2d`: ``k * k`` per output position, :class:`NodeSepConv`: the depthwise and pointwise
    products, :class:`NodeAffine`: one per element); sequences and ranges combine their parts; norms and
    activations cost nothing (they fold into the neighbouring linear maps at inference), and so does any
    operation that declares nothing.
    """
    shape = tuple(int(d) for d in shape)
    if isinstance(op, NodeRanges):
        parts, out = [], shape
        for size, sub in zip(op.sizes, op.ops):
            m, out = node_macs(sub, size, shape)
            parts.append(m)
        return torch.cat(parts), out
    if isinstance(op, NodeSequential):
        total = torch.zeros(num_nodes, dtype=torch.long)
        for sub in op:
            m, shape = node_macs(sub, num_nodes, shape)
            total += m
        return total, shape
    declared = getattr(op, "macs", None)
    if declared is None:
        return torch.zeros(num_nodes, dtype=torch.long), shape
    per, out = declared(shape)
    return torch.as_tensor(per, dtype=torch.long).expand(num_nodes).clone(), tuple(out)


def count_node_parameters(op: nn.Module, nodes: Sequence[int], num_nodes: int) -> int:
    """Parameters of ``op`` that belong to the given nodes, plus those shared by all nodes (see
    :func:`node_parameters`)."""
    per, shared = node_parameters(op, num_nodes)
    nodes = list(nodes)
    return int(per[nodes].sum()) + shared if nodes else shared

