"""The ``neuralgraphs`` command line: ``compare``, ``demo`` and ``inspect``.

``neuralgraphs compare`` trains RandWire (WS, ER, BA), DNW and complete-graph networks on the bundled 8x8
digits over several seeds and writes a table, CSV / JSON results and PNG plots; ``neuralgraphs demo`` shows a
wiring being learned; ``neuralgraphs inspect PATH`` prints statistics of a saved graph or checkpoint.
Run ``neuralgraphs COMMAND --help`` for the options.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["main", "build_parser", "COMPARE_DEFAULTS", "QUICK_DEFAULTS", "MODEL_KEYS"]

MODELS = ("ws", "er", "ba", "dnw", "complete")

#: Defaults of ``neuralgraphs compare`` (measured to finish well within 5 minutes on 2 CPU cores).
COMPARE_DEFAULTS: Dict[str, Any] = {
    "epochs": 15, "seeds": [0, 1, 2], "nodes": 12, "channels": 8, "budget": None, "models": list(MODELS),
    "lr": 0.1, "batch_size": 64, "threads": None, "out": "compare_results", "progress": True,
}
#: What ``--quick`` changes (a smoke test well under a minute); explicit options still win.
QUICK_DEFAULTS: Dict[str, Any] = {"epochs": 1, "seeds": [0], "nodes": 6, "channels": 4}

#: Keys of each row of ``"models"`` in ``results.json`` (and the columns of ``results.csv``).
MODEL_KEYS = ("model", "acc_mean", "acc_std", "accuracies", "active_edges", "parameters", "flops", "time_s",
              "seeds")

# Options a --config file may set, by their destination name (``batch-size`` is accepted for batch_size).
_CONFIG_KEYS = tuple(COMPARE_DEFAULTS) + ("quick",)


# ------------------------------------------------------------------------------------------ option types
def _int_at_least(minimum: int):
    def parse(text: Any) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {value}")
        return value
    parse.__name__ = f"int>={minimum}"
    return parse


def _positive_float(text: Any) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _seeds(text: Any) -> List[int]:
    """``"3"`` -> seeds 0, 1, 2; ``"0,5,9"`` (or a YAML list) -> those seeds; ``"7,"`` -> seed 7 only."""
    if isinstance(text, (list, tuple)):
        items = [str(t) for t in text]
    else:
        text = str(text).strip()
        if "," not in text:
            count = _int_at_least(1)(text)
            return list(range(count))
        items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a count or a comma-separated list of seeds, got nothing")
    seeds = []
    for item in items:
        try:
            seed = int(item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected non-negative int seeds, got {item!r}") from None
        if seed < 0:
            raise argparse.ArgumentTypeError(f"expected non-negative int seeds, got {seed}")
        seeds.append(seed)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct, got {seeds}")
    return seeds


def _models(text: Any) -> List[str]:
    items = [str(t) for t in text] if isinstance(text, (list, tuple)) else str(text).split(",")
    models = [t.strip().lower() for t in items if t.strip()]
    if not models:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(MODELS)}, got nothing")
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown model(s) {bad}; allowed: {','.join(MODELS)}")
    if len(set(models)) != len(models):
        raise argparse.ArgumentTypeError(f"models must be distinct, got {models}")
    return models


def _bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _out_dir(text: Any) -> str:
    if not isinstance(text, (str, os.PathLike)):
        raise argparse.ArgumentTypeError(f"expected a folder path, got {type(text).__name__} {text!r}")
    path = os.fspath(text)
    if not path.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path!r} exists and is not a folder")
    return path


_PARSERS = {"epochs": _int_at_least(1), "seeds": _seeds, "nodes": _int_at_least(3), "channels": _int_at_least(2),
            "budget": _int_at_least(1), "models": _models, "lr": _positive_float, "batch_size": _int_at_least(1),
            "threads": _int_at_least(1), "out": _out_dir, "progress": _bool, "quick": _bool}


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neuralgraphs`` command."""
    from neuralgraphs import __version__

    parser = argparse.ArgumentParser(prog="neuralgraphs", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"neuralgraphs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = COMPARE_DEFAULTS
    cmp = sub.add_parser(
        "compare", help="RandWire (WS, ER, BA) vs DNW vs complete graph on the digits, over several seeds",
        description="Train RandWire WS / ER / BA, DNW (budget = the WS graph's edges) and the complete graph on "
                    "scikit-learn's 8x8 digits over several seeds; print a table and write results.csv, "
                    "runs.csv, results.json, accuracy.png and curves.png to --out. Options left out take their "
                    "value from --config, then from --quick, then from the defaults shown.")
    # Defaults are None so that an option given on the command line can be told apart from one left out.
    cmp.add_argument("--epochs", type=_PARSERS["epochs"], help=f"epochs per run (default: {d['epochs']})")
    cmp.add_argument("--seeds", type=_seeds, help="number of seeds, or a comma-separated list such as 0,4,7 "
                     f"(a single seed: '7,') (default: {len(d['seeds'])})")
    cmp.add_argument("--nodes", type=_PARSERS["nodes"], help=f"nodes per stage (default: {d['nodes']})")
    cmp.add_argument("--channels", type=_PARSERS["channels"], help=f"channels per node (default: {d['channels']})")
    cmp.add_argument("--budget", type=_PARSERS["budget"],
                     help="active edges per DNW stage (default: the WS graph's edge count, same seed)")
    cmp.add_argument("--models", type=_models, help=f"comma-separated subset of {','.join(MODELS)} (default: all)")
    cmp.add_argument("--lr", type=_positive_float, help=f"peak learning rate, cosine schedule (default: {d['lr']})")
    cmp.add_argument("--batch-size", dest="batch_size", type=_PARSERS["batch_size"],
                     help=f"batch size (default: {d['batch_size']})")
    cmp.add_argument("--threads", type=_PARSERS["threads"], help="torch CPU threads (default: torch's choice)")
    cmp.add_argument("--out", type=_out_dir, help=f"output folder (default: {d['out']}/)")
    cmp.add_argument("--quick", action="store_const", const=True, default=None,
                     help="a smoke test under a minute: " + ", ".join(f"{k}={v}" for k, v in QUICK_DEFAULTS.items()))
    cmp.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                     help="no progress bar")
    cmp.add_argument("--config", metavar="YAML", help="YAML file of option values (keys: "
                     + ", ".join(_CONFIG_KEYS) + ")")
    cmp.set_defaults(func=_cmd_compare)

    demo = sub.add_parser("demo", help="learn a wiring on the digits and show how it changes",
                          description="Train a static neural graph (64 pixel nodes -> 2 hidden blocks -> 10 "
                                      "output nodes) with DNW rewiring on the digits and print the swaps per "
                                      "epoch; then train the same graph with a fixed random wiring.")
    demo.add_argument("--epochs", type=_PARSERS["epochs"], default=5, help="epochs (default: 5)")
    demo.add_argument("--budget", type=_PARSERS["budget"], default=600, help="active edges (default: 600)")
    demo.add_argument("--seed", type=_int_at_least(0), default=0, help="seed (default: 0)")
    demo.set_defaults(func=_cmd_demo)

    ins = sub.add_parser("inspect", help="statistics of a saved graph (.json / .graphml) or checkpoint",
                         description="Print dag_statistics of a graph saved with save_graph (node-link .json or "
                                     ".graphml), or a summary of a checkpoint written by save_checkpoint / fit.")
    ins.add_argument("path", help="graph file (.json, .graphml) or checkpoint (.pt, ...)")
    ins.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``neuralgraphs`` console script and of ``python -m neuralgraphs``.

    Args:
        argv: arguments without the program name. (default: :obj:`None`, ``sys.argv[1:]``)

    Returns:
        int: the exit status (0 on success). Invalid options exit through argparse with status 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args, parser) or 0)


