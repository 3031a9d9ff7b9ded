"""Analyse a learned wiring with networkx, side by side with a random wiring of the same edge count.

A DNW static graph (the vector digits classifier: 64 pixel nodes -> hidden blocks -> 10 output nodes) is
trained briefly; ``module.active_graph()`` gives the candidate graph as networkx with ``weight`` and
``active`` edge attributes. Keeping the active edges, we compute in / out degree distributions, the depth
(longest path), dead nodes (non-output nodes without an outgoing active edge: their computation is wasted)
and the edges on some input-to-output path, and compare with a random wiring drawn on the same candidates
with the same number of edges. A PNG of the degree distributions is saved.

    python examples/analyse_wiring.py            # ~15 s on 2 cores
    python examples/analyse_wiring.py --quick    # a few seconds
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import networkx as nx  # noqa: E402

from neuralgraphs.models.tiny import DigitsGraphClassifier  # noqa: E402
from neuralgraphs.train import digits_loaders, fit  # noqa: E402
from neuralgraphs.wiring import RandomWiring  # noqa: E402


def keep_active(g: nx.DiGraph) -> nx.DiGraph:
    """The same nodes (with their roles) and only the active edges."""
    out = nx.DiGraph()
    out.add_nodes_from(g.nodes(data=True))
    out.add_edges_from((u, v) for u, v, a in g.edges(data="active") if a)
    return out


def statistics_of(g: nx.DiGraph) -> dict:
    role = dict(g.nodes(data="role"))
    inputs = [v for v in g if role[v] == "input"]
    outputs = [v for v in g if role[v] == "output"]
    hidden = [v for v in g if role[v] == "hidden"]
    reach_from_in = set(inputs).union(*(nx.descendants(g, v) for v in inputs))
    reach_to_out = set(outputs).union(*(nx.ancestors(g, v) for v in outputs))
    useful = sum(1 for u, v in g.edges if u in reach_from_in and v in reach_to_out)
    return {
        "active edges": g.number_of_edges(),
        "edges on an input->output path": useful,
        "depth (longest path)": nx.dag_longest_path_length(g),
        "dead nodes (no active out-edge)": sum(1 for v in g if role[v] != "output" and g.out_degree(v) == 0),
        "hidden nodes without input": sum(1 for v in hidden if g.in_degree(v) == 0),
        "mean hidden in-degree": round(statistics.fmean(g.in_degree(v) for v in hidden), 2),
        "max in-degree": max(d for _, d in g.in_degree()),
        "max out-degree": max(d for _, d in g.out_degree()),
        "pixels used (out-degree > 0)": sum(1 for v in inputs if g.out_degree(v) > 0),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for tests)")
    parser.add_argument("--out", default="wiring_degrees.png", help="PNG file (default: wiring_degrees.png)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = 1 if args.quick else 6

    model = DigitsGraphClassifier(kind="static", wiring="dnw", as_images=False, seed=args.seed)
    train_loader, test_loader = digits_loaders(64, seed=0, as_images=False)
    history = fit(model, train_loader, test_loader, epochs=epochs, lr=0.1, seed=args.seed, progress=False)
    print(f"DNW graph trained {epochs} epoch(s): test accuracy {100 * history['test_acc'][-1]:.1f}%")

    module = model.graph  # the StaticGraph inside the classifier
    learned = keep_active(module.active_graph())
    k = module.num_active_edges()
    random_wiring = RandomWiring(module.graph, k=k, seed=args.seed)  # same candidates, same edge count
    random = keep_active(module.graph.to_networkx(active=random_wiring.active_index))

    a, b = statistics_of(learned), statistics_of(random)
    width = max(map(len, a))
    print(f"\n{'':<{width}}  {'learned':>8}  {'random':>8}")
    for key in a:
        print(f"{key:<{width}}  {a[key]:>8}  {b[key]:>8}")

    try:
        from neuralgraphs.viz import plot_degree_distributions

        hidden = [v for v, r in learned.nodes(data="role") if r != "input"]
        plot_degree_distributions({"learned (DNW)": learned.subgraph(hidden).copy(),
                                   "random": random.subgraph(hidden).copy()}, args.out)
        print(f"\ndegree distributions of the non-input nodes saved to {args.out}")
    except ImportError as exc:
        print(f"\n(no plot: {exc})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
