"""`python -m lab.emulator [serve|ps|list|stop|run|pull|--version]`: the `ollama` command, from a checkout."""

import sys

from .cli import main

sys.exit(main())
