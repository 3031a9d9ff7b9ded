"""A small RandWire vs DNW comparison on the 8x8 digits, with ``digits_network`` and ``fit``.

Both networks have the same stem, node operation and number of nodes; the WS(4, 0.75) random graph is fixed,
while DNW learns which edges to use under the same edge budget (the WS graph's edge count).
``neuralgraphs compare`` runs the full comparison (ER, BA, the complete graph, several seeds, plots).

    python examples/randwire_vs_dnw.py            # ~30 s on 2 cores
    python examples/randwire_vs_dnw.py --quick    # a few seconds
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from neuralgraphs.analysis import count_flops, count_parameters  # noqa: E402
from neuralgraphs.models.randwire import digits_network  # noqa: E402
from neuralgraphs.train import digits_loaders, fit  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (for tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs, nodes, channels = (1, 6, 4) if args.quick else (12, 12, 8)

    train_loader, test_loader = digits_loaders(64, seed=0)
    print(f"{'model':<6} {'test acc':>8} {'edges':>6} {'params':>7} {'FLOPs':>8} {'time':>6}")
    for kind in ("ws", "dnw"):
        model = digits_network(kind, num_nodes=nodes, channels=channels, seed=args.seed)
        t0 = time.perf_counter()
        history = fit(model, train_loader, test_loader, epochs=epochs, lr=0.1, weight_decay=5e-5,
                      seed=args.seed, progress=False)
        print(f"{kind:<6} {100 * history['test_acc'][-1]:>7.1f}% {model.num_active_edges():>6} "
              f"{count_parameters(model):>7} {count_flops(model, (1, 8, 8)):>8} {time.perf_counter() - t0:>5.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