# ------------------------------------------------------------------------------------------ compare
def _resolve_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """Merge command line, --config, --quick and defaults (in that order of precedence), all validated."""
    config: Dict[str, Any] = {}
    if args.config is not None:
        from neuralgraphs.train.checkpoint import load_yaml_config

        try:
            raw = load_yaml_config(args.config)
        except (OSError, ValueError, ImportError) as exc:
            parser.error(f"argument --config: {exc}")
        for key, value in raw.items():
            name = str(key).replace("-", "_")
            if name not in _CONFIG_KEYS:
                parser.error(f"argument --config: unknown key {key!r} in {args.config}; allowed keys: "
                             f"{', '.join(_CONFIG_KEYS)}")
            if value is None and name in ("budget", "threads"):
                config[name] = None
                continue
            try:
                config[name] = _PARSERS[name](value)
            except argparse.ArgumentTypeError as exc:
                parser.error(f"argument --config: key {key!r} in {args.config}: {exc}")
    quick = args.quick if args.quick is not None else bool(config.get("quick", False))
    opts: Dict[str, Any] = {}
    for name, default in COMPARE_DEFAULTS.items():
        given = getattr(args, name, None)
        if given is not None:
            opts[name] = given
        elif name in config:
            opts[name] = config[name]
        elif quick and name in QUICK_DEFAULTS:
            opts[name] = QUICK_DEFAULTS[name]
        else:
            opts[name] = default
    opts["quick"] = quick
    if opts["budget"] is not None:
        n = opts["nodes"]
        limit = n * (n - 1) // 2 + 2 * n
        if opts["budget"] > limit:
            parser.error(f"argument --budget: at most {limit} edges (every candidate of a {n}-node DNW stage), "
                         f"got {opts['budget']}")
    if opts["nodes"] < 5:
        needs_ws = [m for m in opts["models"] if m == "ws" or (m == "dnw" and opts["budget"] is None)]
        if needs_ws:
            parser.error(f"argument --nodes: {', '.join(needs_ws)} need at least 5 nodes (a WS graph with k=4 "
                         f"neighbours; dnw takes its budget from one unless --budget is given), got "
                         f"{opts['nodes']}")
    if opts["budget"] is not None and "dnw" not in opts["models"]:
        parser.error(f"argument --budget: sets the dnw model's edges, but the models are {','.join(opts['models'])}")
    # the output folder is made now, not after minutes of training
    try:
        os.makedirs(opts["out"], exist_ok=True)
    except OSError as exc:
        parser.error(f"argument --out: cannot create the folder {opts['out']!r} ({exc.strerror or exc})")
    if not os.access(opts["out"], os.W_OK):
        parser.error(f"argument --out: the folder {opts['out']!r} is not writable")
    return opts


