"""``python -m neuralgraphs``: the same command line as the ``neuralgraphs`` console script."""

import sys

from neuralgraphs.cli import main

if __name__ == "__main__":
    sys.exit(main())
