"""Fidelity of the learned wiring: test accuracy of DNW against a random wiring with the same number of edges
on the embedded digits, in the three settings, over a grid of budgets, with what explains the result.

Unlike the other scripts this one measures accuracy, not speed: there is no reference implementation and no
``speedup`` field.  The question it answers is the DNW paper's (PAPER_FACTS: a learned wiring beats a random
one at equal edges, by 4.6-5.0 points on CIFAR-10 in the static, discrete-time and continuous-time settings).

Model: :class:`neuralgraphs.models.DigitsGraphClassifier` with image nodes (a 3x3 conv stem to 8 input nodes
at 8x8, ``--nodes`` graph nodes, 16 output nodes averaged over the central 4x4, a linear head).  Static: the
inputs, two hidden blocks and the outputs, each block feeding all later ones.  Discrete time: 3 steps over
the complete graph with self-loops.  Continuous time: the same graph, RK4 with step 0.5 on ``t in [0, 1]``.

Wirings, all at the same budget ``k`` (``density = k / nodes ** 2``):

* ``dnw``: the top-k candidates by ``|w|``, re-chosen every step, the straight-through gradient to every
  candidate (the paper's algorithm).
* ``random``: a fixed uniformly random set of ``k`` candidates (the paper's "random graph, same edges").
* ``no_update``: the top-k of the initial weights, frozen (a random set too, since the initial weights are
  i.i.d.; it isolates the effect of rewiring from that of the selection rule).
* ``complete``: every candidate (no budget; one value per setting, the ceiling).

Budgets: from under one active edge per node (``k = 50`` at 100 nodes) to the paper's 5 % of
``nodes ** 2`` (``k = 500``).  Training: :func:`neuralgraphs.train.fit`, SGD with momentum 0.9, lr 0.1 with
a cosine decay, weight decay 5e-5, batch 64, ``--epochs`` epochs, the same seeds for every wiring (the seed
sets the initial weights, the random wiring and the batch order).

Per budget the row gives each wiring's mean and std over seeds, ``sigma`` (Welch's t of DNW's mean minus
random's: positive when DNW is ahead) and its two-sided p-value, and the diagnostics of DNW and random:

* ``*_swaps_first`` / ``*_swaps_last``: edges that entered the active set in the first and in the last epoch
  (0 for the fixed wirings; a DNW that swaps nothing early is the no-update baseline in disguise);
* ``*_live``: live nodes (carry a signal and reach an output), ``*_effective``: active edges on a path from
  an input to an output, ``*_fed``: output nodes with at least one effective in-edge (out of 16);
* ``dnw_scale``: mean ``|w|`` of DNW's active edges at the end over its value at initialisation.

``--quick`` runs one budget per setting (``k = 100`` static, ``k = 50`` discrete and continuous), DNW and
random only, 2 seeds, 4 epochs: 12 runs on ``--jobs`` processes, under a minute on 2 cores.

Run ``python benchmarks/fidelity.py [--quick] [--settings static,discrete,continuous] [--budgets 50,100,200,500]
[--seeds 5] [--epochs 15] [--nodes 100] [--jobs 2] [--json PATH]``.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Dict, List, Sequence, Tuple

import _common as common  # first: puts the repository on sys.path
import torch

SETTINGS = ("static", "discrete", "continuous")
WIRINGS = ("dnw", "random", "no_update", "complete")
QUICK = {"budgets": {"static": [100], "discrete": [50], "continuous": [50]}, "wirings": ("dnw", "random"),
         "seeds": 2, "epochs": 4}


def _csv(kind):
    def parse(text: str):
        return [kind(t) for t in text.split(",") if t.strip()]
    return parse


def _extra(parser) -> None:
    parser.add_argument("--settings", type=_csv(str), default=list(SETTINGS),
                        help="comma-separated subset of " + ", ".join(SETTINGS) + " (default: all)")
    parser.add_argument("--budgets", type=_csv(int), default=None,
                        help="comma-separated active-edge budgets k (default: 50,100,200,500)")
    parser.add_argument("--wirings", type=_csv(str), default=None,
                        help="comma-separated subset of " + ", ".join(WIRINGS) + " (default: all; dnw and random "
                        "are always run)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..S-1 (default: 5)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: 15)")
    parser.add_argument("--nodes", type=int, default=100, help="graph nodes (default: 100)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel training processes (default: 2)")


def run_one(job: Tuple[str, str, int, int], epochs: int, nodes: int) -> Dict[str, Any]:
    """Train one model; returns its final test accuracy and the diagnostics (runs in a worker process)."""
    torch.set_num_threads(1)
    from neuralgraphs.analysis import effective_edges, live_nodes
    from neuralgraphs.analysis.counts import effective_edge_mask
    from neuralgraphs.analysis.history import WiringHistory
    from neuralgraphs.models import DigitsGraphClassifier
    from neuralgraphs.train import digits_loaders, fit

    setting, wiring, k, seed = job
    # the complete wiring ignores the budget
    model = DigitsGraphClassifier(setting, wiring, num_nodes=nodes, density=min(1.0, k / nodes ** 2), seed=seed)
    g = model.graph
    with torch.no_grad():
        scale0 = float(g.weight.detach()[g.active().mask].abs().mean())
    train, test = digits_loaders(64, seed=0)
    hist = WiringHistory()
    start = time.perf_counter()
    history = fit(model, train, test, epochs=epochs, lr=0.1, weight_decay=5e-5, progress=False, seed=seed,
                  callbacks=[hist])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        active = g.active().mask
        scale = float(g.weight.detach()[active].abs().mean())
        eff = effective_edge_mask(g)
        dst = g.graph.edge_index[1, eff]
        fed = int(torch.isin(g.graph.outputs, dst).sum())
    swaps = hist.swaps()
    return {"setting": setting, "wiring": wiring, "k": k, "seed": seed, "acc": history["test_acc"][-1],
            "active": int(active.sum()), "swaps_first": swaps[0], "swaps_last": swaps[-1],
            "live": int(live_nodes(g).sum()), "effective": effective_edges(g), "fed": fed,
            "scale": scale / scale0, "seconds": seconds}


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: List[Dict[str, Any]], settings: Sequence[str], budgets: Dict[str, List[int]],
              wirings: Sequence[str], nodes: int) -> List[common.Row]:
    """One row per setting and budget: accuracy per wiring over seeds, Welch's test, diagnostics."""
    from neuralgraphs.cli.compare import welch

    rows: List[common.Row] = []
    for setting in settings:
        done = [r for r in records if r["setting"] == setting]
        complete = [r["acc"] for r in done if r["wiring"] == "complete"]
        for k in budgets[setting]:
            by = {w: [r for r in done if r["wiring"] == w and r["k"] == k] for w in wirings if w != "complete"}
            acc = {w: [100 * r["acc"] for r in rs] for w, rs in by.items()}
            t, p = welch(acc["dnw"], acc["random"])
            row: common.Row = {"case": f"{setting} k={k}", "setting": setting, "k": k,
                               "edges_per_node": k / nodes, "seeds": len(acc["dnw"])}
            for w in by:
                row[f"{w}_acc"], row[f"{w}_std"] = _mean(acc[w]), _std(acc[w])
            row["complete_acc"] = 100 * _mean(complete) if complete else None
            row["sigma"], row["p"] = t, p
            for w in ("dnw", "random"):
                for key in ("swaps_first", "swaps_last", "live", "effective", "fed"):
                    row[f"{w}_{key}"] = _mean([r[key] for r in by[w]])
            row["dnw_scale"] = _mean([r["scale"] for r in by["dnw"]])
            row["time_per_run_s"] = _mean([r["seconds"] for rs in by.values() for r in rs])
            rows.append(row)
    return rows


