"""Build a custom neural graph in code and train its wiring with DNW on the 8x8 digits.

The candidate graph is written with networkx: the 64 pixels are input nodes, the hidden nodes form a
Watts-Strogatz small world oriented from lower to higher index (so it is a DAG), every input may feed the
first hidden nodes, and the last hidden nodes may feed the 10 output nodes, which are the logits. DNW then
keeps the ``--budget`` candidate edges of largest weight at every step.

    python examples/custom_graph.py            # ~10 s on 2 cores
    python examples/custom_graph.py --quick    # a few seconds
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import networkx as nx  # noqa: E402
import torch  # noqa: E402

from neuralgraphs.dynamics import StaticGraph  # noqa: E402
from neuralgraphs.graph import NeuralGraph  # noqa: E402
from neuralgraphs.nodes import vector_node_op  # noqa: E402
from neuralgraphs.train import digits_loaders, fit  # noqa: E402


def custom_candidates(hidden: int, seed: int) -> nx.DiGraph:
    """64 inputs -> small-world DAG of ``hidden`` nodes -> 10 outputs, as a networkx DiGraph."""
    g = nx.DiGraph()
    inputs = [f"px{i}" for i in range(64)]
    outputs = [f"digit{d}" for d in range(10)]
    g.add_nodes_from(inputs, role="input")
    g.add_nodes_from(range(hidden), role="hidden")
    g.add_nodes_from(outputs, role="output")
    ring = nx.watts_strogatz_graph(hidden, 6, 0.3, seed=seed)
    g.add_edges_from((min(u, v), max(u, v)) for u, v in ring.edges)  # low -> high index: acyclic
    first, last = range(hidden // 2), range(hidden // 2, hidden)
    g.add_edges_from((p, h) for p in inputs for h in first)
    g.add_edges_from((h, o) for h in last for o in outputs)
    return g


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for tests)")
    parser.add_argument("--hidden", type=int, default=48, help="hidden nodes (default: 48)")
    parser.add_argument("--budget", type=int, default=500, help="active edges (default: 500)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 10, --quick: 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 10)

    candidates = custom_candidates(args.hidden, args.seed)
    graph = NeuralGraph.from_networkx(candidates)  # inputs / outputs from the "role" attributes
    if args.budget > graph.num_edges:
        parser.error(f"--budget: at most {graph.num_edges} candidate edges")
    print(f"candidate graph: {graph.num_nodes} nodes, {graph.num_edges} candidate edges, "
          f"{graph.inputs.numel()} inputs, {graph.outputs.numel()} outputs; budget {args.budget} edges")

    torch.manual_seed(args.seed)
    model = StaticGraph(graph, vector_node_op(graph.num_nodes, norm="batch"), "dnw", k=args.budget)
    train_loader, test_loader = digits_loaders(64, seed=args.seed, as_images=False)
    t0 = time.perf_counter()
    history = fit(model, train_loader, test_loader, epochs=epochs, lr=0.1, seed=args.seed)
    print(f"trained {epochs} epochs in {time.perf_counter() - t0:.1f} s: test accuracy per epoch "
          + ", ".join(f"{100 * a:.1f}%" for a in history["test_acc"]))

    learned = model.active_graph()
    kept = [(u, v) for u, v, a in learned.edges(data="active") if a]
    from_inputs = sum(1 for u, _ in kept if str(u).startswith("px"))
    to_outputs = sum(1 for _, v in kept if str(v).startswith("digit"))
    print(f"learned wiring: {len(kept)} edges, {from_inputs} from pixels, {to_outputs} into the outputs, "
          f"{len(kept) - from_inputs - to_outputs} between hidden nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
