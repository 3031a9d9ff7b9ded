"""Train-step throughput of the MobileNetV1 x0.225 DNW chain against a 2019-style dense masked reference,
and inference of the compacted chain against the reference's dense masked forward.

Ours: ``MobileNetV1Graphs(width=0.225, wiring="dnw")`` (five static graphs on the library's core: one
selection per graph per forward on the candidate weights, level by level over the sub-layer blocks, sparse
or dense products chosen by density).

Reference, written here to behave like the 2019 code: each graph holds a dense ``[N, N]`` weight over its
nodes (zero outside the candidates, which a fixed mask keeps), and **every forward** takes a full
``torch.sort`` of the candidates' ``|w|``, keeps the top ``k`` as a straight-through mask, and runs the graph
block by block as dense 1x1 convolutions ``conv2d(cat(earlier blocks), W[block, :earlier])``; the node
operations are the same BN -> ReLU -> 3x3 depthwise convolutions (``nn.BatchNorm2d`` and grouped
``nn.Conv2d``), the stem and classifier the same layers.  It is initialised from our model's parameters, so
both compute the same function: the script checks the outputs agree (eval mode) before timing.

Rows: ``train`` (one SGD step: forward, cross-entropy, backward, ``SGD(lr 0.1, momentum 0.9, wd 5e-5)``) at
64 x 64 and 224 x 224, batch 8 and 32; ``infer`` (eval forward, no gradient) of ``compact(ours)`` (wirings
frozen: no selection) against the reference's eval forward, which still sorts.  Targets on CPU: at least
2x at 224 x 224 for training; at least 2x for the compacted inference.  ``--quick``: 64 x 64 and
224 x 224 at batch 8 only, fewer repeats.

Run ``python benchmarks/mobilenet.py [--quick] [--json PATH] [--threads T] [--device cpu|cuda]``.
"""

from __future__ import annotations

import _common as common  # first: puts the repository on sys.path
import torch
import torch.nn.functional as F
from torch import nn

from neuralgraphs.models import MobileNetV1Graphs
from neuralgraphs.sparse import compact
from neuralgraphs.wiring import straight_through_mask

WIDTH = 0.225


def _bn_from(node_norm, rows=slice(None)) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(node_norm.weight[rows].numel(), eps=node_norm.eps, momentum=node_norm.momentum)
    with torch.no_grad():
        bn.weight.copy_(node_norm.weight[rows].reshape(-1))
        bn.bias.copy_(node_norm.bias[rows].reshape(-1))
        bn.running_mean.copy_(node_norm.running_mean[rows].reshape(-1))
        bn.running_var.copy_(node_norm.running_var[rows].reshape(-1))
    return bn