def main(argv=None) -> List[common.Row]:
    args = common.parse_args(__doc__.split("\n\n")[0], argv, _extra)
    bad = [s for s in args.settings if s not in SETTINGS]
    if bad or not args.settings:
        raise SystemExit(f"--settings: expected a subset of {', '.join(SETTINGS)}, got {args.settings}")
    if args.quick:
        budgets = {s: QUICK["budgets"][s] for s in args.settings}
        wirings = list(QUICK["wirings"])
        seeds, epochs = QUICK["seeds"], QUICK["epochs"]
    else:
        budgets = {s: [50, 100, 200, 500] for s in args.settings}
        wirings, seeds, epochs = list(WIRINGS), 5, 15
    if args.budgets is not None:
        if not args.budgets or min(args.budgets) < 1:
            raise SystemExit(f"--budgets: expected positive edge counts, got {args.budgets}")
        budgets = {s: list(args.budgets) for s in args.settings}
    if args.wirings is not None:
        bad = [w for w in args.wirings if w not in WIRINGS]
        if bad:
            raise SystemExit(f"--wirings: expected a subset of {', '.join(WIRINGS)}, got {args.wirings}")
        wirings = ["dnw", "random"] + [w for w in args.wirings if w not in ("dnw", "random")]
    seeds = args.seeds if args.seeds is not None else seeds
    epochs = args.epochs if args.epochs is not None else epochs
    for name, value, lo in (("--seeds", seeds, 1), ("--epochs", epochs, 1), ("--nodes", args.nodes, 30),
                            ("--jobs", args.jobs, 1)):
        if value < lo:
            raise SystemExit(f"{name}: expected at least {lo}, got {value}")
    if args.device.type != "cpu":
        raise SystemExit("--device: this benchmark trains on the CPU (digits models are too small for a GPU)")

    jobs = []
    for setting in args.settings:
        for seed in range(seeds):
            for wiring in wirings:
                for k in ([max(budgets[setting])] if wiring == "complete" else budgets[setting]):
                    jobs.append((setting, wiring, k, seed))
    # the longest runs first, so that the pool does not end on one straggler
    cost = {"static": 1, "discrete": 2, "continuous": 4}
    jobs.sort(key=lambda j: -cost[j[0]] * (1 + j[2] / 200))
    print(f"fidelity: {len(jobs)} runs ({', '.join(args.settings)}; budgets {budgets}; wirings {wirings}; "
          f"{seeds} seeds; {epochs} epochs; {args.nodes} nodes) on {args.jobs} processes", flush=True)
    start = time.perf_counter()
    records: List[Dict[str, Any]] = []
    if args.jobs == 1:
        records = [run_one(job, epochs, args.nodes) for job in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a forked torch with live OpenMP threads can deadlock in the child
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            records = list(pool.map(run_one, jobs, [epochs] * len(jobs), [args.nodes] * len(jobs)))
    rows = summarise(records, args.settings, budgets, wirings, args.nodes)
    env = common.environment(args.device)
    for row in rows:
        row.update(epochs=epochs, nodes=args.nodes, **env)
    columns = ["case", "dnw_acc", "dnw_std", "random_acc", "random_std", "sigma", "p"]
    columns += [c for c in ("no_update_acc", "complete_acc") if any(r.get(c) is not None for r in rows)
                and c.split("_acc")[0] in wirings]
    columns += ["dnw_swaps_first", "dnw_swaps_last", "dnw_live", "random_live", "dnw_effective",
                "random_effective", "dnw_fed", "random_fed", "dnw_scale"]
    common.print_table(rows, columns, title=f"test accuracy (%) at equal edges, mean and std over {seeds} seeds; "
                       "sigma: Welch t of DNW - random")
    print(f"wall time {time.perf_counter() - start:.1f} s", flush=True)
    if args.json:
        common.write_json(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
