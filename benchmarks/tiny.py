"""Train-step throughput of the tiny CIFAR-10 DNW classifiers against a dense masked 2019-style reference,
and the cost of rewiring (DNW against the same model with a fixed mask).

(a) ``static`` / ``discrete`` / ``continuous``: one SGD training step (forward, cross-entropy, backward,
    ``SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)``) of our tiny classifier against a reference written here
    that behaves like the 2019 code: a dense ``[800, 800]`` weight, a **full** ``torch.sort`` of ``|W|`` and a
    top-32000 straight-through mask **once per forward** in the static model (which then slices the masked
    weight block by block, as the official static model does) and at **every** use of the graph in the
    dynamic ones (every one of the T = 5 steps, every ODE function evaluation), and the graph product as a
    dense 1x1 convolution ``conv2d(x, (W * mask)[:, :, None, None])`` on ``[B, 800, 8, 8]``.  Three rows per
    setting:

    * ``KIND``: the reference initialised from our model's weights (candidate weights scattered into ``W``),
      so both compute the same function: the first round checks that their losses agree, and the
      continuous models take the same numbers of function evaluations (both NFE are reported);
    * ``KIND own-init``: the reference with its own initialisation, as a user of the 2019 code runs it
      (``nn.Conv2d``'s default over the 800 x 800 matrix on the candidates, default node convolutions, stem
      and head): the continuous solver then takes its own number of function evaluations;
    * ``KIND random``: our fixed random wiring against the 2019 model with a fixed random mask (the same
      edges), a dense masked product without a sort.

    Same batch (random CIFAR-like ``[B, 3, 32, 32]``) for both.  The continuous ``KIND`` row also times ours
    with torchdiffeq's own Runge-Kutta step (``lean_stages=False``): ``stock_stages_s`` and
    ``speedup_stock_stages``.
(b) ``rewire-*``: our model with the DNW wiring (top-k re-chosen every step, straight-through gradient to
    every candidate) against the same model with ``wiring="no_update"`` (a fixed top-k mask, same k, only
    active edges get gradients).  ``rewiring_pct = (dnw - fixed) / dnw``.  Its two parts: ``reselect_pct``
    against the fixed mask with DNW's straight-through gradient (``FixedWiring(straight_through=True)``,
    time ``fixed_st_s``), i.e. the cost of choosing a new set each step; the rest is the gradient of every
    candidate.  ``select_pct`` is the top-k selection alone, timed separately.  Every round of these rows
    starts from the state the three models had after their warm-up step (weights, normalisation statistics,
    optimiser state), so each round times the same step; otherwise the models drift apart between rounds,
    and with them the continuous models' number of function evaluations.

Architecture (the paper's tiny classifiers): stem conv 3->16 3x3 s2, BN, ReLU, depthwise 3x3 s2, 1x1 16->32,
BN; 800 graph nodes at 8x8, inputs = the 32 stem channels, outputs = the last 100 nodes, averaged over space,
``Linear(100, 10)``; 32000 active edges.  Static: blocks ``[32, 192, 192, 192, 192]``, node op
InstanceNorm -> ReLU -> 3x3 depthwise.  Discrete: T = 5, ReLU -> 3x3 depthwise -> graph -> InstanceNorm.
Continuous: the same right-hand side on ``t in [0, 1]``, dopri5, rtol = atol = 1e-3, backprop through the
solver.  ``neuralgraphs.models.tiny.TinyClassifier`` is used when it exists; otherwise the same architecture
is assembled here from the dynamics modules.

Batches: the full run measures every row at batch 32 and 64 (where the targets are stated).  ``--quick``: batch 32 only, fewer repeats, the
continuous models at batch 8 and rtol = atol = 1e-2 (fewer function evaluations; both sides use the same
tolerance) and no continuous rewiring row.  Every model runs one untimed warm-up step first: a first step
pays for page faults on gigabytes of fresh memory (up to 20 s for the continuous models at large batches), which
would otherwise land on whichever side runs first.

``--compile [MODE]`` also times our models under ``torch.compile`` (``compiled_s``, ``speedup_compiled``); the
selection, graph products and ODE solve stay eager inside them.

Run ``python benchmarks/tiny.py [--quick] [--batch 32,64] [--compile [MODE]] [--json PATH] [--threads T]
[--device cpu|cuda]``.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Dict, List, Optional, Tuple

import _common as common  # first: puts the repository on sys.path
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralgraphs.dynamics import ContinuousTimeGraph, DiscreteTimeGraph, StaticGraph, WiredGraph
from neuralgraphs.generators import blocked_dag, complete_graph
from neuralgraphs.nodes import NodeConv2d, NodeNorm, image_node_op
from neuralgraphs.wiring import FixedWiring, TopKWiring

SEED = 0
NUM_NODES = 800
NUM_INPUTS = 32
NUM_OUTPUTS = 100
NUM_CLASSES = 10
STATIC_BLOCKS = [32, 192, 192, 192, 192]
K = 32000  # 5 % of 800 x 800, the paper's edge budget
STEPS = 5
TOL = 1e-3
QUICK_TOL = 1e-2
KINDS = ("static", "discrete", "continuous")


def make_stem() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False),
        nn.Conv2d(16, NUM_INPUTS, 1, bias=False), nn.BatchNorm2d(NUM_INPUTS))


# ------------------------------------------------------------------------------------------ our models
class _FallbackTiny(nn.Module):
    """The tiny classifier assembled from the dynamics modules (used until ``models/tiny.py`` exists)."""

    def __init__(self, kind: str, wiring: str = "dnw", tol: float = TOL) -> None:
        super().__init__()
        self.stem = make_stem()
        outputs = torch.arange(NUM_NODES - NUM_OUTPUTS, NUM_NODES)
        if kind == "static":
            g = blocked_dag(STATIC_BLOCKS, outputs=outputs)
            self.graph = StaticGraph(g, image_node_op(NUM_NODES, "norm-relu-conv"), wiring, k=K)
        else:
            g = complete_graph(NUM_NODES, inputs=torch.arange(NUM_INPUTS), outputs=outputs)
            node_op = image_node_op(NUM_NODES, "relu-conv")
            post = NodeNorm(NUM_NODES, kind="instance")
            if kind == "discrete":
                self.graph = DiscreteTimeGraph(g, node_op, post, wiring, steps=STEPS, k=K)
            else:
                self.graph = ContinuousTimeGraph(g, node_op, post, wiring, rtol=tol, atol=tol, k=K)
        self.head = nn.Linear(NUM_OUTPUTS, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        z = self.graph(self.stem(x))
        return self.head(z.mean(dim=(2, 3)))

    @property
    def fc(self) -> nn.Linear:
        return self.head


def _tiny_class():
    try:
        from neuralgraphs.models.tiny import TinyClassifier
    except ImportError:
        return None
    return TinyClassifier


def make_ours(kind: str, wiring: str = "dnw", tol: float = TOL) -> nn.Module:
    torch.manual_seed(SEED)
    cls = _tiny_class()
    if cls is None:
        return _FallbackTiny(kind, wiring, tol)
    kwargs: Dict[str, Any] = dict(kind=kind, wiring=wiring, density=K / NUM_NODES ** 2, seed=SEED)
    if kind == "continuous":
        kwargs.update(rtol=tol, atol=tol)
    return cls(**kwargs)


def head_of(model: nn.Module) -> nn.Linear:
    for name in ("fc", "head"):
        m = getattr(model, name, None)
        if isinstance(m, nn.Linear):
            return m
    raise RuntimeError("the model has no linear head named fc or head")


def graph_of(model: nn.Module) -> WiredGraph:
    found = [m for m in model.modules() if isinstance(m, WiredGraph)]
    if len(found) != 1:
        raise RuntimeError(f"expected one graph module in the model, found {len(found)}")
    return found[0]


# ------------------------------------------------------------------------------------ 2019 reference
class _SortTopKStraightThrough(torch.autograd.Function):
    """Forward ``W * mask`` with the mask from a full sort of ``|W|``; backward: identity (every weight)."""

    @staticmethod
    def forward(ctx, w: Tensor, k: int) -> Tensor:
        order = torch.sort(w.detach().abs().flatten()).indices
        mask = torch.zeros(w.numel(), dtype=w.dtype, device=w.device)
        mask[order[w.numel() - k:]] = 1.0
        return w * mask.view_as(w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def masked(w: Tensor, k: int = K) -> Tensor:
    return _SortTopKStraightThrough.apply(w, k)


class ReferenceTiny(nn.Module):
    """Dense masked reference in the style of the 2019 code (see the module docstring)."""

    def __init__(self, kind: str, tol: float = TOL, fixed_mask: Optional[Tensor] = None) -> None:
        super().__init__()
        self.kind, self.tol = kind, tol
        self.stem = make_stem()
        self.weight = nn.Parameter(torch.zeros(NUM_NODES, NUM_NODES))  # [target, source]
        # a fixed (random-graph) mask: the 2019 model with a fixed wiring is a dense masked product, no sort
        self.register_buffer("fixed_mask", fixed_mask)
        self.conv = nn.Parameter(torch.empty(NUM_NODES, 1, 3, 3))
        nn.init.kaiming_normal_(self.conv, mode="fan_in", nonlinearity="relu")
        self.norm_w = nn.Parameter(torch.ones(NUM_NODES))
        self.norm_b = nn.Parameter(torch.zeros(NUM_NODES))
        self.head = nn.Linear(NUM_OUTPUTS, NUM_CLASSES)
        self.readout: Optional[int] = None  # side of the central square averaged by the head (None: all)
        self.nfe = 0

    def node_conv(self, x: Tensor, r0: int, r1: int) -> Tensor:
        return F.conv2d(x, self.conv[r0:r1], padding=1, groups=r1 - r0)

    def effective_weight(self) -> Tensor:
        if self.fixed_mask is not None:
            return self.weight * self.fixed_mask
        return masked(self.weight)  # a full sort of all 640k weights

    def product(self, x: Tensor, rows: slice = slice(None), cols: slice = slice(None),
                w: Optional[Tensor] = None) -> Tensor:
        w = (self.effective_weight() if w is None else w)[rows, cols]
        return F.conv2d(x, w[:, :, None, None])

    def rhs(self, t: Tensor, z: Tensor) -> Tensor:
        self.nfe += 1
        h = self.node_conv(F.relu(z), 0, NUM_NODES)
        return F.instance_norm(self.product(h), weight=self.norm_w, bias=self.norm_b)

    def graph(self, x: Tensor) -> Tensor:
        b, _, hh, ww = x.shape
        if self.kind == "static":
            # the 2019 static model selects once per forward, then slices the masked weight block by block
            w = self.effective_weight()
            outs: List[Tensor] = []
            start = 0
            for size in STATIC_BLOCKS:
                end = start + size
                inp = x if start == 0 else self.product(torch.cat(outs, 1), slice(start, end), slice(0, start), w)
                h = F.instance_norm(inp, weight=self.norm_w[start:end], bias=self.norm_b[start:end])
                outs.append(self.node_conv(F.relu(h), start, end))
                start = end
            return outs[-1][:, STATIC_BLOCKS[-1] - NUM_OUTPUTS:]
        z = torch.cat([x, x.new_zeros(b, NUM_NODES - NUM_INPUTS, hh, ww)], 1)
        self.nfe = 0
        if self.kind == "discrete":
            for _ in range(STEPS):
                z = self.rhs(None, z)
        else:
            import torchdiffeq

            t = torch.tensor([0.0, 1.0], dtype=z.dtype, device=z.device)
            z = torchdiffeq.odeint(self.rhs, z, t, rtol=self.tol, atol=self.tol, method="dopri5")[-1]
        return z[:, NUM_NODES - NUM_OUTPUTS:]

    def forward(self, x: Tensor) -> Tensor:
        z = self.graph(self.stem(x))
        if self.readout is not None:
            h, w = z.shape[-2:]
            top, left = (h - self.readout) // 2, (w - self.readout) // 2
            z = z[..., top:top + self.readout, left:left + self.readout]
        return self.head(z.mean(dim=(2, 3)))


def _param_by_suffix(module: nn.Module, cls: type, **attrs: Any) -> nn.Module:
    found = [m for m in module.modules() if isinstance(m, cls)
             and all(getattr(m, a) == v for a, v in attrs.items())]
    if len(found) != 1:
        raise RuntimeError(f"expected one {cls.__name__} {attrs} in the graph module, found {len(found)}")
    return found[0]


def make_reference(ours: nn.Module, kind: str, tol: float, own_init: bool = False) -> ReferenceTiny:
    """A reference computing the same function as ``ours``: every weight copied (candidate weights scattered
    into the dense ``W`` at their original node ids, zero elsewhere, so its top-k over all 640k entries picks
    exactly our active edges).  A fixed wiring of ours (``"random"``) becomes the reference's fixed mask.

    With ``own_init`` the reference then draws its own weights as the 2019 code does: ``W`` by
    ``nn.Conv2d``'s default over the 800 x 800 matrix (``U(-1/sqrt(800), 1/sqrt(800))``) on our candidates
    (zero elsewhere, as a DAG of blocks needs), the node convolutions, stem and head by their defaults; only
    its fixed mask, if any, stays ours.  Its function then differs, and in the continuous setting so does
    its number of function evaluations."""
    g = graph_of(ours)
    fixed = None
    if not isinstance(g.wiring, TopKWiring):
        labels = g.graph.node_labels
        orig = torch.arange(NUM_NODES) if labels is None else torch.as_tensor(list(labels), dtype=torch.long)
        ei = g.edge_index.cpu()[:, g.active().mask.cpu()]
        fixed = torch.zeros(NUM_NODES, NUM_NODES)
        fixed[orig[ei[1]], orig[ei[0]]] = 1.0
    ref = ReferenceTiny(kind, tol, fixed)
    ref.readout = getattr(ours, "readout", None)
    g = graph_of(ours)
    labels = g.graph.node_labels
    orig = torch.arange(NUM_NODES) if labels is None else torch.as_tensor(list(labels), dtype=torch.long)
    if not torch.equal(orig[g.inputs.cpu()], torch.arange(NUM_INPUTS)):
        raise RuntimeError("the graph's input nodes are not the first 32 nodes in stem-channel order")
    out_orig = orig[g.outputs.cpu()] - (NUM_NODES - NUM_OUTPUTS)
    if sorted(out_orig.tolist()) != list(range(NUM_OUTPUTS)):
        raise RuntimeError("the graph's output nodes are not the last 100 nodes")
    ei = g.edge_index.cpu()
    with torch.no_grad():
        ref.stem.load_state_dict(ours.stem.state_dict())
        head = head_of(ours)
        ref.head.bias.copy_(head.bias)
        ref.head.weight.zero_()
        ref.head.weight[:, out_orig] = head.weight.detach().cpu()
        ref.weight[orig[ei[1]], orig[ei[0]]] = g.weight.detach().cpu()
        ref.conv[orig] = _param_by_suffix(g, NodeConv2d).weight.detach().cpu()
        norm = _param_by_suffix(g, NodeNorm, kind="instance")
        if norm.weight is not None:
            ref.norm_w[orig] = norm.weight.detach().cpu()
            ref.norm_b[orig] = norm.bias.detach().cpu()
        if own_init:
            torch.manual_seed(SEED + 1)
            candidates = torch.zeros(NUM_NODES, NUM_NODES, dtype=torch.bool)
            candidates[orig[ei[1]], orig[ei[0]]] = True
            bound = 1.0 / math.sqrt(NUM_NODES)
            ref.weight.copy_(torch.empty(NUM_NODES, NUM_NODES).uniform_(-bound, bound) * candidates)
            nn.init.kaiming_normal_(ref.conv, mode="fan_in", nonlinearity="relu")
            for m in list(ref.stem.modules()) + [ref.head]:
                if m is not ref.stem and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    return ref


# ------------------------------------------------------------------------------------------- the step
def make_step(model: nn.Module, x: Tensor, y: Tensor, forward=None):
    """One SGD training step of ``model`` (called through ``forward``, e.g. a compiled module, if given)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    forward = model if forward is None else forward

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def snapshot():
        """Save the model's and the optimiser's state now; returns a function that restores them."""
        saved = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())

        def restore() -> None:
            with torch.no_grad():
                model.load_state_dict(saved[0])
            opt.load_state_dict(saved[1])
        return restore

    step.snapshot = snapshot
    return step