def _dw_from(weight: torch.Tensor, stride: int) -> nn.Conv2d:
    conv = nn.Conv2d(weight.size(0), weight.size(0), 3, stride=stride, padding=1, groups=weight.size(0), bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return conv


class ReferenceGraph(nn.Module):
    """One graph the 2019 way: a dense masked weight, a full sort per forward, blocks as dense 1x1 convs."""

    def __init__(self, g) -> None:
        super().__init__()
        n = g.graph.num_nodes
        self.k = int(g.wiring.num_active)
        self.sizes = [g.in_channels] + [g.out_channels] * g.sub_layers
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        src, dst = g.graph.edge_index
        dense = torch.zeros(n, n)
        dense[dst, src] = g.weight.detach()
        self.weight = nn.Parameter(dense)
        cand = torch.zeros(n, n, dtype=torch.bool)
        cand[dst, src] = True
        self.register_buffer("candidates", cand)
        self.in_bn, self.in_dw = _bn_from(g.input_op[0]), _dw_from(g.input_op[2].weight.detach(), g.stride)
        self.bns, self.dws = nn.ModuleList(), nn.ModuleList()
        if g.sub_layers > 1:
            inner = g.node_op.ops[1]
            for b in range(g.sub_layers - 1):
                rows = slice(b * g.out_channels, (b + 1) * g.out_channels)
                self.bns.append(_bn_from(inner[0], rows))
                self.dws.append(_dw_from(inner[2].weight.detach()[rows], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = (self.weight.detach().abs() * self.candidates).view(-1)
        order = torch.sort(scores, descending=True, stable=True).indices  # the full sort, every forward
        mask = torch.zeros_like(scores, dtype=torch.bool)
        mask[order[:self.k]] = True
        w = straight_through_mask(self.weight * self.candidates, mask.view_as(self.weight))
        state = [self.in_dw(F.relu(self.in_bn(x)))]
        for b in range(1, len(self.sizes)):
            rows = slice(self.starts[b], self.starts[b] + self.sizes[b])
            h = F.conv2d(torch.cat(state, 1), w[rows, :self.starts[b], None, None])
            if b < len(self.sizes) - 1:
                h = self.dws[b - 1](F.relu(self.bns[b - 1](h)))
            state.append(h)
        return state[-1]


class ReferenceChain(nn.Module):
    def __init__(self, ours: MobileNetV1Graphs) -> None:
        super().__init__()
        self.stem = nn.Conv2d(ours.stem.in_channels, 32, 3, stride=ours.stem.stride, padding=1, bias=False)
        self.graphs = nn.ModuleList(ReferenceGraph(g) for g in ours.graphs)
        self.norm = nn.BatchNorm2d(ours.norm.num_features)
        self.fc = nn.Linear(ours.fc.in_features, ours.fc.out_features)
        with torch.no_grad():
            self.stem.weight.copy_(ours.stem.weight)
            self.norm.load_state_dict(ours.norm.state_dict())
            self.fc.load_state_dict(ours.fc.state_dict())

    def forward(self, x):
        h = self.stem(x)
        for g in self.graphs:
            h = g(h)
        return self.fc(F.relu(self.norm(h)).mean((2, 3)))


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    device = args.device
    torch.manual_seed(0)
    ours = MobileNetV1Graphs(width=WIDTH, wiring="dnw").to(device)
    ref = ReferenceChain(ours.cpu()).to(device)
    ours.to(device)
    x = torch.randn(2, 3, 64, 64, device=device)
    ours.eval(), ref.eval()
    with torch.no_grad():
        a, b = ours(x), ref(x)
    # a node no input reaches outputs zeros in ours; in the reference its BN of zeros is 0 too while the
    # BN shifts are 0, as at initialisation, so the two agree there
    err = float((a - b).abs().max())
    scale = float(b.abs().max())
    print(f"eval outputs agree to {err:.2e} (outputs up to {scale:.2e})")
    if not err <= 1e-4 * max(scale, 1.0):
        raise SystemExit(f"the reference computes another function (max abs difference {err:.3g})")
    rows = []
    sizes = (64, 224)
    batches = (8,) if args.quick else (8, 32)
    for size in sizes:
        for batch in batches:
            xb = torch.randn(batch, 3, size, size, device=device)
            yb = torch.randint(0, 1000, (batch,), device=device)
            opts = {name: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
                    for name, m in (("ours", ours), ("reference", ref))}

            def step(name, m):
                def run():
                    opts[name].zero_grad()
                    F.cross_entropy(m(xb), yb).backward()
                    opts[name].step()
                return run

            ours.train(), ref.train()
            fns = {"ours": step("ours", ours), "reference": step("reference", ref)}
            once = common.time_call(fns["reference"], device)
            reps = common.repeats_for(2 * once, 8.0 if args.quick else 30.0, lo=2, hi=10)
            t = common.time_side_by_side(fns, device, repeats=reps, warmup=1)
            rows.append(common.make_row(f"train x{WIDTH} {size}x{size} B={batch}", t["ours"], t["reference"],
                                        size=size, batch=batch, repeats=reps, eval_max_abs_diff=err,
                                        **common.environment(device)))
            common.print_table(rows[-1:], ["case", "ours_s", "reference_s", "speedup"])
    ours.eval(), ref.eval()
    small = compact(ours)
    for size in sizes:
        xb = torch.randn(batches[-1], 3, size, size, device=device)
        with torch.no_grad():
            fns = {"ours": lambda: small(xb), "reference": lambda: ref(xb)}
            t = common.time_side_by_side(fns, device, repeats=3 if args.quick else 7, warmup=1)
        rows.append(common.make_row(f"infer compact x{WIDTH} {size}x{size} B={batches[-1]}", t["ours"],
                                    t["reference"], size=size, batch=batches[-1], **common.environment(device)))
        common.print_table(rows[-1:], ["case", "ours_s", "reference_s", "speedup"])
    common.print_table(rows, ["case", "ours_s", "reference_s", "speedup", "threads", "device"],
                       title="MobileNetV1 x0.225 chain: ours vs the 2019-style dense masked reference")
    if args.json:
        common.write_json(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
