"""`python -m heartbeat_agent` and the `ollama-heartbeat` console script."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from ._cli import main as cli_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
