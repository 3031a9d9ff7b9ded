"""The ``neuralgraphs`` command line: ``compare``, ``demo``, ``inspect`` and ``train``.

``neuralgraphs compare`` trains learned (DNW) and random wirings at equal edges on the bundled 8x8 digits over
several seeds, in a graph of single-channel nodes and in RandWire stages, and writes a table with Welch's
tests, CSV / JSON results and PNG plots; ``neuralgraphs demo`` shows a wiring being learned;
``neuralgraphs inspect PATH`` prints statistics of a saved graph or checkpoint; ``neuralgraphs train NAME``
runs a named experiment config.  Run
``neuralgraphs COMMAND --help`` for the options.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from neuralgraphs.cli import compare, demo, inspect, train
from neuralgraphs.cli.compare import COMPARE_DEFAULTS, MODEL_KEYS, QUICK_DEFAULTS, format_table, run_compare, \
    write_results

__all__ = ["main", "build_parser", "COMPARE_DEFAULTS", "QUICK_DEFAULTS", "MODEL_KEYS", "run_compare",
           "format_table", "write_results"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neuralgraphs`` command."""
    from neuralgraphs import __version__

    parser = argparse.ArgumentParser(prog="neuralgraphs", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"neuralgraphs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    compare.add_parser(sub)
    demo.add_parser(sub)
    inspect.add_parser(sub)
    train.add_parser(sub)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
