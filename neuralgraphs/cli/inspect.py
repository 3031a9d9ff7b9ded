"""``neuralgraphs inspect PATH``: statistics of a saved graph or a summary of a checkpoint."""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ins = sub.add_parser("inspect", help="statistics of a saved graph (.json / .graphml) or checkpoint",
                         description="Print dag_statistics of a graph saved with save_graph (node-link .json or "
                                     ".graphml), or a summary of a checkpoint written by save_checkpoint / fit.")
    ins.add_argument("path", help="graph file (.json, .graphml) or checkpoint (.pt, ...)")
    ins.set_defaults(func=command)
    return ins


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
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
