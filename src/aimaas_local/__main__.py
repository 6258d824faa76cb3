"""``python -m aimaas_local serve --registry build/registry [--host 127.0.0.1 --port 8000]``."""

import sys

from aimaas_local.cli import main

sys.exit(main())
