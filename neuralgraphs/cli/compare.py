"""``neuralgraphs compare``: learned wiring (DNW) against random wirings at equal edges, on the bundled digits.

Two experiments, over several seeds each, with Welch's test of DNW against every random wiring:

* ``channels`` -- the DNW paper's comparison at channel granularity: one static graph whose nodes are single
  channels (:class:`~neuralgraphs.models.channels.ChannelGraphClassifier`).  The random baselines are graphs
  drawn by the RandWire generators over the same nodes (WS, ER, BA, turned into DAGs by the paper's
  numbering) and a uniform random wiring; DNW learns which ``k`` candidates to use, with ``k`` the WS graph's
  edge count; the complete graph is the upper reference.  The candidates of the random, DNW and complete
  wirings join every block of nodes to every later one (inputs, ``--graph-blocks`` blocks of hidden nodes,
  outputs), so that the graph runs in a few levels and trains ``--graph-epochs`` epochs within the budget.
* ``stages`` -- the RandWire macro-architecture (:func:`~neuralgraphs.models.randwire.digits_network`:
  stages of C-channel nodes).  The random stages are WS, ER and BA graphs; the DNW stage chooses its edges
  among the edges from one block of the stage's nodes to a later one plus ``input -> v`` and ``v -> output``
  (``--blocks``, each block run at once), with the budget of the WS stage of the same seed; the complete
  stage uses all of them.

Both use the sparse settings of the generators (about one edge per node: WS(2, 0.75), ER(2 / (N - 1)),
BA(1)): the digits are easy enough that every wiring reaches about 97 % at a few edges per node, and
nothing can then be told apart (see ``benchmarks/fidelity.py``).
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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["COMPARE_DEFAULTS", "QUICK_DEFAULTS", "MODEL_KEYS", "EXPERIMENTS", "CHANNEL_MODELS", "STAGE_MODELS",
           "add_parser", "resolve_options", "run_compare", "format_table", "write_results", "welch"]

EXPERIMENTS = ("channels", "stages")
CHANNEL_MODELS = ("ws", "er", "ba", "random", "dnw", "complete")
STAGE_MODELS = ("ws", "er", "ba", "dnw", "complete")
RANDOM_MODELS = ("ws", "er", "ba", "random")
# input nodes (stem channels) and output nodes (read by the head) of the channels experiment's graph
GRAPH_INPUTS, GRAPH_OUTPUTS = 4, 8

#: Defaults of ``neuralgraphs compare`` (207-383 s on 2 CPU cores, by machine; see README.rst).
COMPARE_DEFAULTS: Dict[str, Any] = {
    "experiments": list(EXPERIMENTS), "epochs": 12, "seeds": [0, 1, 2, 3, 4],
    "graph_nodes": 32, "graph_blocks": 5, "graph_epochs": 24, "graph_budget": None,
    "graph_models": list(CHANNEL_MODELS),
    "nodes": 12, "channels": 8, "budget": None, "blocks": 4, "models": list(STAGE_MODELS),
    "lr": 0.1, "batch_size": 64, "jobs": None, "threads": 1, "out": "compare_results", "progress": True,
}
#: What ``--quick`` changes (a smoke test under a minute, trained well above chance); explicit options win.
QUICK_DEFAULTS: Dict[str, Any] = {"epochs": 4, "graph_epochs": 6, "seeds": [0, 1], "batch_size": 32, "graph_nodes": 16,
                                  "graph_blocks": 2, "nodes": 8,
                                  "channels": 8}

#: Keys of each row of an experiment's ``"models"`` in ``results.json`` (and the columns of ``results.csv``).
MODEL_KEYS = ("experiment", "model", "acc_mean", "acc_std", "accuracies", "diff_vs_dnw", "welch_t", "welch_p",
              "active_edges", "effective_edges", "live_nodes", "parameters", "flops", "swaps_first_epoch",
              "swaps_last_epoch", "time_s", "seeds")

# Options a --config file may set, by their destination name.
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
            return list(range(_int_at_least(1)(text)))
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


def _subset(allowed: Sequence[str], what: str):
    def parse(text: Any) -> List[str]:
        items = [str(t) for t in text] if isinstance(text, (list, tuple)) else str(text).split(",")
        chosen = [t.strip().lower() for t in items if t.strip()]
        if not chosen:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed)}, got nothing")
        bad = [m for m in chosen if m not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad}; allowed: {','.join(allowed)}")
        if len(set(chosen)) != len(chosen):
            raise argparse.ArgumentTypeError(f"{what} must be distinct, got {chosen}")
        return chosen
    parse.__name__ = what
    return parse


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


_PARSERS: Dict[str, Callable[[Any], Any]] = {
    "experiments": _subset(EXPERIMENTS, "experiments"), "epochs": _int_at_least(1), "seeds": _seeds,
    "graph_nodes": _int_at_least(1), "graph_blocks": _int_at_least(1), "graph_epochs": _int_at_least(1),
    "graph_budget": _int_at_least(1),
    "graph_models": _subset(CHANNEL_MODELS, "model(s)"), "nodes": _int_at_least(3), "channels": _int_at_least(2),
    "budget": _int_at_least(1), "blocks": _int_at_least(1), "models": _subset(STAGE_MODELS, "model(s)"),
    "lr": _positive_float,
    "batch_size": _int_at_least(1), "jobs": _int_at_least(1), "threads": _int_at_least(1), "out": _out_dir,
    "progress": _bool, "quick": _bool,
}
_OPTIONAL = ("graph_budget", "budget", "jobs")  # None is a value of their own (a default computed later)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compare`` command to the subcommands ``sub``."""
    d = COMPARE_DEFAULTS
    cmp = sub.add_parser(
        "compare", help="DNW vs random wirings at equal edges on the digits: channel graphs and RandWire stages",
        description=__doc__.split("\n\n")[0] + " Options left out take their value from --config, then from "
        "--quick, then from the defaults shown.")
    # Defaults are None so that an option given on the command line can be told apart from one left out.
    opt = cmp.add_argument
    opt("--experiments", type=_PARSERS["experiments"],
        help=f"comma-separated subset of {','.join(EXPERIMENTS)} (default: both)")
    opt("--epochs", type=_PARSERS["epochs"], help=f"stages experiment: epochs per run (default: {d['epochs']})")
    opt("--seeds", type=_seeds, help="number of seeds, or a comma-separated list such as 0,4,7 (a single seed: '7,') "
        f"(default: {len(d['seeds'])})")
    opt("--graph-nodes", dest="graph_nodes", type=_PARSERS["graph_nodes"],
        help=f"channels experiment: nodes of the graph (default: {d['graph_nodes']})")
    opt("--graph-blocks", dest="graph_blocks", type=_PARSERS["graph_blocks"],
        help="channels experiment: blocks of hidden nodes of the candidate DAG of the random, DNW and complete "
        f"wirings, each run at once (default: {d['graph_blocks']})")
    opt("--graph-epochs", dest="graph_epochs", type=_PARSERS["graph_epochs"],
        help=f"channels experiment: epochs per run (default: {d['graph_epochs']})")
    opt("--graph-budget", dest="graph_budget", type=_PARSERS["graph_budget"],
        help="channels experiment: active edges of every wiring but the complete one (default: the WS graph's)")
    opt("--graph-models", dest="graph_models", type=_PARSERS["graph_models"],
        help=f"channels experiment: subset of {','.join(CHANNEL_MODELS)} (default: all)")
    opt("--nodes", type=_PARSERS["nodes"], help=f"stages experiment: nodes per stage (default: {d['nodes']})")
    opt("--channels", type=_PARSERS["channels"], help=f"stages experiment: channels per node (default: {d['channels']})")
    opt("--budget", type=_PARSERS["budget"],
        help="stages experiment: active edges per DNW stage (default: the WS stage's, same seed)")
    opt("--blocks", type=_PARSERS["blocks"],
        help="stages experiment: blocks of hidden nodes of the DNW and complete stages' candidate DAG, each run "
        f"at once (default: {d['blocks']})")
    opt("--models", type=_PARSERS["models"],
        help=f"stages experiment: subset of {','.join(STAGE_MODELS)} (default: all)")
    opt("--lr", type=_positive_float, help=f"peak learning rate, cosine schedule (default: {d['lr']})")
    opt("--batch-size", dest="batch_size", type=_PARSERS["batch_size"], help=f"batch size (default: {d['batch_size']})")
    opt("--jobs", type=_PARSERS["jobs"], help="runs in parallel processes (default: the CPU cores, at most 8)")
    opt("--threads", type=_PARSERS["threads"], help=f"torch CPU threads per run (default: {d['threads']})")
    opt("--out", type=_out_dir, help=f"output folder (default: {d['out']}/)")
    opt("--quick", action="store_const", const=True, default=None,
        help="a smoke test under a minute: " + ", ".join(f"{k}={v}" for k, v in QUICK_DEFAULTS.items()))
    opt("--no-progress", dest="progress", action="store_const", const=False, default=None, help="no progress bar")
    opt("--config", metavar="YAML", help="YAML file of option values (keys: " + ", ".join(_CONFIG_KEYS) + ")")
    cmp.set_defaults(func=command)
    return cmp


