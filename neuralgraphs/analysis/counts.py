r"""What a wired network really uses: effective edges, live nodes, parameters and multiply-adds.

Under the current selection of a graph module (:class:`~neuralgraphs.dynamics.WiredGraph`):

* a node **carries a signal** when it is reachable from an input node through active edges.  The static
  and discrete-time graphs output zeros at every other node, and so does any graph whose operations map
  zero inputs to zeros (``maps_zero_to_zero``, as the instance norm does); in a continuous-time graph whose
  operations do not (a bias, a batch norm), any node carries a signal: it outputs :math:`f(0) \ne 0` with
  no input;
* an active edge :math:`u \to v` is **effective** when :math:`u` carries a signal and :math:`v` reaches an
  output node through active edges: only those edges can change the output, whatever the parameters;
* a node is **live** when it carries a signal and is an output node or the source of an effective edge:
  only those nodes must be computed at inference (the paper's FLOP rule, "dead nodes cost nothing").

Counts then follow the paper: candidate-edge weights count as the number of active edges, per-node
parameters of the node operations count for live nodes only, everything else in full.  Multiply-adds count
one per effective edge and element of a node's features for each graph product, the node operations of live
nodes, what a graph module declares it computes outside its graph (``extra_macs``: a RandWire stage's
sources and output average), and every ``nn.Conv2d`` / ``nn.Linear`` outside the node operations.

One counting protocol serves every model: a wired module exposes ``graph``, ``weight``, ``wiring`` and
``active()``; a graph module also ``node_op`` (and a dynamic one ``post_op``), whose costs per node the
operations declare themselves (:func:`~neuralgraphs.nodes.node_macs`, :func:`~neuralgraphs.nodes.node_parameters`),
plus ``evaluations`` (graph products per forward), ``node_shape(input_shape)``, ``extra_macs(input_shape)`` and
``input_op`` (a node operation on the input nodes run before the graph, counted for live input nodes).
Sparse layers count their active weights; a module may declare its own costs (``declared_macs(output)``,
``declared_parameters()``), as the compact inference layers do.

For the default static DNW :class:`~neuralgraphs.models.TinyClassifier` at initialisation
:func:`count_parameters` gives 32,000 active edges + 708 live nodes x (9 node-conv weights + 2 instance-norm
affine parameters) + 1,184 stem + 1,010 head = 41,982 (the paper: "about 41k"; the 92 non-output nodes of
the last block never reach an output and are not live).  All 32,000 active edges are effective, and every
live node is reached from the stem's 32 input nodes.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import node_macs, node_parameters


def _is_wired_layer(m: nn.Module) -> bool:
    """A convolution or linear layer whose weights a wiring selects (a sparse layer): counted as the layer,
    with its active weights, not as a graph (its bipartite graph would only be built to be thrown away)."""
    return isinstance(m, (nn.Conv2d, nn.Linear)) and isinstance(getattr(m, "wiring", None), nn.Module)


def _is_wired(m: nn.Module) -> bool:
    return (not _is_wired_layer(m) and isinstance(getattr(m, "graph", None), NeuralGraph)
            and isinstance(getattr(m, "wiring", None), nn.Module) and callable(getattr(m, "active", None)))


def _kept_weights(m: nn.Module) -> int:
    with torch.no_grad():
        return int(m.active().mask.sum())


def _graph_modules(model: nn.Module) -> List[nn.Module]:
    """The wired modules of ``model`` (the outermost ones: a wired module inside another is the other's)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    found, inside = [], set()
    for m in model.modules():
        if id(m) in inside or not _is_wired(m):
            continue
        found.append(m)
        inside.update(id(sub) for sub in m.modules())
    return found


def _single_graph(module: nn.Module) -> nn.Module:
    graphs = _graph_modules(module)
    if len(graphs) != 1:
        raise ValueError(f"module: expected a graph module (or a model holding exactly one), "
                         f"found {len(graphs)} graph modules")
    return graphs[0]


def _node_ops(g: nn.Module) -> List[nn.Module]:
    return [op for op in (getattr(g, "node_op", None), getattr(g, "post_op", None)) if isinstance(op, nn.Module)]


def _input_op(g: nn.Module):
    """A graph module's ``input_op``: a node operation over its input nodes that runs on the module's input
    before the graph (a MobileNet graph's strided depthwise convolutions), or :obj:`None`."""
    op = getattr(g, "input_op", None)
    return op if isinstance(op, nn.Module) else None


def _reachable(num_nodes: int, src: np.ndarray, dst: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Boolean mask of nodes reachable from ``start`` along ``src -> dst`` edges (start nodes included)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order

    # A virtual root (node num_nodes) linked to every start node turns this into one single-source search.
    rows = np.concatenate([src, np.full(start.size, num_nodes)])
    cols = np.concatenate([dst, start])
    adj = sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(num_nodes + 1,) * 2)
    order = breadth_first_order(adj, num_nodes, directed=True, return_predecessors=False)
    mask = np.zeros(num_nodes + 1, dtype=bool)
    mask[order] = True
    return mask[:num_nodes]


def _active_mask(g: nn.Module) -> Tensor:
    with torch.no_grad():
        return g.active().mask.detach().cpu()


def _analyse(g: nn.Module):
    """``(active mask [E], effective mask [E], live mask [N])`` of one wired module."""
    n = g.graph.num_nodes
    active = _active_mask(g)
    src, dst = g.graph.edge_index[:, active].numpy()
    inputs, outputs = g.graph.inputs.numpy(), g.graph.outputs.numpy()
    if getattr(g, "silences_unreached", False):
        fwd = _reachable(n, src, dst, inputs)
    else:  # a node without input still outputs f(0), which need not be zero
        fwd = np.ones(n, dtype=bool)
    bwd = _reachable(n, dst, src, outputs)
    eff_active = fwd[src] & bwd[dst]
    effective = torch.zeros_like(active)
    effective[active.nonzero().view(-1)[torch.from_numpy(eff_active)]] = True
    has_out = np.zeros(n, dtype=bool)
    has_out[src[eff_active]] = True
    is_out = np.zeros(n, dtype=bool)
    is_out[outputs] = True
    live = torch.from_numpy(fwd & (has_out | is_out))
    return active, effective, live


def effective_edge_mask(module: nn.Module) -> Tensor:
    """Boolean ``[E]`` mask (candidate order of ``module.graph``) of the effective edges of a graph module.

    Args:
        module: a wired module (a graph module, a stage), or a model holding exactly one.

    Returns:
        Tensor: ``True`` for active edges from a node that carries a signal (see the module docstring) to
        one that reaches an output through active edges.
    """
    return _analyse(_single_graph(module))[1]


def effective_edges(module: nn.Module) -> int:
    """Number of effective edges (see the module docstring) under the current selection.

    Args:
        module: a wired module, or any model (summed over its wired modules).

    Returns:
        int: the number of effective edges.
    """
    return sum(int(_analyse(g)[1].sum()) for g in _graph_modules(module))


def live_nodes(module: nn.Module) -> Tensor:
    """Boolean ``[N]`` mask of the nodes that must be computed under the current selection.

    A node is live when it carries a signal (see the module docstring) and is an output node or has at least
    one outgoing effective edge.  Node ids are those of ``module.graph`` (a static graph module
    renumbers nodes by level; ``module.graph.node_labels`` names the original nodes).

    Args:
        module: a wired module, or a model holding exactly one.

    Returns:
        Tensor: boolean mask over nodes.
    """
    return _analyse(_single_graph(module))[2]


def count_parameters(model: nn.Module, effective: bool = True) -> int:
    """Parameters of ``model``.

    With ``effective=True`` each wired module's candidate weights count as its number of **active** edges
    (not candidates; a sparse layer's weights as its active weights), the per-node parameters of its node
    operations count only for live nodes (see :func:`live_nodes` and
    :func:`~neuralgraphs.nodes.node_parameters`), a module that declares ``declared_parameters()`` (as the
    compact layers do) counts what it declares, and every other parameter counts in full.  With
    ``effective=False`` it is the plain number of stored parameters.

    Args:
        model: any module.
        effective: count as deployed (default) or as stored.  (default: :obj:`True`)

    Returns:
        int: the parameter count.
    """
    if not isinstance(effective, bool):
        raise TypeError(f"effective: expected a bool, got {type(effective).__name__}")
    graphs = _graph_modules(model)
    if not effective:
        return sum(p.numel() for p in model.parameters())
    seen = set()
    total = 0
    for g in graphs:
        seen.add(id(g.weight))
        total += int(g.wiring.num_active)
        live = _analyse(g)[2]
        parts = [(op, g.graph.num_nodes, live) for op in _node_ops(g)]
        if _input_op(g) is not None:
            parts.append((_input_op(g), int(g.graph.inputs.numel()), live[g.graph.inputs]))
        for op, n, alive in parts:
            if any(id(p) in seen for p in op.parameters()):
                continue  # shared with another graph module, counted there
            per, shared = node_parameters(op, n)
            total += int(per[alive].sum()) + shared
            seen.update(id(p) for p in op.parameters())
    for m in model.modules():
        if _is_wired_layer(m) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            total += _kept_weights(m)
        elif callable(getattr(m, "declared_parameters", None)) and not any(id(p) in seen for p in m.parameters()):
            seen.update(id(p) for p in m.parameters())
            total += int(m.declared_parameters())
    total += sum(p.numel() for p in model.parameters() if id(p) not in seen)
    return total


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass of ``model`` on one sample of shape ``input_shape``.

    Runs one forward pass (batch of one, zeros, eval mode, no gradients) and counts:

    * every ``nn.Conv2d`` / ``nn.Linear`` that is not part of a node operation (forward hooks):
      ``out_elements * in_channels / groups * kh * kw`` and ``out_features * in_features``; a sparse layer
      (:mod:`neuralgraphs.sparse`) as its output positions per channel times its active weights; a module
      that declares its cost (``declared_macs(output)``, as the compact layers do) as it declares;
    * each graph product of a wired module as ``effective edges x elements of a node's features``, times the
      module's ``evaluations`` (1 for a static graph, ``steps`` for a discrete-time graph, the solver's
      function evaluations for a continuous-time graph);
    * the node operations (``node_op``, and ``post_op`` of dynamic graphs) of live nodes only, with the same
      multiplicity, as the operations declare them (:func:`~neuralgraphs.nodes.node_macs`);
    * a graph module's ``input_op`` (a node operation on its input nodes, run on the module's input before
      the graph) for live input nodes, once;
    * what a module declares it computes outside its graph (``extra_macs``).

    Args:
        model: the model.
        input_shape: shape of one sample without the batch dimension, e.g. ``(3, 32, 32)``.

    Returns:
        int: multiply-adds per sample.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"input_shape: expected a sequence of ints, got {input_shape!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape: expected positive sizes without the batch dimension, got {shape}")
    graphs = _graph_modules(model)
    in_node_ops = {id(m) for g in graphs for op in _node_ops(g) + [_input_op(g)] if op is not None
                   for m in op.modules()}
    counts: Dict[str, int] = {"dense": 0}
    graph_inputs: Dict[int, Tuple[int, ...]] = {}
    hooks = []

    # Each weight w[o, ...] is one multiply-add at every output position of channel o: a layer costs its
    # output positions per channel times its (active) weights.
    def conv_hook(m: nn.Conv2d, inp, out) -> None:
        weights = _kept_weights(m) if _is_wired_layer(m) else m.weight.numel()
        counts["dense"] += out.numel() // out.size(0) // m.out_channels * weights

    def linear_hook(m: nn.Linear, inp, out) -> None:
        weights = _kept_weights(m) if _is_wired_layer(m) else m.weight.numel()
        counts["dense"] += out.numel() // (out.size(0) if out.dim() > 1 else 1) // m.out_features * weights

    def graph_hook(m: nn.Module, inp, out) -> None:
        graph_inputs[id(m)] = tuple(inp[0].shape)

    def declared_hook(m: nn.Module, inp, out) -> None:
        counts["dense"] += int(m.declared_macs(out))

    for g in graphs:
        hooks.append(g.register_forward_hook(graph_hook))
    for m in model.modules():
        if id(m) in in_node_ops:
            continue
        if callable(getattr(m, "declared_macs", None)):
            hooks.append(m.register_forward_hook(declared_hook))
        elif isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    param = next(model.parameters(), None)
    x = torch.zeros((1,) + shape, dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = counts["dense"]
    for g in graphs:
        if id(g) not in graph_inputs:
            continue  # not used by this forward
        x_shape = graph_inputs[id(g)]
        node_shape = tuple(g.node_shape(x_shape)) if hasattr(g, "node_shape") else x_shape[2:]
        _, effective, live = _analyse(g)
        per_eval = int(effective.sum()) * math.prod(node_shape)
        for op in _node_ops(g):
            macs, _ = node_macs(op, g.graph.num_nodes, node_shape)
            per_eval += int(macs[live].sum())
        total += int(getattr(g, "evaluations", 1)) * per_eval
        if _input_op(g) is not None:
            macs, _ = node_macs(_input_op(g), int(g.graph.inputs.numel()), x_shape[2:])
            total += int(macs[live[g.graph.inputs]].sum())
        if hasattr(g, "extra_macs"):
            total += int(g.extra_macs(x_shape))
    return int(total)
