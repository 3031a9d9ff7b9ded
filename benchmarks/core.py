"""Core operators against the 2019 formulation: top-k edge selection and propagation (forward + backward).

(a) ``select``: :func:`neuralgraphs.wiring.topk_indices` in its training-step use -- the weights move a
    little between calls and the hint of the previous call is carried -- against a full sort of ``|w|``
    (what the 2019 reference does at every step), and, for context, ``torch.topk`` followed by a sort of the
    chosen indices.  Every round asserts that ours returns exactly the reference's selection.
(b) ``propagate``: :func:`neuralgraphs.propagate` over a complete candidate graph with a top-k active set,
    forward + backward with the gradient of every one of the ``N * N`` weights and of the input, against a
    dense masked 1x1 convolution ``conv2d(x, (W * mask).view(N, N, 1, 1))`` on ``[B, N, H, W]`` with the
    straight-through mask of the 2019 code.  Selection is done once, outside both timings.  Outputs and
    gradients are checked to agree once per case.

Run ``python benchmarks/core.py [--quick] [--json PATH] [--threads T] [--device cpu|cuda]``.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Dict, List

import _common as common  # first: puts the repository on sys.path
import torch
import torch.nn.functional as F

from neuralgraphs.generators import complete_graph
from neuralgraphs.propagate import choose_backend, propagate
from neuralgraphs.wiring import TopKWiring, straight_through_mask, topk_indices

# torch's notices about its sparse CSR support (printed once per process), not about the benchmark.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled", category=UserWarning)

SEED = 0
WEIGHT_SCALE = 0.05  # ~ kaiming scale for a few hundred inputs; only ratios to it matter
STEP_NOISE = 1e-3  # per-call weight change, relative to WEIGHT_SCALE: an SGD step of lr ~ 1e-3


# ------------------------------------------------------------------------------------------- (a) select
def reference_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The 2019 selection: sort every score, mark the ``k`` largest, return their indices (ascending)."""
    order = torch.sort(scores).indices
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[order[scores.numel() - k:]] = True
    return mask.nonzero().view(-1)