def nfe_of(model: nn.Module) -> Optional[int]:
    if isinstance(model, ReferenceTiny):
        return model.nfe if model.kind == "continuous" else None
    g = graph_of(model)
    return getattr(g, "nfe_forward", None)


def bench_kind(kind: str, x: Tensor, y: Tensor, device: torch.device, repeats: int, tol: float,
               warmup: int = 1, check: bool = True, compile_mode: Optional[str] = None, wiring: str = "dnw",
               own_init: bool = False) -> Tuple[Dict[str, Any], nn.Module]:
    ours = make_ours(kind, wiring, tol).to(device)
    ref = make_reference(ours, kind, tol, own_init=own_init).to(device)
    check = check and not own_init
    stock_rows = not own_init and wiring == "dnw"
    if not stock_rows:
        compile_mode = None
    steps = {"ours": make_step(ours, x, y), "reference": make_step(ref, x, y)}
    if compile_mode is not None:
        # ours under torch.compile (inductor; "reduce-overhead" adds CUDA graphs on a GPU).  The warm-up round
        # pays for the compilation.
        twin = make_ours(kind, "dnw", tol).to(device)
        steps["ours_compiled"] = make_step(twin, x, y, forward=torch.compile(twin, mode=compile_mode))
    stock = None
    if stock_rows and kind == "continuous" and hasattr(graph_of(ours), "lean_stages"):
        # ours with torchdiffeq's own Runge-Kutta step: how much of the speedup is the lean stage backward
        stock = make_ours(kind, "dnw", tol).to(device)
        graph_of(stock).lean_stages = False
        steps["ours_stock_stages"] = make_step(stock, x, y)
    nfe: Dict[str, List[int]] = {"ours": [], "reference": []}
    first: Dict[str, float] = {}

    def after(results: Dict[str, float]) -> None:
        if not first:
            first.update(results)
        for name, m in (("ours", ours), ("reference", ref)):
            n = nfe_of(m)
            if n is not None:
                nfe[name].append(n)

    t = common.time_side_by_side(steps, device, repeats=repeats, warmup=warmup, after_round=after)
    if check:  # the first step of both starts from the same weights: same function, same loss
        a, b = first["ours"], first["reference"]
        assert abs(a - b) <= 1e-4 * max(1.0, abs(b)), f"{kind}: loss of ours {a} != reference {b}"
        if stock is not None:
            c = first["ours_stock_stages"]
            assert abs(a - c) <= 1e-5 * max(1.0, abs(c)), f"{kind}: lean stages {a} != torchdiffeq's {c}"
        if compile_mode is not None:
            c = first["ours_compiled"]
            assert abs(a - c) <= 1e-4 * max(1.0, abs(c)), f"{kind}: compiled {c} != eager {a}"
    row = common.make_row(kind, t["ours"], t["reference"],
                          images_per_s_ours=x.size(0) / t["ours"], images_per_s_ref=x.size(0) / t["reference"])
    if kind == "continuous":
        row["nfe_ours"] = max(nfe["ours"]) if nfe["ours"] else None
        row["nfe_ref"] = max(nfe["reference"]) if nfe["reference"] else None
        row["tol"] = tol
        if stock is not None:
            row["stock_stages_s"] = t["ours_stock_stages"]
            row["speedup_stock_stages"] = t["reference"] / t["ours_stock_stages"]
    if compile_mode is not None:
        row["compiled_s"] = t["ours_compiled"]
        row["speedup_compiled"] = t["reference"] / t["ours_compiled"]
    return row, ours


