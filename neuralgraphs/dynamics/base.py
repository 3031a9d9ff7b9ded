"""Shared machinery of the graph modules: candidate weights, wiring, inputs and readout."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import networkx as nx
import torch
from torch import Tensor, nn

from neuralgraphs._checks import check_batch
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import check_num_nodes, maps_zero_to_zero
from neuralgraphs.propagate import BACKENDS, choose_backend
from neuralgraphs.wiring import ActiveEdges, Wiring, make_wiring


# Densities of active edges from which the graph modules multiply image states ([B, N, H, W], kept with the
# nodes innermost) with the dense backend under ``backend="auto"``.  The sparse product alone is faster at 5 %
# (on a node-major state), but a node-major image state makes every per-node 3x3 convolution 3x slower on
# CPU and costs layout conversions around it.  Measured on whole training steps of the tiny classifiers
# (800 nodes, 8x8, batch 8-128, benchmarks/tiny.py): dense with a channels-last state is as fast or up to
# 23 % faster from about 2 % density up, and CSR with a node-major state is faster below.  Other devices
# and vector features follow :func:`~neuralgraphs.propagate.choose_backend`.
IMAGE_CSR_MAX_DENSITY = {"cpu": 0.02}

#: Transforms of the candidate weights a graph module accepts (see ``weight_transform``).
WEIGHT_TRANSFORMS = (None, "sigmoid")


class WiredGraph(nn.Module):
    r"""Base class: a candidate graph, one learnable weight per candidate edge and a wiring.

    Subclasses implement ``forward``.  Node features travel as ``[B, N, *]`` tensors in whatever memory
    layout the last operation produced (channels-last from a depthwise convolution, node-major from the
    sparse graph product); :func:`~neuralgraphs.propagate.propagate` multiplies every layout in place, so no
    step copies the state only to reorder it.  Node operations see the usual ``[B, n, *]`` shape.

    **Initialisation.**  Every candidate weight is drawn from :math:`U(-1/\sqrt{f}, 1/\sqrt{f})`, where
    :math:`f` is the mean candidate in-degree of the target nodes: the default initialisation of the dense
    layer the candidates form (for the tiny classifiers of the 2019 code, ``nn.Conv2d``'s over the whole
    ``800 x 800`` matrix), whatever the budget.  Two reasons, both measured in ``benchmarks/fidelity.py``:

    * the top-k of a uniform sample all lie just below the bound, with many inactive candidates just under
      the threshold, so the straight-through gradient can swap edges from the first steps on;
    * a node operation that normalises its input makes the node's output independent of the scale of its
      incoming weights, and the straight-through gradient of an edge into it shrinks as those weights grow:
      the relative size of an update goes as :math:`1 / |w|^2`.

    Before, the weights were normal with the standard deviation of a fan-in over the *active* edges (1 at
    under one active edge per node), the k chosen ones sat in the tail at 2-3 standard deviations, and DNW
    swapped 0-15 of 80 edges per epoch: it was the "no update" baseline with a few late swaps.

    Args:
        graph: the candidate graph.
        node_op: node operation ``f`` called as ``node_op(x [B, n, *], nodes: slice)``.
        wiring: a :class:`~neuralgraphs.wiring.Wiring` or a name (``"dnw"``, ``"random"``, ``"complete"``,
            ``"no_update"``).  (default: ``"dnw"``)
        k, density, scope, seed: the budget and seed for a wiring given by name (``"complete"`` takes no
            budget: giving one raises an error rather than being ignored).
        weight_transform: :obj:`None` (the weights are used as they are) or ``"sigmoid"`` (each edge
            weighs :math:`\sigma(w) > 0`, RandWire's positive aggregation weights; they start at
            :math:`\sigma(0) = 1/2`).  (default: :obj:`None`)
        backend: propagation backend, ``"auto"``, ``"dense"`` or ``"csr"``.  ``"auto"`` decides per product
            by the density of active edges; for image features ``[B, N, H, W]`` on CPU it takes the dense
            product, with the state channels-last, from 2 % up (see ``IMAGE_CSR_MAX_DENSITY``).
            (default: ``"auto"``)
    """

    def __init__(self, graph: NeuralGraph, node_op: nn.Module, wiring: Union[str, Wiring, None] = "dnw", *,
                 k: Optional[int] = None, density: Optional[float] = None, scope: str = "global",
                 seed: int = 0, backend: str = "auto", weight_transform: Optional[str] = None) -> None:
        super().__init__()
        if weight_transform not in WEIGHT_TRANSFORMS:
            raise ValueError(f"weight_transform: expected one of {WEIGHT_TRANSFORMS}, got {weight_transform!r}")
        self.weight_transform = weight_transform
        if not isinstance(graph, NeuralGraph):
            raise TypeError(f"graph: expected a NeuralGraph, got {type(graph).__name__}")
        if not isinstance(node_op, nn.Module):
            raise TypeError(f"node_op: expected an nn.Module called as op(x, nodes), got {type(node_op).__name__}")
        # otherwise a node op built for another node count fails only at the first forward
        check_num_nodes(node_op, graph.num_nodes, "node_op")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        if graph.inputs.numel() == 0:
            raise ValueError("graph: has no input nodes; pass inputs= when building the graph")
        if graph.outputs.numel() == 0:
            raise ValueError("graph: has no output nodes; pass outputs= when building the graph")
        self.graph = graph
        self.node_op = node_op
        self.wiring = make_wiring(wiring, graph, k=k, density=density, scope=scope, seed=seed)
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(graph.num_edges))
        self.register_buffer("edge_index", graph.edge_index.clone(), persistent=False)
        self.register_buffer("inputs", graph.inputs.clone(), persistent=False)
        self.register_buffer("outputs", graph.outputs.clone(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Candidate weights :math:`U(-1/\sqrt{f}, 1/\sqrt{f})` with :math:`f` the mean candidate in-degree
        (see the class docstring), and node ops reset."""
        if self.weight_transform == "sigmoid":
            nn.init.zeros_(self.weight)  # RandWire: every aggregation weight starts at sigmoid(0) = 1/2
        else:
            bound = self.initial_bound()
            nn.init.uniform_(self.weight, -bound, bound)
        for m in self.node_op.modules():
            if m is not self.node_op and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def initial_bound(self) -> float:
        r""":math:`1/\sqrt{f}`, :math:`f` the mean candidate in-degree of the nodes with candidates in."""
        fan_in = max(1.0, self.graph.num_edges / max(1, int((self.graph.in_degree() > 0).sum())))
        return 1.0 / math.sqrt(fan_in)

    @property
    def silences_unreached(self) -> bool:
        """Whether a node that no input reaches through the active edges outputs zeros whatever its
        operations map a zero input to (the static and discrete-time graphs mask such nodes; otherwise it
        holds when the operations map zeros to zeros)."""
        return all(maps_zero_to_zero(op) for op in (self.node_op, getattr(self, "post_op", None)) if op is not None)

    @property
    def weight_grad(self) -> str:
        return "all" if self.wiring.straight_through else "active"

    def edge_weights(self) -> Tensor:
        """The weight of every candidate as the products use it: ``weight``, or its sigmoid with
        ``weight_transform="sigmoid"``."""
        return torch.sigmoid(self.weight) if self.weight_transform == "sigmoid" else self.weight

    def active(self) -> ActiveEdges:
        """Select this step's active edges (once per forward), on :meth:`edge_weights`."""
        return self.wiring(self.edge_weights())

    def _backend_for(self, num_active: int, num_out: int, num_in: int, x: Tensor) -> str:
        """The backend of one product of this forward (the module's ``backend`` unless ``"auto"``)."""
        if self.backend != "auto":
            return self.backend
        limit = IMAGE_CSR_MAX_DENSITY.get(x.device.type) if x.dim() >= 4 else None
        return choose_backend(num_active, num_out, num_in, x.device, csr_max_density=limit)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a tensor, got {type(x).__name__}")
        n_in = self.inputs.numel()
        if x.dim() < 2 or x.size(1) != n_in:
            raise ValueError(f"x: expected shape [B, {n_in}, *] (one channel per input node), got {list(x.shape)}")
        check_batch(x, n_in, self.weight)

    def _initial_state(self, x: Tensor, node_major: bool) -> Tensor:
        """State ``[B, N, *]``: the input on the input nodes, zeros elsewhere.  Laid out node-major (the
        sparse product's output layout) or with the nodes innermost (the dense product's, for inputs from a
        channels-last node operation), so that the solver's arithmetic on states and derivatives runs on
        tensors of one layout."""
        b, rest, n = x.size(0), tuple(x.shape[2:]), self.graph.num_nodes
        if node_major:
            z = x.new_zeros((n, b) + rest).transpose(0, 1)
        else:
            z = x.new_zeros((b,) + rest + (n,)).movedim(-1, 1)
        z[:, self.inputs] = x
        return z

    def active_graph(self, use_labels: bool = True) -> nx.DiGraph:
        """The candidate graph as networkx with edge attributes ``weight`` and ``active`` (current selection)."""
        with torch.no_grad():
            a = self.active()
        return self.graph.to_networkx(weight=self.edge_weights(), active=a.mask, use_labels=use_labels)

    def num_active_edges(self) -> int:
        return self.wiring.num_active

    # ------------------------------------------------------------------------- counting protocol
    @property
    def evaluations(self) -> int:
        """Graph products (and node-operation calls) per forward: 1 for a static graph."""
        return 1

    def node_shape(self, input_shape: Sequence[int]) -> Tuple[int, ...]:
        """Shape of one node's features for a module input of ``input_shape`` (``[B, n, *]``)."""
        return tuple(input_shape[2:])

    def extra_macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-adds the module computes outside its graph products and node operations, per sample, for
        an input of ``input_shape`` (none for a plain graph module)."""
        return 0

    def extra_repr(self) -> str:
        return (f"num_nodes={self.graph.num_nodes}, candidates={self.graph.num_edges}, "
                f"active={self.wiring.num_active}, backend={self.backend!r}")
