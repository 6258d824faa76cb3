"""``python -m gpuserve``: the same as the ``serve`` script."""

from .server import main

main()