def time_selection(model: nn.Module, repeats: int = 20) -> float:
    """Median time of one top-k selection of the DNW wiring, with the weights moving a little per call."""
    g = graph_of(model)
    w = g.weight.detach().clone()
    gen = torch.Generator(device="cpu").manual_seed(SEED)
    times = []
    for _ in range(repeats + 2):
        w.add_(torch.randn(w.shape, generator=gen).to(w.device), alpha=1e-4 * float(w.std()))
        times.append(common.time_call(lambda: g.wiring(w), w.device))
    times = sorted(times[2:])
    return times[len(times) // 2]


def bench_rewire(kind: str, x: Tensor, y: Tensor, device: torch.device, repeats: int,
                 tol: float, warmup: int = 1) -> Dict[str, Any]:
    dnw = make_ours(kind, "dnw", tol).to(device)
    fixed = make_ours(kind, "no_update", tol).to(device)
    # the same fixed set, with DNW's straight-through gradient for every candidate: a DNW step minus the
    # re-selection (and what depends on it)
    fixed_st = make_ours(kind, "no_update", tol).to(device)
    g = graph_of(fixed_st)
    g.wiring = FixedWiring.like(g.wiring, g.weight, straight_through=True)
    steps = {"dnw": make_step(dnw, x, y), "fixed": make_step(fixed, x, y), "fixed_st": make_step(fixed_st, x, y)}
    for _ in range(warmup):
        for step in steps.values():
            step()
    # Every round starts from the state after the warm-up, so every round times the same step: without
    # this the models drift apart, and an adaptive solver's NFE with them (a DNW step at 32 evaluations
    # against a fixed-mask step at 38 measures the NFE, not the rewiring)
    restores = [step.snapshot() for step in steps.values()]
    nfe: Dict[str, set] = {"dnw": set(), "fixed": set()}

    def after(_: Dict[str, Any]) -> None:
        for name, m in (("dnw", dnw), ("fixed", fixed)):
            nfe[name].add(nfe_of(m))

    t = common.time_side_by_side(steps, device, repeats=repeats, warmup=0,
                                 before_round=lambda: [restore() for restore in restores], after_round=after)
    if kind == "continuous":  # the same step every round: the same number of evaluations
        assert len(nfe["dnw"]) == 1 and len(nfe["fixed"]) == 1, f"NFE varied between rounds: {nfe}"
    sel = time_selection(dnw)
    row = common.make_row(f"rewire-{kind}", t["dnw"], t["fixed"],
                          images_per_s_ours=x.size(0) / t["dnw"], images_per_s_ref=x.size(0) / t["fixed"],
                          rewiring_pct=100.0 * (t["dnw"] - t["fixed"]) / t["dnw"], fixed_st_s=t["fixed_st"],
                          reselect_pct=100.0 * (t["dnw"] - t["fixed_st"]) / t["dnw"], select_s=sel,
                          select_pct=100.0 * sel / t["dnw"])
    if kind == "continuous":
        row["nfe_ours"], row["nfe_ref"] = nfe_of(dnw), nfe_of(fixed)
        row["tol"] = tol
    return row


def main(argv=None) -> List[Dict[str, Any]]:
    def extra(p):
        p.add_argument("--batch", default=None, help="comma-separated batch sizes (default: 32,64; --quick: 32)")
        p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of static,discrete,"
                       "continuous (default: all)")
        p.add_argument("--no-rewire", action="store_true", help="skip the rewiring-cost rows")
        p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                       choices=("default", "reduce-overhead", "max-autotune"),
                       help="also time our models under torch.compile(mode=MODE) (default mode: default; "
                       "reduce-overhead adds CUDA graphs on a GPU)")

    args = common.parse_args(__doc__.splitlines()[0], argv, extra)
    device = args.device
    try:
        batches = [int(b) for b in (args.batch or ("32" if args.quick else "32,64")).split(",") if b]
    except ValueError:
        raise SystemExit(f"--batch: expected comma-separated positive integers, got {args.batch!r}") from None
    if not batches or min(batches) < 1:
        raise SystemExit(f"--batch: expected comma-separated positive integers, got {args.batch!r}")
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            raise SystemExit(f"--kinds: unknown kind {k!r}; allowed: {', '.join(KINDS)}")
    tol = QUICK_TOL if args.quick else TOL
    env = common.environment(device)
    env.update(k=K, model="models.tiny" if _tiny_class() else "fallback")
    rows: List[Dict[str, Any]] = []
    start = time.perf_counter()
    for batch in batches:
        # (timed repeats, untimed warm-up rounds): medians over several interleaved steps, since single steps
        # on a shared machine vary by 10-20 %; fewer where one step takes seconds
        big = batch > 64
        plan = {"static": (6, 1), "discrete": (5, 1), "continuous": (1, 1)} if args.quick else \
            {"static": (5 if big else 8, 1), "discrete": (3 if big else 6, 1), "continuous": (1 if big else 3, 1)}
        gen = torch.Generator().manual_seed(SEED)
        x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
        y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen).to(device)

        def data(kind: str) -> Tuple[Tensor, Tensor]:
            # --quick: the continuous models on a quarter of the batch (8), at rtol = atol = 1e-2.
            n = max(1, batch // 4) if (args.quick and kind == "continuous") else batch
            return x[:n], y[:n]

        for kind in kinds:
            # DNW against the reference started from our weights (same function, same NFE) and from its own
            # initialisation (what a user of the 2019 code runs); our fixed random wiring against the 2019
            # model with a fixed random mask
            for variant, wiring, own in (("", "dnw", False), (" own-init", "dnw", True), (" random", "random", False)):
                row, _ = bench_kind(kind, *data(kind), device, plan[kind][0], tol, warmup=plan[kind][1],
                                    compile_mode=args.compile, wiring=wiring, own_init=own)
                row["case"] = f"{kind}{variant} B={data(kind)[0].size(0)}"
                rows.append({**row, "batch": data(kind)[0].size(0), **env})
                common.print_table(rows[-1:], title=f"{row['case']} ({time.perf_counter() - start:.0f} s)")
        if args.no_rewire:
            continue
        for kind in kinds:
            if args.quick and kind == "continuous":
                continue  # --quick: no continuous rewiring row (the full run has it)
            reps, warm = plan[kind]
            # the rewiring cost is a difference of two similar times: more repeats than the speed rows (the
            # continuous steps vary most: 20 at batch 32, where the target is stated)
            reps = (4 if big else 20) if kind == "continuous" else 3 * reps
            row = bench_rewire(kind, *data(kind), device, reps, tol, warm)
            row["case"] = f"rewire-{kind} B={data(kind)[0].size(0)}"
            rows.append({**row, "batch": data(kind)[0].size(0), **env})
            common.print_table(rows[-1:], title=f"{row['case']} ({time.perf_counter() - start:.0f} s)")
    cols = ["case", "ours_s", "reference_s", "speedup", "stock_stages_s", "speedup_stock_stages", "compiled_s",
            "speedup_compiled", "images_per_s_ours", "images_per_s_ref", "nfe_ours", "nfe_ref", "rewiring_pct",
            "fixed_st_s", "reselect_pct", "select_s", "select_pct", "batch"]
    common.print_table(rows, cols, title=f"tiny classifiers, train step, {env['threads']} threads, "
                       f"{device.type}, model={env['model']} (total {time.perf_counter() - start:.0f} s)")
    if args.json:
        common.write_json(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
