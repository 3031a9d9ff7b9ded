"""``neuralgraphs inspect PATH``: statistics of a saved graph, a summary of a checkpoint, or a run folder of
``neuralgraphs train``."""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ins = sub.add_parser("inspect", help="statistics of a saved graph (.json / .graphml), a checkpoint or a run "
                         "folder", description="Print dag_statistics of a graph saved with save_graph (node-link "
                         ".json or .graphml), a summary of a checkpoint written by save_checkpoint / fit, or, for a "
                         "folder written by neuralgraphs train, what the trained model uses (active edges, live "
                         "nodes, depth, parameters and FLOPs) and its swaps over training, with the plots.")
    ins.add_argument("path", help="graph file (.json, .graphml), checkpoint (.pt, ...) or run folder")
    ins.set_defaults(func=command)
    return ins


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    path = args.path
    if os.path.isdir(path):
        return _inspect_run(path, parser)
    if not os.path.isfile(path):
        parser.error(f"argument path: no such file or folder {path!r}")
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



def _inspect_run(folder: str, parser: argparse.ArgumentParser) -> int:
    """A run folder of ``neuralgraphs train``: the model rebuilt from ``config.yaml`` with the weights of
    ``checkpoint.pt``, its counts over what is used, and the swaps of ``wiring.pt``."""
    import networkx as nx
    import torch

    from neuralgraphs.analysis import count_flops, count_parameters, dag_statistics, effective_edges, live_nodes
    from neuralgraphs.analysis.history import WiringHistory, wired_modules
    from neuralgraphs.cli import train as train_cli
    from neuralgraphs.train.checkpoint import load_checkpoint

    needed = [os.path.join(folder, name) for name in ("config.yaml", "checkpoint.pt")]
    missing = [p for p in needed if not os.path.isfile(p)]
    if missing:
        parser.error(f"argument path: {folder!r} is not a run folder of neuralgraphs train (no {', '.join(missing)})")
    try:
        config = train_cli.load_config(needed[0])
        state = load_checkpoint(needed[1])
        model = train_cli.init_model(train_cli.build_model(config), config, from_run=False)
        model.load_state_dict(state["model"])
    except (ValueError, TypeError, OSError, KeyError, RuntimeError) as exc:
        parser.error(f"argument path: cannot restore the run in {folder!r} ({exc})")
    model.eval()
    x, _ = next(iter(train_cli._loaders(config)[1]))
    shape = tuple(x.shape[1:])  # one sample, without the batch dimension
    arguments = ", ".join(f"{k}={v}" for k, v in config["model"].items() if k != "builder")
    print(f"{folder}: {config['model']['builder']} ({arguments}), epoch {state.get('epoch', '?')} of "
          f"{config['train']['epochs']}")
    history = state.get("history") or {}
    if history.get("test_acc"):
        print(f"  test accuracy    {100 * history['test_acc'][-1]:.2f} %")
    print(f"  parameters       {count_parameters(model)} (used), {count_parameters(model, effective=False)} (stored)")
    print(f"  FLOPs (MAC)      {count_flops(model, shape)} at input {list(shape)}")
    graphs = {}
    for name, module in wired_modules(model):
        label = name or "model"
        with torch.no_grad():
            active = module.active().index
        g = module.graph.to_networkx(active=active, active_only=True, use_labels=False)
        graphs[label] = g
        line = f"  {label}: {int(active.numel())} active of {module.graph.num_edges} candidates"
        try:
            line += f", {effective_edges(module)} effective, {int(live_nodes(module).sum())} live nodes"
        except (TypeError, ValueError):  # a layer without node semantics (a sparse convolution's wiring)
            pass
        if nx.is_directed_acyclic_graph(g):
            line += f", depth {dag_statistics(g)['depth']}"
        print(line)
    record = os.path.join(folder, "wiring.pt")
    if graphs and os.path.isfile(record):
        hist = WiringHistory()
        hist.load_state_dict(load_checkpoint(record))
        ends = [0] + [i for i, label in enumerate(hist.labels) if str(label).startswith("epoch ")]
        print(f"  records          {len(hist)} (steps {hist.steps[0]}..{hist.steps[-1]})")
        print(f"  swaps per epoch  {hist.swaps_between(ends)} (edges active at the epoch's end, not at the previous "
              "one's)")
        try:
            from neuralgraphs.viz import plot_degree_distributions, plot_swaps

            swaps = {label: [0] + [s[name] for s in hist.swaps(per_module=True)]
                     for label, name in zip(graphs, hist.records.names)}
            for path in (plot_swaps(hist.steps, swaps, os.path.join(folder, "wiring-swaps.png")),
                         plot_degree_distributions(graphs, os.path.join(folder, "wiring-degrees.png"))):
                print(f"  plot             {path}")
        except ImportError:
            print("  (plots need matplotlib: pip install neuralgraphs[plot])")
    return 0