def resolve_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Dict[str, Any]:
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
            if value is None and name in _OPTIONAL:
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
    if opts["jobs"] is None:
        opts["jobs"] = max(1, min(8, os.cpu_count() or 1))
    _check_sizes(opts, parser)
    # the output folder is made now, not after minutes of training
    try:
        os.makedirs(opts["out"], exist_ok=True)
    except OSError as exc:
        parser.error(f"argument --out: cannot create the folder {opts['out']!r} ({exc.strerror or exc})")
    if not os.access(opts["out"], os.W_OK):
        parser.error(f"argument --out: the folder {opts['out']!r} is not writable")
    return opts


def _check_sizes(opts: Dict[str, Any], parser: argparse.ArgumentParser) -> None:
    """Options that only make sense together, checked before anything trains."""
    exps = opts["experiments"]
    if "channels" in exps:
        n = opts["graph_nodes"]
        if n < GRAPH_INPUTS + GRAPH_OUTPUTS + 1:
            parser.error(f"argument --graph-nodes: the graph has {GRAPH_INPUTS} input and {GRAPH_OUTPUTS} output "
                         f"nodes, so at least {GRAPH_INPUTS + GRAPH_OUTPUTS + 1} nodes, got {n}")
        hidden = n - GRAPH_INPUTS - GRAPH_OUTPUTS
        if opts["graph_blocks"] > hidden:
            parser.error(f"argument --graph-blocks: at most the {hidden} hidden nodes of {n} nodes "
                         f"({GRAPH_INPUTS} inputs, {GRAPH_OUTPUTS} outputs), got {opts['graph_blocks']}")
        from neuralgraphs.models.channels import channel_blocks

        sizes = channel_blocks(n, GRAPH_INPUTS, GRAPH_OUTPUTS, opts["graph_blocks"])
        candidates = (n * n - sum(size * size for size in sizes)) // 2
        if opts["graph_budget"] is not None and opts["graph_budget"] > candidates:
            parser.error(f"argument --graph-budget: at most {candidates} edges (every candidate of {n} nodes in "
                         f"{opts['graph_blocks']} blocks), got {opts['graph_budget']}")
    elif opts["graph_budget"] is not None:
        parser.error("argument --graph-budget: sets the channels experiment, which --experiments leaves out")
    if "stages" in exps:
        n = opts["nodes"]
        limit = n * (n - 1) // 2 + 2 * n
        if opts["budget"] is not None and opts["budget"] > limit:
            parser.error(f"argument --budget: at most {limit} edges (every candidate of a {n}-node DNW stage), "
                         f"got {opts['budget']}")
        if opts["blocks"] > n:
            parser.error(f"argument --blocks: at most the {n} nodes of a stage, got {opts['blocks']}")
        if opts["budget"] is not None and "dnw" not in opts["models"]:
            parser.error(f"argument --budget: sets the dnw model's edges, but the models are {','.join(opts['models'])}")
    elif opts["budget"] is not None:
        parser.error("argument --budget: sets the stages experiment, which --experiments leaves out")


