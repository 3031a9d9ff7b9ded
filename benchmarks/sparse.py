"""Sparse networks: the cost of DNW's selection in a training step, and compact inference against the dense
masked forward.

(a) ``select-*``: ResNet-50 v1.5 at full width, sparsified at 10 % (``uniform``: one top-k per layer;
    ``global``: one top-k over all 25.5M weights), first layer dense.  ``ours_s`` is the selection alone
    (every sparse layer's wiring on its weights, right after an SGD step moved them, as in training);
    ``reference_s`` is one whole CPU training step of the same sparse model (forward, cross-entropy,
    backward, ``SGD(momentum=0.9)``), selection included.  ``select_fraction = ours_s / reference_s`` (target:
    under 5 %); ``speedup`` is its inverse and has no meaning of its own here.
(b) ``compact-*``: inference of ``compact(model, example_input)`` (each layer in its fastest form, timed on
    its own input; ``neuralgraphs.sparse.compact``) against the dense masked forward of the same model: the
    sparsified model in eval mode, which selects its top-k in every layer and runs the dense convolutions
    with the masked weights, as the 2019 code and the mask-based sparse-training libraries do.  The column
    ``baked_s`` is a third variant, dense convolutions with the masks already applied (no selection): the
    part of the gain that is the sparse kernels alone is ``speedup_vs_baked = baked_s / ours_s``.  ResNet-50
    at full width, 224 x 224, density 5 / 10 / 20 % (all layers but the first), batch 1 and 32; targets on CPU:
    at least 3x at 5 %, faster than dense masked at 20 %.  The weights are the initial ones (random masks of
    the magnitudes): the forms' speed depends on how many weights are kept and on dead channels, and random
    weights have none of the latter.
(c) ``compact-tiny``: the DNW tiny CIFAR classifier (800 nodes, 32,000 edges, static) after a few training
    steps, compacted (its wiring frozen: no selection at inference) against its own eval forward.

``--quick``: selection at 112 x 112 and batch 2; compact at 5 % and 20 %, batch 1 only; the tiny row.

Run ``python benchmarks/sparse.py [--quick] [--json PATH] [--threads T]``.
"""

from __future__ import annotations

import copy

import _common as common  # first: puts the repository on sys.path
import torch
import torch.nn.functional as F

from neuralgraphs.models import TinyClassifier, resnet50
from neuralgraphs.sparse import CompactConv2d, CompactLinear, SparseLayer, compact, sparsify

NUM_CLASSES = 1000


def _select_all(model) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SparseLayer):
                m.wiring.masked(m.weight)


def selection_rows(args, size: int, batch: int):
    rows = []
    for budget in ("uniform", "global"):
        torch.manual_seed(0)
        model = sparsify(resnet50(NUM_CLASSES), 0.1, budget=budget, dense_first=True).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch, 3, size, size)
        y = torch.randint(0, NUM_CLASSES, (batch,))

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        def select():
            if budget == "global":  # the model's pre-hook would make it select again at the next forward
                for m in model.modules():
                    if isinstance(m, SparseLayer):
                        m.wiring.selection.invalidate()
                        break
            _select_all(model)

        step()  # warm-up: page faults, the selection hints
        reps = 2 if args.quick else 4
        sel, total = [], []
        for _ in range(reps):
            total.append(common.time_call(step, args.device))
            sel.append(common.time_call(select, args.device))
        ours, ref = sorted(sel)[len(sel) // 2], sorted(total)[len(total) // 2]
        rows.append(common.make_row(f"select-{budget} resnet50 10% {size}x{size} B={batch}", ours, ref,
                                    select_fraction=ours / ref, batch=batch, density=0.1,
                                    **common.environment(args.device)))
        common.print_table(rows[-1:], ["case", "ours_s", "reference_s", "select_fraction"])
    return rows


def _forms(model):
    counts = {}
    for m in model.modules():
        if isinstance(m, (CompactConv2d, CompactLinear)):
            counts[m.form] = counts.get(m.form, 0) + 1
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


def compact_rows(args, densities, batches):
    rows = []
    for density in densities:
        torch.manual_seed(0)
        model = sparsify(resnet50(NUM_CLASSES), density, dense_first=True).eval()
        baked = compact(model, exportable=True, csr_density=0.0)  # the masks applied, every layer dense
        for batch in batches:
            x = torch.randn(batch, 3, 224, 224)
            small = compact(model, x)
            with torch.no_grad():
                err = float((small(x) - model(x)).abs().max())
                fns = {"ours": lambda: small(x), "reference": lambda: model(x), "baked": lambda: baked(x)}
                reps = 3 if batch > 1 or args.quick else 7
                t = common.time_side_by_side(fns, args.device, repeats=reps, warmup=1)
            rows.append(common.make_row(f"compact resnet50 {int(density * 100)}% B={batch}", t["ours"],
                                        t["reference"], density=density, batch=batch, baked_s=t["baked"],
                                        speedup_vs_baked=t["baked"] / t["ours"], forms=_forms(small),
                                        max_abs_diff=err, **common.environment(args.device)))
            common.print_table(rows[-1:], ["case", "ours_s", "reference_s", "speedup", "speedup_vs_baked", "forms"])
    return rows


def tiny_row(args):
    torch.manual_seed(0)
    model = TinyClassifier("static")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(32, 3, 32, 32)
    y = torch.randint(0, 10, (32,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    small = compact(model)
    rows = []
    for batch in (1, 32):
        xb = x[:batch]
        with torch.no_grad():
            err = float((small(xb) - model(xb)).abs().max())
            t = common.time_side_by_side({"ours": lambda: small(xb), "reference": lambda: model(xb)}, args.device,
                                         repeats=5 if args.quick else 15, warmup=1)
        rows.append(common.make_row(f"compact-tiny static 800 nodes 5% B={batch}", t["ours"], t["reference"],
                                    density=0.05, batch=batch, max_abs_diff=err, **common.environment(args.device)))
        common.print_table(rows[-1:], ["case", "ours_s", "reference_s", "speedup"])
    return rows


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    if args.device.type != "cpu":
        raise SystemExit("--device: this benchmark measures CPU forms (CSR on CPU); run it with --device cpu")
    rows = []
    rows += selection_rows(args, 112 if args.quick else 224, 2 if args.quick else 8)
    rows += compact_rows(args, (0.05, 0.2) if args.quick else (0.05, 0.1, 0.2), (1,) if args.quick else (1, 32))
    rows += tiny_row(args)
    common.print_table(rows, ["case", "ours_s", "reference_s", "speedup", "select_fraction", "speedup_vs_baked",
                              "forms", "threads"], title="Sparse networks: selection cost and compact inference")
    if args.json:
        common.write_json(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
