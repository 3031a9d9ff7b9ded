"""``neuralgraphs demo``: a static graph learning its wiring on the digits, with the swaps per epoch."""

from __future__ import annotations

import argparse
import time

from neuralgraphs.cli.compare import _int_at_least

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    demo = sub.add_parser("demo", help="learn a wiring on the digits and show how it changes",
                          description="Train a static neural graph (64 pixel nodes -> 2 hidden blocks -> 10 "
                                      "output nodes) with DNW rewiring on the digits and print the swaps per "
                                      "epoch; then train the same graph with a fixed random wiring.")
    demo.add_argument("--epochs", type=_int_at_least(1), default=5, help="epochs (default: 5)")
    demo.add_argument("--budget", type=_int_at_least(1), default=600, help="active edges (default: 600)")
    demo.add_argument("--seed", type=_int_at_least(0), default=0, help="seed (default: 0)")
    demo.set_defaults(func=command)

    return demo


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
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