# ------------------------------------------------------------------------------------------ statistics
def welch(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float]:
    """Welch's t statistic of ``mean(a) - mean(b)`` and its two-sided p-value (``nan`` with fewer than two
    values on a side or no variance at all)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return math.nan, math.nan
    va, vb = statistics.variance(a) / na, statistics.variance(b) / nb
    if va + vb == 0:
        return math.nan, math.nan
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    from scipy.stats import t as student_t

    return t, float(2 * student_t.sf(abs(t), df))


# ------------------------------------------------------------------------------------------ runs
def _build(experiment: str, model: str, seed: int, opts: Dict[str, Any]):
    if experiment == "channels":
        from neuralgraphs.models.channels import ChannelGraphClassifier

        budget = opts["graph_budget"] if model != "complete" else None
        return ChannelGraphClassifier(model, num_nodes=opts["graph_nodes"], num_inputs=GRAPH_INPUTS,
                                      num_outputs=GRAPH_OUTPUTS, budget=budget, seed=seed,
                                      num_blocks=opts["graph_blocks"])
    from neuralgraphs.models.randwire import digits_network

    sparse = {"ws": {"k": 2, "p": 0.75}, "er": {"p": min(1.0, 2.0 / (opts["nodes"] - 1))}, "ba": {"m": 1}}
    if model in sparse:
        return digits_network(model, num_nodes=opts["nodes"], channels=opts["channels"], seed=seed,
                              generator_params=sparse[model])
    if model == "dnw":
        # k of each stage: the edge count of the sparse WS stage of the same seed, or --budget
        budget = opts["budget"]
        return digits_network("dnw", num_nodes=opts["nodes"], channels=opts["channels"], seed=seed, budget=budget,
                              generator_params=None if budget is not None else sparse["ws"], num_blocks=opts["blocks"])
    return digits_network(model, num_nodes=opts["nodes"], channels=opts["channels"], seed=seed,
                          num_blocks=opts["blocks"])


def run_one(job: Tuple[str, str, int], opts: Dict[str, Any]) -> Dict[str, Any]:
    """Train one model of one experiment with one seed; its record (accuracy, counts, swaps, history)."""
    import torch

    from neuralgraphs.analysis import count_flops, count_parameters, effective_edges
    from neuralgraphs.analysis.counts import _graph_modules, _analyse
    from neuralgraphs.analysis.history import WiringHistory
    from neuralgraphs.train import digits_loaders, fit

    experiment, model_name, seed = job
    torch.set_num_threads(opts["threads"])
    train_loader, test_loader = digits_loaders(opts["batch_size"], seed=0)
    model = _build(experiment, model_name, seed, opts)
    hist = WiringHistory()
    t0 = time.perf_counter()
    epochs = opts["graph_epochs"] if experiment == "channels" else opts["epochs"]
    history = fit(model, train_loader, test_loader, epochs=epochs, lr=opts["lr"], weight_decay=5e-5,
                  schedule="cosine", progress=False, seed=seed, callbacks=[hist])
    swaps = hist.swaps() if model_name == "dnw" else [0] * epochs
    live = sum(int(_analyse(g)[2].sum()) for g in _graph_modules(model))
    return {"experiment": experiment, "model": model_name, "seed": seed, "test_acc": history["test_acc"][-1],
            # a stage's edges with its input and output edges, as its random counterpart's
            "active_edges": (model.num_active_edges() if hasattr(model, "num_active_edges")
                             else sum(int(g.wiring.num_active) for g in _graph_modules(model))),
            "effective_edges": effective_edges(model), "live_nodes": live,
            "parameters": count_parameters(model), "flops": count_flops(model, (1, 8, 8)),
            "swaps_first_epoch": int(swaps[0]), "swaps_last_epoch": int(swaps[-1]),
            "time_s": time.perf_counter() - t0, "history": history}


def _jobs(opts: Dict[str, Any]) -> List[Tuple[str, str, int]]:
    models = {"channels": opts["graph_models"], "stages": opts["models"]}
    return [(e, m, s) for e in opts["experiments"] for m in models[e] for s in opts["seeds"]]


def _number(values: Sequence[float]):
    mean = statistics.fmean(values)
    return int(mean) if mean == int(mean) else round(mean, 1)


def summarise(records: Sequence[Dict[str, Any]], opts: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per experiment and model (keys :data:`MODEL_KEYS`), with Welch's test of DNW against it."""
    rows = []
    models = {"channels": opts["graph_models"], "stages": opts["models"]}
    for experiment in opts["experiments"]:
        mine = {m: [r for r in records if r["experiment"] == experiment and r["model"] == m] for m in models[experiment]}
        dnw = [r["test_acc"] for r in mine.get("dnw", [])]
        for model, runs in mine.items():
            accs = [r["test_acc"] for r in runs]
            mean = statistics.fmean(accs)
            t, p = welch(dnw, accs) if dnw and model != "dnw" else (math.nan, math.nan)
            rows.append({
                "experiment": experiment, "model": model, "acc_mean": mean,
                "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "accuracies": accs,
                "diff_vs_dnw": statistics.fmean(dnw) - mean if dnw and model != "dnw" else math.nan,
                "welch_t": t, "welch_p": p,
                **{key: _number([r[key] for r in runs]) for key in ("active_edges", "effective_edges", "live_nodes",
                                                                 "parameters", "flops", "swaps_first_epoch",
                                                                 "swaps_last_epoch")},
                "time_s": statistics.fmean(r["time_s"] for r in runs), "seeds": [r["seed"] for r in runs]})
    return rows


