"""`python -m gateway` and the `keepwarm-gateway` console script."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