def naive_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``torch.topk`` then a sort of the chosen indices (the obvious alternative to a full sort)."""
    return torch.sort(torch.topk(scores, k, sorted=False).indices).values


def check_selection(ours: torch.Tensor, other: torch.Tensor, scores: torch.Tensor, k: int,
                    name: str) -> bool:
    """Assert ``ours`` is the exact top-k (ties to lower indices) and ``other`` the same set up to ties.

    A plain sort or ``torch.topk`` breaks ties at the threshold arbitrarily; when the two differ, the
    difference must consist of scores equal to the k-th largest, and ours must then be the lowest-index
    choice among them (checked against a stable sort).  Returns whether a tie had to be resolved.
    """
    assert ours.numel() == k and other.numel() == k, f"{name}: expected {k} indices"
    if torch.equal(ours, other):
        return False
    expected = torch.sort(torch.sort(scores, descending=True, stable=True).indices[:k]).values
    assert torch.equal(ours, expected), "ours: not the exact top-k with ties to lower indices"
    assert torch.equal(torch.sort(scores[ours]).values, torch.sort(scores[other]).values), \
        f"{name}: selects different scores than ours"
    return True


def bench_select(n: int, frac: float, device: torch.device, repeats: int) -> Dict[str, Any]:
    k = int(round(frac * n))
    gen = torch.Generator(device=device).manual_seed(SEED)
    w = torch.randn(n, generator=gen, device=device) * WEIGHT_SCALE
    state: Dict[str, Any] = {"hint": None}

    def perturb() -> None:
        # An optimiser step: outside the timed region, and every implementation then sees the same |w|.
        w.add_(torch.randn(n, generator=gen, device=device), alpha=STEP_NOISE * WEIGHT_SCALE)
        state["scores"] = w.abs()

    def ours() -> torch.Tensor:
        index, state["hint"] = topk_indices(state["scores"], k, state["hint"])
        return index

    fns = {
        "ours": ours,
        "cold": lambda: topk_indices(state["scores"], k)[0],
        "reference": lambda: reference_select(state["scores"], k),
        "naive": lambda: naive_select(state["scores"], k),
        "read": lambda: state["scores"].sum(),
    }
    ties = {"reference": 0, "naive": 0}

    def check(out: Dict[str, Any]) -> None:
        scores = state["scores"]
        assert torch.equal(out["ours"], out["cold"]), "ours: the hinted and the cold call disagree"
        for name in ties:
            ties[name] += check_selection(out["ours"], out[name], scores, k, name)

    # The warm-up round's first call is cold and yields the hint of the steady state.
    t = common.time_side_by_side(fns, device, repeats=repeats, warmup=1, before_round=perturb,
                                 after_round=check)
    perturb()
    peaks = {name: common.peak_memory_mb(fns[name], device) for name in ("ours", "reference")}
    label = f"{n / 1e6:.2f}M" if n < 1e6 else f"{n / 1e6:.0f}M"
    return common.make_row(
        f"select E={label} k={frac:.0%}", t["ours"], t["reference"],
        ours_peak_mb=peaks["ours"], reference_peak_mb=peaks["reference"],
        cold_s=t["cold"], topk_sort_s=t["naive"], read_s=t["read"], ours_over_read=t["ours"] / t["read"],
        candidates=n, k=k, ties_resolved=ties["reference"] + ties["naive"], repeats=repeats)


# ---------------------------------------------------------------------------------------- (b) propagate
class _ChooseEdges(torch.autograd.Function):
    """The 2019 straight-through mask: forward ``W * mask``, backward the gradient to every weight."""

    @staticmethod
    def forward(ctx, weight, mask):
        return weight * mask

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _close(a: torch.Tensor, b: torch.Tensor, name: str, rtol: float = 1e-4) -> float:
    # Relative to the largest entry: the two sides sum thousands of fp32 products in different orders.
    err = float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
    assert err <= rtol, f"{name}: ours and the reference differ (max error {err:.2e} of the largest entry)"
    return err


_GRAPHS: Dict[int, Any] = {}


def bench_propagate(n: int, density: float, feat: int, device: torch.device, budget_s: float,
                    min_repeats: int, both_backends: bool = True) -> Dict[str, Any]:
    hw = 8
    batch = feat // (hw * hw)
    if n not in _GRAPHS:
        _GRAPHS.clear()
        _GRAPHS[n] = complete_graph(n)
    graph = _GRAPHS[n]
    edge_index = graph.edge_index.to(device)
    gen = torch.Generator(device=device).manual_seed(SEED)

    w = (torch.randn(n * n, generator=gen, device=device) * WEIGHT_SCALE).requires_grad_()
    with torch.no_grad():
        active = TopKWiring(graph, density=density)(w)
    index, mask = active.index, active.mask
    x = torch.randn(n, feat, generator=gen, device=device).requires_grad_()  # node-major [N, B*H*W]
    gy = torch.randn(n, feat, generator=gen, device=device)

    # The reference's own layout, same numbers: W[t, s] = w[t * N + s] (candidates sorted by target).
    w_ref = w.detach().clone().view(n, n).requires_grad_()
    mask_ref = mask.view(n, n).to(w.dtype)
    x_ref = x.detach().view(n, batch, hw, hw).transpose(0, 1).contiguous().requires_grad_()
    gy_ref = gy.view(n, batch, hw, hw).transpose(0, 1).contiguous()

    def ours(backend: str):
        def step():
            y = propagate(x, edge_index, straight_through_mask(w, mask), active=index, backend=backend,
                          weights_masked=True)
            y.backward(gy)
            return y.detach()
        return step

    def reference():
        y = F.conv2d(x_ref, _ChooseEdges.apply(w_ref, mask_ref).view(n, n, 1, 1))
        y.backward(gy_ref)
        return y.detach()

    def clear() -> None:
        w.grad = x.grad = w_ref.grad = x_ref.grad = None

    auto = choose_backend(index.numel(), n, n, device)
    other = "csr" if auto == "dense" else "dense"
    fns = {"ours": ours("auto"), "reference": reference}
    if both_backends and density < 1.0:  # a CSR matrix with every entry stored is not a contender
        fns[other] = ours(other)

    # Check run, also the warm-up: outputs and both gradients agree, for each backend.  The first call of
    # ours and of the reference is the one whose peak memory is recorded (PyTorch has no CPU cache).
    out: Dict[str, torch.Tensor] = {}
    peaks, first = {}, {}

    def run(name: str) -> None:
        clear()
        start = time.perf_counter()
        if name in ("ours", "reference"):
            peaks[name] = common.peak_memory_mb(lambda: out.__setitem__(name, fns[name]()), device)
        else:
            out[name] = fns[name]()
        common.synchronize(device)
        first[name] = time.perf_counter() - start

    run("reference")
    g_ref = (w_ref.grad.view(-1), x_ref.grad.transpose(0, 1).reshape(n, feat))
    y_ref = out.pop("reference").transpose(0, 1).reshape(n, feat)
    err = 0.0
    for name in fns:
        if name != "reference":
            run(name)
            err = max(err, _close(out.pop(name), y_ref, f"{name}: output"),
                      _close(w.grad, g_ref[0], f"{name}: weight grad"),
                      _close(x.grad, g_ref[1], f"{name}: input grad"))
    del y_ref, g_ref
    clear()

    # The forced backend that auto did not pick only shows the crossover: when its first call is more than
    # 3x slower than auto's, that call's time is reported instead of a median over repeats.
    timed = dict(fns)
    once = other in fns and first[other] > 3 * first["ours"]
    if once:
        del timed[other]
    repeats = common.repeats_for(sum(first[name] for name in timed), budget_s, lo=min_repeats, hi=15)
    t = common.time_side_by_side(timed, device, repeats=repeats, warmup=0, before_call=clear)
    clear()
    times = {auto: t["ours"], other: first[other] if once else t.get(other)}
    return common.make_row(
        f"propagate N={n} d={density:.0%} F={feat}", t["ours"], t["reference"],
        ours_peak_mb=peaks["ours"], reference_peak_mb=peaks["reference"], backend=auto,
        dense_s=times["dense"], csr_s=times["csr"], other_timed_once=once, nodes=n, density=density,
        features=feat, active=index.numel(), max_rel_err=err, repeats=repeats)


# ------------------------------------------------------------------------------------------------- main
SELECT_COLUMNS = ["case", "ours_s", "reference_s", "speedup", "cold_s", "topk_sort_s", "read_s",
                  "ours_over_read", "ours_peak_mb", "reference_peak_mb"]
PROP_COLUMNS = ["case", "backend", "ours_s", "reference_s", "speedup", "dense_s", "csr_s", "ours_peak_mb",
                "reference_peak_mb"]


def main(argv=None) -> List[Dict[str, Any]]:
    args = common.parse_args(__doc__.splitlines()[0], argv, extra=lambda p: p.add_argument(
        "--all-sizes", action="store_true",
        help="on CPU, also run N=3328 at F=16384 and 65536 (several minutes per case on 2 cores)"))
    device = args.device
    common.strict_fp32()  # the reference's cuDNN convolution would otherwise run in TF32
    env = common.environment(device)
    quick = args.quick
    torch.manual_seed(SEED)
    print(f"core benchmarks on {env['device']} ({env['device_name']}), {env['threads']} threads, "
          f"torch {env['torch']}{', quick' if quick else ''}", flush=True)

    # (a) selection
    sizes = [640_000, 3_000_000, 12_000_000]
    fracs = [0.05] if quick else [0.05, 0.20]
    select_rows = []
    for frac in fracs:
        for n in sizes:
            reps = (3 if n > 5e6 else 5) if quick else (5 if n > 5e6 else 9)
            row = bench_select(n, frac, device, repeats=reps)
            row.update(common.environment(device), part="select")
            select_rows.append(row)
            print(f"  {row['case']}: {row['speedup']:.1f}x", flush=True)
    common.print_table(select_rows, SELECT_COLUMNS, "(a) top-k selection vs full sort (seconds, MiB)")

    # (b) propagation
    if quick:
        grid = [(800, 0.05, 4096), (3328, 0.05, 4096)]
    else:
        feats_3328 = [4096]
        if device.type == "cuda" or args.all_sizes:
            feats_3328 = [4096, 16384, 65536]
        grid = [(800, d, f) for f in (4096, 16384, 65536) for d in (0.01, 0.05, 0.20, 1.0)]
        grid += [(3328, d, f) for f in feats_3328 for d in (0.01, 0.05, 0.20, 1.0)]
    prop_rows = []
    for n, d, f in grid:
        row = bench_propagate(n, d, f, device, budget_s=4.0 if quick else 8.0, min_repeats=2 if quick else 3,
                              both_backends=not quick)
        row.update(common.environment(device), part="propagate")
        prop_rows.append(row)
        print(f"  {row['case']}: {row['speedup']:.2f}x ({row['backend']})", flush=True)
    common.print_table(prop_rows, PROP_COLUMNS,
                       "(b) propagate forward+backward vs dense masked 1x1 conv (seconds, MiB)")

    # Targets
    print("\ntargets:")
    big = [r for r in select_rows if r["candidates"] == max(sizes) and r["k"] == round(0.05 * max(sizes))]
    for r in big:
        print(f"  select >= 10x vs full sort at 12M: {r['speedup']:.1f}x -> "
              f"{'met' if r['speedup'] >= 10 else 'NOT met'}")
    worst = min(prop_rows, key=lambda r: r["speedup"])
    print(f"  propagate never slower than reference: worst {worst['speedup']:.2f}x ({worst['case']}) -> "
          f"{'met' if worst['speedup'] >= 1.0 else 'NOT met'}")
    for r in prop_rows:
        if r["nodes"] == 3328 and r["density"] == 0.05:
            print(f"  propagate >= 1.5x at 5%, N=3328: {r['speedup']:.2f}x ({r['case']}) -> "
                  f"{'met' if r['speedup'] >= 1.5 else 'NOT met'}")
    # 1 % slack: a few small index tensors (well under 1 MiB) are not a regression worth a red flag.
    over = [r for r in prop_rows if r["ours_peak_mb"] > 1.01 * r["reference_peak_mb"]]
    print(f"  peak memory never above reference (1 % slack): "
          + ("met" if not over else "NOT met in " + ", ".join(
              f"{r['case']} ({r['ours_peak_mb']:.0f} vs {r['reference_peak_mb']:.0f} MiB)" for r in over)))

    rows = select_rows + prop_rows
    if args.json:
        common.write_json(rows, args.json)
        print(f"\nwrote {len(rows)} rows to {args.json}")
    return rows


if __name__ == "__main__":
    main()