def run_compare(opts: Dict[str, Any], log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Train every model of every experiment for every seed (``opts["jobs"]`` at a time, each in its own
    process, with ``opts["threads"]`` torch threads, so the figures do not depend on ``jobs``).

    Returns:
        dict: ``{"config": opts, "models": rows (keys MODEL_KEYS), "runs": one row per run, "histories":
        {experiment: {model: [fit history per seed]}}, "wall_time_s": float}``.
    """
    start = time.perf_counter()
    jobs = _jobs(opts)
    bar = None
    if opts["progress"]:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="compare", unit="run", file=sys.stderr, dynamic_ncols=True)
    records: List[Dict[str, Any]] = []
    try:
        if opts["jobs"] <= 1 or len(jobs) == 1:
            for job in jobs:
                records.append(run_one(job, opts))
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a forked torch with live OpenMP threads can deadlock in the child
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(opts["jobs"], len(jobs)), mp_context=context) as pool:
                futures = [pool.submit(run_one, job, opts) for job in jobs]
                for future in futures:
                    records.append(future.result())
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    histories: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    for r in records:
        histories.setdefault(r["experiment"], {}).setdefault(r["model"], []).append(r.pop("history"))
    return {"config": dict(opts), "models": summarise(records, opts), "runs": records, "histories": histories,
            "wall_time_s": time.perf_counter() - start}


# ------------------------------------------------------------------------------------------ output
def _fmt_float(value: float, spec: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The comparison table as aligned text, one block per experiment."""
    header = ("model", "test acc (%)", "DNW - it", "Welch t", "p", "active edges", "effective", "params",
              "FLOPs (MAC)", "swaps 1st/last", "time/run (s)")
    blocks = []
    for experiment in dict.fromkeys(r["experiment"] for r in rows):
        lines = [(r["model"], f"{100 * r['acc_mean']:.1f} ± {100 * r['acc_std']:.1f}",
                  _fmt_float(100 * r["diff_vs_dnw"], "+.1f") if not math.isnan(r["diff_vs_dnw"]) else "",
                  _fmt_float(r["welch_t"], ".2f"), _fmt_float(r["welch_p"], ".3f"), f"{r['active_edges']}",
                  f"{r['effective_edges']}", f"{r['parameters']}", f"{r['flops']}",
                  f"{r['swaps_first_epoch']}/{r['swaps_last_epoch']}" if r["model"] == "dnw" else "",
                  f"{r['time_s']:.1f}") for r in rows if r["experiment"] == experiment]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

        def fmt(cells):
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        blocks.append("\n".join([f"{experiment}:", fmt(header), "  ".join("-" * w for w in widths)]
                                + [fmt(line) for line in lines]))
    return "\n\n".join(blocks)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_results(results: Dict[str, Any], out: str) -> Dict[str, str]:
    """Write ``results.json``, ``results.csv``, ``runs.csv``, ``accuracy_<experiment>.png`` (every seed a dot)
    and ``curves_<experiment>.png`` to ``out``.

    Returns:
        dict: file name to path.
    """
    from neuralgraphs.viz import plot_compare, plot_training_curves

    os.makedirs(out, exist_ok=True)
    names = ["results.json", "results.csv", "runs.csv"]
    experiments = list(results["histories"])
    names += [f"{kind}_{e}.png" for e in experiments for kind in ("accuracy", "curves")]
    paths = {name: os.path.join(out, name) for name in names}
    tmp = paths["results.json"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_json_safe(results), f, indent=1)
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
    for e in experiments:
        rows = [r for r in results["models"] if r["experiment"] == e]
        plot_compare(rows, paths[f"accuracy_{e}.png"], title=f"{e}: test accuracy, mean ± std, every seed")
        plot_training_curves(results["histories"][e], paths[f"curves_{e}.png"])
    return paths


def _epochs_text(opts: Dict[str, Any]) -> str:
    per = {"channels": opts["graph_epochs"], "stages": opts["epochs"]}
    return ", ".join(f"{per[e]} ({e})" for e in opts["experiments"])


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    opts = resolve_options(args, parser)
    n_runs = len(_jobs(opts))
    print(f"neuralgraphs compare: {', '.join(opts['experiments'])}; seeds {opts['seeds']} ({n_runs} runs, "
          f"{opts['jobs']} at a time), epochs {_epochs_text(opts)}, batch {opts['batch_size']}, lr {opts['lr']}",
          flush=True)
    results = run_compare(opts)
    paths = write_results(results, opts["out"])
    print()
    print(format_table(results["models"]))
    print(f"\nDNW - it: DNW's mean accuracy minus the model's; Welch t and p: DNW against the model "
          f"({len(opts['seeds'])} seeds each)")
    print(f"wall time {results['wall_time_s']:.1f} s; results in {opts['out']}/ "
          f"({', '.join(os.path.basename(p) for p in paths.values())})")
    return 0
