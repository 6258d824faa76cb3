"""``python -m model_export``: see :mod:`model_export.cli`."""

from model_export.cli import main

main()
