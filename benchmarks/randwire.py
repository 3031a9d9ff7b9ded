"""One RandWire stage on the library's core against node-by-node execution, forward + backward.

The stage is the small regime's first random stage: C = 78, WS(4, 0.75), N = 32 nodes, input
``[B, 78, 56, 56]`` -> output ``[B, 78, 28, 28]``, training mode (batch statistics).  ``ours_s`` is
:class:`~neuralgraphs.models.RandWireStage`: a static graph module of C-channel nodes, one graph product and
one call of the node operation (one grouped depthwise conv, one grouped 1x1 conv and one batch norm for all
nodes of the level) per topological level.  ``reference_s`` is written here and runs the stage node by node,
as every public RandWire implementation does: for each node in topological order, the sigmoid-weighted sum
of its predecessors' outputs, then ReLU, its own 3x3 depthwise and 1x1 convolutions and its own batch norm.
Both use the same parameters; outputs and gradients are checked equal before timing.

    python benchmarks/randwire.py [--quick] [--json PATH] [--threads T] [--device cpu|cuda]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import networkx as nx  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _common import environment, make_row, parse_args, print_table, repeats_for, time_call, \
    time_side_by_side, write_json  # noqa: E402
from neuralgraphs.generators.random_graphs import random_dag  # noqa: E402
from neuralgraphs.models import RandWireStage  # noqa: E402

C, N, SIZE = 78, 32, 56


def node_by_node(stage: RandWireStage, dag: nx.DiGraph, x: torch.Tensor) -> torch.Tensor:
    """The stage computed one node at a time from its parameters (see the module docstring)."""
    new = {orig: i for i, orig in enumerate(stage.graph.node_labels)}
    n_src = stage.inputs.numel()
    cand = {tuple(e): i for i, e in enumerate(stage.graph.edge_index.t().tolist())}
    w_edge, w_in = torch.sigmoid(stage.weight), stage.input_weights()
    src_op, inner = stage.source_op, stage.node_op[0].ops[1]
    z = {}
    for v in nx.topological_sort(dag):
        j = new[v]
        preds = list(dag.predecessors(v))
        if not preds:
            a, conv, norm, row, stride = w_in[j] * x, src_op[1], src_op[2], j, stage.stride
        else:
            a = sum(w_edge[cand[(new[u], j)]] * z[u] for u in preds)
            conv, norm, row, stride = inner[1], inner[2], j - n_src, 1
        h = F.conv2d(F.relu(a), conv.depthwise[row], stride=stride, padding=1, groups=a.size(1))
        h = F.conv2d(h, conv.pointwise[row])
        z[v] = F.batch_norm(h, norm.running_mean[row], norm.running_var[row], norm.weight[row], norm.bias[row],
                            True, 0.1, 1e-5)
    sinks = [v for v in dag.nodes if dag.out_degree(v) == 0]
    return sum(z[v] for v in sinks) / len(sinks)


def _step(fn, stage, x):
    def run():
        stage.zero_grad(set_to_none=True)
        x.grad = None
        y = fn(x)
        y.square().mean().backward()
        return y.detach()
    return run


def _check_equal(stage, dag, x) -> float:
    outs = {}
    for name, fn in (("ours", stage), ("reference", lambda t: node_by_node(stage, dag, t))):
        y = _step(fn, stage, x)()
        outs[name] = [y, x.grad.clone()] + [p.grad.clone() for p in stage.parameters()]
    err = 0.0
    for a, b in zip(outs["ours"], outs["reference"]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
        err = max(err, float((a - b).abs().max()))
    return err


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    device = args.device
    batches = (4, 16) if args.quick else (4, 16, 32, 64)
    dag = random_dag("ws", N, 0, k=4, p=0.75)
    stage = RandWireStage(dag, C, C, stride=2, seed=0).to(device).train()
    rows = []
    for b in batches:
        x = torch.randn(b, C, SIZE, SIZE, device=device, requires_grad=True)
        err = _check_equal(stage, dag, x)
        fns = {"ours": _step(stage, stage, x), "reference": _step(lambda t: node_by_node(stage, dag, t), stage, x)}
        once = time_call(fns["reference"], device)
        budget = 6.0 if args.quick else 20.0
        reps = repeats_for(2 * once, budget, lo=3, hi=10 if args.quick else 15)
        t = time_side_by_side(fns, device, repeats=reps, warmup=1)
        rows.append(make_row(f"ws(4,0.75) N={N} C={C} 28x28 B={b} fwd+bwd", t["ours"], t["reference"],
                             batch=b, levels=stage.num_levels, edges=stage.num_edges, max_abs_diff=err,
                             repeats=reps, **environment(device)))
        print_table(rows[-1:], ["case", "ours_s", "reference_s", "speedup", "max_abs_diff"])
    print_table(rows, ["case", "ours_s", "reference_s", "speedup", "levels", "threads", "device"],
                title="RandWire stage: level by level on the core (ours) vs node by node (reference)")
    if args.json:
        write_json(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