def _mean_std(values: Sequence[float]):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _number(values: Sequence[float]):
    mean = statistics.fmean(values)
    return int(mean) if mean == int(mean) else round(mean, 1)


def run_compare(opts: Dict[str, Any], log=print) -> Dict[str, Any]:
    """Train every model of ``opts["models"]`` for every seed and return the results dict.

    Args:
        opts: resolved options (see :data:`COMPARE_DEFAULTS`).
        log: function receiving progress lines (default: :func:`print`).

    Returns:
        dict: ``{"config": opts, "models": [row per model, keys MODEL_KEYS], "runs": [row per run],
        "histories": {model: [fit history per seed]}, "wall_time_s": float}``.
    """
    import torch

    from neuralgraphs.analysis import count_flops, count_parameters
    from neuralgraphs.models.randwire import digits_network
    from neuralgraphs.train import digits_loaders, fit

    if opts["threads"] is not None:
        torch.set_num_threads(opts["threads"])
    start = time.perf_counter()
    # One fixed train / test split; the seed varies the network (graph and initial weights) and the batch order.
    train_loader, test_loader = digits_loaders(opts["batch_size"], seed=0)
    jobs = [(m, s) for m in opts["models"] for s in opts["seeds"]]
    bar = None
    if opts["progress"]:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="compare", unit="run", file=sys.stderr, dynamic_ncols=True)
    runs: List[Dict[str, Any]] = []
    histories: Dict[str, List[Dict[str, Any]]] = {m: [] for m in opts["models"]}
    try:
        for model_name, seed in jobs:
            if bar is not None:
                bar.set_postfix_str(f"{model_name} seed {seed}")
            model = digits_network(model_name, num_nodes=opts["nodes"], channels=opts["channels"], seed=seed,
                                   budget=opts["budget"] if model_name == "dnw" else None)
            t0 = time.perf_counter()
            history = fit(model, train_loader, test_loader, epochs=opts["epochs"], lr=opts["lr"],
                          weight_decay=5e-5, schedule="cosine", progress=False, seed=seed)
            seconds = time.perf_counter() - t0
            histories[model_name].append(history)
            runs.append({"model": model_name, "seed": seed, "test_acc": history["test_acc"][-1],
                         "active_edges": int(model.num_active_edges()), "parameters": count_parameters(model),
                         "flops": count_flops(model, (1, 8, 8)), "time_s": seconds})
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    rows = []
    for model_name in opts["models"]:
        mine = [r for r in runs if r["model"] == model_name]
        accs = [r["test_acc"] for r in mine]
        mean, std = _mean_std(accs)
        rows.append({"model": model_name, "acc_mean": mean, "acc_std": std, "accuracies": accs,
                     "active_edges": _number([r["active_edges"] for r in mine]),
                     "parameters": _number([r["parameters"] for r in mine]),
                     "flops": _number([r["flops"] for r in mine]),
                     "time_s": statistics.fmean(r["time_s"] for r in mine),
                     "seeds": [r["seed"] for r in mine]})
    return {"config": dict(opts), "models": rows, "runs": runs, "histories": histories,
            "wall_time_s": time.perf_counter() - start}


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The comparison table as aligned text."""
    header = ("model", "test acc (%)", "active edges", "params", "FLOPs (MAC)", "time/run (s)")
    lines = [(r["model"], f"{100 * r['acc_mean']:.1f} ± {100 * r['acc_std']:.1f}", f"{r['active_edges']}",
              f"{r['parameters']}", f"{r['flops']}", f"{r['time_s']:.1f}") for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(line) for line in lines])


def write_results(results: Dict[str, Any], out: str) -> Dict[str, str]:
    """Write ``results.json``, ``results.csv``, ``runs.csv``, ``accuracy.png`` and ``curves.png`` to ``out``.

    Returns:
        dict: file kind to path.
    """
    from neuralgraphs.viz import plot_compare, plot_training_curves

    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in
             ("results.json", "results.csv", "runs.csv", "accuracy.png", "curves.png")}
    tmp = paths["results.json"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, paths["results.json"])
    with open(paths["results.csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MODEL_KEYS)
        writer.writeheader()
        for row in results["models"]:
            writer.writerow({**row, "accuracies": " ".join(f"{a:.4f}" for a in row["accuracies"]),
                             "seeds": " ".join(map(str, row["seeds"]))})
    with open(paths["runs.csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(results["runs"][0]))
        writer.writeheader()
        writer.writerows(results["runs"])
    plot_compare(results["models"], paths["accuracy.png"])
    plot_training_curves(results["histories"], paths["curves.png"])
    return paths


def _cmd_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    opts = _resolve_compare(args, parser)
    n_runs = len(opts["models"]) * len(opts["seeds"])
    print(f"neuralgraphs compare: {', '.join(opts['models'])} x seeds {opts['seeds']} ({n_runs} runs), "
          f"{opts['epochs']} epochs, {opts['nodes']} nodes x {opts['channels']} channels per stage, "
          f"batch {opts['batch_size']}, lr {opts['lr']}", flush=True)
    results = run_compare(opts)
    paths = write_results(results, opts["out"])
    print()
    print(format_table(results["models"]))
    print(f"\nwall time {results['wall_time_s']:.1f} s; results in {opts['out']}/ "
          f"({', '.join(os.path.basename(p) for p in paths.values())})")
    return 0


# ------------------------------------------------------------------------------------------ demo
def _cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch

    from neuralgraphs.analysis.history import WiringHistory
    from neuralgraphs.dynamics import StaticGraph
    from neuralgraphs.generators import blocked_dag
    from neuralgraphs.nodes import vector_node_op
    from neuralgraphs.train import digits_loaders, fit

    graph = blocked_dag([64, 32, 32, 10])  # 64 pixel nodes -> two hidden blocks -> 10 logit nodes
    if args.budget > graph.num_edges:
        parser.error(f"argument --budget: at most {graph.num_edges} candidate edges, got {args.budget}")
    train_loader, test_loader = digits_loaders(64, seed=0, as_images=False)
    print(f"candidate graph: {graph.num_nodes} nodes, {graph.num_edges} candidate edges, budget {args.budget} "
          f"({100 * args.budget / graph.num_edges:.1f}%)")
    finals = {}
    for wiring in ("dnw", "random"):
        torch.manual_seed(args.seed)
        model = StaticGraph(graph, vector_node_op(graph.num_nodes, norm="batch"), wiring, k=args.budget,
                            seed=args.seed)
        hist = WiringHistory()
        t0 = time.perf_counter()
        history = fit(model, train_loader, test_loader, epochs=args.epochs, lr=0.1, seed=args.seed,
                      progress=False, callbacks=[hist])
        finals[wiring] = history["test_acc"][-1]
        print(f"\n{wiring} wiring ({time.perf_counter() - t0:.1f} s):")
        print(f"{'epoch':>5}  {'train loss':>10}  {'test acc':>8}  {'swaps':>5}  {'in use':>6}  "
              f"{'final wiring present':>20}")
        for row, epoch in zip(hist.summary()[1:], history["epoch"]):
            i = epoch - 1
            print(f"{epoch:>5}  {history['train_loss'][i]:>10.3f}  {100 * history['test_acc'][i]:>7.1f}%  "
                  f"{row['swaps']:>5}  {_edges_in_use(model):>6}  {100 * row['final_overlap']:>19.1f}%")
    print(f"\nfinal test accuracy: DNW {100 * finals['dnw']:.1f}%, fixed random wiring "
          f"{100 * finals['random']:.1f}% (same budget)")
    return 0


def _edges_in_use(model) -> int:
    """Active edges on some input-to-output path (an edge elsewhere cannot change the output)."""
    import torch

    from neuralgraphs.graph import NeuralGraph

    g = model.graph
    with torch.no_grad():
        idx = model.active().index
    active = NeuralGraph(g.num_nodes, g.edge_index[:, idx], inputs=g.inputs, outputs=g.outputs)
    return int(active.useful_edges().sum())


# ------------------------------------------------------------------------------------------ inspect
def _cmd_inspect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    path = args.path
    if not os.path.isfile(path):
        parser.error(f"argument path: no such file {path!r}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".json", ".graphml"):
        from xml.etree.ElementTree import ParseError

        import networkx as nx

        from neuralgraphs.analysis import dag_statistics
        from neuralgraphs.generators import load_graph

        try:
            graph = load_graph(path)
        except (ValueError, TypeError, OSError, KeyError, nx.NetworkXError, ParseError) as exc:
            parser.error(f"argument path: cannot read a graph from {path!r} ({exc})")
        print(f"{path}: directed graph")
        for key, value in graph.graph.items():
            print(f"  graph attribute {key}: {value}")
        if nx.is_directed_acyclic_graph(graph):
            stats = dag_statistics(graph)
        else:
            stats = {"num_nodes": graph.number_of_nodes(), "num_edges": graph.number_of_edges(), "acyclic": False}
        active = [(u, v) for u, v, a in graph.edges(data="active") if a]
        if active:
            stats["active_edges"] = len(active)
        for key, value in stats.items():
            print(f"  {key:<16} {value:.3f}" if isinstance(value, float) else f"  {key:<16} {value}")
        return 0
    from neuralgraphs.train.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(path)
    except (ValueError, OSError) as exc:
        parser.error(f"argument path: {exc}")
    _print_checkpoint(path, state)
    return 0


def _print_checkpoint(path: str, state: Dict[str, Any]) -> None:
    # Any dict save_checkpoint accepts is printed; the parts fit writes get a closer look when well formed.
    import torch

    print(f"{path}: checkpoint with keys {sorted(map(str, state))}")
    if "epoch" in state:
        print(f"  epoch            {state['epoch']}")
    run = state.get("run")
    if isinstance(run, dict):
        for key, value in run.items():
            print(f"  {str(key):<16} {value}")
    history = state.get("history")
    if isinstance(history, dict) and history.get("epoch"):
        for key in ("train_loss", "train_acc", "test_acc"):
            values = history.get(key)
            if isinstance(values, (list, tuple)) and values and isinstance(values[-1], (int, float)):
                print(f"  last {key:<11} {values[-1]:.4f}")
    weights = state.get("model", state)
    if isinstance(weights, torch.Tensor):
        weights = {"model": weights}
    if not isinstance(weights, dict):
        return
    tensors = {str(k): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        return
    print(f"  tensors          {len(tensors)}, {sum(v.numel() for v in tensors.values())} values")
    for key, value in tensors.items():
        if key.endswith("active_index"):
            print(f"  {key}: {value.numel()} active edges")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
