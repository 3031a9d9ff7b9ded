r"""The DNW paper's tiny CIFAR-10 classifiers and small digits classifiers built on the same graph modules.

A tiny classifier is a convolutional stem that turns the image into one channel per input node, one neural
graph (static, discrete-time or continuous-time) whose nodes are single channels, and a head that reads the
output nodes from the central spatial region, averages them and applies a linear classifier.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from neuralgraphs._checks import check_batch, check_choice, check_int
from neuralgraphs.dynamics import ContinuousTimeGraph, DiscreteTimeGraph, StaticGraph, WiredGraph
from neuralgraphs.generators.candidates import blocked_dag, complete_graph
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import Activation, NodeAffine, NodeNorm, NodeSequential, image_node_op, vector_node_op
from neuralgraphs.wiring import WIRINGS

KINDS = ("static", "discrete", "continuous")


def _check_density(density: Any) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)):
        raise TypeError(f"density: expected a float in (0, 1], got {type(density).__name__}")
    if not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density: expected a fraction of num_nodes**2 in (0, 1], got {density}")
    return float(density)


def edge_budget(density: float, num_nodes: int, num_candidates: int) -> int:
    """Active edges for a density given, as in the paper, as a fraction of ``num_nodes ** 2``.

    ``k = round(density * num_nodes ** 2)``, at least 1 and capped at the number of candidates.
    """
    return max(1, min(int(round(_check_density(density) * num_nodes ** 2)), int(num_candidates)))


def center_mean(x: Tensor, size: Optional[int]) -> Tensor:
    """Average ``[B, C, H, W]`` over its central ``size x size`` region (whole map when ``size`` is None,
    or when ``x`` has no spatial dimensions)."""
    if x.dim() == 2:
        return x
    if size is None:
        return x.flatten(2).mean(-1)
    h, w = x.shape[-2:]
    sh, sw = min(size, h), min(size, w)
    top, left = (h - sh) // 2, (w - sw) // 2
    return x[..., top:top + sh, left:left + sw].flatten(2).mean(-1)


def _build_graph_module(kind: str, graph: NeuralGraph, wiring: str, k: int, *, image: bool, steps: int,
                        method: str, rtol: float, atol: float, adjoint: bool, options: Optional[Dict[str, Any]],
                        seed: int, backend: str, vector_activation: str = "relu") -> WiredGraph:
    """One graph module of the requested kind with the DNW node operations."""
    n = graph.num_nodes
    budget = dict(k=None if wiring == "complete" else k, seed=seed, backend=backend)
    if kind == "static":
        node_op = (image_node_op(n, order="norm-relu-conv", norm="instance") if image
                   else vector_node_op(n, activation=vector_activation, norm="batch"))
        return StaticGraph(graph, node_op, wiring, **budget)
    if image:
        node_op = image_node_op(n, order="relu-conv")
        post_op: nn.Module = NodeNorm(n, "instance")
    else:
        # Scalar nodes have no spatial extent for instance norm; a bounded activation keeps the recurrent
        # state from growing over the steps instead.
        node_op = NodeSequential(NodeAffine(n), Activation("tanh"))
        post_op = None
    if kind == "discrete":
        return DiscreteTimeGraph(graph, node_op, post_op, wiring, steps=steps, **budget)
    return ContinuousTimeGraph(graph, node_op, post_op, wiring, method=method, rtol=rtol, atol=atol,
                               adjoint=adjoint, options=options, **budget)


def _only_for(selector: str, selected: Any, uses: Dict[str, Sequence[Any]], given: Dict[str, Any],
              defaults: Dict[str, Any]) -> Dict[str, Any]:
    """Arguments that only some settings of ``selector`` (``kind``, ``as_images``) use, with their defaults
    filled in.  One given (not :obj:`None`) where it is not used raises a ``ValueError`` naming it, instead
    of being silently ignored."""
    out = {}
    for name, value in given.items():
        if value is not None and selected not in uses[name]:
            allowed = " or ".join(f"{selector}={v!r}" for v in uses[name])
            raise ValueError(f"{name}: used only with {allowed}, but {name}={value!r} was given with "
                             f"{selector}={selected!r}; leave it out")
        out[name] = defaults[name] if value is None else value
    return out


_TINY_USES = {"blocks": ("static",), "steps": ("discrete",), "rtol": ("continuous",), "atol": ("continuous",),
              "method": ("continuous",), "adjoint": ("continuous",), "options": ("continuous",)}
_TINY_DEFAULTS = {"blocks": (32, 192, 192, 192, 192), "steps": 5, "rtol": 1e-3, "atol": 1e-3,
                  "method": "dopri5", "adjoint": False, "options": None}


def _check_common(wiring, steps, seed, backend) -> None:
    """The arguments both classifiers share (``kind`` is checked first, before its arguments are resolved;
    the solver's arguments by :class:`ContinuousTimeGraph`)."""
    check_choice("wiring", wiring, WIRINGS)
    check_int("steps", steps, 1)
    check_int("seed", seed, 0)
    check_choice("backend", backend, ("auto", "dense", "csr"))


class TinyClassifier(nn.Module):
    r"""The DNW tiny CIFAR-10 classifier (about 41k parameters): stem, one neural graph, central readout.

    .. math::
        \mathbf{X} = \mathrm{stem}(\text{image}) \in \mathbb{R}^{B \times 32 \times 8 \times 8}, \quad
        \mathbf{Z}_{\text{out}} = \mathrm{graph}(\mathbf{X}), \quad
        \hat{y} = \mathbf{W} \, \mathrm{mean}_{\text{centre}}(\mathbf{Z}_{\text{out}}) + \mathbf{b}

    * Stem: conv 3->16 3x3 stride 2, BN, ReLU, depthwise 3x3 stride 2, conv 1x1 16->32, BN
      (32x32 -> ``num_inputs`` channels at 8x8), one channel per input node.
    * ``kind="static"``: the candidates are ``blocked_dag(blocks)`` with the last ``num_outputs`` nodes as
      outputs, pruned to the edges that lie on an input-to-output path (:meth:`NeuralGraph.prune_useless`):
      the paper's reference code spends much of its budget on edges its forward pass never reads; here every
      candidate is usable.  Node op: InstanceNorm -> ReLU -> 3x3 depthwise conv.
    * ``kind="discrete"`` / ``"continuous"``: every directed edge of ``num_nodes`` nodes, self-loops
      included; inputs are the first ``num_inputs`` nodes, outputs the last ``num_outputs``.
      :math:`f` = ReLU -> 3x3 conv, :math:`g` = InstanceNorm; ``steps`` steps or an ODE on :math:`[0, 1]`.
    * Head: the output nodes are averaged over the central ``readout x readout`` region (default 4x4 of the
      8x8 map: the middle half of each side, away from the zero padding of the node convs), then
      ``Linear(num_outputs, num_classes)``.

    The edge budget follows the paper: ``k = round(density * num_nodes ** 2)`` (32,000 for 800 nodes at
    5%), capped at the number of candidates.  With the defaults the static DNW model counts 32,000 active
    edges + 708 live nodes x (9 conv + 2 instance-norm affine) + 1,184 stem + 1,010 head = 41,982
    parameters (:func:`neuralgraphs.analysis.count_parameters` at initialisation; the paper: about 41k).
    The 92 non-output nodes of the last block can never reach an output, so they are not live.

    The static graph follows the paper's description (a block feeds only later blocks; the last 100 nodes
    are the outputs, read after their node operation), not one detail of its 2019 reference code.  That code
    adds a readout pass in which all 192 nodes of the last block, after their node operation, feed the 100
    outputs, which are then read with no node operation of their own.  Those 19,200 extra entries of the
    800 x 800 matrix are why the reference reads 41.4 % of it (this candidate set is 38.4 % before pruning,
    29.7 % after), and why all 800 node convolutions count in the paper's parameter total.

    A kind-specific argument (``blocks``, ``steps``, the solver's) given for another kind raises a
    ``ValueError`` rather than being ignored.

    Fine-tuning and lottery tickets: train with ``wiring="dnw"``, then call
    :func:`neuralgraphs.wiring.freeze_wiring` on the model (``freeze_wiring(model)`` keeps the trained weights
    and fixes the learned edges; ``freeze_wiring(model, reset_to=initial_state_dict)`` also resets every weight
    to its initial value) and keep training.

    Args:
        kind: ``"static"``, ``"discrete"`` or ``"continuous"``.  (default: ``"static"``)
        wiring: ``"dnw"``, ``"random"``, ``"complete"`` or ``"no_update"``.  (default: ``"dnw"``)
        num_nodes: graph nodes; for ``"static"`` it must equal ``sum(blocks)``.  (default: ``800``)
        num_inputs: input nodes = stem output channels; for ``"static"`` it must equal ``blocks[0]``.
            (default: ``32``)
        num_outputs: output nodes read by the head.  (default: ``100``)
        density: edge budget as a fraction of ``num_nodes ** 2``.  (default: ``0.05``)
        blocks: block sizes of the static candidate DAG (``kind="static"`` only).
            (default: ``(32, 192, 192, 192, 192)``)
        steps: discrete-time steps :math:`T` (``kind="discrete"`` only).  (default: ``5``)
        method, rtol, atol, adjoint, options: the ODE solver (``kind="continuous"`` only).
            (default: ``"dopri5"``, ``1e-3``, ``1e-3``, :obj:`False`, :obj:`None`)
        in_channels: image channels.  (default: ``3``)
        num_classes: classes.  (default: ``10``)
        readout: side of the central square read by the head, :obj:`None` for the whole map.  (default: ``4``)
        seed: seed of the initial weights and of a random wiring.  (default: ``0``)
        backend: propagation backend.  (default: ``"auto"``)

    Shapes:
        input ``[B, in_channels, H, W]`` (32x32 for CIFAR-10); output ``[B, num_classes]``.
    """

    def __init__(self, kind: str = "static", wiring: str = "dnw", num_nodes: int = 800, num_inputs: int = 32,
                 num_outputs: int = 100, density: float = 0.05, blocks: Optional[Sequence[int]] = None,
                 steps: Optional[int] = None, rtol: Optional[float] = None, atol: Optional[float] = None,
                 method: Optional[str] = None, adjoint: Optional[bool] = None,
                 options: Optional[Dict[str, Any]] = None, in_channels: int = 3, num_classes: int = 10,
                 readout: Optional[int] = 4, seed: int = 0, backend: str = "auto") -> None:
        super().__init__()
        check_choice("kind", kind, KINDS)
        given = dict(blocks=blocks, steps=steps, rtol=rtol, atol=atol, method=method, adjoint=adjoint,
                     options=options)
        a = _only_for("kind", kind, _TINY_USES, given, _TINY_DEFAULTS)
        blocks, steps, rtol, atol, method, adjoint, options = (a[n] for n in given)
        _check_common(wiring, steps, seed, backend)
        for name, v in (("num_nodes", num_nodes), ("num_inputs", num_inputs), ("num_outputs", num_outputs),
                        ("in_channels", in_channels), ("num_classes", num_classes)):
            check_int(name, v, 1)
        _check_density(density)
        if readout is not None:
            check_int("readout", readout, 1)
        if num_inputs + num_outputs > num_nodes:
            raise ValueError(f"num_nodes: {num_nodes} nodes cannot hold {num_inputs} inputs and "
                             f"{num_outputs} separate outputs")
        if kind == "static":
            blocks = tuple(check_int(f"blocks[{i}]", b, 1) for i, b in enumerate(blocks))
            if sum(blocks) != num_nodes:
                raise ValueError(f"blocks: sizes sum to {sum(blocks)} but num_nodes is {num_nodes}")
            if blocks[0] != num_inputs:
                raise ValueError(f"blocks: the first block ({blocks[0]}) must be the {num_inputs} input nodes")
            if num_outputs > blocks[-1]:
                raise ValueError(f"num_outputs: {num_outputs} outputs do not fit in the last block ({blocks[-1]})")
        self.kind, self.wiring_name, self.readout = kind, wiring, readout
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False),
                nn.Conv2d(16, num_inputs, 1, bias=False), nn.BatchNorm2d(num_inputs))
            outputs = torch.arange(num_nodes - num_outputs, num_nodes)
            if kind == "static":
                graph = blocked_dag(list(blocks), outputs=outputs).prune_useless()
            else:
                graph = complete_graph(num_nodes, self_loops=True, inputs=torch.arange(num_inputs),
                                       outputs=outputs)
            k = edge_budget(density, num_nodes, graph.num_edges)
            self.graph = _build_graph_module(kind, graph, wiring, k, image=True, steps=steps, method=method,
                                             rtol=rtol, atol=atol, adjoint=adjoint, options=options, seed=seed,
                                             backend=backend)
            self.fc = nn.Linear(num_outputs, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"x: expected images [B, C, H, W], got "
                             f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        check_batch(x, self.stem[0].in_channels, self.graph.weight)
        z = self.graph(self.stem(x))
        return self.fc(center_mean(z, self.readout))


_DIGITS_USES = {"num_blocks": ("static",), "steps": ("discrete",), "method": ("continuous",),
                "rtol": ("continuous",), "atol": ("continuous",), "options": ("continuous",)}
_DIGITS_VERSION_USES = {"num_inputs": (True,), "num_outputs": (True,), "head": (False,)}
_DIGITS_DEFAULTS = {"num_blocks": 2, "steps": 3, "method": "rk4", "rtol": 1e-3, "atol": 1e-3, "options": None,
                    "num_inputs": 8, "num_outputs": 16, "head": "linear"}


class DigitsGraphClassifier(nn.Module):
    r"""A small neural-graph classifier for the bundled 8x8 digits (seconds per epoch on a CPU).

    * ``as_images=True``: a stem ``conv 1->num_inputs 3x3, BN`` keeps the 8x8 resolution; one channel per input
      node; the graph and its node ops are those of :class:`TinyClassifier`; the output nodes are averaged
      over the central 4x4 of the map and a linear layer gives the logits.
    * ``as_images=False`` ("beyond images"): the 64 pixels are the 64 input nodes with scalar features,
      ``num_nodes - 74`` hidden nodes and 10 output nodes.  Static nodes: BatchNorm -> per-node affine ->
      ReLU (:func:`~neuralgraphs.nodes.vector_node_op`); dynamic nodes: per-node affine -> tanh.  The output
      node states go through a ``Linear(10, 10)`` head (``head="linear"``), or are the logits themselves
      (``head="identity"``).

    Static candidates: the inputs, then the hidden nodes split in ``num_blocks`` equal blocks, then the
    outputs, each block feeding all later ones (pruned to useful edges).  Dynamic candidates: the complete
    graph with self-loops.  The budget is ``k = round(density * num_nodes ** 2)``, capped at the candidates.

    Args:
        kind: ``"static"``, ``"discrete"`` or ``"continuous"``.  (default: ``"static"``)
        wiring: ``"dnw"``, ``"random"``, ``"complete"`` or ``"no_update"``.  (default: ``"dnw"``)
        num_nodes: graph nodes.  (default: ``64`` for images, ``138`` for vectors)
        num_inputs: input nodes (image version only; the vector version has 64).  (default: ``8``)
        num_outputs: output nodes (image version only; the vector version has 10).  (default: ``16``)
        density: edge budget as a fraction of ``num_nodes ** 2``.  (default: ``0.15``)
        as_images: image or vector version.  (default: :obj:`True`)
        num_blocks: hidden blocks of the static graph (``kind="static"`` only).  (default: ``2``)
        steps: discrete-time steps (``kind="discrete"`` only).  (default: ``3``)
        method, rtol, atol, options: ODE solver (``kind="continuous"`` only).  (default: ``"rk4"`` with
            ``{"step_size": 0.5}``, rtol = atol = ``1e-3``)
        head: ``"linear"`` or ``"identity"`` (vector version only).  (default: ``"linear"``)
        seed: seed of the initial weights and of a random wiring.  (default: ``0``)
        backend: propagation backend.  (default: ``"auto"``)

    Shapes:
        input ``[B, 1, 8, 8]`` (images) or ``[B, 64]`` (vectors); output ``[B, 10]``.
    """

    def __init__(self, kind: str = "static", wiring: str = "dnw", num_nodes: Optional[int] = None,
                 num_inputs: Optional[int] = None, num_outputs: Optional[int] = None, density: float = 0.15,
                 as_images: bool = True, num_blocks: Optional[int] = None, steps: Optional[int] = None,
                 method: Optional[str] = None, rtol: Optional[float] = None, atol: Optional[float] = None,
                 options: Optional[Dict[str, Any]] = None, head: Optional[str] = None, seed: int = 0,
                 backend: str = "auto") -> None:
        super().__init__()
        check_choice("kind", kind, KINDS)
        if not isinstance(as_images, bool):
            raise TypeError(f"as_images: expected a bool, got {type(as_images).__name__}")
        given = dict(num_blocks=num_blocks, steps=steps, method=method, rtol=rtol, atol=atol, options=options)
        a = _only_for("kind", kind, _DIGITS_USES, given, _DIGITS_DEFAULTS)
        num_blocks, steps, method, rtol, atol, options = (a[n] for n in given)
        given = dict(num_inputs=num_inputs, num_outputs=num_outputs, head=head)
        a = _only_for("as_images", as_images, _DIGITS_VERSION_USES, given, _DIGITS_DEFAULTS)
        num_inputs, num_outputs, head = (a[n] for n in given)
        if options is None and method in ("rk4", "euler", "midpoint", "explicit_adams", "implicit_adams"):
            options = {"step_size": 0.5}
        _check_common(wiring, steps, seed, backend)
        check_choice("head", head, ("linear", "identity"))
        check_int("num_blocks", num_blocks, 1)
        _check_density(density)
        if not as_images:
            num_inputs, num_outputs = 64, 10
        check_int("num_inputs", num_inputs, 1)
        check_int("num_outputs", num_outputs, 1)
        if num_nodes is None:
            num_nodes = 64 if as_images else 138
        check_int("num_nodes", num_nodes, 1)
        hidden = num_nodes - num_inputs - num_outputs
        if hidden < (num_blocks if kind == "static" else 0):
            raise ValueError(f"num_nodes: {num_nodes} nodes leave {hidden} hidden nodes after {num_inputs} "
                             f"inputs and {num_outputs} outputs; need at least "
                             f"{num_blocks if kind == 'static' else 0}")
        self.kind, self.as_images = kind, as_images
        # Instance-normalised output maps (dynamic graphs) average to their bias over the whole map, so the
        # head reads the central half of the map, as in TinyClassifier.
        self.readout = 4 if as_images else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = (nn.Sequential(nn.Conv2d(1, num_inputs, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(num_inputs)) if as_images else nn.Identity())
            inputs = torch.arange(num_inputs)
            outputs = torch.arange(num_nodes - num_outputs, num_nodes)
            if kind == "static":
                base, extra = divmod(hidden, num_blocks)
                sizes = [num_inputs] + [base + (i < extra) for i in range(num_blocks)] + [num_outputs]
                graph = blocked_dag([s for s in sizes if s > 0]).prune_useless()
            else:
                graph = complete_graph(num_nodes, self_loops=True, inputs=inputs, outputs=outputs)
            k = edge_budget(density, num_nodes, graph.num_edges)
            self.graph = _build_graph_module(kind, graph, wiring, k, image=as_images, steps=steps, method=method,
                                             rtol=rtol, atol=atol, adjoint=False, options=options, seed=seed,
                                             backend=backend)
            self.fc = nn.Identity() if (head == "identity" and not as_images) else nn.Linear(num_outputs, 10)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a tensor, got {type(x).__name__}")
        expected = 4 if self.as_images else 2
        if x.dim() != expected:
            raise ValueError(f"x: expected {'[B, 1, 8, 8] images' if self.as_images else '[B, 64] vectors'}, "
                             f"got shape {list(x.shape)}")
        check_batch(x, 1 if self.as_images else self.graph.inputs.numel(), self.graph.weight)
        z = self.graph(self.stem(x))
        return self.fc(center_mean(z, self.readout))
