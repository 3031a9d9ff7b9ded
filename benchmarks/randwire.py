"""Level-batched against node-by-node execution of one RandWire stage, forward + backward.

The stage is the small regime's first random stage: C = 78, WS(4, 0.75), N = 32 nodes, input
``[B, 78, 56, 56]`` -> output ``[B, 78, 28, 28]``, training mode (batch statistics).  ``ours_s`` is the
``"level"`` schedule (one propagate call, one grouped depthwise conv, one grouped 1x1 conv and one BN per
topological level), ``reference_s`` the ``"node"`` schedule (node by node, as every public RandWire
implementation runs).  Both use the same parameters; outputs and gradients are checked equal before timing.

    python benchmarks/randwire.py [--quick] [--json PATH] [--threads T] [--device cpu|cuda]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _common import environment, make_row, parse_args, print_table, repeats_for, time_call, \
    time_side_by_side, write_json  # noqa: E402
from neuralgraphs.generators.random_graphs import random_dag  # noqa: E402
from neuralgraphs.models.randwire import RandWireStage  # noqa: E402

C, N, SIZE = 78, 32, 56


def _step(stage, x, schedule):
    def run():
        stage.zero_grad(set_to_none=True)
        x.grad = None
        y = stage(x, schedule=schedule)
        y.square().mean().backward()
        return y.detach()
    return run


def _check_equal(stage, x) -> float:
    outs = {}
    for schedule in ("level", "node"):
        y = _step(stage, x, schedule)()
        outs[schedule] = (y, x.grad.clone(), [p.grad.clone() for p in stage.parameters()])
    err = 0.0
    for a, b in zip([outs["level"][0], outs["level"][1], *outs["level"][2]],
                    [outs["node"][0], outs["node"][1], *outs["node"][2]]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
        err = max(err, float((a - b).abs().max()))
    return err


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    device = args.device
    batches = (4, 16) if args.quick else (4, 16, 32, 64)
    dag = random_dag("ws", N, 0, k=4, p=0.75)
    stage = RandWireStage(dag, C, C, stride=2, seed=0).to(device).train()
    levels = int(stage.levels.max()) + 1
    rows = []
    for b in batches:
        x = torch.randn(b, C, SIZE, SIZE, device=device, requires_grad=True)
        err = _check_equal(stage, x)
        fns = {"level": _step(stage, x, "level"), "node": _step(stage, x, "node")}
        once = time_call(fns["node"], device)
        budget = 6.0 if args.quick else 20.0
        reps = repeats_for(2 * once, budget, lo=3, hi=10 if args.quick else 15)
        t = time_side_by_side(fns, device, repeats=reps, warmup=1)
        rows.append(make_row(f"ws(4,0.75) N={N} C={C} 28x28 B={b} fwd+bwd", t["level"], t["node"],
                             batch=b, levels=levels, edges=stage.num_edges, max_abs_diff=err,
                             repeats=reps, **environment(device)))
        print_table(rows[-1:], ["case", "ours_s", "reference_s", "speedup", "max_abs_diff"])
    print_table(rows, ["case", "ours_s", "reference_s", "speedup", "levels", "threads", "device"],
                title="RandWire stage: level schedule (ours) vs node by node (reference)")
    if args.json:
        write_json(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
